"""Settings every test shares, applied before any test module imports the Dagster definitions.

The tests' data reach further back than a deployment's default first partition: the report
tests build 24 months of history. `USAGE_PARTITIONS_START` is read when the definitions are
loaded, so it is set here, once, for the whole session (and the processes it starts).
"""

from __future__ import annotations

import os

os.environ.setdefault("USAGE_PARTITIONS_START", "2024-01-01")
