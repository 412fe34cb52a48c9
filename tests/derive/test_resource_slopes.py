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
        if len(xs) < 2 or np.ptp(xs) == 0:
            assert np.isnan(slopes[i])
        else:
            assert np.isclose(slopes[i], np.polyfit(xs, ys, 1)[0], rtol=1e-9, atol=1e-9)
    assert slopes[5] == 0.0 or ends[5] - firsts[5] < 2
    assert np.isnan(slopes[6])
    assert np.isfinite(slopes).sum() > 200
