"""The inputs of one alert evaluation, read in DuckDB SQL from the Parquet files: only the last
days the forecasts, quota status, explanations and anomalies look at, not the whole history.

An evaluation as of day D needs the daily credits of the organization totals for the last
:func:`window_days` days (the forecast's spike history of 120 days), of the other series
(projects, deleted projects) for the last :func:`series_window_days` days (the robust
forecast's level-shift and trend windows, the current and previous subscription periods for
explanations, the anomaly baselines: 64 days by default), and, from older history, only each
series' first day (how many days of data a forecast has). The organizations whose projects are
forecast on their own (a project budget in the quota file) and those without organization rows
(their totals are the sum of their series) get every series for the whole window
(:func:`whole_window_organizations`). :func:`load_usage_window` gives both: the window's rows in
the analytics convention (:data:`insights.frames.DAILY_COLUMNS`), where a series that started
before its window gets a 0-credit row on its window's first day (so its dense history starts
there, as the zero-filled full history would show it), the first days (the series' shorter
window is a third fewer rows to read, sort and evaluate once the history fills 120 days) and
each organization's last loaded day up to ``as_of`` (a forecast judges whether its data are
stale from it: the 0-credit rows would hide that it ended before the window).
Resource counts likewise (:func:`load_resource_window`): the observations of each
organization's last 30 days and the number of observations it has (a snapshot file of those
days that is missing or damaged fails the read naming it and the remedy). The first days (and
names) come from the per-slice facts of `insights.series_facts` for the slices before the
window, so only the window's slices are read. The evaluation on this window equals the one
on the whole history (tests/derive/test_evaluation_window.py compares them).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pandas as pd

from common.errors import IntegrityError
from insights.forecast import component_days_needed, history_days_needed
from insights.frames import DAILY_COLUMNS, frame_sharing_text, to_day
from insights.quota_status import RESOURCE_WINDOW_DAYS
from insights.quotas import QuotaConfig
from insights.series_facts import (
    FACTS_TABLE,
    daily_view_over,
    day_slices,
    load_slice_facts,
)
from insights.trends import DAILY_VIEW, derived_connection
from warehouse.parquet_store import ParquetStore, to_arrow
from warehouse.schema import RESOURCE_USAGE

PERIODS_DAYS = 2 * 31 + 2
"""The current and the previous subscription period (explanations compare the two)."""


def _anomaly_days(config: QuotaConfig | None) -> int:
    """Days of each series the anomaly rule reads (0 when it is off)."""
    if config is None or not config.rules.anomaly.enabled:
        return 0
    anomaly = config.rules.anomaly
    # a day's anomaly score looks back two baselines (expected value, then its deviations)
    return max(2 * anomaly.window_days + 8, anomaly.min_history_days + 1)


def window_days(config: QuotaConfig | None = None) -> int:
    """Days of daily usage (ending on ``as_of``) an evaluation reads: of the organization
    totals, and of every series of the :func:`whole_window_organizations`."""
    return max(history_days_needed(), PERIODS_DAYS, _anomaly_days(config))


def series_window_days(config: QuotaConfig | None = None) -> int:
    """Days (ending on ``as_of``) an evaluation reads of the series other than the organization
    totals (projects, deleted projects), outside the :func:`whole_window_organizations`: what
    the robust forecast's parts, the explanations and the anomaly rule look at."""
    return min(
        window_days(config),
        max(component_days_needed(), PERIODS_DAYS, _anomaly_days(config)),
    )


def whole_window_organizations(
    config: QuotaConfig | None, organizations: pd.DataFrame | None = None
) -> set[str]:
    """Organization ids and names whose every series the evaluation reads for the whole window:
    those with a project budget in the quota file (their budgeted projects are forecast on
    their own, from the whole window), by the file's keys (an id or a name) and by the ids of
    the `organizations` rows whose name is such a key."""
    if config is None:
        return set()
    keys = {str(k) for k, override in config.organizations.items() if override.projects}
    if keys and organizations is not None and len(organizations):
        ids = organizations["organization_id"].astype(str)
        names = organizations["organization_name"]
        keys |= {
            i
            for i, name in zip(ids, names, strict=True)
            if config.project_budgets(i, name if isinstance(name, str) else None)
        }
    return keys


