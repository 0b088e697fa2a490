"""Patch attribution maps for a CLIP zero-shot prediction: integrated gradients summed over each ViT patch.

The score explained is the scaled similarity of the image embedding to one class's text embedding (the logit the
zero-shot prediction takes the argmax of). Integrated gradients (Sundararajan et al., 2017) integrate the gradient
along the straight path from a baseline to the image and multiply by (image - baseline); summed over each patch's
pixels and channels this gives one number a patch, and the numbers add up to score(image) - score(baseline)
(completeness; `steps` midpoints make the sum exact up to the quadrature error). A patch whose pixels do not reach
the embedding gets 0, and so does a patch equal to the baseline. The baseline is the all-zero model input: every
pixel at the processor's mean colour, a flat grey.

    maps = patch_attribution(backend, images, class_features[targets])   # (N, grid, grid), model-logit units
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def _scores(backend: Any, pixels: Any, text: Any) -> Any:
    """Per image, the scaled similarity of its embedding to its own row of `text`."""
    return backend.logit_scale() * (backend.encode_pixels(pixels) * text).sum(-1)


def patch_attribution(backend: Any, images: np.ndarray, text_features: Any, steps: int = 32,
                      batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(maps (N, G, G), score gaps (N,)): integrated gradients per patch of each image towards its row of
    `text_features` ([N, D] unit-norm class embeddings), and score(image) - score(baseline) that each map sums to
    up to quadrature error. G is the model's patch grid (image_size // patch_size)."""
    import torch

    if steps < 1:
        raise ValueError("patch_attribution: steps must be at least 1")
    x_all = backend.pixels(images)
    text = torch.as_tensor(text_features, dtype=torch.float32)
    p = int(backend.patch_size)
    side = x_all.shape[-1]
    g = side // p
    alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps   # midpoint rule
    maps, gaps = [], []
    for x, t in zip(x_all, text):
        grads = torch.zeros_like(x)
        for i in range(0, steps, batch_size):
            a = alphas[i:i + batch_size].view(-1, 1, 1, 1)
            path = (a * x.unsqueeze(0)).detach().requires_grad_(True)   # baseline 0: path = a * x
            with torch.enable_grad():
                s = _scores(backend, path, t.unsqueeze(0).expand(len(a), -1)).sum()
                (grad,) = torch.autograd.grad(s, path)
            grads += grad.sum(0)
        ig = (x * grads / steps).sum(0)                                   # (side, side)
        ig = ig[:g * p, :g * p].reshape(g, p, g, p).sum((1, 3))
        maps.append(ig.numpy())
        with torch.no_grad():
            both = torch.stack([x, torch.zeros_like(x)])
            sc = _scores(backend, both, t.unsqueeze(0).expand(2, -1))
        gaps.append(float(sc[0] - sc[1]))
    return np.stack(maps), np.array(gaps)


@dataclass(frozen=True)
class Failure:
    """An image the model gets right clean and wrong attacked, with both predictions and the attacked margin."""

    index: int
    label: str
    word: str
    clean_pred: str
    attacked_pred: str
    margin: float      # attacked logit of the wrong prediction minus that of the label


def worst_failures(backend: Any, clean: np.ndarray | None, attacked: np.ndarray, labels: np.ndarray,
                   classes: Sequence[str], words: Sequence[str], templates: Sequence[str], k: int,
                   cache: Any = None) -> list[Failure]:
    """The `k` images right when clean and wrong when attacked with the largest wrong-class margin (`clean` None,
    for sets without clean twins such as RTA-100: the attacked images classified wrong; `clean_pred` is then '')."""
    from safeglass.clip.zeroshot import TextCache, logits

    cache = cache if cache is not None else TextCache()
    cls = cache.class_embeddings(backend, classes, templates)
    la = logits(backend, backend.encode_images(attacked), cls).numpy()
    pa = la.argmax(-1)
    pc = labels if clean is None else logits(backend, backend.encode_images(clean), cls).numpy().argmax(-1)
    rows = np.arange(len(labels))
    margin = la[rows, pa] - la[rows, labels]
    bad = np.flatnonzero((pc == labels) & (pa != labels))
    bad = bad[np.argsort(-margin[bad], kind="stable")][:k]
    return [Failure(int(i), classes[labels[i]], str(words[i]), "" if clean is None else classes[pc[i]],
                    classes[pa[i]], float(margin[i])) for i in bad]
