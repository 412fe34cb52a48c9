"""`project_usage_trends` computed in DuckDB SQL equals the former pandas computation, stored by
month, and a run recomputes only the months whose inputs changed (issue 9 part 1)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.periods import anchors_by_organization, shift_month
from insights import derived_slices, trends
from insights.derived_slices import RECORD_NAME, refresh_trends
from insights.trends import TREND_COLUMNS, project_usage_trends
from tests.derive.pandas_reference import reference_trends
from warehouse.derived_schema import PROJECT_USAGE_TRENDS
from warehouse.files import writer_lock
from warehouse.parquet_store import ParquetStore
from warehouse.schema import CREDIT_USAGE

KEY = ["organization_id", "date", "scope", "project_id"]
ANCHORS = [1, 20, 31, 15, 28, None]


def synthetic_usage(
    seed: int = 3, organizations: int = 4, length: tuple[int, int] = (80, 150)
) -> pd.DataFrame:
    """credit_usage day rows: organizations starting on different days, projects starting and
    stopping (dormant, new), missing days, zero days, a deleted-projects line starting late, a
    rename near the end."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    for o in range(organizations):
        org = f"org{o}"
        start = pd.Timestamp("2024-01-01") + pd.Timedelta(days=int(rng.integers(0, 40)))
        ndays = int(rng.integers(*length))
        days = pd.date_range(start, periods=ndays, freq="D", unit="us")
        spans = {
            f"p{o}{k}": (int(rng.integers(0, ndays // 2)), int(rng.integers(ndays // 2, ndays + 1)))
            for k in range(4)
        }
        for i, day in enumerate(days):
            name = f"name{o}" if i < ndays - 5 else f"renamed{o}"
            total = 0.0
            for pid, (first, stop) in spans.items():
                if first <= i < stop and rng.random() > 0.1:
                    value = float(rng.gamma(2, 10)) if rng.random() > 0.2 else 0.0
                    rows.append(_row(org, name, "project", pid, day, value))
                    total += value
            if i > 20:
                value = float(rng.gamma(1, 3))
                total += value
                rows.append(_row(org, name, "deleted_projects", None, day, value))
            rows.append(_row(org, name, "organization", None, day, total))
    return pd.DataFrame(rows)


def _row(
    org: str, name: str, scope: str, pid: str | None, day: pd.Timestamp, credits: float
) -> dict[str, object]:
    return {
        "organization_id": org,
        "organization_name": name,
        "interval": "day",
        "scope": scope,
        "project_id": pid,
        "project_name": pid.upper() if pid else None,
        "start_date": day,
        "end_date": day + pd.Timedelta(days=1),
        "credits": credits,
        "loaded_at": pd.Timestamp("2030-01-01"),
    }


def organizations_frame(usage: pd.DataFrame) -> pd.DataFrame:
    ids = sorted(usage["organization_id"].unique())
    return pd.DataFrame(
        {
            "organization_id": ids,
            "organization_name": ids,
            "period_anchor_day": pd.array(
                [ANCHORS[i % len(ANCHORS)] for i in range(len(ids))], dtype="Int16"
            ),
        }
    )


def assert_same_trends(
    actual: pd.DataFrame, expected: pd.DataFrame, columns: list[str] = TREND_COLUMNS
) -> None:
    """Same rows and values (of ``columns``): exact for keys, flags and names; floats to 1e-9
    relative (the SQL sums a window directly where pandas subtracted running totals)."""
    assert list(actual.columns) == TREND_COLUMNS
    assert len(actual) == len(expected) > 0
    a = actual.sort_values(KEY, ignore_index=True)
    e = expected.sort_values(KEY, ignore_index=True)
    for column in columns:
        left, right = a[column], e[column]
        if right.dtype.kind == "f" or left.dtype.kind == "f":
            x, y = left.astype(float).to_numpy(), right.astype(float).to_numpy()
            same = (np.isnan(x) & np.isnan(y)) | np.isclose(x, y, rtol=1e-9, atol=1e-9)
            assert same.all(), f"{column}: {e[~same].head(3).to_dict('records')} vs {x[~same][:3]}"
        else:
            lv = left.astype(object).where(left.notna(), None).tolist()
            rv = right.astype(object).where(right.notna(), None).tolist()
            bad = [(i, x, y) for i, (x, y) in enumerate(zip(lv, rv, strict=True)) if x != y]
            assert not bad, f"{column}: {bad[:3]}"


def test_sql_trends_equal_the_pandas_reference() -> None:
    usage = synthetic_usage()
    organizations = organizations_frame(usage)
    assert_same_trends(
        project_usage_trends(usage, organizations), reference_trends(usage, organizations)
    )


def test_trends_computed_a_few_organizations_per_query_equal_one_query(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    usage = synthetic_usage(seed=11, organizations=7)
    organizations = organizations_frame(usage)
    whole = project_usage_trends(usage, organizations)
    monkeypatch.setattr(trends, "ORGANIZATION_CHUNK", 3)  # 7 organizations: 3 queries
    chunked = project_usage_trends(usage, organizations)
    pd.testing.assert_frame_equal(chunked, whole)  # same rows, values and order
    assert_same_trends(chunked, reference_trends(usage, organizations))


def test_sql_trends_without_organization_rows_add_up_the_parts() -> None:
    usage = synthetic_usage(seed=5, organizations=2)
    usage = usage[usage["scope"] != "organization"]
    assert_same_trends(project_usage_trends(usage, None), reference_trends(usage, None))


# ---- a warehouse: month slices and incremental runs ---------------------------------------


def write_usage(warehouse: Path, usage: pd.DataFrame, months: list[str] | None = None) -> None:
    """Store the day rows as credit_usage month slices (only `months` when given)."""
    store = ParquetStore(warehouse)
    keys = usage["start_date"].dt.strftime("%Y-%m")
    parts = [
        ({"interval": "day", "month": key}, usage[keys == key])
        for key in sorted(set(keys))
        if months is None or key in months
    ]
    with writer_lock(warehouse):
        store.replace_partitions(CREDIT_USAGE, parts)


def stored_trends(warehouse: Path) -> pd.DataFrame:
    return ParquetStore(warehouse).read(PROJECT_USAGE_TRENDS)


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    usage = synthetic_usage()
    write_usage(tmp_path, usage)
    return tmp_path


def test_stored_months_equal_the_reference_and_an_unchanged_run_recomputes_nothing(
    warehouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(derived_slices, "BATCH_MONTHS", 2)  # several queries, each 2 months
    usage = synthetic_usage()
    anchors = anchors_by_organization(organizations_frame(usage))
    first = refresh_trends(warehouse, anchors)
    assert first.recomputed == first.months and len(first.months) >= 4
    expected = reference_trends(usage, organizations_frame(usage))
    assert_same_trends(stored_trends(warehouse), expected)
    files = ParquetStore(warehouse).files(PROJECT_USAGE_TRENDS)
    assert [p.parent.name for p in files] == [f"month={m}" for m in first.months]
    again = refresh_trends(warehouse, anchors)
    assert again.recomputed == [] and again.rows_written == 0


def test_a_changed_month_recomputes_it_and_the_two_after_and_matches_a_full_run(
    warehouse: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    usage = synthetic_usage()
    organizations = organizations_frame(usage)
    anchors = anchors_by_organization(organizations)
    refresh_trends(warehouse, anchors)
    changed = usage.copy()
    march = changed["start_date"].dt.strftime("%Y-%m") == "2024-03"
    changed.loc[march, "credits"] = changed.loc[march, "credits"] * 1.5 + 1.0
    write_usage(warehouse, changed, months=["2024-03"])
    second = refresh_trends(warehouse, anchors)
    assert second.recomputed == ["2024-03", "2024-04", "2024-05"]
    scratch = tmp_path_factory.mktemp("scratch")
    write_usage(scratch, changed)
    refresh_trends(scratch, anchors)
    assert_same_trends(stored_trends(warehouse), stored_trends(scratch))
    assert_same_trends(stored_trends(warehouse), reference_trends(changed, organizations))


def test_a_new_current_month_recomputes_only_itself_when_names_stay(warehouse: Path) -> None:
    usage = synthetic_usage()
    organizations = organizations_frame(usage)
    anchors = anchors_by_organization(organizations)
    store = ParquetStore(warehouse)
    # a daily refresh: the latest month reloaded with one more day for one organization
    last = usage["start_date"].max()
    org = usage.loc[usage["start_date"] == last, "organization_id"].iloc[0]
    refresh_trends(warehouse, anchors)
    rows = usage[(usage["organization_id"] == org) & (usage["start_date"] == last)]
    assert last.day < last.days_in_month  # the seeded data end inside a month
    day = pd.Timedelta(days=1)
    extra = rows.assign(start_date=last + day, end_date=last + 2 * day)
    grown = pd.concat([usage, extra], ignore_index=True)
    key = f"{last:%Y-%m}"
    write_usage(warehouse, grown, months=[key])
    result = refresh_trends(warehouse, anchors)
    assert result.recomputed == [key]
    assert_same_trends(store.read(PROJECT_USAGE_TRENDS), reference_trends(grown, organizations))


def test_an_anchor_change_or_a_lost_slice_is_recomputed(warehouse: Path) -> None:
    usage = synthetic_usage()
    organizations = organizations_frame(usage)
    anchors = anchors_by_organization(organizations)
    first = refresh_trends(warehouse, anchors)
    store = ParquetStore(warehouse)
    lost = store.files(PROJECT_USAGE_TRENDS)[2]
    lost.unlink()
    assert refresh_trends(warehouse, anchors).recomputed == [first.months[2]]
    assert store.check(PROJECT_USAGE_TRENDS).bad == []
    moved = organizations.assign(period_anchor_day=pd.array([9] * len(organizations), "Int16"))
    result = refresh_trends(warehouse, anchors_by_organization(moved))
    assert result.recomputed == first.months
    assert_same_trends(stored_trends(warehouse), reference_trends(usage, moved))


def test_the_single_file_table_of_earlier_versions_is_replaced_by_months(warehouse: Path) -> None:
    usage = synthetic_usage()
    organizations = organizations_frame(usage)
    store = ParquetStore(warehouse)
    legacy = store.table_dir(PROJECT_USAGE_TRENDS) / "data.parquet"
    legacy.parent.mkdir(parents=True)
    reference_trends(usage, organizations).head(10).to_parquet(legacy)
    result = refresh_trends(warehouse, anchors_by_organization(organizations))
    assert result.removed == ["data.parquet"] and not legacy.exists()
    assert store.check(PROJECT_USAGE_TRENDS).bad == []
    assert_same_trends(stored_trends(warehouse), reference_trends(usage, organizations))


def test_months_without_rows_are_removed(warehouse: Path) -> None:
    usage = synthetic_usage()
    organizations = organizations_frame(usage)
    anchors = anchors_by_organization(organizations)
    first = refresh_trends(warehouse, anchors)
    store = ParquetStore(warehouse)
    # every organization's data now ends a month earlier (the last month's slice emptied)
    last = first.months[-1]
    kept = usage[usage["start_date"].dt.strftime("%Y-%m") != last]
    with writer_lock(warehouse):
        store.replace_partition(CREDIT_USAGE, {"interval": "day", "month": last}, kept.iloc[0:0])
    result = refresh_trends(warehouse, anchors)
    assert result.removed == [f"month={last}/data.parquet"]
    assert_same_trends(stored_trends(warehouse), reference_trends(kept, organizations))
    record = (store.table_dir(PROJECT_USAGE_TRENDS) / RECORD_NAME).read_text()
    assert f"month={last}" not in record and f"month={first.months[0]}" in record


def test_older_months_loaded_later_that_show_earlier_usage_recompute_the_dormant_flags(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A backfill of older months that shows usage of a series idle (rows of 0 credits) in the
    later months makes it dormant there instead of never used: those months are recomputed,
    as a run over the whole history computes them."""
    usage = synthetic_usage(seed=3, organizations=3, length=(190, 200))
    months = sorted(set(usage["start_date"].dt.strftime("%Y-%m")))
    assert len(months) >= 6
    idle = (usage["organization_id"] == "org0") & (usage["scope"] == "deleted_projects")
    later = usage["start_date"].dt.strftime("%Y-%m") >= months[2]
    usage.loc[idle & later, "credits"] = 0.0  # used in the first two months only
    assert usage.loc[idle & ~later, "credits"].sum() > 0
    organizations = organizations_frame(usage)
    anchors = anchors_by_organization(organizations)
    warehouse = tmp_path_factory.mktemp("backfilled")
    write_usage(warehouse, usage, months=months[2:])  # the first load: the later months
    refresh_trends(warehouse, anchors)
    write_usage(warehouse, usage, months=months[:2])  # then a backfill of the older ones
    refresh_trends(warehouse, anchors)
    stored = stored_trends(warehouse)
    flags = stored[(stored["organization_id"] == "org0") & (stored["scope"] == "deleted_projects")]
    assert flags[flags["date"] >= pd.Timestamp(f"{months[-1]}-01")]["is_dormant"].all()
    scratch = tmp_path_factory.mktemp("scratch")
    write_usage(scratch, usage)
    refresh_trends(scratch, anchors)
    assert_same_trends(stored, stored_trends(scratch))


def test_a_month_computed_alone_equals_it_computed_in_a_backfill() -> None:
    """The daily refresh computes the current month alone, a backfill computes it with eleven
    others, the first run with everything: the rows are the same to the last bit (the window
    sums are exact), so a refresh after a backfill republishes nothing it did not change."""
    usage = synthetic_usage(seed=7, organizations=12, length=(300, 420))
    anchors = anchors_by_organization(organizations_frame(usage))
    with trends.derived_connection() as con:
        trends.frame_daily_view(con, usage)
        trends.prepare_series(con, anchors)
        first, last = (
            pd.Timestamp(x).date()
            for x in con.execute(
                f"SELECT min(first_day), max(last_day) FROM {trends.SERIES_TABLE}, "
                f"{trends.ORG_LAST_TABLE}"
            ).fetchone()
        )
        end = last + timedelta(days=1)
        month = last.replace(day=1)
        alone = trends.trends_between(con, month, end)
        year, month_no = shift_month(month.year, month.month, -11)
        backfill = trends.trends_between(con, date(year, month_no, 1), end)
        everything = trends.trends_between(con, first, end)
    assert len(alone) > 0
    for wider in (backfill, everything):
        same_month = wider[wider["date"] >= pd.Timestamp(month)].reset_index(drop=True)
        pd.testing.assert_frame_equal(alone.reset_index(drop=True), same_month, check_exact=True)


# ---- gaps: days an organization was never loaded -------------------------------------------

COMPARED = [c for c in TREND_COLUMNS if c not in ("is_new", "is_dormant")]
"""The columns a restart after a gap shares with data starting after it (``is_new`` and
``is_dormant`` still know the usage before the gap)."""


def without_days(usage: pd.DataFrame, org: str, first: pd.Timestamp, days: int) -> pd.DataFrame:
    """``usage`` without any row of ``org`` on ``days`` days from ``first``: never loaded."""
    hole = (
        (usage["organization_id"] == org)
        & (usage["start_date"] >= first)
        & (usage["start_date"] < first + pd.Timedelta(days=days))
    )
    return usage[~hole].reset_index(drop=True)


def test_a_gap_has_no_rows_and_the_series_restart_after_it_as_at_the_start() -> None:
    """Days an organization has no row at all were never loaded: no trend rows (not 0-credit
    dormant days), and after the gap its series are what data starting after the gap give
    (means over the days since, no week-over-week before 14 days, period-to-date since)."""
    usage = synthetic_usage(seed=3, organizations=3, length=(190, 200))
    org = "org1"
    days = usage.loc[usage["organization_id"] == org, "start_date"]
    gap_start = days.min() + pd.Timedelta(days=60)
    # its deleted-projects line is used before the gap only (rows of 0 credits after it)
    idle_line = (usage["organization_id"] == org) & (usage["scope"] == "deleted_projects")
    usage.loc[idle_line & (usage["start_date"] >= gap_start), "credits"] = 0.0
    gapped = without_days(usage, org, gap_start, 70)
    after = gap_start + pd.Timedelta(days=70)
    organizations = organizations_frame(usage)
    result = project_usage_trends(gapped, organizations)
    mine = result[result["organization_id"] == org]
    in_gap = (mine["date"] >= gap_start) & (mine["date"] < after)
    assert not in_gap.any() and (mine["date"] < gap_start).any()
    # after the gap: what the data after it alone give
    tail = gapped[(gapped["organization_id"] == org) & (gapped["start_date"] >= after)]
    restarted = project_usage_trends(tail, organizations)
    assert_same_trends(mine[mine["date"] >= after], restarted, COMPARED)
    # week-over-week needs 14 days since the gap
    early = mine[(mine["date"] >= after) & (mine["date"] < after + pd.Timedelta(days=13))]
    assert early["wow_change"].isna().all()
    org_rows = mine[(mine["scope"] == "organization") & (mine["date"] == after)]
    assert org_rows["mean_30d"].iloc[0] == pytest.approx(org_rows["credits"].iloc[0])
    # a series used before the gap and not after it becomes dormant 14 loaded days after it
    series = mine.assign(key=mine["scope"] + "/" + mine["project_id"].fillna(""))
    before = series[series["date"] < gap_start].groupby("key")["credits"].sum()
    since = series[series["date"] >= after].groupby("key")["credits"].sum()
    idle = [k for k in since.index if since[k] == 0 and before.get(k, 0) > 0]
    assert "deleted_projects/" in idle
    for key in idle:
        rows = series[(series["key"] == key) & (series["date"] >= after)]
        flags = rows.set_index("date")["is_dormant"]
        assert not flags[flags.index < after + pd.Timedelta(days=13)].any()
        assert flags[flags.index >= after + pd.Timedelta(days=13)].all()
    # the other organizations are not affected
    others = result[result["organization_id"] != org]
    full = reference_trends(usage, organizations)
    assert_same_trends(others, full[full["organization_id"] != org])


@pytest.mark.parametrize("gap_days", [0, 9, 45])
def test_a_month_computed_alone_equals_it_computed_in_a_backfill_across_gaps(
    gap_days: int,
) -> None:
    """With gaps in the month before (a short one, and one reaching into the month), a month
    computed alone equals it computed in a backfill: the read range reaches every gap that can
    change a row."""
    usage = synthetic_usage(seed=7, organizations=6, length=(300, 420))
    last = usage["start_date"].max()
    month = pd.Timestamp(last.year, last.month, 1)
    for org in ("org0", "org3"):
        usage = without_days(usage, org, month - pd.Timedelta(days=gap_days + 5), gap_days)
    anchors = anchors_by_organization(organizations_frame(usage))
    with trends.derived_connection() as con:
        trends.frame_daily_view(con, usage)
        trends.prepare_series(con, anchors)
        end = last.date() + timedelta(days=1)
        alone = trends.trends_between(con, month.date(), end)
        year, month_no = shift_month(month.year, month.month, -11)
        backfill = trends.trends_between(con, date(year, month_no, 1), end)
    same_month = backfill[backfill["date"] >= month].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone.reset_index(drop=True), same_month, check_exact=True)


def test_stored_months_skip_a_gap_and_equal_the_whole_computation(tmp_path: Path) -> None:
    """Months no organization was loaded get no slice, and the stored months (computed month by
    month, in batches split by the gap) equal the computation over the whole frame."""
    usage = synthetic_usage(seed=3, organizations=3, length=(190, 200))
    months = sorted(set(usage["start_date"].dt.strftime("%Y-%m")))
    loaded = months[:2] + months[4:]
    organizations = organizations_frame(usage)
    write_usage(tmp_path, usage, months=loaded)
    result = refresh_trends(tmp_path, anchors_by_organization(organizations))
    assert result.months == loaded
    stored = stored_trends(tmp_path)
    assert set(stored["date"].dt.strftime("%Y-%m")) == set(loaded)
    gapped = usage[usage["start_date"].dt.strftime("%Y-%m").isin(loaded)]
    assert_same_trends(stored, project_usage_trends(gapped, organizations))
