"""`usage-etl alerts --test-channel email` with `to: admins`: one test message per organization
whose alerts go to the channel, to that organization's admins (as its alerts would go), through
a real SMTP server (aiosmtpd); without a warehouse or admins, one line saying why."""

from __future__ import annotations

from pathlib import Path

import yaml

from alerting.channels import admins_by_organization
from pipelines.cli import main
from warehouse.parquet_store import ParquetStore
from warehouse.schema import ORGANIZATION_USERS, ORGANIZATIONS

from .conftest import SMTP_PASSWORD, SMTP_USER


def _quotas(tmp_path: Path, port: int, **extra: object) -> Path:
    path = tmp_path / "quotas.yaml"
    email = {
        "host": "127.0.0.1",
        "port": port,
        "user": SMTP_USER,
        "password": SMTP_PASSWORD,
        "from": "alerts@usage.test",
        "to": "admins",
    }
    path.write_text(yaml.safe_dump({"channels": {"log": False, "email": email}, **extra}))
    return path


def test_test_message_goes_to_each_organizations_admins(
    demo_warehouse: Path, tmp_path: Path, smtp_server, capsys
) -> None:
    controller, sink = smtp_server
    store = ParquetStore(demo_warehouse)
    names = dict(store.read(ORGANIZATIONS)[["organization_id", "organization_name"]].values)
    admins = admins_by_organization(store.read(ORGANIZATION_USERS))
    assert len(admins) >= 2
    quotas = _quotas(tmp_path, controller.port)
    args = ["alerts", "--warehouse", str(demo_warehouse), "--quotas", str(quotas)]
    assert main([*args, "--test-channel", "email"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines()[0] == (
        f"test message sent via email to the admins of {len(admins)} organizations:"
    )
    for org_id, to in admins.items():
        assert f"  {names[org_id]}: {', '.join(to)}" in out.splitlines()
    received = sorted(sorted(m["to"]) for m in sink.messages)
    assert received == sorted(sorted(to) for to in admins.values())  # one mail per organization
    assert all("Test message from ubiops-usage alerts" in str(m["data"]) for m in sink.messages)
    assert SMTP_PASSWORD not in out


def test_no_warehouse_or_no_routed_admins_says_why(
    demo_warehouse: Path, tmp_path: Path, smtp_server, capsys
) -> None:
    controller, sink = smtp_server
    quotas = _quotas(tmp_path, controller.port)
    missing = tmp_path / "nothing"
    args = ["alerts", "--quotas", str(quotas), "--test-channel", "email"]
    assert main([*args, "--warehouse", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == (
        "usage-etl alerts: test message via email failed: email: `to: admins` writes to "
        f"organization admins, and there is no warehouse at {missing} to find them in (run "
        "`usage-etl run` first, or pass --warehouse)\n"
    )
    # every organization routed elsewhere: nobody the channel would write to
    quotas = _quotas(tmp_path, controller.port, default={"channels": []})
    args = ["alerts", "--quotas", str(quotas), "--test-channel", "email"]
    assert main([*args, "--warehouse", str(demo_warehouse)]) == 2
    err = capsys.readouterr().err
    assert "none of the 0 organizations in" in err and "whose alerts go to email" in err
    assert err.count("\n") == 1
    assert sink.messages == []
