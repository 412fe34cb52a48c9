"""Quota file loading/validation and subscription-period arithmetic."""

from __future__ import annotations

import itertools
from datetime import date

import pytest

from common.periods import (
    anchor_from_period,
    period_containing,
    periods_between,
    previous_period,
)
from insights.quotas import DEFAULT_QUOTAS_PATH, QuotaConfigError, load_quotas, parse_quotas


def test_example_file_loads_with_demo_budgets() -> None:
    config = load_quotas(DEFAULT_QUOTAS_PATH)
    budgets = [
        config.credit_budget("x", "x", s) for s in ("free", "starter", "professional", "enterprise")
    ]
    assert budgets == [1000, 5000, 20000, 100000]
    assert config.resource_limits("x", "x", "starter")["projects"] == 10
    assert config.credit_budget("x", "x", "unknown-plan") is None
    assert config.channels.enabled() == ["log"]


def test_env_path_and_overrides(tmp_path, monkeypatch) -> None:
    path = tmp_path / "q.yaml"
    path.write_text(
        "subscriptions: {starter: {credit_budget: 5000, resources: {projects: 10}}}\n"
        "organizations:\n"
        "  org-1: {credit_budget: 7000, projects: {p1: 300}}\n"
        "  beta-org: {subscription: starter, resources: {projects: 12}}\n"
    )
    monkeypatch.setenv("USAGE_QUOTAS", str(path))
    config = load_quotas()
    assert config.credit_budget("org-1", "whatever", "starter") == 7000
    assert config.project_budgets("org-1", None) == {"p1": 300}
    # by name, and the override's subscription wins over the organization's
    assert config.credit_budget("org-2", "beta-org", "free") == 5000
    assert config.resource_limits("org-2", "beta-org", None) == {"projects": 12}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "subscriptions:\n  starter:\n    credit_budget: abc\n",
            "bad.yaml: subscriptions.starter.credit_budget: "
            "expected a finite number >= 0, got 'abc'",
        ),
        (
            "rules: {credit_actual_thresholds: [50, -3]}\n",
            "bad.yaml: rules.credit_actual_thresholds.1: expected a finite number > 0, got -3",
        ),
        (
            "subscriptions: {starter: {budget: 3}}\n",
            "bad.yaml: subscriptions.starter.budget: unknown key",
        ),
        (
            "channels: {email: {host: h, from: a@b.c, to: nobody}}\n",
            "bad.yaml: channels.email.to: expected 'admins' or a non-empty list of e-mail "
            "addresses, got 'nobody'",
        ),
        ("subscriptions: [1, 2\n", None),
        # a key given twice: PyYAML would keep the last silently (the budget of 100 gone)
        (
            "subscriptions: {free: {credit_budget: 100}, free: {credit_budget: 200}}\n",
            "bad.yaml: line 1, column 45: duplicate key 'free' (first on line 1)",
        ),
        (
            "rules:\n  forecast_interval: 0.8\nrules:\n  forecast_interval: 0.9\n",
            "bad.yaml: line 3, column 1: duplicate key 'rules' (first on line 1)",
        ),
        # an empty file (or comments only) would drop every budget, limit and channel
        (
            "# budgets: to do\n",
            "bad.yaml: <root>: expected a mapping with any of subscriptions, default, "
            "organizations, rules, channels, delivery (`{}` for none), got an empty file",
        ),
    ],
)
def test_bad_file_rejected_with_one_line(tmp_path, text: str, message: str | None) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(QuotaConfigError) as info:
        load_quotas(path)
    text_out = str(info.value)
    assert "\n" not in text_out
    assert text_out.startswith(f"{path}: "), "the file is named as given"
    if message is not None:
        assert text_out == f"{tmp_path}/{message}"


def test_keys_merged_in_may_be_overridden_and_an_empty_mapping_sets_nothing(tmp_path) -> None:
    path = tmp_path / "q.yaml"
    path.write_text(
        "subscriptions:\n  free: &base {credit_budget: 100, resources: {projects: 3}}\n"
        "  pro:\n    <<: *base\n    credit_budget: 900\n"
    )
    config = load_quotas(path)
    assert config.credit_budget("o1", "x", "pro") == 900
    assert config.resource_limits("o1", "x", "pro") == {"projects": 3}
    path.write_text("{}\n")
    assert load_quotas(path).organizations == {}


def test_overrides_matching_no_organization_are_named() -> None:
    config = parse_quotas(
        {"organizations": {"org-1": {"credit_budget": 5}, "acme": {}, "acme-typo": {}}}
    )
    known = [("org-1", "first"), ("org-2", "acme")]
    assert config.unmatched_overrides(known) == ["acme-typo"]


def test_secrets_hidden_and_from_env(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MY_HOOK_SECRET", "whsec_c2VjcmV0LXNlY3JldA==")
    path = tmp_path / "q.yaml"
    path.write_text(
        "channels:\n  webhook: {url: 'http://x', secret_env: MY_HOOK_SECRET}\n"
        "  email: {host: h, from: a@b.c, password: hunter2-pass}\n"
    )
    config = load_quotas(path)
    assert config.channels.webhook.secret.get_secret_value() == "whsec_c2VjcmV0LXNlY3JldA=="
    dumped = repr(config) + str(config) + config.model_dump_json()
    assert "c2VjcmV0" not in dumped and "hunter2" not in dumped
    path.write_text("channels:\n  email: {host: h, from: a@b.c, password: [hunter2-pass]}\n")
    with pytest.raises(QuotaConfigError) as info:
        load_quotas(path)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("year", "anchor", "feb_start"),
    [
        (2023, 28, 28),
        (2023, 29, 28),
        (2023, 30, 28),
        (2023, 31, 28),
        (2024, 28, 28),
        (2024, 29, 29),
        (2024, 30, 29),
        (2024, 31, 29),
    ],
)
def test_february_clamping(year: int, anchor: int, feb_start: int) -> None:
    jan = date(year, 1, min(anchor, 31))
    feb = date(year, 2, feb_start)
    mar = date(year, 3, anchor)
    assert period_containing(jan, anchor) == (jan, feb)
    assert period_containing(date(year, 2, 15), anchor) == (jan, feb)
    assert period_containing(feb, anchor) == (feb, mar)
    assert period_containing(date(year, 3, 1), anchor) == (feb, mar)
    assert previous_period(date(year, 3, 1), anchor) == (jan, feb)
    assert anchor_from_period(feb, mar) in (anchor, 31 if anchor >= 29 else anchor)
    assert period_containing(feb, anchor_from_period(feb, mar)) == (feb, mar)


def test_anchor_31_and_20_through_a_year() -> None:
    periods = periods_between(date(2023, 1, 31), date(2023, 12, 31), 31)
    starts = [p[0] for p in periods]
    assert starts[:4] == [
        date(2023, 1, 31),
        date(2023, 2, 28),
        date(2023, 3, 31),
        date(2023, 4, 30),
    ]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(periods))
    assert period_containing(date(2024, 1, 5), 20) == (date(2023, 12, 20), date(2024, 1, 20))
    assert period_containing("2024-01-20T13:00:00Z", 20) == (date(2024, 1, 20), date(2024, 2, 20))
    assert anchor_from_period(date(2023, 2, 28), date(2023, 3, 28)) == 28
    assert anchor_from_period(date(2023, 4, 30), date(2023, 5, 30)) == 30
    assert anchor_from_period(date(2023, 4, 30), date(2023, 5, 31)) == 31
