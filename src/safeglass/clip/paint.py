"""PAINT (Ilharco et al., NeurIPS 2022; mlfoundations/patching): patch a CLIP on a task by fine-tuning, then
interpolate weights, theta(a) = (1 - a) theta0 + a theta1, so the patch keeps what the model knew.

Here the patch task is typographic: the image tower (and its projection) is fine-tuned with the text tower
frozen and the zero-shot head fixed (the class texts' template ensemble), on clean and typographically attacked
images with their true labels. The fitting split is cut in two by a seeded permutation: one half fine-tunes, the
other picks a, so a is not chosen on the images it was trained on. a is the grid value with the best typographic
accuracy whose clean accuracy is at most `max_clean_drop` below the unpatched model's (a = 0 always qualifies);
the whole curve is also scored on the held-out split. The backend's own weights are restored in `finally`.

    picked = defend(backend, fit, fit_att, test, test_att, templates, PaintSettings(seed=0), max_clean_drop=0.01)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

GRID: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class PaintSettings:
    epochs: int = 3
    lr: float = 1e-4
    weight_decay: float = 0.1
    batch_size: int = 64
    alphas: tuple[float, ...] = field(default=GRID)
    select_share: float = 0.5  # of the fitting split, kept for picking a
    seed: int = 0


def tower(backend: Any) -> dict[str, Any]:
    """The patched parameters: the image tower and its projection (names as in the model's state dict)."""
    m = backend.model
    out = {f"vision_model.{k}": v for k, v in m.vision_model.named_parameters()}
    proj = getattr(m, "visual_projection", None)  # SigLIP's tower ends in its own head, inside vision_model
    if proj is not None:
        out.update({f"visual_projection.{k}": v for k, v in proj.named_parameters()})
    return out


def snapshot(backend: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in tower(backend).items()}


def load(backend: Any, weights: dict[str, Any]) -> None:
    import torch

    with torch.no_grad():
        for k, p in tower(backend).items():
            p.copy_(weights[k])


def interpolate(theta0: dict[str, Any], theta1: dict[str, Any], a: float) -> dict[str, Any]:
    """(1 - a) theta0 + a theta1, parameter by parameter."""
    return {k: (1 - a) * theta0[k] + a * theta1[k] for k in theta0}


@contextlib.contextmanager
def restored(backend: Any) -> Iterator[dict[str, Any]]:
    """Yields the tower's weights as they were, and puts them back at the end, whatever happened."""
    theta0 = snapshot(backend)
    try:
        yield theta0
    finally:
        load(backend, theta0)


def finetune(backend: Any, images: np.ndarray, labels: np.ndarray, class_features: Any,
             settings: PaintSettings) -> dict[str, Any]:
    """Fine-tune the image tower in place on (images, labels) against a fixed zero-shot head; returns a trace."""
    import torch

    params = list(tower(backend).values())
    text = [p for p in backend.model.parameters() if all(p is not q for q in params)]
    flags = [(p, p.requires_grad) for p in backend.model.parameters()]
    rng = np.random.default_rng([settings.seed, 29])
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(settings.seed)
    head = class_features.detach()
    scale = backend.logit_scale()
    losses = []
    try:
        for p in text:
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
        y_all = torch.as_tensor(labels, dtype=torch.long)
        with torch.enable_grad():
            for _epoch in range(settings.epochs):
                order = rng.permutation(len(labels))
                total = 0.0
                for s in range(0, len(order), settings.batch_size):
                    idx = order[s:s + settings.batch_size]
                    f = backend.encode_pixels(backend.pixels(images[idx]))
                    loss = torch.nn.functional.cross_entropy(scale * f @ head.T, y_all[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(idx)
                losses.append(round(total / len(order), 5))
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        torch.random.set_rng_state(gen_state)
    return {"epoch_loss": losses, "images": int(len(labels)),
            "settings": {"epochs": settings.epochs, "lr": settings.lr, "weight_decay": settings.weight_decay,
                         "batch_size": settings.batch_size, "seed": settings.seed}}


def halves(n: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, select) indices of a split of n: a seeded permutation, `share` of it for selection."""
    order = np.random.default_rng([seed, 31]).permutation(n)
    k = min(n - 1, max(1, round(share * n)))
    return np.sort(order[k:]), np.sort(order[:k])


def pick(curve: Sequence[dict[str, Any]], max_clean_drop: float) -> dict[str, Any]:
    """The grid point with the best typographic accuracy at most `max_clean_drop` below a = 0's clean accuracy
    (ties: the smaller a, the one nearer the original model)."""
    base = next(c for c in curve if c["alpha"] == 0.0)["clean"]
    ok = [c for c in curve if base - c["clean"] <= max_clean_drop + 1e-12]
    return max(ok, key=lambda c: (c["typographic"], -c["alpha"]))


def defend(backend: Any, fit: Any, fit_att: Any, test: Any, test_att: Any, templates: Sequence[str],
           settings: PaintSettings, max_clean_drop: float, cache: Any = None) -> tuple[Any, dict[str, Any]]:
    """Patch, interpolate over the grid, pick a on the selection half; (test correctness at a, record)."""
    from safeglass.clip.dyslexify import correct
    from safeglass.clip.zeroshot import TextCache

    if 0.0 not in settings.alphas:
        raise ValueError("paint: the alpha grid must hold 0 (the unpatched model, the clean-loss reference)")
    cache = cache if cache is not None else TextCache()
    train_i, sel_i = halves(len(fit.labels), settings.select_share, settings.seed)
    head = cache.class_embeddings(backend, fit.classes, templates)
    x = np.concatenate([fit.images[train_i], fit_att.images[train_i]])
    y = np.concatenate([fit.labels[train_i], fit.labels[train_i]])
    curve: list[dict[str, Any]] = []
    test_correct: dict[float, Any] = {}
    with restored(backend) as theta0:
        trace = finetune(backend, x, y, head, settings)
        theta1 = snapshot(backend)
        for a in sorted(settings.alphas):
            load(backend, interpolate(theta0, theta1, a))
            sc, st = correct(backend, fit.images[sel_i], fit_att.images[sel_i], fit.labels[sel_i], fit.classes,
                             templates, cache)
            tc, tt = correct(backend, test.images, test_att.images, test.labels, test.classes, templates, cache)
            test_correct[a] = (tc, tt)
            curve.append({"alpha": a, "clean": round(float(sc.mean()), 4), "typographic": round(float(st.mean()), 4),
                          "test_clean": round(float(tc.mean()), 4), "test_typographic": round(float(tt.mean()), 4)})
    chosen = pick(curve, max_clean_drop)
    record = {"alpha": chosen["alpha"], "curve": curve, "finetune": trace,
              "fit": {"train_images": int(len(train_i)), "select_images": int(len(sel_i)),
                      "select_share": settings.select_share},
              "alphas": list(settings.alphas), "max_clean_drop": max_clean_drop}
    return test_correct[chosen["alpha"]], record
