"""Small statistics for simnet metrics: percentiles, rates, CDF points, windowed rates."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def rate(successes: int, total: int) -> float | None:
    """successes/total as a fraction, or None when nothing was attempted."""
    return None if total == 0 else successes / total


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def cdf_points(values: Sequence[float]) -> tuple[list[float], list[float]]:
    """x (sorted values) and y (fraction <= x) for a step CDF plot."""
    ordered = sorted(values)
    n = len(ordered)
    return ordered, [(i + 1) / n for i in range(n)]


def windowed_rate(
    samples: Sequence[tuple[float, bool]], window_s: float
) -> list[tuple[float, float, int]]:
    """(window start, success fraction, count) for samples of (time, success)."""
    if window_s <= 0:
        raise ValueError("window_s must be positive")
    buckets: dict[int, list[bool]] = {}
    for at, ok in samples:
        buckets.setdefault(int(at // window_s), []).append(ok)
    return [
        (index * window_s, sum(oks) / len(oks), len(oks)) for index, oks in sorted(buckets.items())
    ]
