"""The HTML usage report, rewritten after every run from the published warehouse."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.database import usage_database
from pipelines.report import write_report
from pipelines.resources import Warehouse


@asset(
    group_name="warehouse",
    deps=[usage_database],
    owners=["team:usage-analytics"],
    kinds={"html"},
    description=(
        "`<warehouse>/report/index.html`: one self-contained page with charts per "
        "organization (daily credits, forecast band, budget, top projects, resources against "
        "limits, open alerts). Same as `usage-etl report`."
    ),
)
def usage_report(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
    path = write_report(warehouse.root)
    context.log.info(f"report written to {path}")
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(str(path)),
            "open": MetadataValue.url(path.resolve().as_uri()),
        }
    )
