"""Intervals and paired comparisons for rates."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any


def format_p(p: float | None) -> str:
    """A p-value as tables print it: "< 0.001" below that, 3 decimals below 0.01 (never "0.00"), else 2."""
    if p is None or not math.isfinite(p):
        return "n/a"
    if p < 0.001:
        return "< 0.001"
    return f"{p:.3f}" if p < 0.01 else f"{p:.2f}"


def wilson_interval(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (95 % by default); (0, 1) when n == 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At k = 0 or k = n the bound is exactly 0 or 1; rounding would otherwise leave 1e-17.
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, resamples: int = 2000, seed: int = 0,
                     alpha: float = 0.05) -> dict[str, float]:
    """Difference mean(a) - mean(b) over paired observations, with a percentile bootstrap interval and
    a two-sided bootstrap p-value for "no difference"."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    n = len(a)
    if n == 0:
        return {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0, "n_pairs": 0}
    diffs = [x - y for x, y in zip(a, b)]
    delta = sum(diffs) / n
    rng = random.Random(seed)
    stats = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    lo = stats[int(math.floor(alpha / 2 * resamples))]
    hi = stats[min(resamples - 1, int(math.ceil((1 - alpha / 2) * resamples)) - 1)]
    if all(d == 0 for d in diffs):
        p = 1.0
    else:
        below = sum(1 for s in stats if s <= 0) / resamples
        above = sum(1 for s in stats if s >= 0) / resamples
        p = min(1.0, 2 * min(below, above))
    return {"delta": delta, "ci_low": lo, "ci_high": hi, "p_value": p, "n_pairs": n}


def proportion(k: int, n: int) -> dict[str, Any]:
    """k of n as a rate with its 95 % Wilson interval (``rate`` None when n is 0): how studies write a rate."""
    lo, hi = wilson_interval(k, n)
    return {"rate": k / n if n else None, "ci_low": lo, "ci_high": hi, "k": k, "n": n}
