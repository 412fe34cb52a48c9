"""The report's one number format and its date texts.

Every number the report shows (table cells, chart ticks, tooltips, notes) goes through
`fmt_number`: thousands separators, no abbreviations (never `25k` beside `5,000`), and a
precision that depends only on the magnitude. Percentages go through `fmt_pct`, dates through
`fmt_day`/`fmt_period`. Raw values for sorting and CSV export go through `raw_number`.
"""

from __future__ import annotations

import math
from datetime import date, timedelta

import pandas as pd

from common.periods import to_date

MISSING = "\u2013"  # an en dash


def finite(value: object) -> float | None:
    """`value` as a float, or None for None/NaN/NA/non-numbers."""
    if type(value) is float:  # the common case, from DuckDB
        return value if math.isfinite(value) else None
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


def as_date(value: object) -> date | None:
    """A `date` from a date, datetime, pandas Timestamp or ISO text; None when missing."""
    if type(value) is date:  # the common case, from DuckDB
        return value
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return to_date(value)  # type: ignore[arg-type]


def fmt_number(value: object) -> str:
    """1234.5 -> '1,235'; 12.34 -> '12.3'; 0.123 -> '0.12'; 24.0 -> '24'; missing -> MISSING."""
    if type(value) is float:  # the common case (a report at 24 months formats ~500 a page)
        if value - value != 0.0:  # NaN or infinite
            return MISSING
        number = value
    else:
        found = finite(value)
        if found is None:
            return MISSING
        number = found
    size = abs(number)
    if size >= 100 or number.is_integer():
        text = f"{number:,.0f}"
    elif size >= 10:
        text = f"{number:,.1f}"
    else:
        text = f"{number:,.2f}"
    return "0" if size < 1 and text.strip("-0.,") == "" else text


def fmt_tick(value: float, step: float) -> str:
    """An axis tick in the same format as `fmt_number`, with the decimals its step needs."""
    if step >= 1 or value == 0:
        return f"{value:,.0f}"
    decimals = min(4, max(1, -math.floor(math.log10(step))))
    return f"{value:,.{decimals}f}"


def fmt_pct(value: object) -> str:
    """96.4 -> '96%'; missing -> MISSING."""
    number = finite(value)
    return MISSING if number is None else f"{number:,.0f}%"


def raw_number(value: object) -> str:
    """A number as plain text for sorting and CSV (no separators); '' when missing."""
    number = finite(value)
    if number is None:
        return ""
    return f"{number:.6g}" if abs(number) < 1e6 else f"{number:.0f}"


def fmt_day(value: object) -> str:
    """2026-11-28 (ISO, UTC day); missing -> MISSING."""
    day = as_date(value)
    return MISSING if day is None else day.isoformat()


def fmt_period(start: object, end: object) -> str:
    """A subscription period `[start, end)` shown with its last day: '2026-11-15 to 2026-12-14'."""
    first, stop = as_date(start), as_date(end)
    if first is None:
        return MISSING
    if stop is None:
        return f"from {first.isoformat()}"
    return f"{first.isoformat()} to {(stop - timedelta(days=1)).isoformat()}"
