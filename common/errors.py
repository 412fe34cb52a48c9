"""Every exception the project raises on purpose, in one hierarchy.

Only the `UsageEtlError` branch means "the user can fix this by changing their input or
configuration": `usage-etl` prints it as one line and exits 2, before anything starts.
Everything else (the other branches below, a `ValueError` deep inside pandas, a bug) is not a
user error: a failed run or a crash, exit 1, the traceback with `--verbose`.

    Exception
    ├── UsageEtlError             user-facing: one line on stderr, exit 2, nothing was started
    │   ├── InputError            a command-line value is wrong (a date, a format, a count)
    │   ├── ConfigError           a configuration source is wrong
    │   │   ├── SettingsError     an environment variable or setting (common/settings.py)
    │   │   ├── QuotaConfigError  the quota/alert YAML file (insights/quotas.py); also a
    │   │   │                     ValueError
    │   │   ├── LakeConfigError   the shared lake's catalog, data path or credentials
    │   │   │                     (warehouse/lake.py); also a LakeError
    │   │   └── MissingDependencyError  an optional part is not installed (the emulator's
    │   │                         extra): names what to install
    │   ├── WarehouseError        the warehouse directory is missing, not a directory or not
    │   │                         writable, or has no published database yet
    │   ├── ApiUnreachableError   the API host did not answer, or rejected the token, during
    │   │                         the short check made before a run starts
    │   └── QueryError            SQL that DuckDB rejects, or that tries to leave the database
    ├── ApiError                  a request to the API failed for good during a run
    │   └── ApiResponseError      the API answered, but not with the data needed
    ├── DeliveryError             (RuntimeError) a notification could not be sent now; it stays
    │   │                         pending and is retried
    │   └── PermanentDeliveryError  this message cannot be sent as things stand
    ├── LakeError                 the shared lake failed during a run (a write, a commit)
    │   ├── LakeConfigError       (see above)
    │   └── LakeConflictError     other writers kept committing conflicting changes
    ├── SchemaError               (ValueError) a frame does not fit its table's contract
    ├── ManifestError             (RuntimeError) a slice manifest cannot be read
    └── IntegrityError            (RuntimeError) stored slices are missing, unreadable or differ
                                  from their manifest record

Messages name the thing that is wrong and what was expected, and never contain a secret.
The modules that raise these re-export them under their old names (`insights.quotas.
QuotaConfigError`, `warehouse.lake.LakeError`, ...), so either import works. Wherever an error
is shown in one line (the CLI, a run's summary and its console lines), it is
:func:`one_line` of its message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = [
    "SNAPSHOT_REMEDY",
    "ApiError",
    "ApiResponseError",
    "ApiUnreachableError",
    "ConfigError",
    "DeliveryError",
    "InputError",
    "IntegrityError",
    "LakeConfigError",
    "LakeConflictError",
    "LakeError",
    "ManifestError",
    "MissingDependencyError",
    "PermanentDeliveryError",
    "QueryError",
    "QuotaConfigError",
    "SchemaError",
    "SettingsError",
    "UsageEtlError",
    "WarehouseError",
    "one_line",
]


def one_line(text: str) -> str:
    """The line of an error message that says what went wrong: its first meaningful line.

    Messages may go on with context: DuckDB's show the SQL (``LINE 5: ...``) and a caret under
    it, which said nothing on their own (``error: quota_alerts: ^``). A whole traceback's
    meaningful line is its last (the exception)."""
    lines = [line.strip() for line in text.strip().splitlines()]
    lines = [line for line in lines if line and not line.startswith("LINE ") and set(line) != {"^"}]
    if not lines:
        return ""
    if lines[0].startswith("Traceback (most recent call last)"):
        return lines[-1]
    return lines[0]


# ---- user-facing: exit 2 ---------------------------------------------------------------------
class UsageEtlError(Exception):
    """A problem the user can fix; printed as one line, exit status 2, before any run starts."""


class InputError(UsageEtlError):
    """A command-line value is malformed or out of range."""


class ConfigError(UsageEtlError):
    """A configuration source (environment, files) is missing or malformed."""


class SettingsError(ConfigError):
    """A setting is missing or malformed; the message names it."""


class QuotaConfigError(ConfigError, ValueError):
    """The quota file is missing, unreadable or invalid (message is a single line)."""


class MissingDependencyError(ConfigError):
    """An optional part of the project is not installed; the message says what to install."""


class WarehouseError(UsageEtlError):
    """The warehouse directory cannot be used (missing, a file, unwritable, nothing published)."""


class ApiUnreachableError(UsageEtlError):
    """The API host cannot be reached, or rejects the token, in the pre-run check."""


class QueryError(UsageEtlError):
    """SQL that DuckDB rejects, or that tries to read or write outside the warehouse."""


# ---- the API ---------------------------------------------------------------------------------
class ApiError(Exception):
    """A request to the API failed for good; the message is one line, with no secrets.

    `request_stats`: what the client that gave up had sent by then (requests, retries, 429s),
    set when the error leaves the client's context, so a failed run can still say how hard it
    tried (a flaky API from a dead one)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.request_stats: dict[str, int] | None = None


