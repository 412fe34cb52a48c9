"""The top: the Dagster definitions, schedules and sensors, the `usage-etl` CLI and its commands,
demo warehouses, retention and ready-made queries. May import every room; no room imports it."""
