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
    totals = (
        frame[frame["scope"] == "organization"]
        .groupby(["organization_id", "start_date"])["credits"]
        .sum()
    )
    parts = (
        frame[frame["scope"] != "organization"]
        .groupby(["organization_id", "start_date"])["credits"]
        .sum()
    )
    joined = pd.concat([totals.rename("total"), parts.rename("parts")], axis=1).fillna(0.0)
    diff = (joined["total"] - joined["parts"]).abs()
    bad = joined[diff > TOLERANCE * joined["total"].abs().clip(lower=1.0)]
    examples = [
        f"{org} {start:%Y-%m-%d}: organization {row.total:.6f} != parts {row.parts:.6f}"
        for (org, start), row in bad.head(5).iterrows()
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
    from its creation date on."""
    days = frame[(frame["scope"] == "organization") & (frame["interval"] == "day")]
    have = days.groupby("organization_id")["start_date"].apply(lambda s: set(s.dt.date))
    missing_total = 0
    examples: list[str] = []
    for org in organizations.itertuples():
        created = org.creation_date.date() if pd.notna(org.creation_date) else first_day
        start = max(first_day, created)
        expected = {start + timedelta(days=i) for i in range(max(0, (end_day - start).days))}
        missing = sorted(expected - have.get(org.organization_id, set()))
        missing_total += len(missing)
        if missing and len(examples) < 5:
            examples.append(
                f"{org.organization_name}: {len(missing)} days missing from {missing[0]}"
            )
    return Finding(
        missing_total == 0,
        f"{len(organizations)} organizations, {first_day} to {end_day} (exclusive)",
        missing_total,
        examples,
    )
