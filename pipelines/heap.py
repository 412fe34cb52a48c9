"""How the garbage collector of a `usage-etl` process is tuned.

A run allocates millions of short-lived objects (API answers, frames, report pages) beside a
start-up heap of ~270,000 long-lived ones (Dagster, pandas, DuckDB and our definitions). With
CPython's default thresholds (700, 10, 10) a 1,000-organization daily refresh made ~1,700
young and ~9 full collections, the full ones traversing the start-up heap each time: ~1.6 s of
a ~15 s run. The console script raises the thresholds (`tune_collector`) and, once the run is
about to start, freezes the start-up heap (`freeze_startup_heap`: it stays in memory for the
process's life anyway, and frozen objects are still freed by reference counting, only not
traversed). Only the console script does this: `main()` called in another program (the tests,
an embedding application) leaves that program's collector as it is.
"""

from __future__ import annotations

import gc

THRESHOLDS = (10_000, 10, 10)
"""Young-generation allocations between collections (700 by default), then as the default."""

_tuned = False


def tune_collector() -> None:
    """Raise the collector's thresholds for this process (the console script's start)."""
    global _tuned
    gc.set_threshold(*THRESHOLDS)
    _tuned = True


def freeze_startup_heap() -> None:
    """Collect once, then move every object alive into the permanent generation, which no
    collection traverses; only in a process `tune_collector` tuned."""
    if _tuned:
        gc.collect()
        gc.freeze()
