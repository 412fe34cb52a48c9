"""The HTML usage report (`usage-etl report`): `write_report(warehouse)` and `build_report()`.

A directory per warehouse, by default `<warehouse>/report/`: `index.html` (every organization,
the ones at risk first, and every open alert) and `organizations/<id>.html` (one small page per
organization). Offline: no network request, a CSP that forbids them.
"""

from reports.build import REPORT_DIR, REPORT_PATH, build_report, write_report

__all__ = ["REPORT_DIR", "REPORT_PATH", "build_report", "write_report"]
