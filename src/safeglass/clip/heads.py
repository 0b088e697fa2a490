"""Attention heads of a CLIP-style vision tower: how much each reads the written word, and switching heads off.

`typographic_scores` is Dyslexify's per-head score: the class token's attention mass on the patches under the
written word (the attack's recorded box), averaged over attacked images. Attention is recomputed from each layer's
own query and key projections in a forward pre-hook, so it does not depend on which attention kernel transformers
runs. A model without a class token (SigLIP pools with an attention head) is scored by the mean over all query
positions.

`ablate` zeroes the chosen heads' contribution to the class token (to every position without one) before each
layer's output projection, as Dyslexify does; it is a context manager that removes its hooks in `finally`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

Head = tuple[int, int]  # (layer, head)


def _layers(backend: Any) -> list[Any]:
    return list(backend.vision_model.encoder.layers)


def _hidden(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[0] if args else kwargs["hidden_states"]


def text_patches(boxes: Sequence[tuple[int, int, int, int]], image_size: int, patch_size: int) -> np.ndarray:
    """[N, P] bool: the patches (row-major) that overlap each image's word box."""
    g = image_size // patch_size
    out = np.zeros((len(boxes), g * g), bool)
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        rows = range(max(0, y0 // patch_size), min(g, (y1 - 1) // patch_size + 1))
        cols = range(max(0, x0 // patch_size), min(g, (x1 - 1) // patch_size + 1))
        for r in rows:
            out[i, r * g:(r * g) + g][list(cols)] = True
    return out


def query_attention(backend: Any, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """[N, L, H, T] attention of the class token (or the mean query without one) over the T tokens."""
    import torch

    layers = _layers(backend)
    got: dict[int, Any] = {}

    def hook(i: int, attn: Any) -> Any:
        def pre(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            h = _hidden(args, kwargs)
            b, t, _ = h.shape
            nh, hd = attn.num_heads, attn.head_dim
            k = attn.k_proj(h).view(b, t, nh, hd)
            if backend.has_class_token:
                q = attn.q_proj(h[:, :1]).view(b, 1, nh, hd)
            else:
                q = attn.q_proj(h).view(b, t, nh, hd)
            a = torch.einsum("bqhd,bkhd->bhqk", q, k).mul(attn.scale).softmax(-1).mean(2)   # [B, H, T]
            got[i] = a
        return pre

    out = []
    with torch.inference_mode():
        for s in range(0, len(images), batch_size):
            handles = [layer.self_attn.register_forward_pre_hook(hook(i, layer.self_attn), with_kwargs=True)
                       for i, layer in enumerate(layers)]
            try:
                backend.vision_model(pixel_values=backend.pixels(images[s:s + batch_size]))
            finally:
                for h in handles:
                    h.remove()
            out.append(torch.stack([got[i] for i in range(len(layers))], 1).numpy())
            got.clear()
    return np.concatenate(out)


def typographic_scores(backend: Any, images: np.ndarray, boxes: Sequence[tuple[int, int, int, int]]) -> np.ndarray:
    """[L, H]: the mean attention mass that each head's class token puts on the word's patches."""
    attn = query_attention(backend, images)                        # [N, L, H, T]
    mask = text_patches(boxes, backend.image_size, backend.patch_size)
    offset = attn.shape[-1] - mask.shape[1]                        # the class token comes first in CLIP
    on_text = (attn[..., offset:] * mask[:, None, None, :]).sum(-1)
    return on_text.mean(0)


def ranked(scores: np.ndarray) -> list[Head]:
    """Heads from the highest score down (ties in layer, head order)."""
    order = np.argsort(-scores.ravel(), kind="stable")
    return [(int(i // scores.shape[1]), int(i % scores.shape[1])) for i in order]


@contextlib.contextmanager
def ablate(backend: Any, heads: Sequence[Head]) -> Iterator[None]:
    """Within the block, the given heads add nothing to the class token (every position without one)."""
    layers = _layers(backend)
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        if not (0 <= layer < len(layers) and 0 <= head < layers[layer].self_attn.num_heads):
            raise ValueError(f"ablate: no head {head} in layer {layer} (the tower has {len(layers)} layers of "
                             f"{layers[0].self_attn.num_heads} heads)")
        by_layer.setdefault(layer, []).append(head)

    def pre(hs: list[int], hd: int) -> Any:
        def zero(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
            x = args[0].clone()
            pos = slice(0, 1) if backend.has_class_token else slice(None)
            for h in hs:
                x[:, pos, h * hd:(h + 1) * hd] = 0
            return (x, *args[1:])
        return zero

    handles = []
    try:
        for layer, hs in by_layer.items():
            attn = layers[layer].self_attn
            handles.append(attn.out_proj.register_forward_pre_hook(pre(hs, attn.head_dim)))
        yield
    finally:
        for h in handles:
            h.remove()
