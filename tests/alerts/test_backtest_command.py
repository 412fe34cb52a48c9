"""`usage-etl backtest`: an answer only when the data can give one (usage in the range, resource
snapshots for `resource_limit`), a disabled rule named as such, dates no later than today, and
rows a person reads (organization names, plain dates)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd

from insights.quotas import load_quotas
from pipelines.cli import main
from pipelines.commands.alerts_cmd import backtest_lines
from warehouse.parquet_store import ParquetStore
from warehouse.schema import CREDIT_USAGE, ORGANIZATIONS, RESOURCE_USAGE

from .conftest import organizations_frame, usage_frame

ORG_ID = "5d0c1a2e-0000-4000-8000-0000000000aa"
ORG_NAME = "acme-research"


def _orgs() -> pd.DataFrame:
    orgs = organizations_frame((ORG_ID, "free", "2024-03-01", "2024-04-01"))
    orgs["organization_name"] = ORG_NAME
    return orgs


def _usage(spike: float = 100.0) -> pd.DataFrame:
    """Feb 1 .. Mar 20 2024: 30 credits a day, one day (Mar 15) at ``spike``."""
    values = [30.0] * 49
    values[43] = spike
    return usage_frame(ORG_ID, "2024-02-01", {"p1": values}, org_name=ORG_NAME)


def _demo_days(warehouse: Path) -> tuple[date, date]:
    usage = ParquetStore(warehouse).read(CREDIT_USAGE, "interval = 'day'")
    return usage.start_date.min().date(), usage.start_date.max().date()


def test_a_range_without_usage_is_no_answer(demo_warehouse: Path, capsys) -> None:
    args = ["--rule", "credit_actual", "--start", "2024-11-01", "--end", "2024-12-31"]
    code = main(["backtest", "--warehouse", str(demo_warehouse), *args])
    out, err = capsys.readouterr()
    first, last = _demo_days(demo_warehouse)
    assert code == 1 and err == ""
    assert out == (
        "no credit usage in the warehouse between 2024-11-01 and 2024-12-31 (the warehouse "
        f"holds credit usage from {first} to {last}): no answer\n"
    )


def test_resource_limit_without_snapshots_is_no_answer(demo_warehouse: Path, capsys) -> None:
    first, _ = _demo_days(demo_warehouse)
    snapshots = ParquetStore(demo_warehouse).read(RESOURCE_USAGE).observed_at
    assert snapshots.min().date() > first + timedelta(days=9)  # taken by the run, not before
    args = ["--rule", "resource_limit", "--start", str(first), "--end", str(first + timedelta(9))]
    code = main(["backtest", "--warehouse", str(demo_warehouse), *args])
    out, _ = capsys.readouterr()
    assert code == 1
    assert out.startswith(f"no resource snapshots between {first} and ")
    assert "no answer for rule resource_limit" in out and "would not have fired" not in out


def test_a_disabled_rule_says_so(demo_warehouse: Path, capsys) -> None:
    _, last = _demo_days(demo_warehouse)
    args = ["--rule", "anomaly", "--start", str(last - timedelta(days=6)), "--end", str(last)]
    code = main(["backtest", "--warehouse", str(demo_warehouse), *args])
    out, _ = capsys.readouterr()
    lines = out.splitlines()
    assert code == 0
    assert lines[0] == (
        "rule anomaly is disabled in quotas.example.yaml (rules.anomaly.enabled: false); "
        "evaluated as if it were enabled:"
    )
    assert "if enabled" in lines[1]


def test_an_end_in_the_future_is_rejected_like_run(tmp_path: Path, capsys) -> None:
    today = datetime.now(UTC).date()
    later = today + timedelta(days=1)
    args = ["--warehouse", str(tmp_path), "--start", str(today), "--end", str(later)]
    assert main(["backtest", "--rule", "credit_actual", *args]) == 2
    backtest_err = capsys.readouterr().err
    assert main(["run", *args]) == 2
    run_err = capsys.readouterr().err
    expected = f"--end {later}: expected a date no later than today ({today})\n"
    assert backtest_err == f"usage-etl backtest: {expected}"
    assert run_err == f"usage-etl run: {expected}"


def test_disabled_anomaly_rule_is_evaluated_as_if_enabled() -> None:
    config = load_quotas()
    assert not config.rules.anomaly.enabled
    enabled = config.model_copy(
        update={
            "rules": config.rules.model_copy(
                update={"anomaly": config.rules.anomaly.model_copy(update={"enabled": True})}
            )
        }
    )
    start, end = date(2024, 3, 1), date(2024, 3, 20)
    disabled_lines, answered = backtest_lines(_usage(), _orgs(), config, "anomaly", start, end)
    enabled_lines, _ = backtest_lines(_usage(), _orgs(), enabled, "anomaly", start, end)
    assert answered
    assert disabled_lines[0].startswith("rule anomaly is disabled in quotas.example.yaml")
    assert disabled_lines[1] == enabled_lines[0].replace(
        "notifications", "notifications if enabled"
    )
    assert disabled_lines[2:] == enabled_lines[1:]
    assert any(line.startswith("2024-03-15  ") for line in enabled_lines)


def test_rows_show_names_and_plain_dates() -> None:
    lines, answered = backtest_lines(
        _usage(), _orgs(), load_quotas(), "credit_actual", date(2024, 3, 1), date(2024, 3, 20)
    )
    assert answered
    assert lines[0].startswith("rule credit_actual, 2024-03-01 .. 2024-03-20 (20 days): ")
    rows = lines[3:]
    assert rows and all(line.startswith("2024-03-") for line in rows)
    assert all(ORG_NAME in line and ORG_ID not in line for line in rows)
    assert not any("00:00:00" in line for line in lines)
    assert rows[0].split()[-2:] == ["520", "1,000"]  # 50 % of the budget on Mar 15 (14 x 30 + 100)


def _partly_loaded_block(out: str) -> list[str]:
    lines = out.splitlines()
    at = next((i for i, line in enumerate(lines) if "only partly loaded" in line), None)
    if at is None:
        return []
    return [line.strip() for line in lines[at + 1 :] if line.startswith("  ")]


def test_the_first_days_of_a_warehouse_name_the_periods_begun_before_them(
    demo_warehouse: Path, capsys
) -> None:
    """The demo run loaded from the first day of the previous month: a backtest of its first
    days judges periods begun before that (anchor day > 1) on the days held only, and says so,
    naming each such organization and period and marking its notifications."""
    from common.periods import anchors_by_organization, period_containing

    first, _ = _demo_days(demo_warehouse)
    end = first + timedelta(days=9)
    args = ["--rule", "credit_actual", "--start", str(first), "--end", str(end)]
    code = main(["backtest", "--warehouse", str(demo_warehouse), *args])
    out, _ = capsys.readouterr()
    assert code == 0
    orgs = ParquetStore(demo_warehouse).read(ORGANIZATIONS)
    names = dict(zip(orgs.organization_id.astype(str), orgs.organization_name, strict=True))
    expected = []
    for org_id, anchor in anchors_by_organization(orgs).items():
        start, stop = period_containing(first + timedelta(days=1), anchor)
        if start < first:
            missing = (first - start).days
            days = str(start) if missing == 1 else f"{start} .. {first - timedelta(days=1)}"
            expected.append(
                f"{names[org_id]}: period {start} .. {stop - timedelta(days=1)}, {missing} "
                f"{'day' if missing == 1 else 'days'} not loaded ({days})"
            )
    assert expected and len(expected) < len(names), "the demo has both kinds of anchors"
    assert _partly_loaded_block(out) == sorted(expected)
    partial = {line.split(":")[0] for line in expected}
    rows = [line for line in out.splitlines() if line.startswith(f"{first.year}-")]
    for row in rows:  # every notification says whether its period was judged on part of it
        assert row.endswith("partly loaded") == any(f"  {n}  " in row for n in partial), row


def test_periods_whose_days_are_all_loaded_give_no_warning(demo_warehouse: Path, capsys) -> None:
    _, last = _demo_days(demo_warehouse)
    args = ["--rule", "credit_actual", "--start", str(last - timedelta(days=4)), "--end", str(last)]
    assert main(["backtest", "--warehouse", str(demo_warehouse), *args]) == 0
    out, _ = capsys.readouterr()
    assert "partly loaded" not in out


def test_a_period_begun_before_the_loaded_days_is_named_from_its_creation_on() -> None:
    """Anchor 20, days loaded from Feb 1: the period Jan 20 - Feb 19 lacks Jan 20..31; an
    organization created on Jan 25 lacks only Jan 25..31 (nothing to load before)."""
    period = ("2024-01-20", "2024-02-20")
    orgs = organizations_frame((ORG_ID, "free", *period), ("org-b", "free", *period))
    orgs.loc[1, "creation_date"] = pd.Timestamp("2024-01-25")
    usage = pd.concat(
        [
            usage_frame(ORG_ID, "2024-02-01", {"p1": [30.0] * 30}, org_name=ORG_NAME),
            usage_frame("org-b", "2024-02-01", {"p1": [30.0] * 30}),
        ],
        ignore_index=True,
    )
    lines, answered = backtest_lines(
        usage, orgs, load_quotas(), "credit_actual", date(2024, 2, 1), date(2024, 2, 25)
    )
    assert answered
    assert _partly_loaded_block("\n".join(lines)) == [  # by name: orgs are named by id here
        f"{ORG_ID}: period 2024-01-20 .. 2024-02-19, 12 days not loaded (2024-01-20 .. 2024-01-31)",
        "org-b: period 2024-01-20 .. 2024-02-19, 7 days not loaded (2024-01-25 .. 2024-01-31)",
    ]
