"""Dyslexify's greedy head ablation (Hufe et al., 2025; lowlorenz/dyslexify): switch off the heads that carry the
typographic circuit, fitted on one split and scored on another.

Heads are tried in the order of their typographic score (`heads.typographic_scores` on the fitting split's
attacked images). A head joins the kept set only if, with it and the heads kept so far ablated, typographic
accuracy on the fitting split rises by more than `min_gain`; the search stops when clean accuracy has fallen by
more than `max_clean_drop` below the unablated model's (that trial is not kept), or after `patience` heads in a
row without gain. Every trial is recorded, so the kept set can be checked against the gains that chose it.
One TextCache serves every trial: an ablation changes only the image tower, so the class embeddings stay valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from safeglass.clip.heads import Head, ablate, ranked
from safeglass.clip.scoring import recovery  # noqa: F401  (re-exported: it lived here first)
from safeglass.clip.zeroshot import TextCache, predict


@dataclass(frozen=True)
class GreedySettings:
    max_clean_drop: float = 0.01   # a share: 1 point
    min_gain: float = 0.001        # Dyslexify's threshold
    patience: int = 10             # heads in a row without gain


def correct(backend: Any, clean: np.ndarray, attacked: np.ndarray, labels: np.ndarray, classes: Sequence[str],
            templates: Sequence[str], cache: TextCache, heads: Sequence[Head] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(clean, typographic) per-image correctness with `heads` ablated."""
    with ablate(backend, heads):
        pc = predict(backend, clean, classes, templates, cache)
        pt = predict(backend, attacked, classes, templates, cache)
    return pc == labels, pt == labels


def accuracies(backend: Any, clean: np.ndarray, attacked: np.ndarray, labels: np.ndarray, classes: Sequence[str],
               templates: Sequence[str], cache: TextCache, heads: Sequence[Head] = ()) -> tuple[float, float]:
    """(clean accuracy, typographic accuracy) with `heads` ablated."""
    c, t = correct(backend, clean, attacked, labels, classes, templates, cache, heads)
    return float(c.mean()), float(t.mean())


def greedy(backend: Any, scores: np.ndarray, clean: np.ndarray, attacked: np.ndarray, labels: np.ndarray,
           classes: Sequence[str], templates: Sequence[str], cache: TextCache,
           settings: GreedySettings = GreedySettings()) -> dict[str, Any]:
    """The kept heads and the trace of every trial on the fitting split."""
    base_clean, base_typo = accuracies(backend, clean, attacked, labels, classes, templates, cache)
    kept: list[Head] = []
    best = base_typo
    trials: list[dict[str, Any]] = []
    stop = "exhausted"
    idle = 0
    for layer, head in ranked(scores):
        c, t = accuracies(backend, clean, attacked, labels, classes, templates, cache, [*kept, (layer, head)])
        trial = {"head": [layer, head], "score": round(float(scores[layer, head]), 5), "clean": round(c, 4),
                 "typographic": round(t, 4), "gain": round(t - best, 4), "kept": False}
        trials.append(trial)
        if base_clean - c > settings.max_clean_drop:
            stop = "clean accuracy fell"
            break
        if t - best > settings.min_gain:
            kept.append((layer, head))
            best = t
            trial["kept"] = True
            idle = 0
        else:
            idle += 1
            if idle >= settings.patience:
                stop = "patience"
                break
    return {"kept": [list(h) for h in kept], "fit_clean": round(base_clean, 4), "fit_typographic": round(base_typo, 4),
            "fit_typographic_ablated": round(best, 4), "trials": trials, "stopped": stop,
            "settings": {"max_clean_drop": settings.max_clean_drop, "min_gain": settings.min_gain,
                         "patience": settings.patience}}
