"""How a run talks to the terminal: one short line per event, tracebacks only when asked.

`short_console_logger` is the code location's `console` logger (used by `usage-etl run`, `dg
launch` and runs started from the UI alike). A line is `HH:MM:SS <run id, 8 chars> <step>:
<message>`; Dagster's own step failures, which carry a full stack trace, are shown as the
exception's meaningful line only (`common.errors.one_line`), unless the logger's `verbose`
config is true (`usage-etl --verbose` sets it in the run's configuration; in the UI or `dg
launch`: `loggers.console.config.verbose: true`). The full trace is always in Dagster's event
log.

One root cause is one line: the ERROR line Dagster logs for every step it does not execute
because a dependency failed (`Dependencies for step ... Not executing.`) is not shown, and the
run's failure line, which would repeat the failed step's error, says how many steps were not
executed instead (`verbose` shows Dagster's lines as they are).
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import datetime

from dagster import Field, InitLoggerContext, logger

from common.errors import one_line

_META = "dagster_meta"
# Dagster's message for a step left out because a dependency failed or was itself left out
# (dagster/_core/execution/plan/active.py; a plain log line, no event of its own)
_NOT_EXECUTED = re.compile(r"Dependencies for step \S+ .*\. Not executing\.")


def short_error(text: str) -> str:
    """The meaningful line of an error text (`common.errors.one_line`)."""
    return one_line(text) or "failed"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time (tests capture it; pipes close)."""

    _usage_etl = True

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(self.formatter, ShortFormatter) and self.formatter.swallows(record):
            return
        super().emit(record)


class ShortFormatter(logging.Formatter):
    """`22:06:43 7fe7efda credit_usage_daily: 12/12 done` instead of Dagster's long format;
    `verbose`: whole messages and full traces."""

    def __init__(self, verbose: bool = False) -> None:
        super().__init__()
        self.verbose = verbose
        self.not_executed = 0  # steps left out because a dependency failed (one formatter a run)

    def swallows(self, record: logging.LogRecord) -> bool:
        """Whether `record` is a step-not-executed line, counted instead of shown."""
        meta = getattr(record, _META, None) or {}
        if self.verbose or meta.get("dagster_event") is not None:
            return False
        if not _NOT_EXECUTED.fullmatch(str(meta.get("orig_message", record.getMessage()))):
            return False
        self.not_executed += 1
        return True

    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, _META, None) or {}
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        run_id = (meta.get("run_id") or "")[:8]
        step = meta.get("step_key") or meta.get("job_name") or "run"
        message = meta.get("orig_message", record.getMessage())
        event = meta.get("dagster_event")
        data = getattr(event, "event_specific_data", None)
        error = getattr(data, "error", None)
        first_failure = getattr(data, "first_step_failure_event", None)
        if first_failure is not None and not self.verbose:  # the run failed as a step did
            message = f"failed: step {first_failure.step_key} failed (above)"
            if self.not_executed:
                message += f"; {self.not_executed} downstream step(s) not executed"
        elif error is not None:
            cause = error.cause or error
            detail = cause.to_string() if self.verbose else short_error(cause.message)
            message = f"{message} {detail}" if self.verbose else f"failed: {detail}"
        elif not self.verbose:
            message = message.strip().splitlines()[0] if message.strip() else message
        level = "" if record.levelno < logging.WARNING else f"{record.levelname} "
        return f"{stamp} {run_id} {step}: {level}{message}".rstrip()


@logger(
    config_schema={
        "log_level": Field(str, is_required=False, default_value="INFO"),
        "name": Field(str, is_required=False, default_value="usage_etl"),
        "verbose": Field(bool, is_required=False, default_value=False),
    },
    description="One short line per event on stderr (whole messages and traces with verbose).",
)
def short_console_logger(init_context: InitLoggerContext) -> logging.Logger:
    level = logging.getLevelName(str(init_context.logger_config["log_level"]).upper())
    out = logging.getLogger(f"{init_context.logger_config['name']}.console")
    out.setLevel(level if isinstance(level, int) else logging.INFO)
    out.propagate = False
    handler = next((h for h in out.handlers if getattr(h, "_usage_etl", False)), None)
    if handler is None:
        handler = _StderrHandler()
        out.addHandler(handler)
    handler.setFormatter(ShortFormatter(bool(init_context.logger_config["verbose"])))
    return out