@dataclass
class UsageWindow:
    """Daily usage of the last days before ``as_of``, every series' first day and every
    organization's last loaded day up to ``as_of`` (its data may end before the window)."""

    daily: pd.DataFrame
    first_days: dict[tuple[str, str | None], pd.Timestamp] = field(default_factory=dict)
    last_days: dict[str, pd.Timestamp] = field(default_factory=dict)


def load_usage_window(
    store: ParquetStore,
    as_of: object,
    days: int,
    *,
    series_days: int | None = None,
    whole: Collection[str] = (),
) -> UsageWindow:
    """The daily ``credit_usage`` rows of ``[as_of - days + 1, as_of]`` (see module doc): of the
    series other than the organization totals only the last ``series_days`` days (default
    ``days``), except for the organizations named (by id or name) in ``whole`` and those
    without organization rows in the window."""
    slices = day_slices(store)
    end = to_day(as_of)
    start = end - timedelta(days=days - 1)
    series_start = end - timedelta(days=min(series_days or days, days) - 1)
    if not slices:
        return UsageWindow(_empty_daily())
    first_month = f"{start.year:04d}-{start.month:02d}"
    with derived_connection() as con:
        load_slice_facts(con, store, slices)
        recent = [s for s in slices if s.month is None or s.month >= first_month]
        daily_view_over(con, store, recent)
        return _window(con, start, end, first_month, series_start, sorted(whole))


def load_evaluation_window(
    store: ParquetStore,
    as_of: object,
    config: QuotaConfig | None,
    organizations: pd.DataFrame | None = None,
) -> UsageWindow:
    """What an alert evaluation with ``config`` as of ``as_of`` reads (:func:`load_usage_window`
    with :func:`window_days`, :func:`series_window_days` and the
    :func:`whole_window_organizations` among ``organizations``): the quota_alerts asset's read."""
    return load_usage_window(
        store,
        as_of,
        window_days(config),
        series_days=series_window_days(config),
        whole=whole_window_organizations(config, organizations),
    )


