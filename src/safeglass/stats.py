"""Intervals and paired comparisons for rates."""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np


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
    diffs = np.asarray([x - y for x, y in zip(a, b)], dtype=np.float64)
    delta = float(sum(diffs.tolist()) / n)
    stats = np.sort(np.concatenate([diffs[rows].sum(axis=1) / n for rows in _resamples(n, seed, resamples)]))
    lo = float(stats[int(math.floor(alpha / 2 * resamples))])
    hi = float(stats[min(resamples - 1, int(math.ceil((1 - alpha / 2) * resamples)) - 1)])
    if not diffs.any():
        p = 1.0
    else:
        below = int((stats <= 0).sum()) / resamples
        above = int((stats >= 0).sum()) / resamples
        p = min(1.0, 2 * min(below, above))
    return {"delta": delta, "ci_low": lo, "ci_high": hi, "p_value": p, "n_pairs": n}


# Indices are drawn exactly as they always were (random.Random(seed).randrange(n), n draws a resample, resample after
# resample), so every stored interval and p-value stays what it was; only the sums moved to numpy. The draws depend
# on (n, seed, resamples) alone, and a summary asks for the same few n hundreds of times (the demo: 708 comparisons,
# 12 s of Python before), so small ones are kept. On 0/1 outcomes, as rates are, numpy's sums are exact, as Python's
# were.
_CACHE_MAX_DRAWS = 2_000_000  # int32 indices: 8 MB at most per cached (n, seed, resamples)


@functools.lru_cache(maxsize=32)
def _cached_draws(n: int, seed: int, resamples: int) -> np.ndarray:
    rng = random.Random(seed)
    draws = np.fromiter((rng.randrange(n) for _ in range(n * resamples)), dtype=np.int32, count=n * resamples)
    draws.flags.writeable = False
    return draws.reshape(resamples, n)


def _resamples(n: int, seed: int, resamples: int):
    """Blocks of resampled index rows, [k, n] each, in the order the draws were made."""
    if n * resamples <= _CACHE_MAX_DRAWS:
        yield _cached_draws(n, seed, resamples)
        return
    rng = random.Random(seed)
    block = max(1, _CACHE_MAX_DRAWS // n)
    for start in range(0, resamples, block):
        k = min(block, resamples - start)
        yield np.fromiter((rng.randrange(n) for _ in range(n * k)), dtype=np.int64, count=n * k).reshape(k, n)


def proportion(k: int, n: int) -> dict[str, Any]:
    """k of n as a rate with its 95 % Wilson interval (``rate`` None when n is 0): how studies write a rate."""
    lo, hi = wilson_interval(k, n)
    return {"rate": k / n if n else None, "ci_low": lo, "ci_high": hi, "k": k, "n": n}
