"""The extraction endpoints, described once: what each asset asks the API and where it lands.

One row per endpoint (as dlt's `rest_api` source describes a REST source): the client call, the
fan-out (one request per organization, or per organization and subscription period), the
normalizer that turns the answers into warehouse rows, the target table, how those rows are
written, and when the endpoint is asked at all (the request budget):

| endpoint | fan-out | table | write | asked |
|---|---|---|---|---|
| organization details | organization | organizations | registry merge | details due |
| current period | organization | organizations | registry merge | details due, anchor unknown |
| users | organization | organization_users | replace per organization | details re-read |
| resources | organization | resource_usage | append snapshot | every run |
| daily usage | organization x month | credit_usage (day) | replace month slices | every run |
| period usage | organization x period | credit_usage (month) | replace month slices | reconcile |

"details due": a new organization, a rename, or details older than `USAGE_DETAILS_MAX_AGE_DAYS`
(`normalize.details_due`). "reconcile": a period whose days are not all loaded, a closed period
not yet checked since it closed (older than the previous month: at most
`USAGE_RECONCILE_PER_RUN` a run, oldest first; the rest wait in
`assets/reconciliation_ledger.py`'s file), or the current period of an organization whose
details were re-read in this run (`assets/credit_usage.py`); every other period row is summed
from its days.
The assets (`assets/organizations.py`, `assets/credit_usage.py`) select the keys by the policy,
run them through `extract.pull` and write with the mode named here.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

import pandas as pd

from extraction.fanout import Org, ProgressFn, fan_out
from extraction.normalize import (
    credit_period_frame,
    credit_usage_frame,
    resource_usage_frame,
    users_frame,
)
from ubiops_api.client import RequestStats, UbiOpsClient
from warehouse.schema import CREDIT_USAGE, ORGANIZATION_USERS, ORGANIZATIONS, RESOURCE_USAGE, Table


class FanOut(StrEnum):
    """What one request is made for."""

    ORGANIZATION = "one request per organization"
    ORGANIZATION_MONTH = "one request per organization and calendar month"
    ORGANIZATION_PERIOD = "one request per organization and subscription period"


class WriteMode(StrEnum):
    """How an endpoint's rows replace what is stored."""

    REGISTRY = "merged by organization id; organizations not listed are kept, not visible"
    REPLACE_PER_ORGANIZATION = "the pulled organizations' rows replaced, others kept"
    APPEND_SNAPSHOT = "a new snapshot file per run; history accumulates"
    REPLACE_MONTH_SLICES = "month slices replaced, per organization pulled, all or nothing"


class Refresh(StrEnum):
    """When an endpoint is asked (the request budget)."""

    EVERY_RUN = "every run, for every visible organization"
    DETAILS_DUE = "new organization, rename, or older than USAGE_DETAILS_MAX_AGE_DAYS"
    DETAILS_DUE_OR_ANCHOR_UNKNOWN = "details due, or the anchor day is not known yet"
    DETAILS_REREAD = "when the organization's details were re-read after its members"
    RECONCILE = "only to reconcile: otherwise the period row is summed from its days"


@dataclass(frozen=True)
class PeriodKey:
    """One subscription period of one organization, in the partition of the month it starts in."""

    org: Org
    month: date
    start: date
    end: date


@dataclass(frozen=True)
class MonthKey:
    """One calendar month of one organization."""

    org: Org
    month: date
    start: date
    end: date


Normalizer = Callable[[list[tuple[Any, Any]], datetime], pd.DataFrame]


def by_organization_id(
    frame: Callable[[list[tuple[str, Any]], datetime], pd.DataFrame],
) -> Normalizer:
    """The normalizer of a per-organization endpoint: `frame` of (organization id, answer)."""

    def normalize(found: list[tuple[Any, Any]], loaded_at: datetime) -> pd.DataFrame:
        return frame([(org.id, answer) for org, answer in found], loaded_at)

    return normalize


@dataclass(frozen=True)
class Endpoint:
    """One extraction endpoint: `call(client, key)` for every key the refresh policy selects;
    `normalize((key, answer) pairs, loaded_at)` gives the table's rows (None: the registry merge
    of `normalize.organizations_frame`, which needs the stored rows)."""

    name: str
    call: Callable[[UbiOpsClient, Any], Awaitable[Any]]
    fan_out: FanOut
    normalize: Normalizer | None
    table: Table
    write: WriteMode
    refresh: Refresh