def _window(
    con: duckdb.DuckDBPyConnection,
    start: pd.Timestamp,
    end: pd.Timestamp,
    first_month: str,
    series_start: pd.Timestamp,
    whole: list[str],
) -> UsageWindow:
    """The window from the daily view (over the slices of ``first_month`` on) and the series'
    facts: the cached facts of the earlier slices combined with those of the view's rows up to
    ``end``. A series is read from ``start`` when it is an organization total or its
    organization is in ``whole`` or has no organization rows in the window, else from
    ``series_start``."""
    params = {"start": start.to_pydatetime(), "end": end.to_pydatetime()}
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE window_whole AS
        SELECT organization_id FROM {DAILY_VIEW}
        WHERE date >= $start AND date <= $end
        GROUP BY organization_id
        HAVING NOT bool_or(scope = 'organization')
            OR bool_or(list_contains(CAST($whole AS VARCHAR[]), organization_id)
                       OR list_contains(CAST($whole AS VARCHAR[]), organization_name))
        """,
        {**params, "whole": whole},
    )
    since = {**params, "series_start": series_start.to_pydatetime()}
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE window_series AS
        WITH parts AS (
            SELECT organization_id, scope, pkey, project_id, first_day, organization_name,
                   organization_name_day, project_name, project_name_day
            FROM {FACTS_TABLE}
            WHERE organization_id IS NOT NULL AND month IS NOT NULL AND month < $first_month
            UNION ALL
            SELECT organization_id, scope, coalesce(project_id, '') AS pkey,
                   any_value(project_id), min(date),
                   arg_max(organization_name, date) FILTER (WHERE organization_name IS NOT NULL),
                   max(date) FILTER (WHERE organization_name IS NOT NULL),
                   arg_max(project_name, date) FILTER (WHERE project_name IS NOT NULL),
                   max(date) FILTER (WHERE project_name IS NOT NULL)
            FROM {DAILY_VIEW} WHERE date <= $end
            GROUP BY organization_id, scope, coalesce(project_id, '')
        )
        SELECT organization_id, scope, pkey, any_value(project_id) AS project_id,
               min(first_day) AS first_day,
               arg_max(organization_name, organization_name_day)
                   FILTER (WHERE organization_name IS NOT NULL) AS organization_name,
               arg_max(project_name, project_name_day)
                   FILTER (WHERE project_name IS NOT NULL) AS project_name
        FROM parts
        GROUP BY organization_id, scope, pkey
        """,
        {"end": params["end"], "first_month": first_month},
    )
    arrow = con.execute(
        f"""
        WITH rows AS (
            SELECT organization_id, any_value(organization_name) AS organization_name, scope,
                   any_value(project_id) AS project_id, any_value(project_name) AS project_name,
                   date, sum(credits) AS credits, coalesce(project_id, '') AS pkey
            FROM {DAILY_VIEW}
            WHERE date >= $start AND date <= $end
              AND (date >= $series_start OR scope = 'organization'
                   OR organization_id IN (SELECT organization_id FROM window_whole))
            GROUP BY organization_id, scope, pkey, date
        ),
        series AS (
            SELECT s.*,
                   CASE WHEN s.scope = 'organization' OR w.organization_id IS NOT NULL
                        THEN CAST($start AS TIMESTAMP)
                        ELSE CAST($series_start AS TIMESTAMP) END AS read_from
            FROM window_series AS s
            LEFT JOIN window_whole AS w USING (organization_id)
        ),
        earlier AS (
            SELECT s.organization_id, s.organization_name, s.scope, s.project_id,
                   s.project_name, s.read_from AS date, 0.0 AS credits, s.pkey
            FROM series AS s
            WHERE s.first_day < s.read_from AND NOT EXISTS (
                SELECT 1 FROM rows AS r WHERE r.organization_id = s.organization_id
                AND r.scope = s.scope AND r.pkey = s.pkey AND r.date = s.read_from)
        )
        SELECT organization_id, organization_name, scope, project_id, project_name, date,
               credits
        FROM (SELECT * FROM rows UNION ALL SELECT * FROM earlier)
        ORDER BY organization_id, scope, project_id NULLS LAST, date
        """,
        since,
    ).to_arrow_table()
    daily = frame_sharing_text(
        arrow, ("organization_id", "organization_name", "scope", "project_id", "project_name")
    )
    firsts = con.execute(
        """
        SELECT organization_id, NULL AS project_id,
               coalesce(min(first_day) FILTER (WHERE scope = 'organization'), min(first_day))
        FROM window_series GROUP BY organization_id
        UNION ALL
        SELECT organization_id, project_id, first_day FROM window_series
        WHERE scope = 'project' AND project_id IS NOT NULL
        """
    ).fetchall()
    first_days = {(str(o), None if p is None else str(p)): pd.Timestamp(d) for o, p, d in firsts}
    lasts = con.execute(
        f"""
        WITH parts AS (
            SELECT organization_id, scope, last_day FROM {FACTS_TABLE}
            WHERE organization_id IS NOT NULL AND month IS NOT NULL AND month < $first_month
            UNION ALL
            SELECT organization_id, scope, max(date) FROM {DAILY_VIEW} WHERE date <= $end
            GROUP BY organization_id, scope
        )
        SELECT organization_id,
               coalesce(max(last_day) FILTER (WHERE scope = 'organization'), max(last_day))
        FROM parts GROUP BY organization_id
        """,
        {"end": params["end"], "first_month": first_month},
    ).fetchall()
    last_days = {str(o): pd.Timestamp(d) for o, d in lasts}
    return UsageWindow(_typed(daily), first_days, last_days)


def _empty_daily() -> pd.DataFrame:
    return pd.DataFrame(
        {
            c: pd.Series(dtype={"date": "datetime64[us]", "credits": "float64"}.get(c, "object"))
            for c in DAILY_COLUMNS
        }
    )


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """The analytics convention (`frames.daily_usage` returns such a frame as is)."""
    if frame.empty:
        return _empty_daily()
    frame["date"] = pd.to_datetime(frame["date"]).astype("datetime64[us]")
    frame["credits"] = frame["credits"].astype(float)
    # the text columns are already object columns holding None (`frame_sharing_text`)
    return frame[DAILY_COLUMNS].reset_index(drop=True)


@dataclass
class ResourceWindow:
    """Resource observations of each organization's last days, and on how many days in all it
    was observed (`counts`: days, not snapshots; a run every hour makes 24 snapshots a day)."""

    observations: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)


