"""The ready analyst queries of `docs/queries.sql`, parsed into named blocks for `usage-etl query`.

A block starts with `-- name: NAME`, may carry `-- question: ...` and `-- columns: ...` lines,
and ends at the `;` that closes its SQL. `usage-etl query --list` shows them, `--name NAME` runs
one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from common.errors import InputError

QUERIES_FILE = Path(__file__).resolve().parent.parent / "docs" / "queries.sql"
_BLOCK = re.compile(r"^-- name: (?P<name>\S+)\s*$", re.M)


@dataclass(frozen=True)
class ReadyQuery:
    name: str
    question: str
    sql: str


def load(path: Path = QUERIES_FILE) -> list[ReadyQuery]:
    """Every named query of `path`, in file order."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"ready queries {path}: cannot read ({exc.strerror})") from None
    starts = list(_BLOCK.finditer(text))
    queries = []
    for match, following in zip(starts, [*starts[1:], None], strict=True):
        block = text[match.end() : following.start() if following else len(text)]
        question = re.search(r"^-- question: (.+)$", block, re.M)
        body = [line for line in block.splitlines() if not line.lstrip().startswith("--")]
        sql = "\n".join(body).strip()
        sql = sql[: sql.rindex(";") + 1] if ";" in sql else sql
        queries.append(ReadyQuery(match["name"], question[1].strip() if question else "", sql))
    return queries


def find(name: str, path: Path = QUERIES_FILE) -> ReadyQuery:
    queries = load(path)
    for query in queries:
        if query.name == name:
            return query
    known = ", ".join(q.name for q in queries)
    raise InputError(f"--name {name!r}: no such ready query; expected one of: {known}")
