"""Fault injection state: which of the next API requests misbehave, and how.

Owns the counters. Each count means "the next N API requests get this fault"; a request takes at
most one of the exclusive faults, checked in this order: ``drop_connections`` (connection closed
without a response), ``errors_5xx`` (500, 502, 503 in turn), ``burst_429`` (429 with
``Retry-After: 1``), ``malformed_json`` (200 with a truncated JSON body). ``slow_count`` requests
are additionally delayed by ``slow_ms``. ``deleted_projects_key`` changes the usage response's
deleted-projects key (e.g. to the prose spelling ``data_projects_deleted``) until reset.
All off by default. ``/status`` and ``/_emulator/*`` are never faulted.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, fields
from typing import Any

DEFAULT_DELETED_KEY = "data_deleted_projects"
ERROR_STATUSES: tuple[int, ...] = (500, 502, 503)


@dataclass
class FaultConfig:
    """Fault counters (the JSON accepted by ``POST /_emulator/faults``)."""

    burst_429: int = 0
    errors_5xx: int = 0
    slow_ms: int = 0
    slow_count: int = 0
    drop_connections: int = 0
    malformed_json: int = 0
    deleted_projects_key: str = DEFAULT_DELETED_KEY

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultConfig:
        """Validate a dict of fault settings (unknown keys or bad types raise ``ValueError``)."""
        known = {f.name: f for f in fields(cls)}
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key == "deleted_projects_key":
                if not isinstance(value, str) or not value:
                    raise ValueError("deleted_projects_key must be a non-empty string")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{key} must be a non-negative integer")
            values[key] = value
        return cls(**values)


@dataclass(frozen=True)
class Fault:
    """The fault chosen for one request."""

    kind: str  # "drop", "error", "429", "malformed" or "" (none)
    status: int = 200
    delay_s: float = 0.0


class Faults:
    """Thread-safe fault counters consumed request by request."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self._config = FaultConfig()
        self._errors_sent = 0
        if config is not None:
            self.set(config)

    def set(self, config: FaultConfig | dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Merge settings in (only the given keys change)."""
        data: dict[str, Any] = {}
        if isinstance(config, FaultConfig):
            data.update({k: v for k, v in asdict(config).items() if v != getattr(FaultConfig(), k)})
        elif isinstance(config, dict):
            data.update(config)
        data.update(kwargs)
        parsed = FaultConfig.from_dict(data)
        with self._lock:
            for key in data:
                setattr(self._config, key, getattr(parsed, key))

    def reset(self) -> None:
        """Everything off."""
        with self._lock:
            self._config = FaultConfig()
            self._errors_sent = 0

    def snapshot(self) -> dict[str, Any]:
        """Current settings and remaining counts."""
        with self._lock:
            return asdict(self._config)

    @property
    def deleted_key(self) -> str:
        """Key under which usage responses carry deleted projects' usage."""
        with self._lock:
            return self._config.deleted_projects_key

    def take(self) -> Fault:
        """Consume and return the fault for the next API request."""
        with self._lock:
            c = self._config
            delay = 0.0
            if c.slow_count > 0:
                c.slow_count -= 1
                delay = c.slow_ms / 1000.0
            if c.drop_connections > 0:
                c.drop_connections -= 1
                return Fault("drop", 0, delay)
            if c.errors_5xx > 0:
                c.errors_5xx -= 1
                status = ERROR_STATUSES[self._errors_sent % len(ERROR_STATUSES)]
                self._errors_sent += 1
                return Fault("error", status, delay)
            if c.burst_429 > 0:
                c.burst_429 -= 1
                return Fault("429", 429, delay)
            if c.malformed_json > 0:
                c.malformed_json -= 1
                return Fault("malformed", 200, delay)
            return Fault("", 200, delay)
