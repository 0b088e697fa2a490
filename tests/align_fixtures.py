"""A tiny random llama taught to refuse (so there is an alignment to unlearn), shared by the align tests."""

from __future__ import annotations

import copy
import functools
from typing import Any

SPEC = {"forget_n": 8, "retain_n": 4, "heldout_n": 4, "lookalikes_n": 2, "fluency_n": 2, "max_prompt_chars": 50,
        "answer_tokens": 8}


@functools.lru_cache(maxsize=1)
def _aligned() -> tuple[Any, Any, Any]:
    from safeglass.align.audit import prealign
    from safeglass.align.config import parse_align_config
    from safeglass.align.data import build_data
    from safeglass.targets.tiny import tiny_model_and_processor

    model, tok = tiny_model_and_processor("llama", seed=0)
    data = build_data(model, tok, SPEC, 0, say=lambda s: None)
    cfg = parse_align_config({"model": {"tiny": "llama"}, "prealign": {"steps": 50, "lr": 0.003}})
    return prealign(model, tok, cfg, data, lambda s: None), tok, data


def aligned_tiny() -> tuple[Any, Any, Any]:
    """(a fresh copy of the refusing tiny model, its tokenizer, the AlignData it was taught on)."""
    model, tok, data = _aligned()
    return copy.deepcopy(model), tok, data
