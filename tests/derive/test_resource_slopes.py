"""Resource growth rates (`quota_status.daily_rate` of resource rows): the one-pass slopes over
every organization's recent observations equal a least-squares line fitted to each one."""

from __future__ import annotations

import importlib

import numpy as np

quota_status_module = importlib.import_module("insights.quota_status")


def test_segment_slopes_equal_a_fitted_line_per_organization() -> None:
    rng = np.random.default_rng(7)
    sizes = rng.integers(1, 40, size=300)
    x = np.concatenate([np.sort(rng.uniform(-30.0, 0.0, n)) for n in sizes])
    y = np.round(rng.uniform(0, 50, len(x)) + 3.0 * x)
    ends = np.cumsum(sizes)
    starts = ends - sizes
    firsts = [int(s + rng.integers(0, n)) for s, n in zip(starts, sizes, strict=True)]
    y[firsts[5] : ends[5]] = 12.0  # a count that never changed
    x[firsts[6] : ends[6]] = -1.5  # observations all at one instant: no line
    slopes = quota_status_module._segment_slopes(x, y, firsts, ends.tolist())
    for i, (first, end) in enumerate(zip(firsts, ends, strict=True)):
        xs, ys = x[first:end], y[first:end]
        if len(xs) < 2 or np.ptp(xs) < quota_status_module.MIN_SLOPE_SPAN_DAYS:
            assert np.isnan(slopes[i])
        else:
            assert np.isclose(slopes[i], np.polyfit(xs, ys, 1)[0], rtol=1e-9, atol=1e-9)
    assert slopes[5] == 0.0 or ends[5] - firsts[5] < 2
    assert np.isnan(slopes[6])
    hours = quota_status_module._segment_slopes(
        np.array([-0.5, -0.25, 0.0]), np.array([3.0, 4.0, 5.0]), [0], [3]
    )
    assert np.isnan(hours[0]), "half a day of snapshots gives no pace per day"
    day = quota_status_module._segment_slopes(np.array([-1.0, 0.0]), np.array([3.0, 5.0]), [0], [2])
    assert day[0] == 2.0
    assert np.isfinite(slopes).sum() > 200


def test_days_of_data_counts_days_observed_not_snapshots(tmp_path) -> None:
    """Three runs in one day and one the next: two days of data (`quota_status.days_of_data`
    of a resource row), whether the snapshots' manifest says it or the files are scanned."""
    from datetime import datetime

    import pandas as pd

    from insights.usage_window import _resource_window_scanning, load_resource_window
    from warehouse.parquet_store import ParquetStore
    from warehouse.schema import RESOURCE_USAGE

    store = ParquetStore(tmp_path)
    times = [datetime(2026, 11, 27, h, 5) for h in (6, 12, 18)] + [datetime(2026, 11, 28, 6)]
    for observed_at in times:
        frame = pd.DataFrame(
            {"organization_id": ["org-a"], "observed_at": [observed_at], "projects": [2]}
        )
        partition = {"observed_date": observed_at.date().isoformat()}
        store.append_file(RESOURCE_USAGE, partition, f"s-{observed_at:%d%H}.parquet", frame)
    assert store.manifest(RESOURCE_USAGE).exists
    as_of = datetime(2026, 11, 28)
    for window in (load_resource_window(store, as_of), _resource_window_scanning(store, as_of)):
        assert window.counts == {"org-a": 2}
        assert len(window.observations) == 4
