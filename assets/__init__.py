"""The Dagster assets (extraction, derived tables, alerts, the published database, the report) and
the resources they are given (`assets/resources.py`). The wiring layer: imports every room below
it, never `pipelines`; `pipelines/definitions.py` loads the whole package."""