ORGANIZATION_DETAILS = Endpoint(
    name="organization details",
    call=lambda client, org: client.get_organization(org.name),
    fan_out=FanOut.ORGANIZATION,
    normalize=None,
    table=ORGANIZATIONS,
    write=WriteMode.REGISTRY,
    refresh=Refresh.DETAILS_DUE,
)
CURRENT_PERIOD = Endpoint(
    name="current subscription period",
    call=lambda client, org: client.credit_usage(org.name, interval="month"),
    fan_out=FanOut.ORGANIZATION,
    normalize=None,
    table=ORGANIZATIONS,
    write=WriteMode.REGISTRY,
    refresh=Refresh.DETAILS_DUE_OR_ANCHOR_UNKNOWN,
)
USERS = Endpoint(
    name="organization users",
    call=lambda client, org: client.list_users(org.name),
    fan_out=FanOut.ORGANIZATION,
    normalize=by_organization_id(users_frame),
    table=ORGANIZATION_USERS,
    write=WriteMode.REPLACE_PER_ORGANIZATION,
    refresh=Refresh.DETAILS_REREAD,
)
RESOURCES = Endpoint(
    name="resource usage",
    call=lambda client, org: client.resource_usage(org.name),
    fan_out=FanOut.ORGANIZATION,
    normalize=by_organization_id(resource_usage_frame),
    table=RESOURCE_USAGE,
    write=WriteMode.APPEND_SNAPSHOT,
    refresh=Refresh.EVERY_RUN,
)
DAILY_USAGE = Endpoint(
    name="credit usage (day)",
    call=lambda client, k: client.credit_usage(k.org.name, "day", k.start, k.end),
    fan_out=FanOut.ORGANIZATION_MONTH,
    normalize=lambda found, at: credit_usage_frame(
        [(k.org.id, k.org.name, a) for k, a in found], "day", at
    ),
    table=CREDIT_USAGE,
    write=WriteMode.REPLACE_MONTH_SLICES,
    refresh=Refresh.EVERY_RUN,
)
PERIOD_USAGE = Endpoint(
    name="credit usage (period)",
    call=lambda client, k: client.credit_usage(k.org.name, "month", k.start, k.end),
    fan_out=FanOut.ORGANIZATION_PERIOD,
    normalize=lambda found, at: credit_period_frame(
        [(k.org.id, k.org.name, k.start, k.end, a) for k, a in found], at
    ),
    table=CREDIT_USAGE,
    write=WriteMode.REPLACE_MONTH_SLICES,
    refresh=Refresh.RECONCILE,
)

ENDPOINTS: tuple[Endpoint, ...] = (
    ORGANIZATION_DETAILS,
    CURRENT_PERIOD,
    USERS,
    RESOURCES,
    DAILY_USAGE,
    PERIOD_USAGE,
)


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off meanwhile (as it was after).

    A fan-out keeps every validated answer until the last one arrives (12,000 daily-usage
    answers of ~220 points in a 12-month backfill of 1,000 organizations, millions of objects
    without cycles): each collection walked them all again, ~40% more client CPU per request.
    Reference counting still frees everything at once; only cyclic garbage waits for the end."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def pull(
    client: Callable[[], UbiOpsClient],
    plan: Sequence[tuple[Endpoint, Sequence[Any]]],
    progress: ProgressFn | None = None,
) -> tuple[list[list[tuple[Any, Any]]], RequestStats]:
    """The one runner: every (endpoint, keys) of `plan` through one client, endpoint after
    endpoint, each fanned out concurrently and all or nothing; the answers per endpoint (in the
    order of its keys) and the client's request statistics."""

    async def run() -> tuple[list[list[tuple[Any, Any]]], RequestStats]:
        async with client() as api:
            found = []
            for endpoint, keys in plan:
                if not keys:
                    found.append([])
                    continue
                call = endpoint.call
                found.append(
                    await fan_out(
                        api,
                        keys,
                        lambda k, call=call: call(api, k),  # type: ignore[misc]
                        label=endpoint.name,
                        progress=progress,
                    )
                )
            return found, api.stats

    with cyclic_gc_paused():
        return asyncio.run(run())