class ApiResponseError(ApiError):
    """The API answered, but not with the data we need."""


# ---- notifications ---------------------------------------------------------------------------
class DeliveryError(RuntimeError):
    """A message could not be delivered now; it stays pending and is retried later.

    ``delivered_to`` names the targets of a multi-target channel (Apprise) that did get the
    message in this attempt, so a retry skips them."""

    def __init__(self, message: str, delivered_to: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.delivered_to = delivered_to


class PermanentDeliveryError(DeliveryError):
    """This message cannot be delivered as things stand (e.g. the organization has no admin to
    e-mail); the channel itself works, so other messages continue. Retried like any failure."""


# ---- the shared lake -------------------------------------------------------------------------
class LakeError(Exception):
    """Something about the lake is wrong; the message names it and holds no secret."""


class LakeConfigError(LakeError, ConfigError):
    """The lake's configuration is malformed or points at something unusable (a user error:
    `usage-etl` reports it as one line, exit 2, before any API request)."""


class LakeConflictError(LakeError):
    """Another writer kept committing conflicting changes; the lake is unchanged by this one."""


# ---- stored data -----------------------------------------------------------------------------
class SchemaError(ValueError):
    """A frame does not fit its table's contract."""


class ManifestError(RuntimeError):
    """A manifest file cannot be read (names the file and what to do)."""


class _DescribedSlice(Protocol):
    def describe(self) -> str: ...


SNAPSHOT_REMEDY = (
    "restore it from a backup, or drop it with `usage-etl prune --drop-damaged` (the API "
    "cannot give a past resource snapshot back)"
)
"""What to do about a damaged or lost `resource_usage` snapshot."""


class IntegrityError(RuntimeError):
    """Stored slices are missing, unreadable or differ from their manifest record."""

    def __init__(self, bad: Sequence[_DescribedSlice], doing: str) -> None:
        self.bad = list(bad)
        listing = "; ".join(b.describe() for b in bad[:10])
        more = f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
        tables = {getattr(b, "table", None) for b in bad}
        remedies = []
        if "resource_usage" in tables:
            remedies.append(f"for a resource_usage snapshot: {SNAPSHOT_REMEDY}")
        if tables - {"resource_usage"}:
            remedies.append(
                "a run re-pulls damaged credit_usage months; restore other files from a "
                "backup, or remove an organization's data on purpose with `usage-etl forget`"
            )
        advice = "; ".join(remedies)
        super().__init__(
            f"{doing}: {len(bad)} damaged slice(s): {listing}{more}. "
            f"{advice[:1].upper()}{advice[1:]}"
        )
