"""Every anchor day 1-31 across a leap and a common February, against the emulator on loopback.

The emulator's generated organizations cycle their anchor days 1..31; its clock is set to
2025-04-10 so its data cover February 2024 (leap) and February 2025 (common). The pipeline's
own pieces ask for the periods (one request per subscription period), normalize the answers and
reconcile them with the daily rows, exactly as the ``credit_usage_periods`` asset does.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pandas as pd
import pytest

from assets.credit_usage import month_bounds, period_requests
from common.periods import period_containing
from emulator.server import EmulatorConfig, EmulatorServer
from extraction.fanout import Org
from extraction.normalize import credit_period_frame, credit_usage_frame, organizations_frame
from insights.reconcile import reconcile_periods
from ubiops_api.client import UbiOpsClient
from warehouse.schema import ORGANIZATIONS

NOW = datetime(2025, 4, 10, 12, 0, tzinfo=UTC)
TODAY = NOW.date()
MONTHS = [date(2024, m, 1) for m in range(1, 13)] + [date(2025, m, 1) for m in range(1, 5)]


@pytest.fixture(scope="module")
def loaded() -> Iterator[tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, int]]]:
    config = EmulatorConfig(now=NOW, organizations=37, rate_limit_per_minute=0)
    with EmulatorServer(config, host="127.0.0.1", port=0) as server:
        truth = {o.id: o.anchor_day for o in server.state.orgs.values()}

        async def pull() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
            async with UbiOpsClient(server.base_url, server.token) as client:
                items = await client.list_organizations()
                current = [
                    (await client.get_organization(i.name), await client.credit_usage(i.name))
                    for i in items
                ]
                seen = NOW.replace(tzinfo=None)
                orgs = organizations_frame(
                    current, pd.DataFrame(columns=ORGANIZATIONS.column_names), seen
                )
                listed = [
                    Org(i, n)
                    for i, n in zip(orgs.organization_id, orgs.organization_name, strict=True)
                ]
                requests, unknown = period_requests(listed, orgs, MONTHS, TODAY)
                assert unknown == []

                async def one(request: tuple[Org, date, date, date]) -> tuple:
                    org, _, start, end = request
                    answer = await client.credit_usage(org.name, "month", start, end)
                    return org.id, org.name, start, end, answer

                periods = credit_period_frame(
                    await asyncio.gather(*(one(r) for r in requests)), seen
                )

                async def days(org: Org, month: date) -> tuple:
                    start, end = month_bounds(month)
                    return org.id, org.name, await client.credit_usage(org.name, "day", start, end)

                answers = await asyncio.gather(*(days(o, m) for o in listed for m in MONTHS))
                return orgs, periods, credit_usage_frame(answers, "day", seen)

        orgs, periods, daily = asyncio.run(pull())
        yield orgs, periods, daily, truth


def test_all_31_anchor_days_are_learnt(loaded) -> None:
    orgs, _, _, truth = loaded
    learnt = dict(zip(orgs.organization_id, orgs.period_anchor_day.astype(int), strict=True))
    assert len(learnt) == 37  # 6 demo + 31 generated organizations the token can see
    assert learnt == {org_id: truth[org_id] for org_id in learnt}
    assert set(learnt.values()) == set(range(1, 32))
    for row in orgs.itertuples():
        start, end = period_containing(TODAY, int(row.period_anchor_day))
        assert (row.period_start.date(), row.period_end.date()) == (start, end), row


def test_one_row_per_subscription_period_equal_to_its_days(loaded) -> None:
    orgs, periods, daily, truth = loaded
    totals = periods[periods.scope == "organization"]
    # exactly one row per organization and period, and consecutive periods touch
    assert not totals.duplicated(["organization_id", "start_date"]).any()
    for org_id, rows in totals.sort_values("start_date").groupby("organization_id"):
        anchor = truth[org_id]
        spans = list(zip(rows.start_date.dt.date, rows.end_date.dt.date, strict=True))
        assert all(a[1] == b[0] for a, b in itertools.pairwise(spans)), org_id
        for start, end in spans:
            assert period_containing(start, anchor) == (start, end), (org_id, start)
    # the Februaries: anchors 29-31 clamp to Feb 29 in 2024 and Feb 28 in 2025
    by_anchor = {truth[o]: o for o in orgs.organization_id if org_is_generated(orgs, o)}
    for anchor, feb24, feb25 in ((29, 29, 28), (30, 29, 28), (31, 29, 28), (28, 28, 28)):
        starts = set(totals[totals.organization_id == by_anchor[anchor]].start_date.dt.date)
        assert date(2024, 2, feb24) in starts and date(2025, 2, feb25) in starts, anchor
        assert date(2024, 3, anchor) in starts and date(2025, 3, anchor) in starts, anchor
    finding = reconcile_periods(periods, daily, TODAY)
    assert finding.passed, finding.examples
    assert "0 not comparable" in finding.description


def org_is_generated(orgs: pd.DataFrame, org_id: str) -> bool:
    name = orgs.set_index("organization_id").loc[org_id, "organization_name"]
    return str(name).startswith("org-")
