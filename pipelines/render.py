"""Query results as text the way DuckDB's own shell shows them, and as CSV / JSON / Parquet.

Table output is a box with the column names and types, numbers right-aligned with thousands
separators, NULL as `NULL`, dates as dates (a timestamp at midnight keeps its time only when the
column has other times), doubles with at most the decimals they need (2 for amounts of 1 and
more, 4 significant digits below). Machine formats keep full precision: CSV and JSON on stdout or
to `--out`, Parquet only to `--out`; files are written whole or not at all.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

NULL = "NULL"
_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UBIGINT", "UINTEGER",
            "USMALLINT", "UTINYINT", "FLOAT", "DOUBLE", "DECIMAL", "REAL")  # fmt: skip


def is_numeric(type_name: str) -> bool:
    return type_name.upper().startswith(_NUMERIC)


def format_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    if abs(value) >= 1:
        text = f"{value:,.2f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    return f"{value:.4g}"


def format_value(value: Any, midnight_only: bool = False) -> str:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, decimal.Decimal):
        return format_float(float(value)) if value.is_finite() else str(value)
    if isinstance(value, dt.datetime):
        if midnight_only and value.time() == dt.time(0) and value.tzinfo is None:
            return value.date().isoformat()
        text = value.isoformat(sep=" ")
        return text.split(".")[0] if value.microsecond == 0 else text
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return str(value)


def _all_midnight(rows: Sequence[Sequence[Any]], index: int) -> bool:
    values = [row[index] for row in rows if isinstance(row[index], dt.datetime)]
    return bool(values) and all(v.time() == dt.time(0) for v in values)


def render_table(
    columns: Sequence[str],
    types: Sequence[str],
    rows: Sequence[Sequence[Any]],
    total: int | None = None,
) -> str:
    """A DuckDB-style box; `total` (rows in the result) when only the first `rows` are shown."""
    midnight = [_all_midnight(rows, i) for i in range(len(columns))]
    cells = [[format_value(v, midnight[i]) for i, v in enumerate(row)] for row in rows]
    header_types = [t.lower() for t in types]
    widths = [
        max([len(c), len(t), *(len(r[i]) for r in cells)])
        for i, (c, t) in enumerate(zip(columns, header_types, strict=True))
    ]
    right = [is_numeric(t) for t in types]

    def line(left: str, mid: str, end: str) -> str:
        return left + mid.join("─" * (w + 2) for w in widths) + end

    def row_text(values: Sequence[str], align: Sequence[bool], center: bool = False) -> str:
        parts = []
        for value, width, r in zip(values, widths, align, strict=True):
            if center:
                parts.append(value.center(width))
            else:
                parts.append(value.rjust(width) if r else value.ljust(width))
        return "│ " + " │ ".join(parts) + " │"

    out = [line("┌", "┬", "┐")]
    out.append(row_text(columns, right, center=True))
    out.append(row_text(header_types, right, center=True))
    out.append(line("├", "┼", "┤"))
    out.extend(row_text(r, right) for r in cells)
    out.append(line("└", "┴", "┘"))
    shown = len(rows)
    count = total if total is not None else shown
    noun = "row" if count == 1 else "rows"
    footer = f"{count:,} {noun}"
    if shown < count:
        footer += f" ({shown:,} shown; --max-rows N or --out FILE for all)"
    out.append(footer)
    return "\n".join(out)


def _json_value(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return value


def write_json(columns: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    """A JSON array of objects, one per row (NaN/inf as null, dates as ISO strings)."""
    records = [{c: _json_value(v) for c, v in zip(columns, row, strict=True)} for row in rows]
    json.dump(records, out, indent=1, default=str)
    out.write("\n")


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        text = value.isoformat(sep=" ")
        return text.split(".")[0] if value.microsecond == 0 else text
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return value


def write_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    """CSV with a header; quotes only where needed; NULL as an empty field; full precision."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(v) for v in row])


def write_file_atomically(path: Path, write: Any) -> None:
    """Write `path` through a temporary file in the same directory, then rename it into place.

    The file gets the permissions a plain `open(path, "w")` would give it (0666 less the umask),
    not the owner-only ones of the temporary file: a result written for teammates on a shared
    server is readable by them as any other file the user writes."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask (read by setting it, then set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
