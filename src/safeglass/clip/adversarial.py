"""l-inf attacks on CLIP-style image towers, in [0, 1] pixel space through the model's own normalisation.

Threat model: an additive perturbation `d` with ||d||_inf <= eps, x + d in [0, 1] (eps in pixel units, 4/255 is
`eps=4/255`). Three losses, each per image so one batch attacks every image on its own:

- zero-shot cross-entropy: logit scale * cos(f(x + d), class text embeddings) against the label (the
  classification attack RobustVLM evaluates TeCoA and FARE with);
- FARE's embedding loss: ||f(x + d) - f(x)||^2 of the unnormalised image embedding (needs no labels).

Two optimisers: PGD (Madry et al. 2018: random start, signed-gradient steps of `step_size`, projection) and
APGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", Alg. 1: step 2*eps, momentum 0.75, per-image step halving at the checkpoints
w_j = ceil(p_j * steps) when fewer than rho = 0.75 of the steps since the last checkpoint raised the loss, or
when neither the step nor the best loss moved; it restarts from the best point and returns the best point).

    enc = image_encoder(backend)                        # x01 [N,3,S,S] -> unit-norm features, differentiable
    loss = zero_shot_ce(enc, class_emb, labels, backend.logit_scale())
    x_adv = pgd(loss, x01, eps=4 / 255, steps=10, step_size=1 / 255, seed=0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Loss = Callable[[Any, Any], Any]  # (x01 batch, index of the batch's rows) -> per-image loss [n]
METHODS = ("pgd", "apgd")


def to_unit(images: np.ndarray) -> Any:
    """uint8 [N, S, S, 3] images as float32 [N, 3, S, S] in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


def normaliser(processor: Any) -> Callable[[Any], Any]:
    """The processor's (x - mean) / std on [0, 1] pixels, differentiable (the processor's own path is not)."""
    import torch

    mean = torch.tensor(processor.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_std, dtype=torch.float32).view(1, 3, 1, 1)
    return lambda x: (x - mean) / std


def image_encoder(backend: Any, model: Any = None, normalize: bool = True) -> Callable[[Any], Any]:
    """x01 [N, 3, S, S] -> image features of `model` (default the backend's), unit-norm unless `normalize` is False
    (FARE matches the raw embedding). Works for CLIPModel and SiglipModel alike."""
    from safeglass.clip.backends import _features

    m = model if model is not None else backend.model
    norm = normaliser(backend.processor)

    def encode(x: Any) -> Any:
        f = _features(m.get_image_features(pixel_values=norm(x))).float()
        return f / f.norm(dim=-1, keepdim=True) if normalize else f

    return encode


def zero_shot_ce(encode: Callable[[Any], Any], class_emb: Any, labels: Any, scale: float) -> Loss:
    """Per-image cross-entropy of the zero-shot logits (scale * cos to each class) against `labels` [N]."""
    import torch.nn.functional as F

    def loss(x: Any, rows: Any) -> Any:
        return F.cross_entropy(scale * encode(x) @ class_emb.T, labels[rows], reduction="none")

    return loss


def embedding_l2(encode_raw: Callable[[Any], Any], target: Any) -> Loss:
    """FARE's per-image ||f(x) - target||^2 (target: the clean images' embedding under the original model)."""

    def loss(x: Any, rows: Any) -> Any:
        return (encode_raw(x) - target[rows]).pow(2).sum(-1)

    return loss


def _project(x_adv: Any, x: Any, eps: float) -> Any:
    import torch

    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)


def _grad(loss: Loss, x: Any, rows: Any) -> tuple[Any, Any]:
    import torch

    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        values = loss(x, rows)
        (g,) = torch.autograd.grad(values.sum(), x)
    return values.detach(), g.detach()


def _start(x: Any, eps: float, seed: int, random_start: bool) -> Any:
    import torch

    if not random_start or eps == 0:
        return x.clone()
    gen = torch.Generator().manual_seed(int(seed))
    return _project(x + (2 * torch.rand(x.shape, generator=gen) - 1) * eps, x, eps)


def pgd(loss: Loss, x: Any, eps: float, steps: int, step_size: float, seed: int = 0, random_start: bool = True,
        rows: Any = None) -> Any:
    """Projected signed-gradient ascent on `loss` from a random point of the eps-ball; returns the last iterate
    (detached). `rows` indexes the batch's labels / targets (default all)."""
    import torch

    rows = torch.arange(len(x)) if rows is None else rows
    x = x.detach()
    x_adv = _start(x, eps, seed, random_start)
    for _ in range(steps):
        _, g = _grad(loss, x_adv, rows)
        x_adv = _project(x_adv + step_size * g.sign(), x, eps)
    return x_adv.detach()