def load_resource_window(store: ParquetStore, as_of: object) -> ResourceWindow:
    """Each organization's observations made before the end of ``as_of`` within
    :data:`RESOURCE_WINDOW_DAYS` of its latest one, and the number of days it was observed on.

    The table's manifest says which organizations each daily snapshot file holds: the days
    observed and each organization's latest day come from it, and only the files of the
    days within the window of some organization are read. A table without a manifest (written
    before manifests existed) is read whole."""
    manifest = store.manifest(RESOURCE_USAGE)
    if not manifest.exists:
        return _resource_window_scanning(store, as_of)
    last_day = to_day(as_of).date()
    observed_days: dict[str, set[date]] = {}
    latest: dict[str, date] = {}
    files: dict[date, list[Path]] = {}
    for name, entry in manifest.load().items():
        record = entry.committed
        folder = name.split("/")[0]
        if record is None or not folder.startswith("observed_date="):
            continue
        day = date.fromisoformat(folder.removeprefix("observed_date="))
        if day > last_day:
            continue
        files.setdefault(day, []).append(store.table_dir(RESOURCE_USAGE) / name)
        for organization, sums in record.organizations.items():
            if sums.rows:
                observed_days.setdefault(organization, set()).add(day)
            latest[organization] = max(latest.get(organization, day), day)
    counts = {organization: len(days) for organization, days in observed_days.items()}
    wanted_days: set[date] = set()
    for day in set(latest.values()):
        wanted_days.update(day - timedelta(days=back) for back in range(RESOURCE_WINDOW_DAYS + 2))
    paths = [p for day in sorted(wanted_days & set(files)) for p in files[day]]
    if not paths:
        return ResourceWindow(store.empty(RESOURCE_USAGE), counts)
    listing = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
    end = to_day(as_of) + timedelta(days=1)
    with derived_connection() as con, _naming_damaged_snapshots(store, paths):
        frame = con.execute(
            f"""
            WITH observed AS (
                SELECT * EXCLUDE (observed_date)
                FROM read_parquet([{listing}], hive_partitioning = true, union_by_name = true)
                WHERE observed_at < TIMESTAMP '{end:%Y-%m-%d %H:%M:%S}'
            )
            SELECT o.* FROM observed AS o
            JOIN (SELECT organization_id, max(observed_at) AS latest FROM observed GROUP BY 1)
                AS l USING (organization_id)
            WHERE o.observed_at >= l.latest - INTERVAL {RESOURCE_WINDOW_DAYS} DAY
            ORDER BY o.organization_id, o.observed_at
            """
        ).df()
    return ResourceWindow(to_arrow(RESOURCE_USAGE, frame).to_pandas(), counts)


@contextmanager
def _naming_damaged_snapshots(store: ParquetStore, paths: list[Path]) -> Iterator[None]:
    """A read of these snapshot files that fails because some are missing or damaged raises
    :class:`IntegrityError` naming them and the remedy (a DuckDB error says neither usefully);
    any other failure is raised as it is."""
    try:
        yield
    except duckdb.Error:
        bad = store.manifest(RESOURCE_USAGE).check().bad
        wanted = set(paths)
        bad = [b for b in bad if b.path in wanted] or bad
        if bad:
            raise IntegrityError(bad, "resource_usage snapshots not read") from None
        raise


def _resource_window_scanning(store: ParquetStore, as_of: object) -> ResourceWindow:
    """:func:`load_resource_window` reading every snapshot (a table without a manifest)."""
    source = store.scan_sql(RESOURCE_USAGE)
    if source is None:
        return ResourceWindow(store.empty(RESOURCE_USAGE))
    end = to_day(as_of) + timedelta(days=1)
    with derived_connection() as con:
        con.execute(
            f"CREATE TEMP VIEW observed AS SELECT * FROM {source} AS r "
            f"WHERE r.observed_at < TIMESTAMP '{end:%Y-%m-%d %H:%M:%S}'"
        )
        counts = dict(
            con.execute(
                "SELECT CAST(organization_id AS VARCHAR), "
                "count(DISTINCT CAST(observed_at AS DATE)) FROM observed GROUP BY 1"
            ).fetchall()
        )
        arrow = con.execute(
            f"""
            SELECT o.* FROM observed AS o
            JOIN (SELECT organization_id, max(observed_at) AS latest FROM observed GROUP BY 1)
                AS l USING (organization_id)
            WHERE o.observed_at >= l.latest - INTERVAL {RESOURCE_WINDOW_DAYS} DAY
            ORDER BY o.organization_id, o.observed_at
            """
        ).to_arrow_table()
        frame = arrow.cast(RESOURCE_USAGE.arrow_schema()).to_pandas()
    return ResourceWindow(frame, {str(k): int(v) for k, v in counts.items()})
