"""Input normalization shared by the analytics modules (credit usage, organizations) and the
zero-filled per-series frame (`dense_series_frame`, used by the anomaly scores).

Convention for every analytics frame: times are **naive UTC** ``datetime64[us]`` (tz-aware input
is converted to UTC and made naive); a day is identified by its UTC midnight in a ``date``
column; ids are strings. Organization-level rows have ``project_id`` None in published tables
and ``""`` in alert keys.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from common.periods import to_date

SCOPES: tuple[str, ...] = ("organization", "project", "deleted_projects")
DAILY_COLUMNS: list[str] = [
    "organization_id",
    "organization_name",
    "scope",
    "project_id",
    "project_name",
    "date",
    "credits",
]


def text_or_none(value: object) -> str | None:
    """A string, or None for None/NaN/NA/empty (pandas 3 string columns hold NaN, not None)."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and value != value:
        return None
    text = str(value)
    return text or None


def to_naive_utc(values: pd.Series) -> pd.Series:
    """Timestamps as naive UTC ``datetime64[us]``."""
    out = pd.to_datetime(values, utc=True)
    return out.dt.tz_localize(None).astype("datetime64[us]")


def to_day(value: object) -> pd.Timestamp:
    """A scalar date-like value as a naive UTC midnight timestamp."""
    return pd.Timestamp(to_date(value))  # type: ignore[arg-type]


def up_to(daily: pd.DataFrame, day: pd.Timestamp) -> pd.DataFrame:
    """The rows of a daily frame dated on or before ``day``: the frame itself when that is every
    row (an evaluation's window ends on its day: no copy of it)."""
    keep = daily["date"] <= day
    return daily if bool(keep.all()) else daily[keep]


def daily_usage(credit_usage: pd.DataFrame) -> pd.DataFrame:
    """Daily credit usage in the analytics convention (one row per series and day).

    Accepts the ``credit_usage`` table (rows with ``interval == 'month'`` are dropped) or an
    already daily frame. Duplicate rows for the same series and day are summed. A frame that is
    already in this shape (exactly :data:`DAILY_COLUMNS`) is returned as is.
    """
    df = credit_usage
    if list(df.columns) == DAILY_COLUMNS and str(df["date"].dtype) == "datetime64[us]":
        return df  # already normalized (this function's own output)
    if "interval" in df.columns:
        df = df[df["interval"] == "day"]
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in DAILY_COLUMNS})
    date_col = "start_date" if "start_date" in df.columns else "date"
    out = pd.DataFrame(
        {
            "organization_id": df["organization_id"].astype(str),
            "organization_name": df.get("organization_name", df["organization_id"]).astype(
                "object"
            ),
            "scope": df["scope"].astype(str) if "scope" in df.columns else "organization",
            "project_id": df["project_id"] if "project_id" in df.columns else None,
            "project_name": df["project_name"] if "project_name" in df.columns else None,
            "date": to_naive_utc(df[date_col]).dt.normalize(),
            "credits": pd.to_numeric(df["credits"], errors="coerce").fillna(0.0).astype(float),
        }
    )
    is_project = out["scope"] == "project"
    out["project_id"] = out["project_id"].where(is_project, None).astype("object")
    out["project_id"] = out["project_id"].map(lambda v: None if v is None or v != v else str(v))
    out["project_name"] = out["project_name"].where(is_project, None).astype("object")
    key = ["organization_id", "scope", "project_id", "date"]
    agg = (
        out.groupby(key, dropna=False, sort=True)
        .agg(
            organization_name=("organization_name", "last"),
            project_name=("project_name", "last"),
            credits=("credits", "sum"),
        )
        .reset_index()
    )
    return agg[DAILY_COLUMNS]


def _dtype(column: str) -> str:
    return {"date": "datetime64[us]", "credits": "float64"}.get(column, "object")


def organization_daily(daily: pd.DataFrame) -> pd.DataFrame:
    """Organization totals per day: the ``organization`` scope rows, or, for organizations that
    have none, the sum of their project and deleted-projects rows."""
    org_rows = daily[daily["scope"] == "organization"]
    have = set(org_rows["organization_id"])
    rest = daily[(daily["scope"] != "organization") & ~daily["organization_id"].isin(have)]
    derived = (
        rest.groupby(["organization_id", "date"], sort=True)
        .agg(organization_name=("organization_name", "last"), credits=("credits", "sum"))
        .reset_index()
    )
    cols = ["organization_id", "organization_name", "date", "credits"]
    frames = [f[cols] for f in (org_rows, derived) if not f.empty]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in cols})
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["organization_id", "date"], ignore_index=True)


def dense_days(values: pd.Series, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    """A date-indexed series reindexed to every day of ``[start, end]``, missing days as 0."""
    index = pd.date_range(start, end, freq="D", unit="us")
    return values.groupby(level=0).sum().reindex(index, fill_value=0.0).astype(float)


def dense_series_frame(daily: pd.DataFrame) -> pd.DataFrame:
    """Every series zero-filled from its first day to its organization's last day.

    Returns the daily columns plus ``series_id`` (int), sorted by series and date.
    """
    keys = ["organization_id", "scope", "project_id"]
    series = (
        daily.groupby(keys, dropna=False, sort=True)
        .agg(
            first=("date", "min"),
            organization_name=("organization_name", "last"),
            project_name=("project_name", "last"),
        )
        .reset_index()
    )
    org_last = daily.groupby("organization_id")["date"].max()
    series["last"] = series["organization_id"].map(org_last)
    series["series_id"] = np.arange(len(series))
    lengths = ((series["last"] - series["first"]).dt.days + 1).to_numpy()
    rep = np.repeat(np.arange(len(series)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out = series.iloc[rep].reset_index(drop=True)
    out["date"] = (out["first"].to_numpy() + pd.to_timedelta(offsets, unit="D").to_numpy()).astype(
        "datetime64[us]"
    )
    # the same groups in the same order as `series` (a merge on the keys fails when every
    # project_id is None: the grouped column comes back as float NaN)
    series_of = daily.groupby(keys, dropna=False, sort=True).ngroup().to_numpy()
    values = daily.assign(series_id=series_of).groupby(["series_id", "date"])["credits"].sum()
    index = pd.MultiIndex.from_arrays([out["series_id"], out["date"]])
    out["credits"] = values.reindex(index).fillna(0.0).to_numpy()
    out["project_id"] = out["project_id"].astype("object").where(out["scope"] == "project", None)
    return out.drop(columns=["first", "last"])


def frame_sharing_text(table: pa.Table, text_columns: Iterable[str]) -> pd.DataFrame:
    """An Arrow query result as a pandas frame whose ``text_columns`` are object columns (None
    where null) holding one Python string per distinct value: ids, names and scopes repeat on
    every day of a series, and one string object per row cost about ten times the memory of the
    rest of the frame (a frame of a few million rows took gigabytes)."""
    names = [c for c in text_columns if c in table.column_names]
    for name in names:
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, pc.dictionary_encode(table.column(name)))
    frame = table.to_pandas()
    for name in names:
        frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    return frame
