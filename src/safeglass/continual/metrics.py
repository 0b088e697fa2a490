"""Continual-learning metrics over the accuracy matrix R, where R[i, j] is the accuracy on task j's test set after
training on tasks 0..i (Lopez-Paz & Ranzato 2017; Chaudhry et al. 2018), and the AUROC the analysis uses."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def average_accuracy(r: np.ndarray) -> float:
    """Mean accuracy over all tasks after the last one: mean_j R[T-1, j]."""
    return float(np.mean(r[-1]))


def average_forgetting(r: np.ndarray) -> float:
    """Mean over tasks j < T-1 of max_{i < T-1} R[i, j] - R[T-1, j] (0 for a single task)."""
    t = r.shape[0]
    if t < 2:
        return 0.0
    return float(np.mean([r[: t - 1, j].max() - r[t - 1, j] for j in range(t - 1)]))


def backward_transfer(r: np.ndarray) -> float:
    """Mean over tasks j < T-1 of R[T-1, j] - R[j, j] (negative: forgetting)."""
    t = r.shape[0]
    if t < 2:
        return 0.0
    return float(np.mean([r[t - 1, j] - r[j, j] for j in range(t - 1)]))


def summary(r: np.ndarray) -> dict[str, float]:
    return {"average_accuracy": average_accuracy(r), "average_forgetting": average_forgetting(r),
            "backward_transfer": backward_transfer(r)}


def auroc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """P(a positive scores above a negative), ties counting a half (the Mann-Whitney U statistic / (n+ n-))."""
    pos, neg = np.asarray(positive, float), np.asarray(negative, float)
    if len(pos) == 0 or len(neg) == 0:
        return None
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    i = 0
    while i < len(allv):  # average ranks over ties
        j = i
        while j + 1 < len(allv) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean over seeds with a Student-t interval (the interval is the mean when there is one seed)."""
    from scipy import stats

    v = np.asarray(values, float)
    m = float(v.mean())
    if len(v) < 2:
        return {"mean": m, "ci_low": m, "ci_high": m, "n": int(len(v))}
    half = float(stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return {"mean": m, "ci_low": m - half, "ci_high": m + half, "n": int(len(v))}
