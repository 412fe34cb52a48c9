"""The storage layer: table contract, Parquet files, the published DuckDB file, the shared lake.

Importing the package registers the derived tables next to the fact tables. Imports only `common`.
"""

from warehouse import derived_schema as _derived_schema  # noqa: F401  (registers tables)
