"""Extraction throughput: this project's client vs a sequential loop over the official SDK vs the
emulator's raw capacity, then a rate-limited run against the default 300 requests/minute.

The emulator runs in its own process (so client and server do not share a GIL), on loopback.
All three unlimited measurements fetch the same requests: daily usage of N organizations x M
months, one request per organization and month (as the `credit_usage_daily` asset does).

    .venv/bin/python bench/extract.py                       # 1,000 orgs x 12 months, 120 s limited
    .venv/bin/python bench/extract.py --orgs 200 --limited-seconds 30   # quicker

Figures are throughputs (requests per second) and their ratios, measured in this one run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.emulator_process import emulator_process  # noqa: E402
from common.periods import shift_month  # noqa: E402
from extraction.fanout import fan_out  # noqa: E402
from ubiops_api.client import UbiOpsClient  # noqa: E402


@contextmanager
def emulator(orgs: int, rate_limit: int, now: str) -> Iterator[tuple[str, str]]:
    """The emulator in its own process (see bench/emulator_process.py): (host, token)."""
    with emulator_process(orgs, now, rate_limit) as env:
        yield env["UBIOPS_API_HOST"], env["UBIOPS_API_TOKEN"]


def month_requests(names: list[str], months: int, today: date) -> list[tuple[str, date, date]]:
    out = []
    for back in range(months, 0, -1):
        y, m = shift_month(today.year, today.month, -back + 1)
        ny, nm = shift_month(y, m, 1)
        out += [(name, date(y, m, 1), date(ny, nm, 1)) for name in names]
    return out


async def list_names(host: str, token: str) -> list[str]:
    async with UbiOpsClient(host, token) as client:
        return [o.name for o in await client.list_organizations()]


async def with_our_client(host: str, token: str, requests: list) -> tuple[float, int]:
    async with UbiOpsClient(host, token, max_concurrency=16) as client:
        began = time.perf_counter()
        await fan_out(client, requests, lambda r: client.credit_usage(r[0], "day", r[1], r[2]),
                      label="bench")  # fmt: skip
        return time.perf_counter() - began, client.stats.requests


def with_sdk_loop(host: str, token: str, requests: list) -> float:
    import ubiops

    config = ubiops.Configuration(host=host)
    config.api_key["Authorization"] = token
    api = ubiops.CoreApi(ubiops.ApiClient(config))
    began = time.perf_counter()
    for name, start, end in requests:
        api.organizations_usage_get(name, start_date=str(start), end_date=str(end), interval="day")
    elapsed = time.perf_counter() - began
    api.api_client.close()
    return elapsed


async def raw_capacity(host: str, token: str, requests: list, concurrency: int = 16) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=host, headers={"Authorization": token},
                                 limits=limits, timeout=60) as http:  # fmt: skip
        queue = list(requests)

        async def worker() -> None:
            while queue:
                name, start, end = queue.pop()
                r = await http.get(f"/organizations/{name}/usage", params={
                    "interval": "day", "start_date": str(start), "end_date": str(end)})  # fmt: skip
                r.raise_for_status()
                _ = r.content

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - began


async def limited_run(host: str, token: str, requests: list, seconds: float) -> dict[str, float]:
    """As many requests as the pacing allows for `seconds`, from 16 workers."""
    async with UbiOpsClient(host, token, max_concurrency=16) as client:
        began = time.perf_counter()
        queue = list(requests)

        async def worker() -> None:
            while queue and time.perf_counter() - began < seconds:
                name, start, end = queue.pop()
                await client.credit_usage(name, "day", start, end)

        await asyncio.gather(*(worker() for _ in range(16)))
        elapsed = time.perf_counter() - began
        return {
            "requests": client.stats.requests,
            "seconds": elapsed,
            "per_minute": client.stats.requests / elapsed * 60,
            "rate_limited_429": client.stats.rate_limited,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=1000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--sdk-orgs", type=int, default=100, help="orgs in the (slow) SDK loop")
    parser.add_argument("--limited-seconds", type=float, default=120.0)
    parser.add_argument("--rate-limit", type=int, default=300)
    args = parser.parse_args()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    today = datetime.now(UTC).date()

    with emulator(args.orgs, 0, now) as (host, token):
        names = asyncio.run(list_names(host, token))[: args.orgs]
        requests = month_requests(names, args.months, today)
        sdk_requests = month_requests(names[: args.sdk_orgs], args.months, today)
        print(f"{len(names)} organizations x {args.months} months = {len(requests)} requests")
        ours_s, ours_n = asyncio.run(with_our_client(host, token, requests))
        raw_s = asyncio.run(raw_capacity(host, token, requests))
        sdk_s = with_sdk_loop(host, token, sdk_requests)
    ours = ours_n / ours_s
    raw = len(requests) / raw_s
    sdk = len(sdk_requests) / sdk_s
    print(f"this client : {ours_n} requests in {ours_s:.1f}s = {ours:.0f} req/s")
    print(
        f"raw capacity: {len(requests)} requests in {raw_s:.1f}s = {raw:.0f} req/s "
        "(16 bare connections)"
    )
    print(f"SDK loop    : {len(sdk_requests)} requests in {sdk_s:.1f}s = {sdk:.0f} req/s")
    print(f"ratios: client/SDK = {ours / sdk:.1f}x, client/raw = {ours / raw:.0%}")
    print(f"full extraction time at SDK speed: {len(requests) / sdk:.0f}s vs {ours_s:.0f}s")

    if args.limited_seconds > 0:
        with emulator(args.orgs, args.rate_limit, now) as (host, token):
            result = asyncio.run(limited_run(host, token, requests, args.limited_seconds))
        share = result["per_minute"] / args.rate_limit
        print(
            f"rate-limited ({args.rate_limit}/min) for {result['seconds']:.0f}s: "
            f"{result['requests']:.0f} requests = {result['per_minute']:.0f}/min "
            f"({share:.0%} of the limit), {result['rate_limited_429']:.0f} x 429"
        )


if __name__ == "__main__":
    main()
