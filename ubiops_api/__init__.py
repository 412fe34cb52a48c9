"""The HTTP client of the UbiOps Organizations API v2.1: requests, retries, pacing under the rate
limit and the typed response models. Imports only `common`."""
