"""One scorer for every CLIP defense: per-image correctness without and with the defense on the same held-out
images, turned into accuracies with Wilson intervals, the share of the typographic loss recovered and the paired
clean loss and typographic gain with bootstrap intervals (paired by image, so the interval is about the defense,
not about which images were drawn). Dyslexify, Defense-Prefix and PAINT are all scored by `score`, so their rows
in `clip defend`'s table mean the same thing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from safeglass.stats import paired_bootstrap, proportion

Correct = tuple[np.ndarray, np.ndarray]  # (clean, typographic) per-image bool


def recovery(clean: float, typo: float, typo_defended: float) -> float | None:
    """Share of the typographic accuracy loss that the defense wins back (None when there was no loss)."""
    loss = clean - typo
    return None if loss <= 0 else (typo_defended - typo) / loss


def points(d: dict[str, float]) -> dict[str, float]:
    """A paired_bootstrap result in accuracy points."""
    return {"delta": round(100 * d["delta"], 2), "ci_low": round(100 * d["ci_low"], 2),
            "ci_high": round(100 * d["ci_high"], 2), "p_value": round(d["p_value"], 4)}


def score(base: Correct, defended: Correct, seed: int = 0, recovered_min: float = 0.5,
          clean_loss_max: float = 1.0) -> dict[str, Any]:
    """Accuracies of the defended model, recovered share, clean loss and the paired intervals."""
    if base[0].shape != defended[0].shape or base[1].shape != defended[1].shape:
        raise ValueError("score: the defended model was scored on other images than the undefended one")
    c0, t0, c1, t1 = (float(x.mean()) for x in (*base, *defended))
    rec = recovery(c0, t0, t1)
    out: dict[str, Any] = {
        "clean": proportion(int(defended[0].sum()), len(defended[0])),
        "typographic": proportion(int(defended[1].sum()), len(defended[1])),
        "recovered": None if rec is None else round(rec, 4),
        "clean_loss_points": round(100 * (c0 - c1), 2),
        "paired": {"clean_loss_points": points(paired_bootstrap(base[0].astype(float), defended[0].astype(float),
                                                                seed=seed)),
                   "typographic_gain_points": points(paired_bootstrap(defended[1].astype(float),
                                                                      base[1].astype(float), seed=seed))},
    }
    out["goal"] = {"recovered_min": recovered_min, "clean_loss_points_max": clean_loss_max,
                   "met": bool(out["recovered"] is not None and out["recovered"] >= recovered_min
                               and out["clean_loss_points"] <= clean_loss_max)}
    return out


def correct_from_features(backend: Any, clean_features: Any, typo_features: Any, class_features: Any,
                          labels: np.ndarray) -> Correct:
    """(clean, typographic) correctness of encoded images against [C, D] class embeddings."""
    from safeglass.clip.zeroshot import logits

    pc = logits(backend, clean_features, class_features).argmax(-1).numpy()
    pt = logits(backend, typo_features, class_features).argmax(-1).numpy()
    return pc == labels, pt == labels
