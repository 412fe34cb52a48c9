"""The project's own user-facing errors: what `usage-etl` reports as one line with exit status 2.

Only exceptions of this hierarchy mean "the user can fix this by changing their input or
configuration"; anything else (a `ValueError` deep inside pandas, a bug, a failed run) is not a
user error and exits 1 (a traceback only with `--verbose`).

    UsageEtlError                 base class: one line on stderr, exit 2, nothing was started
    ├── InputError                a command-line value is wrong (a date, a format, a count)
    ├── ConfigError               a configuration source is wrong
    │   ├── SettingsError         an environment variable or setting (pipelines/settings.py)
    │   └── QuotaConfigError      the quota/alert YAML file (pipelines/quotas.py)
    ├── WarehouseError            the warehouse directory is missing, not a directory or
    │                             not writable, or has no published database yet
    ├── ApiUnreachableError       the API host did not answer, or rejected the token, during
    │                             the short check made before a run starts
    └── QueryError                SQL that DuckDB rejects, or that tries to leave the database

Messages name the thing that is wrong and what was expected, and never contain a secret.
"""

from __future__ import annotations


class UsageEtlError(Exception):
    """A problem the user can fix; printed as one line, exit status 2, before any run starts."""


class InputError(UsageEtlError):
    """A command-line value is malformed or out of range."""


class ConfigError(UsageEtlError):
    """A configuration source (environment, files) is missing or malformed."""


class WarehouseError(UsageEtlError):
    """The warehouse directory cannot be used (missing, a file, unwritable, nothing published)."""


class ApiUnreachableError(UsageEtlError):
    """The API host cannot be reached, or rejects the token, in the pre-run check."""


class QueryError(UsageEtlError):
    """SQL that DuckDB rejects, or that tries to read or write outside the warehouse."""
