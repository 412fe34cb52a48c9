"""The subscription periods waiting to be reconciled with the API: `<warehouse>/state/
periods-to-reconcile.json`.

A closed period's row is the sum of its days; asking the API for the period once after it closed
only confirms it (the blocking check `period_reconciliation`). Periods that closed since the
previous month began are always confirmed; of older ones (a backfill's) a run asks at most
`USAGE_RECONCILE_PER_RUN` (500 in a backfill, none in a daily refresh unless set), oldest period
first; the others are recorded here and confirmed by later runs. A period not recorded here
whose stored row was loaded after it closed has been confirmed. The file is replaced atomically,
before the period rows it describes are written, so a crash can leave a period recorded twice as
pending (asked again), never a period unconfirmed and forgotten.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import NamedTuple

from warehouse.files import atomic_write

LEDGER = Path("state") / "periods-to-reconcile.json"


class PendingPeriod(NamedTuple):
    """A closed period of an organization whose row has not been confirmed by the API yet
    (ordered by start, then organization: oldest first). A tuple: a backfill's backlog holds
    tens of thousands, read by every run."""

    start: date
    organization_id: str
    end: date


def ledger_path(warehouse: Path) -> Path:
    return Path(warehouse) / LEDGER


def read_pending(warehouse: Path) -> set[PendingPeriod]:
    """The recorded periods (none when the file does not exist)."""
    path = ledger_path(warehouse)
    if not path.exists():
        return set()
    try:
        document = json.loads(path.read_text())
        return {
            PendingPeriod(
                date.fromisoformat(p["start"]),
                str(p["organization_id"]),
                date.fromisoformat(p["end"]),
            )
            for p in document["periods"]
        }
    except (ValueError, KeyError, TypeError):
        raise RuntimeError(
            f"{path}: unreadable; expected "
            '{"periods": [{"organization_id": ..., "start": ..., "end": ...}]}; restore it, or '
            "delete it to skip confirming the periods it listed (their rows stay exact: they "
            "are the sums of their days)"
        ) from None


def write_pending(warehouse: Path, pending: set[PendingPeriod]) -> None:
    """Replace the recorded periods (atomically; the file is removed when none is pending)."""
    path = ledger_path(warehouse)
    if not pending:
        path.unlink(missing_ok=True)
        return
    document = {
        "periods": [
            {"organization_id": p.organization_id, "start": f"{p.start}", "end": f"{p.end}"}
            for p in sorted(pending)
        ]
    }
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(document, indent=1) + "\n"))
