"""Setting up a restatement for end-to-end tests: per-organization credit budgets in a quotas
file (from quotas.example.yaml, log channel only) and late usage added in the emulator to a
day a previous load already counted as complete, as a re-pull would see it."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import yaml

from emulator.model import MICRO
from emulator.state import State

QUOTAS = Path(__file__).resolve().parents[2] / "quotas.example.yaml"


def write_quotas(path: Path, budgets: dict[str, float]) -> Path:
    """A quotas file at `path` giving each organization named in `budgets` that credit budget."""
    config = yaml.safe_load(QUOTAS.read_text())
    config["organizations"] = {name: {"credit_budget": b} for name, b in budgets.items()}
    config["channels"] = {"log": True}
    path.write_text(yaml.safe_dump(config))
    return path


def add_late_usage(state: State, org_name: str, day: date, credits: float) -> None:
    """`credits` more on `day` for the organization's first live project."""
    with state.lock:
        org = state.org_by_name(org_name)
        project = org.live_projects()[0]
        org.usage[project.row, (day - state.day0).days] += round(credits * MICRO)
