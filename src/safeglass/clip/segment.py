"""Zero-shot semantic segmentation from dense patch-text similarity (MaskCLIP, Zhou et al., 2022), scored by mIoU.

MaskCLIP reads per-patch embeddings out of a CLIP image tower without training: in the last block the query-key
attention is skipped and each token keeps its own value, `x + out_proj(v_proj(ln1(x)))`, then the block's MLP with
its residual (as MaskCLIP's code does: `v += x; v = ffn(norm2(v), identity=v)`), the tower's final layer norm and
the visual projection, applied to every patch. Each patch's cosine similarity to the template-ensembled class
embeddings (`zeroshot.TextCache`) is a low-resolution score map, upsampled bilinearly to the image; the argmax is
the label map. SigLIP (no class token, an attention-pooling head) gets the same last-block value path, its post
layer norm, and the head's own value path (its pooling attention's value and output projections, then its MLP
with residual), so each patch goes through what the pooled token goes through minus the mixing.

Label ids: 0 is background, class i is i + 1, 255 is ignored (VOC's convention). The background is either a
class of its own (a prompt such as "background", which real CLIPs read; MaskCLIP on VOC) or a constant cosine
threshold: a pixel whose best class score is below it is background. ShapeCLIP's vocabulary has no word for a
background (any other word is [UNK] to it), so on ShapeWorld the threshold is fitted on a held-out split.

mIoU: per class, intersection over union summed over all images; the mean over the classes present in the
ground truth of the scored images (a class neither present nor predicted has no IoU; a class predicted but absent
does not enter the mean, the usual convention on a subset). Its interval is a percentile bootstrap over images (mIoU is
a ratio of sums, not a mean of per-image values, so it is recomputed on each resample).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from safeglass.clip.zeroshot import TextCache

IGNORE = 255
BACKGROUND = 0


# ------------------------------------------------------------------------------------ dense features


def _last_block_input(backend: Any, pixels: Any) -> Any:
    """The hidden states entering the tower's last block (a forward pre-hook; the rest of the pass is discarded)."""
    layers = list(backend.vision_model.encoder.layers)
    got: dict[str, Any] = {}

    def grab(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        got["x"] = args[0] if args else kwargs["hidden_states"]

    handle = layers[-1].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        backend.vision_model(pixel_values=pixels)
    finally:
        handle.remove()
    return got["x"]


def value_path(layer: Any, x: Any, ffn: bool = True) -> Any:
    """MaskCLIP's last block: each token's own value instead of attention, with the residual (and the MLP)."""
    attn = layer.self_attn
    y = x + attn.out_proj(attn.v_proj(layer.layer_norm1(x)))
    if ffn:
        y = y + layer.mlp(layer.layer_norm2(y))
    return y


def _siglip_head_values(head: Any, y: Any) -> Any:
    """The attention-pooling head applied to each patch on its own: value and output projections, then the MLP."""
    import torch.nn.functional as F

    mha = head.attention
    width = y.shape[-1]
    v = F.linear(y, mha.in_proj_weight[2 * width:], mha.in_proj_bias[2 * width:])
    h = mha.out_proj(v)
    return h + head.mlp(head.layernorm(h))


def dense_features(backend: Any, images: Any, ffn: bool = True, batch_size: int | None = None) -> Any:
    """[N, G, G, D] unit-norm patch embeddings in the text embedding space (G = image side / patch side)."""
    import torch

    vm = backend.vision_model
    last = list(vm.encoder.layers)[-1]
    out = []
    step = int(batch_size or getattr(backend, "batch_size", 256))
    with torch.inference_mode():
        for s in range(0, len(images), step):
            x = _last_block_input(backend, backend.pixels(images[s:s + step]))
            y = vm.post_layernorm(value_path(last, x, ffn))
            if backend.family == "clip":
                y = backend.model.visual_projection(y[:, 1:])     # the class token is not a patch
            else:
                y = _siglip_head_values(vm.head, y)
            out.append(y.float())
    f = torch.cat(out)
    g = int(round(f.shape[1] ** 0.5))
    if g * g != f.shape[1]:
        raise ValueError(f"segment: {f.shape[1]} patch tokens do not form a square grid")
    f = f / f.norm(dim=-1, keepdim=True)
    return f.reshape(f.shape[0], g, g, f.shape[-1])


# ------------------------------------------------------------------------------------ label maps


@dataclass(frozen=True)
class Background:
    """How background is decided: `prompt` names a background class embedded like the others (its templates'
    ensemble); otherwise `threshold` is the cosine below which a pixel's best class loses to background."""

    prompt: str | None = None
    threshold: float | None = None

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.threshold is None):
            raise ValueError("segment: give a background prompt or a threshold, not both or neither")

    def record(self) -> dict[str, Any]:
        return {"prompt": self.prompt} if self.prompt is not None else {"threshold": round(float(self.threshold), 6)}


