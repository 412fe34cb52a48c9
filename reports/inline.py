"""The report's inline code (its style sheet `report.css` and one small script `report.js`, both
inlined into every page) and the Content-Security-Policy that admits exactly that code, by hash.

The script (no dependencies, ~100 lines) does what static HTML cannot: filter the tables by
organization, risk and date range (rows carry `data-org`, `data-risk`, `data-from`/`data-to`),
dim chart buckets outside the date range, sort a table by a clicked header, keep a "shown / total"
count and column totals of the shown rows, and export a table's shown rows as CSV (a Blob
download: no network). The CSP allows exactly this script and this style sheet by their SHA-256
hashes; everything else (other scripts, style attributes, fetches, images, fonts, frames, forms)
is refused, so the page provably makes no network request. Without JavaScript the page still
reads fully; only the filter bar needs it, so it is written invisible (taking its space) and the
script makes it visible: a repaint of one element, where flagging the whole document or moving
the tables down would restyle and lay out a 1,000-row page a second time while it loads.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

_HERE = Path(__file__).resolve().parent
CSS = (_HERE / "report.css").read_text(encoding="utf-8").strip()
SCRIPT = (_HERE / "report.js").read_text(encoding="utf-8").strip()


def source_hash(code: str) -> str:
    """The CSP source expression for inline `code`: 'sha256-<base64 digest>'."""
    digest = hashlib.sha256(code.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def content_security_policy() -> str:
    """No network at all: only this style sheet and this script (by hash) apply."""
    return (
        "default-src 'none'; "
        f"script-src {source_hash(SCRIPT)}; "
        f"style-src {source_hash(CSS)}; "
        "base-uri 'none'; form-action 'none'"
    )


def head_tags() -> str:
    """The CSP meta tag and the style sheet, for the page's <head>."""
    return (
        f'<meta http-equiv="Content-Security-Policy" content="{content_security_policy()}">'
        f"<style>{CSS}</style>"
    )


def script_tag() -> str:
    """The script, for the end of the page's <body>."""
    return f"<script>{SCRIPT}</script>"