def checkpoints(steps: int) -> list[int]:
    """APGD's iterations where the step size may halve: w_j = ceil(p_j * steps), p_0 = 0, p_1 = 0.22,
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    w = (math.ceil(round(q * steps, 6)) for q in p if q <= 1)  # round: 0.41 + 0.16 is 0.5700000000000001
    return sorted({v for v in w if v > 0})


def apgd(loss: Loss, x: Any, eps: float, steps: int, seed: int = 0, random_start: bool = True,
         rows: Any = None, alpha: float = 0.75, rho: float = 0.75) -> Any:
    """APGD (Croce & Hein 2020, Alg. 1) on `loss`; returns the point of highest loss seen per image (detached)."""
    import torch

    rows = torch.arange(len(x)) if rows is None else rows
    x = x.detach()
    n = len(x)
    shape = (n,) + (1,) * (x.dim() - 1)
    eta = torch.full(shape, 2.0 * eps)
    x_k = _start(x, eps, seed, random_start)
    f_k, g = _grad(loss, x_k, rows)
    x_best, f_best = x_k.clone(), f_k.clone()
    if steps == 0 or eps == 0:
        return x_best
    # the first step has no momentum
    x_next = _project(x_k + eta * g.sign(), x, eps)
    x_prev = x_k
    checks = set(checkpoints(steps))
    last_check, rises = 0, torch.zeros(n)
    eta_at_check, best_at_check = eta.clone(), f_best.clone()
    for k in range(1, steps + 1):
        x_k = x_next
        f_new, g = _grad(loss, x_k, rows)
        rises += (f_new > f_k).float()
        f_k = f_new
        better = f_new > f_best
        x_best[better], f_best[better] = x_k[better], f_new[better]
        if k == steps:
            break
        if k in checks:
            since = k - last_check
            cond1 = rises < rho * since
            cond2 = (eta_at_check.view(-1) == eta.view(-1)) & (best_at_check == f_best)
            halve = cond1 | cond2
            eta_at_check, best_at_check = eta.clone(), f_best.clone()
            eta[halve] /= 2
            # a halved image restarts from its best point
            x_k = torch.where(halve.view(shape), x_best, x_k)
            if halve.any():
                f_k = torch.where(halve, f_best, f_k)
                _, g_best = _grad(loss, x_k, rows)
                g = torch.where(halve.view(shape), g_best, g)
            last_check, rises = k, torch.zeros(n)
        z = _project(x_k + eta * g.sign(), x, eps)
        x_next = _project(x_k + alpha * (z - x_k) + (1 - alpha) * (x_k - x_prev), x, eps)
        x_prev = x_k
    return x_best.detach()


def attack(method: str, loss: Loss, x: Any, eps: float, steps: int, step_size: float | None = None, seed: int = 0,
           rows: Any = None) -> Any:
    """`pgd` (step size default 2.5 * eps / steps, Madry's rule) or `apgd` (no step size: it sets its own)."""
    if method == "pgd":
        size = step_size if step_size is not None else 2.5 * eps / max(steps, 1)
        return pgd(loss, x, eps, steps, size, seed, rows=rows)
    if method == "apgd":
        return apgd(loss, x, eps, steps, seed, rows=rows)
    raise ValueError(f"adversarial: unknown method {method!r}; known: {', '.join(METHODS)}")


def robust_predictions(backend: Any, images: np.ndarray, labels: Sequence[int], class_emb: Any, eps: float,
                       steps: int, method: str = "pgd", seed: int = 0, batch_size: int = 128,
                       step_size: float | None = None) -> dict[str, np.ndarray]:
    """Zero-shot predictions on `images` after a per-image cross-entropy attack at `eps` (0: the clean images),
    and each image's final loss. A batch's random start is seeded by seed + its first row (the result depends on
    the batch size only through the random starts)."""
    import torch

    enc = image_encoder(backend)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    scale = backend.logit_scale()
    loss = zero_shot_ce(enc, class_emb, y, scale)
    preds, losses = [], []
    for i in range(0, len(images), batch_size):
        x = to_unit(images[i:i + batch_size])
        rows = torch.arange(i, i + len(x))
        x_adv = attack(method, loss, x, eps, steps, step_size, seed + i, rows) if eps > 0 else x
        with torch.no_grad():
            logits = scale * enc(x_adv) @ class_emb.T
            losses.append(torch.nn.functional.cross_entropy(logits, y[rows], reduction="none").numpy())
            preds.append(logits.argmax(-1).numpy())
    return {"predictions": np.concatenate(preds), "loss": np.concatenate(losses)}