def class_scores(backend: Any, features: Any, classes: Sequence[str], templates: Sequence[str], cache: TextCache,
                 size: int, prompt: str | None = None) -> Any:
    """[N, K, S, S] cosine maps upsampled to the image side: K = the classes, plus the background prompt first
    when one is given."""
    import torch
    import torch.nn.functional as F

    names = ([prompt] if prompt is not None else []) + list(classes)
    text = cache.class_embeddings(backend, names, templates)                    # [K, D]
    maps = torch.einsum("nhwd,kd->nkhw", features, text)
    return F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)


def label_maps(scores: Any, background: Background) -> np.ndarray:
    """uint8 [N, S, S]: 0 background, class i as i + 1."""
    import torch

    if background.prompt is not None:
        return scores.argmax(1).numpy().astype(np.uint8)   # the prompt is channel 0: background
    best, idx = scores.max(1)
    return torch.where(best < background.threshold, 0, idx + 1).numpy().astype(np.uint8)


def segment(backend: Any, images: Any, classes: Sequence[str], templates: Sequence[str], cache: TextCache,
            background: Background) -> np.ndarray:
    """Predicted label maps of `images` (uint8 at the model's side)."""
    feats = dense_features(backend, images)
    return label_maps(class_scores(backend, feats, classes, templates, cache, images.shape[1], background.prompt),
                      background)


# ------------------------------------------------------------------------------------ scoring


@dataclass(frozen=True)
class Counts:
    """Per image and class: intersection, union and ground-truth pixels; plus correct and valid pixels per image."""

    inter: np.ndarray    # (N, K)
    union: np.ndarray    # (N, K)
    gt: np.ndarray       # (N, K)
    correct: np.ndarray  # (N,)
    valid: np.ndarray    # (N,)


