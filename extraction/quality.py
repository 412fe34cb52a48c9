"""Data-quality rules for credit usage, as pure functions over a `credit_usage` frame.

Each returns a `Finding`: whether the rule holds and a few examples when it does not. The assets
turn findings into Dagster asset-check results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import pandas as pd

KEY = ["organization_id", "interval", "scope", "project_id", "start_date"]
TOLERANCE = 1e-4


@dataclass
class Finding:
    passed: bool
    description: str
    failures: int = 0
    examples: list[str] = field(default_factory=list)


def balance(frame: pd.DataFrame) -> Finding:
    """Per organization and bucket: projects + deleted projects == the organization total."""
    if frame.empty:
        return Finding(True, "no rows")
    # grouped by the organizations' integer codes (in id order, as grouping by the ids would
    # sort them): grouping a backfill's ~2 million rows by the id strings costs ~3x more
    org_code, org_ids = pd.factorize(frame["organization_id"], sort=True)
    coded = pd.DataFrame(
        {
            "organization": org_code,
            "start_date": frame["start_date"].to_numpy(),
            "credits": frame["credits"].to_numpy(),
        }
    )
    known = org_code >= 0  # rows without an organization id belong to no bucket
    keys = ["organization", "start_date"]
    is_total = (frame["scope"] == "organization").to_numpy() & known
    is_part = (frame["scope"] != "organization").to_numpy() & known
    totals = coded[is_total].groupby(keys)["credits"].sum()
    parts = coded[is_part].groupby(keys)["credits"].sum()
    joined = pd.concat([totals.rename("total"), parts.rename("parts")], axis=1).fillna(0.0)
    diff = (joined["total"] - joined["parts"]).abs()
    bad = joined[diff > TOLERANCE * joined["total"].abs().clip(lower=1.0)]
    examples = [
        f"{org_ids[code]} {start:%Y-%m-%d}: organization {row.total:.6f} != parts {row.parts:.6f}"
        for (code, start), row in bad.head(5).iterrows()
    ]
    return Finding(bad.empty, f"{len(joined)} buckets checked", len(bad), examples)


def non_negative(frame: pd.DataFrame) -> Finding:
    bad = frame[frame["credits"] < 0]
    examples = [
        f"{r.organization_id} {r.scope} {r.project_id} {r.start_date:%Y-%m-%d}: {r.credits}"
        for r in bad.head(5).itertuples()
    ]
    return Finding(bad.empty, f"{len(frame)} rows checked", len(bad), examples)


def unique_keys(frame: pd.DataFrame) -> Finding:
    dupes = frame[frame.duplicated(subset=KEY, keep=False)]
    examples = [
        f"{r.organization_id} {r.interval} {r.scope} {r.project_id} {r.start_date:%Y-%m-%d}"
        for r in dupes.head(5).itertuples()
    ]
    return Finding(dupes.empty, f"{len(frame)} rows checked", len(dupes), examples)


def complete_days(
    frame: pd.DataFrame,
    organizations: pd.DataFrame,
    first_day: date,
    end_day: date,
) -> Finding:
    """Every organization has an organization-scope row for every day in [first_day, end_day),
    from its creation date on.

    Counted per organization in columns (a 12-month backfill of 1,000 organizations has
    365,000 such days); the days missing are listed only for the organizations named as
    examples."""
    days = frame.loc[
        (frame["scope"] == "organization") & (frame["interval"] == "day"),
        ["organization_id", "start_date"],
    ]
    created = pd.to_datetime(organizations["creation_date"]).dt.normalize()
    first = pd.Timestamp(first_day)
    starts = pd.Series(
        [max(first, c) if pd.notna(c) else first for c in created],
        index=organizations["organization_id"].astype(object).to_numpy(),
    )
    starts = starts[~starts.index.duplicated(keep="first")]
    day = days["start_date"].dt.normalize()
    start_of = days["organization_id"].map(starts)
    present = days.assign(day=day)[(day >= start_of) & (day < pd.Timestamp(end_day))]
    have = present.drop_duplicates(["organization_id", "day"])["organization_id"].value_counts()
    missing_total = 0
    examples: list[str] = []
    for org, start in zip(organizations.itertuples(), created, strict=True):
        begin = max(first_day, start.date()) if pd.notna(start) else first_day
        expected = max(0, (end_day - begin).days)
        missing = expected - int(have.get(org.organization_id, 0))
        missing_total += missing
        if missing and len(examples) < 5:
            seen = set(day[days["organization_id"] == org.organization_id].dt.date)
            every = (begin + timedelta(days=i) for i in range(expected))
            first_missing = next(d for d in every if d not in seen)
            examples.append(f"{org.organization_name}: {missing} days missing from {first_missing}")
    return Finding(
        missing_total == 0,
        f"{len(organizations)} organizations, {first_day} to {end_day} (exclusive)",
        missing_total,
        examples,
    )
