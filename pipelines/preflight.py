"""The checks `usage-etl run` makes before it starts a Dagster run: configuration and reachability.

A run that cannot succeed should fail in seconds with one line, not after minutes of retries:
- the warehouse directory can be written, the quota file is valid;
- with a host configured, a token is set and the host is an http(s) URL;
- the host answers `GET /organizations` within a few seconds and accepts the token.

All failures are `common.errors.UsageEtlError`s (exit 2). A host that answers 429 or 5xx counts
as reachable: the run's own client waits and retries those.
"""

from __future__ import annotations

import time

from common.errors import ApiUnreachableError

PROBE_SECONDS = 5.0


def check_api(host: str, token: str, deadline_seconds: float = PROBE_SECONDS) -> None:
    """Raise `ApiUnreachableError` unless `host` answers and accepts `token` within the deadline."""
    import httpx

    from ubiops_api.client import authorization_header

    headers = {"Authorization": authorization_header(token), "Accept": "application/json"}
    deadline = time.monotonic() + deadline_seconds
    problem = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ApiUnreachableError(
                f"UBIOPS_API_HOST={host}: {problem} within {deadline_seconds:g}s; "
                "expected the UbiOps API (check the URL and the network)"
            )
        try:
            response = httpx.get(
                f"{host}/organizations", headers=headers, timeout=min(remaining, 3.0)
            )
        except httpx.TimeoutException:
            problem = "timed out"
        except httpx.TransportError as exc:
            problem = f"cannot connect ({type(exc).__name__})"
        else:
            status = response.status_code
            if status in (401, 403):
                raise ApiUnreachableError(
                    f"UBIOPS_API_TOKEN was rejected by {host} (HTTP {status}); "
                    "expected a valid API token (`Token <key>` or the bare key)"
                )
            if status == 404:
                raise ApiUnreachableError(
                    f"UBIOPS_API_HOST={host}: /organizations not found (HTTP 404); "
                    "expected the API base URL, e.g. https://api.ubiops.com/v2.1"
                )
            return
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