def counts(pred: np.ndarray, truth: np.ndarray, n_labels: int, ignore: int = IGNORE) -> Counts:
    """Counts of `pred` against `truth` (both [N, H, W] label maps); pixels labelled `ignore` count nowhere."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"segment: predictions {pred.shape} and ground truth {truth.shape} differ in shape")
    n = pred.shape[0]
    valid = truth != ignore
    if (truth[valid] >= n_labels).any() or (pred[valid] >= n_labels).any():
        raise ValueError(f"segment: a label is outside 0..{n_labels - 1} (and {ignore} for ignore)")
    p = np.where(valid, pred, n_labels).reshape(n, -1).astype(np.int64)    # ignored pixels fall in a spare bin
    t = np.where(valid, truth, n_labels).reshape(n, -1).astype(np.int64)
    rows = np.arange(n)[:, None] * (n_labels + 1)
    inter = np.bincount((rows + np.where(p == t, t, n_labels)).ravel(), minlength=n * (n_labels + 1))
    pc = np.bincount((rows + p).ravel(), minlength=n * (n_labels + 1))
    tc = np.bincount((rows + t).ravel(), minlength=n * (n_labels + 1))
    shape = (n, n_labels + 1)
    inter, pc, tc = inter.reshape(shape)[:, :n_labels], pc.reshape(shape)[:, :n_labels], tc.reshape(shape)[:, :n_labels]
    return Counts(inter, pc + tc - inter, tc, inter.sum(1), valid.reshape(n, -1).sum(1))


def miou_of(c: Counts, rows: np.ndarray | None = None) -> float:
    sel = slice(None) if rows is None else rows
    inter, union, gt = c.inter[sel].sum(0), c.union[sel].sum(0), c.gt[sel].sum(0)
    present = gt > 0
    return float((inter[present] / union[present]).mean()) if present.any() else float("nan")


def _boot_rows(n: int, seed: int, resamples: int) -> np.ndarray:
    return np.random.default_rng([seed, 29]).integers(0, n, size=(resamples, n))


def score(pred: np.ndarray, truth: np.ndarray, labels: Sequence[str], resamples: int = 1000,
          seed: int = 0) -> dict[str, Any]:
    """mIoU with its bootstrap 95 % interval over images, per-class IoU and pixel accuracy; `labels` names the
    label ids (background first)."""
    c = counts(pred, truth, len(labels))
    boots = np.array([miou_of(c, r) for r in _boot_rows(len(pred), seed, resamples)])
    inter, union, gt = c.inter.sum(0), c.union.sum(0), c.gt.sum(0)
    return {
        "miou": round(miou_of(c), 4),
        "ci_low": round(float(np.nanpercentile(boots, 2.5)), 4),
        "ci_high": round(float(np.nanpercentile(boots, 97.5)), 4),
        "pixel_accuracy": round(float(c.correct.sum() / max(1, c.valid.sum())), 4),
        "per_class_iou": {name: round(float(inter[i] / union[i]), 4) for i, name in enumerate(labels) if gt[i] > 0},
        "n_images": int(len(pred)), "resamples": resamples,
    }


def paired_drop(pred_a: np.ndarray, pred_b: np.ndarray, truth: np.ndarray, n_labels: int, resamples: int = 1000,
                seed: int = 0) -> dict[str, Any]:
    """mIoU(a) - mIoU(b) on the same images and ground truth, in points, with a paired bootstrap 95 % interval."""
    ca, cb = counts(pred_a, truth, n_labels), counts(pred_b, truth, n_labels)
    rows = _boot_rows(len(truth), seed, resamples)
    diffs = np.array([miou_of(ca, r) - miou_of(cb, r) for r in rows]) * 100
    return {"points": round(100 * (miou_of(ca) - miou_of(cb)), 2),
            "ci_low": round(float(np.nanpercentile(diffs, 2.5)), 2),
            "ci_high": round(float(np.nanpercentile(diffs, 97.5)), 2)}


def localisation(scores: Any, truth: np.ndarray, prompt: bool = False) -> dict[str, Any]:
    """Does a class score higher on its own pixels than on the background? Per image and per class present in
    it, the mean score on the class's pixels minus the mean on background pixels (ignored pixels left out);
    the mean gap and the share of positive gaps. MaskCLIP works when the gap is positive."""
    s = scores.numpy()
    first = 1 if prompt else 0   # with a background prompt, channel 0 is the background
    gaps = []
    for i in range(len(truth)):
        bg = truth[i] == BACKGROUND
        if not bg.any():
            continue
        for lab in set(np.unique(truth[i]).tolist()) - {BACKGROUND, IGNORE}:
            m = s[i, lab - 1 + first]
            gaps.append(float(m[truth[i] == lab].mean() - m[bg].mean()))
    g = np.array(gaps)
    return {"mean_gap": round(float(g.mean()), 4) if len(g) else None,
            "positive_share": round(float((g > 0).mean()), 4) if len(g) else None, "n": len(g)}


def fit_threshold(scores: Any, truth: np.ndarray, n_labels: int, grid: int = 41) -> tuple[float, float]:
    """(threshold, mIoU): the background threshold that maximises mIoU on a fitting split, searched over
    quantiles of the pixels' best class score."""
    best_score = scores.max(1).values.numpy()
    candidates = np.unique(np.quantile(best_score, np.linspace(0.0, 1.0, grid)))
    results = [(miou_of(counts(label_maps(scores, Background(threshold=float(t))), truth, n_labels)), float(t))
               for t in candidates]
    m, t = max(results, key=lambda r: (r[0], -r[1]))
    return t, m
