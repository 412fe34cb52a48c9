"""Extraction: API responses into tidy frames shaped like the warehouse tables (the endpoint table,
the fan-out over organizations, normalization, data-quality findings). Imports `common`,
`ubiops_api` and `warehouse` (the table contract); knows nothing of Dagster."""
