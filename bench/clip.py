"""CLIP suite speed (issue 19's goals): zero-shot classification against a bare transformers loop on the same model
and images, and typographic rendering at 224 px on one core."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np


def _best(fn: Any, repeats: int = 3) -> float:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


def classification_throughput(n: int = 32) -> Iterator[dict[str, Any]]:
    """ShapeCLIP on `n` x 40 ShapeWorld images (64 px), batches of 256: the backend's encode + zero-shot argmax
    against the bare loop (processor, get_image_features, normalise, argmax), best of 3 each."""
    import torch

    from safeglass.clip import backends, images, zeroshot

    b = backends.load_shapeclip()
    d = images.shapeworld(max(1, n) * 40, seed=0, image_size=b.image_size)
    cache = zeroshot.TextCache()
    classes, templates = list(d.classes), ["a photo of a {}"]
    text = cache.class_embeddings(b, classes, templates)

    def ours() -> np.ndarray:
        return zeroshot.predict(b, d.images, classes, templates, cache)

    def bare() -> np.ndarray:
        preds = []
        with torch.no_grad():
            for i in range(0, len(d.images), 256):
                px = b.processor(images=list(d.images[i:i + 256]), return_tensors="pt")["pixel_values"]
                f = backends._features(b.model.get_image_features(pixel_values=px))
                f = f / f.norm(dim=-1, keepdim=True)
                preds.append((f @ text.T).argmax(-1).numpy())
        return np.concatenate(preds)

    if not np.array_equal(ours(), bare()):
        raise AssertionError("clip bench: the backend and the bare loop disagree on predictions")
    t_ours, t_bare = _best(ours), _best(bare)
    yield {"bench": "clip zero-shot vs bare HF loop", "figure": t_bare / t_ours, "unit": "x", "goal": ">= 1.0",
           "note": f"ShapeCLIP, {len(d.images)} images of 64 px: {len(d.images) / t_ours:.0f} img/s against "
                   f"{len(d.images) / t_bare:.0f} img/s bare ({torch.get_num_threads()} torch threads)"}


def typographic_rendering(n: int = 32) -> Iterator[dict[str, Any]]:
    """`n` x 20 attacked images at 224 px (a wrong class word on a ShapeWorld scene, a fifth on post-its), pinned
    to one core; the clean scenes are rendered before the clock starts."""
    from safeglass.clip import images, typography

    d = images.shapeworld(max(1, n) * 20, seed=0, image_size=224)
    pinned = hasattr(os, "sched_setaffinity")
    before = os.sched_getaffinity(0) if pinned else None
    if pinned:
        os.sched_setaffinity(0, {min(before)})
    try:
        half = len(d.labels) // 5

        def run() -> None:
            typography.attack_set(d.images[half:], d.labels[half:], d.classes, typography.TypoSpec(), 0,
                                  d.scenes[half:])
            typography.attack_set(d.images[:half], d.labels[:half], d.classes, typography.TypoSpec(postit=True), 0,
                                  d.scenes[:half])

        t = _best(run)
    finally:
        if pinned:
            os.sched_setaffinity(0, before)
    yield {"bench": "clip typographic rendering, 1 core", "figure": len(d.labels) / t, "unit": "img/s",
           "goal": ">= 300", "note": f"{len(d.labels)} images of 224 px, best of 3"
                                     + ("" if pinned else "; not pinned (no sched_setaffinity)")}


BENCHES = {"clip-classify": classification_throughput, "clip-typo": typographic_rendering}
