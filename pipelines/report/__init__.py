"""The HTML usage report (`usage-etl report`): `build_report(warehouse)` and `write_report()`.

One self-contained file per warehouse, by default `<warehouse>/report/index.html`.
"""

from pipelines.report.build import REPORT_PATH, build_report, write_report

__all__ = ["REPORT_PATH", "build_report", "write_report"]
