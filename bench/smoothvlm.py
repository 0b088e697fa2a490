"""SmoothVLM's cost: N copies answered in one batched call against the same N copies answered one call each."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

COPIES = 8
NEW_TOKENS = 32
BATCH = 8  # the VLM targets' default batch size


def smoothvlm_batching(n: int = 2) -> Iterator[dict[str, Any]]:
    """SafeSmol-VL on `n` ShapeWorld scenes (its own world), N = 8 masked copies each: the defense's time (copies,
    one generate call per chunk, the vote) over the time of answering the same copies one call each. Best of 2
    each, interleaved, after a warm-up: the machine's other load hits both sides alike."""
    from safeglass.data.shapeworld.tasks import load_shapeworld_vqa
    from safeglass.defenses.context import DefenseContext
    from safeglass.defenses.smoothvlm import SmoothVLM
    from safeglass.eval.runner import build_component
    from safeglass.registry import registry
    from safeglass.types import GenerationParams

    target = registry("targets").build("safesmol-vl", batch_size=BATCH)
    samples = load_shapeworld_vqa(n=n, seed=0, world="shapeclip").samples[:n]
    params = GenerationParams(max_new_tokens=NEW_TOKENS)
    defense = SmoothVLM(copies=COPIES)
    defense.setup(DefenseContext(target, build_component))
    copies = [c for s in samples for c in defense.copies_of(s, params.seed)]  # the very copies the defense sends
    target.generate(copies[:1], GenerationParams(max_new_tokens=4))  # warm-up

    def smoothed() -> float:
        defense.ctx.begin(samples)
        t0 = time.perf_counter()
        defense.generate(target, samples, params)
        return time.perf_counter() - t0

    def separate() -> float:
        t0 = time.perf_counter()
        for c in copies:
            target.generate([c], params)
        return time.perf_counter() - t0

    smooth_t, separate_t = [], []
    for _ in range(2):
        smooth_t.append(smoothed())
        separate_t.append(separate())
    yield {"bench": "smoothvlm N copies / N answers", "figure": min(smooth_t) / min(separate_t), "unit": "x",
           "goal": "<= 0.6", "note": f"SafeSmol-VL, {len(samples)} ShapeWorld scenes x N = {COPIES} masked copies, "
                                     f"batch {BATCH}, {NEW_TOKENS} new tokens; best of 2: smoothvlm "
                                     f"{min(smooth_t):.1f} s, one call a copy {min(separate_t):.1f} s"}
