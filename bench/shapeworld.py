"""ShapeWorld generation speed on one core: scenes sampled, rendered and given their masks, per second."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

SIZE = 64


def _rate(n_images: int, config: dict[str, Any], seed: int) -> tuple[float, float]:
    """(images per second with a cold cache, best of 3 with a warm one)."""
    from safeglass.data.shapeworld import render as R
    from safeglass.data.shapeworld.world import sample_batch

    R.clear_caches()
    t0 = time.perf_counter()
    sample_batch(n_images, np.random.default_rng(seed), config, SIZE, masks=True)
    cold = n_images / (time.perf_counter() - t0)
    warm = []
    for k in range(3):  # fresh scenes each time: a warm cache, not a replay of the same images
        t0 = time.perf_counter()
        sample_batch(n_images, np.random.default_rng(seed + 1 + k), config, SIZE, masks=True)
        warm.append(n_images / (time.perf_counter() - t0))
    return cold, max(warm)


def shapeworld_speed(n: int = 32) -> Iterator[dict[str, Any]]:
    """`n` hundred images per setting, 64 px, ground-truth masks included, pinned to one CPU core."""
    n_images = max(1, n) * 100
    pinned = hasattr(os, "sched_setaffinity")
    before = os.sched_getaffinity(0) if pinned else None
    if pinned:
        os.sched_setaffinity(0, {min(before)})
    try:
        settings = [("no text", {"p_text": 0.0}), ("text on every image", {"p_text": 1.0, "p_postit": 0.3}),
                    ("default world", {})]
        for name, cfg in settings:
            cold, warm = _rate(n_images, cfg, seed=len(name))
            yield {"bench": f"shapeworld img/s, 1 core ({name})", "figure": warm, "unit": "img/s", "goal": ">= 2000",
                   "note": f"{n_images} images of {SIZE} px with masks, best of 3 warm; cold cache {cold:.0f} img/s"
                           + ("" if pinned else "; not pinned (no sched_setaffinity)")}
    finally:
        if pinned:
            os.sched_setaffinity(0, before)


BENCHES = {"shapeworld": shapeworld_speed}
