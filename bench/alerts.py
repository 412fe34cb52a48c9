"""Bench of the credit forecast and its alert: the new method vs the previous one vs naive.

Organizations of several scenario families are replayed day by day through the forecast of
``forecast_usage`` (its per-organization core ``forecast_series`` with the organization's
project and deleted-projects series) with only the data known that day, once per method; the
``credit_forecast`` rule at 100 % of the budget fires when the forecast total reaches it:

* synthetic families (each organization has projects; the total is their sum):
  ``growth`` (linear growth since 2-6 weeks before the period that crosses the budget),
  ``flat`` (never crosses; 8-20x spike days), ``step_up`` (a new project goes live
  mid-period and triples the rate: crosses),
  ``step_down`` (a big project scaled to zero shortly before the period: would have crossed,
  does not), ``deleted`` (a project deleted shortly before the period, its history moved to the
  deleted-projects line: does not cross), ``decline`` (steady decline from above budget pace:
  does not cross), ``weekend_end`` (strong weekday pattern, the period's last day is a Saturday
  or Sunday, growth crossing in its last week);
* ``emulator``: organizations of the bundled emulator's generated data set (random projects,
  growth, deletions, spikes, every anchor day), on their last ended period, with budgets set
  between 80 % and 125 % of what they really used.

Figures per method: median lead time (days between the first forecast alert and the day usage
crossed the budget), missed crossings (no forecast alert before the crossing day), false alerts
(organizations that never crossed but got a forecast alert), the median absolute percentage
error of the period forecast (all evaluation days) and the coverage of the 80 % interval.

Run: ``.venv/bin/python bench/alerts.py [--per-family 12] [--emulator 36] [--seed 1]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from common.periods import previous_period
from emulator.demo import build_state
from emulator.model import MICRO
from insights.forecast import forecast_series
from insights.frames import daily_usage

BUDGET = 5000.0
HISTORY_START = pd.Timestamp("2024-01-01")
PERIOD_START = pd.Timestamp("2024-03-01")
PERIOD_END = pd.Timestamp("2024-04-01")  # exclusive
WEEKLY = np.array([1.15, 1.2, 1.2, 1.15, 1.1, 0.6, 0.6])  # Mon..Sun
METHODS = ("theil_sen", "robust", "naive")
LABELS = {"theil_sen": "previous (Theil-Sen)", "robust": "new (per-series, level shifts)"}
LABELS["naive"] = "naive month-to-date mean"


class Org:
    """One bench organization: daily series per project/deleted line, its period and budget."""

    def __init__(
        self, org_id: str, family: str, anchor: int, period: tuple[date, date], budget: float
    ) -> None:
        self.id = org_id
        self.family = family
        self.anchor = anchor
        self.period = period
        self.budget = budget
        self.rows: list[pd.DataFrame] = []

    def add(self, scope: str, project: str | None, days: pd.DatetimeIndex, values: np.ndarray):
        self.rows.append(
            pd.DataFrame(
                {
                    "organization_id": self.id,
                    "organization_name": self.id,
                    "interval": "day",
                    "scope": scope,
                    "project_id": project,
                    "project_name": project,
                    "start_date": days,
                    "end_date": days + pd.Timedelta(days=1),
                    "credits": values,
                }
            )
        )

    def frame(self) -> pd.DataFrame:
        """``credit_usage`` day rows: the series plus the organization total (their sum)."""
        parts = pd.concat(self.rows, ignore_index=True)
        total = parts.groupby("start_date", as_index=False)["credits"].sum()
        org = parts.iloc[0:0].reindex(range(len(total)))
        org = org.assign(
            organization_id=self.id,
            organization_name=self.id,
            interval="day",
            scope="organization",
            project_id=None,
            project_name=None,
            start_date=total["start_date"],
            end_date=total["start_date"] + pd.Timedelta(days=1),
            credits=total["credits"],
        )
        return pd.concat([parts, org], ignore_index=True)


def _synthetic(i: int, family: str, rng: np.random.Generator) -> Org:
    anchor = 1
    start, end = PERIOD_START, PERIOD_END
    if family == "weekend_end":
        anchor = int(rng.choice([7, 8]))  # Mar 7 -> Apr 7 ends on a Saturday, 8 on a Sunday
        start, end = pd.Timestamp(2024, 3, anchor), pd.Timestamp(2024, 4, anchor)
    org = Org(f"{family}-{i:02d}", family, anchor, (start.date(), end.date()), BUDGET)
    days = pd.date_range(HISTORY_START, end - pd.Timedelta(days=1), freq="D")
    n_period = (end - start).days
    t = (days - start).days.to_numpy(dtype=float)  # 0 on the period's first day
    pace = BUDGET / n_period  # credits/day that exactly use the budget
    weekly = WEEKLY if family != "weekend_end" else np.array([1.3, 1.3, 1.3, 1.3, 1.3, 0.25, 0.25])
    season = weekly[days.day_of_week] / weekly.mean()
    n_projects = int(rng.integers(2, 5))
    shares = rng.dirichlet(np.ones(n_projects) * 2)
    level = pace * rng.uniform(0.45, 0.75)
    deleted_line = np.zeros(len(days))
    for p in range(n_projects):
        base = np.full(len(days), level * shares[p])
        if family in ("growth", "weekend_end") and p == 0:
            k = int(rng.integers(18, 30) if family == "growth" else rng.integers(24, n_period))
            t0 = -float(rng.integers(14, 43))  # steady growth since 2-6 weeks before the period
            # linear growth from t0 so that the period's cumulative reaches the budget on day k
            g = (BUDGET / level - k) / (shares[0] * (k * (k - 1) / 2 - t0 * k))
            base = base * (1 + g * np.maximum(t - t0, 0))
        values = base * season * rng.lognormal(0, 0.15, len(days))
        if family == "flat" or rng.random() < 0.3:
            for _ in range(int(rng.integers(1, 3))):
                values[rng.integers(0, len(days))] *= rng.uniform(8, 20)
        org.add("project", f"p{p}", days, values)
    if family == "step_up":
        go_live = int(rng.integers(3, 16))  # period day the new project goes live
        rate = level * rng.uniform(2.0, 2.6)
        values = rate * season * rng.lognormal(0, 0.15, len(days)) * (t >= go_live)
        org.add("project", "new-project", days, values)
    if family in ("step_down", "deleted"):
        stop = int(rng.integers(-10, -3))  # days before the period's start
        rate = pace * rng.uniform(0.7, 0.9)  # total pace before: 1.15-1.65x the budget pace
        values = rate * season * rng.lognormal(0, 0.15, len(days)) * (t < stop)
        if family == "step_down":
            org.add("project", "scaled-to-zero", days, values)
        else:
            deleted_line += values
    if family == "decline":
        org.rows.clear()
        decay = np.exp(-0.025 * (t + 14))  # 1.3x the budget pace two weeks before the period
        values = 1.3 * pace * np.minimum(decay, 1.0) * season * rng.lognormal(0, 0.15, len(days))
        org.add("project", "shrinking", days, values)
    org.add("deleted_projects", None, days, deleted_line)
    return org


def _emulator(count: int, seed: int, rng: np.random.Generator) -> list[Org]:
    """Generated emulator organizations on their last ended subscription period."""
    now = datetime(2026, 6, 15, 12, tzinfo=UTC)
    state = build_state(seed=seed, organizations=count + 6, now=now)
    orgs: list[Org] = []
    days = pd.date_range(state.day0, state.today - timedelta(days=1), freq="D")
    for org in state.orgs.values():
        if not org.name.startswith("org-") or org.usage.shape[0] == 0:
            continue
        usage = org.usage[:, : len(days)].astype(float) / MICRO
        period = previous_period(state.today, org.anchor_day)
        first = (period[0] - state.day0).days
        last = (period[1] - state.day0).days
        used = float(usage[:, first:last].sum())
        if used <= 0:
            continue
        # a budget 15-30 % below or 15-40 % above what it used: crossing or not, not a coin flip
        ratio = rng.uniform(0.7, 0.85) if rng.random() < 0.5 else rng.uniform(1.15, 1.4)
        bench = Org(org.name, "emulator", org.anchor_day, period, used * ratio)
        for project in org.projects:
            if not project.deleted:
                bench.add("project", project.id, days, usage[project.row])
        deleted = [p.row for p in org.projects if p.deleted]
        bench.add("deleted_projects", None, days, usage[deleted].sum(axis=0))
        orgs.append(bench)
    return orgs


def _crossing(org: Org, usage: pd.DataFrame) -> tuple[pd.Timestamp | None, float]:
    rows = usage[(usage.scope == "organization")].sort_values("start_date")
    start, end = pd.Timestamp(org.period[0]), pd.Timestamp(org.period[1])
    period = rows[(rows.start_date >= start) & (rows.start_date < end)]
    crossed = period[period.credits.cumsum() >= org.budget]
    return (None if crossed.empty else crossed.start_date.iloc[0]), float(period.credits.sum())


def _dense(frame: pd.DataFrame, days: pd.DatetimeIndex) -> pd.Series:
    values = frame.groupby("date")["credits"].sum()
    return values.reindex(days, fill_value=0.0).astype(float)


def run(orgs: list[Org], progress: Callable[[str], None] = print) -> pd.DataFrame:
    """Replay every organization's period day by day with each method (``forecast_series``,
    the per-organization core of ``forecast_usage``, with the same per-series components)."""
    records: list[dict[str, object]] = []
    prepared = []
    for org in orgs:
        usage = org.frame()
        daily = daily_usage(usage)
        days = pd.date_range(daily.date.min(), daily.date.max(), freq="D")
        total = _dense(daily[daily.scope == "organization"], days)
        parts = [
            _dense(group, days)
            for _, group in daily[daily.scope != "organization"].groupby(
                ["scope", "project_id"], dropna=False
            )
        ]
        crossing, actual = _crossing(org, usage)
        prepared.append((org, total, parts, crossing, actual))
    for method in METHODS:
        started = time.perf_counter()
        for org, total, parts, crossing, actual in prepared:
            start, end = pd.Timestamp(org.period[0]), pd.Timestamp(org.period[1])
            for as_of in pd.date_range(start - pd.Timedelta(days=1), end - pd.Timedelta(days=2)):
                history = total[:as_of]
                fc = forecast_series(
                    history,
                    org.period[0],
                    org.period[1],
                    components=[p[:as_of] for p in parts],
                    method=method,  # type: ignore[arg-type]
                )
                records.append(
                    {
                        "method": method,
                        "organization_id": org.id,
                        "family": org.family,
                        "as_of": as_of,
                        "forecast": fc.forecast_total,
                        "low": fc.forecast_low,
                        "high": fc.forecast_high,
                        "remaining": fc.days_remaining,
                        # the credit_forecast rule at 100 %: the forecast reaches the budget
                        "alerted": bool(fc.forecast_total >= org.budget),
                        "crossing": crossing,
                        "actual": actual,
                    }
                )
        progress(f"  {method}: {time.perf_counter() - started:.1f} s")
    return pd.DataFrame(records)


def summarize(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    out: list[dict[str, object]] = []
    for key, group in frame.groupby(by, sort=False):
        leads: list[int] = []
        missed = false_alerts = never = crossing = 0
        for _, rows in group.groupby("organization_id"):
            cross = rows.crossing.iloc[0]
            alerts = rows[rows.alerted].as_of
            if cross is None or pd.isna(cross):
                never += 1
                false_alerts += int(not alerts.empty)
                continue
            crossing += 1
            before = alerts[alerts < cross]
            if before.empty:
                missed += 1
            else:
                leads.append(int((cross - before.min()).days))
        valid = group[group.forecast.notna()]
        error = (valid.forecast - valid.actual).abs() / valid.actual
        inside = valid[valid.remaining > 0]
        covered = (inside.low <= inside.actual) & (inside.actual <= inside.high)
        row = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        row.update(
            {
                "crossing": crossing,
                "median_lead_days": float(np.median(leads)) if leads else float("nan"),
                "missed": missed,
                "never": never,
                "false_alerts": false_alerts,
                "mape_pct": round(100 * float(error.median()), 1),
                "coverage_pct": round(100 * float(covered.mean()), 1) if len(inside) else None,
            }
        )
        out.append(row)
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-family", type=int, default=12)
    parser.add_argument("--emulator", type=int, default=36)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--by-family", action="store_true", help="also print one row per family")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    families = ["growth", "flat", "step_up", "step_down", "deleted", "decline", "weekend_end"]
    orgs = [_synthetic(i, f, rng) for f in families for i in range(args.per_family)]
    orgs += _emulator(args.emulator, args.seed, rng)
    print(f"{len(orgs)} organizations ({args.per_family} per synthetic family + emulator)")
    frame = run(orgs)
    overall = summarize(frame, ["method"])
    overall.insert(0, "method_label", overall["method"].map(LABELS))
    print(overall.drop(columns="method").to_string(index=False))
    families_table = summarize(frame, ["family", "method"])
    worst = families_table.groupby("method")["missed"].sum()
    print("missed crossings per method over all families:", dict(worst))
    if args.by_family:
        print(families_table.to_string(index=False))
    print(
        "lead = days from the first credit_forecast alert (as of a day's data) to the day usage"
        " crossed the budget; missed = no alert before that day; false_alerts = organizations"
        " that never crossed but were alerted; mape = median |forecast - actual| / actual over"
        " every evaluation day; coverage = share of days the 80% interval held the period total."
    )


if __name__ == "__main__":
    main()
