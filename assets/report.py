"""The HTML usage report, rewritten after every run from the published warehouse."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.database import usage_database
from assets.resources import Warehouse
from reports import write_report


@asset(
    group_name="warehouse",
    deps=[usage_database],
    owners=["team:usage-analytics"],
    kinds={"html"},
    description=(
        "`<warehouse>/report/`: `index.html` (every organization, the ones at risk first, with "
        "filters and CSV export, and every open alert) plus `organizations/<id>.html` per "
        "organization (current period against budget and forecast, credits by project per day "
        "for the last six weeks and per subscription period over the whole history, projects "
        "of the last six periods, resources against limits, open alerts). Offline. Same as "
        "`usage-etl report`."
    ),
)
def usage_report(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
    path = write_report(warehouse.root, lake=warehouse.lake_config())
    pages = sum(1 for _ in path.parent.rglob("*.html"))
    size = sum(p.stat().st_size for p in path.parent.rglob("*.html"))
    context.log.info(f"report written to {path.parent} ({pages} pages)")
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(str(path)),
            "open": MetadataValue.url(path.resolve().as_uri()),
            "pages": MetadataValue.int(pages),
            "index_bytes": MetadataValue.int(path.stat().st_size),
            "total_bytes": MetadataValue.int(size),
        }
    )
