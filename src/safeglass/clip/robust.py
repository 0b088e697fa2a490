"""Robust CLIP: TeCoA and FARE l-inf adversarial fine-tuning of the vision tower of any HF CLIPModel / SiglipModel.

- TeCoA (Mao et al. 2023): cross-entropy of the zero-shot logits (scale * cos to the frozen class-text
  embeddings) on PGD images that maximise that same cross-entropy. Supervised: needs labels.
- FARE (Schlarmann et al. 2024, RobustVLM): ||f_ft(x_adv) - f_orig(x)||^2 of the raw image embedding, x_adv
  maximising it. Unsupervised: the original model's clean embedding is the target, so the text tower and every
  downstream user of the embedding keep working.

Only `vision_model.*` and the visual projection train (the text tower and the logit scale are frozen), with
AdamW, linear warm-up then cosine decay, and PGD (random start) as the inner attack. Every step's batch and
random start are seeded by (seed, step), and a checkpoint (safetensors: trained weights, AdamW moments, step)
is written every `checkpoint_every` steps, so a killed run resumes to the same weights as an uninterrupted one.
A time budget stops training early (the card says so).

    result = train(backend, RobustSettings(method="tecoa", eps=4), images, labels, classes, templates, out_dir)
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from safeglass.hashing import content_hash

ROBUST_METHODS = ("tecoa", "fare")
VISION_PREFIXES = ("vision_model.", "visual_projection.")  # CLIPModel; SiglipModel has only vision_model
CHECKPOINT = "robust-checkpoint.safetensors"
CHECKPOINT_META = "robust-checkpoint.json"
VISION_WEIGHTS = "vision.safetensors"


@dataclass(frozen=True)
class RobustSettings:
    """eps and step_size in 1/255 units of [0, 1] pixels. RobustVLM's recipe is 10 PGD steps of 1/255; on a CPU
    fewer steps with a step of max(1, 2.5 * eps / attack_steps) / 255 reach the ball's edge as well."""

    method: str = "tecoa"
    eps: float = 4.0
    attack_steps: int = 10
    step_size: float | None = None    # None: max(1, 2.5 * eps / attack_steps)
    train_steps: int = 200
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup: int = 10
    seed: int = 0
    checkpoint_every: int = 20
    time_budget_s: float | None = None  # stop early past this much training time (across resumes)

    def __post_init__(self) -> None:
        if self.method not in ROBUST_METHODS:
            raise ValueError(f"robust: unknown method {self.method!r}; known: {', '.join(ROBUST_METHODS)}")
        if self.eps < 0 or self.attack_steps < 0 or self.train_steps < 0 or self.batch_size < 1:
            raise ValueError("robust: eps, attack_steps and train_steps are >= 0 and batch_size >= 1")

    @property
    def step(self) -> float:
        s = self.step_size if self.step_size is not None else max(1.0, 2.5 * self.eps / max(self.attack_steps, 1))
        return s / 255.0

    def key(self) -> str:
        """What changes the weights (not the time budget or the checkpoint cadence)."""
        return content_hash({k: v for k, v in asdict(self).items() if k not in ("checkpoint_every", "time_budget_s")},
                            length=16)


def vision_names(model: Any) -> list[str]:
    return [n for n, _ in model.named_parameters() if n.startswith(VISION_PREFIXES)]


def vision_state(model: Any) -> dict[str, Any]:
    """The vision tower's weights (what a robust organism stores; the text tower is the base model's)."""
    keep = set(vision_names(model))
    return {k: v.detach().contiguous().clone() for k, v in model.state_dict().items() if k in keep}


def lr_at(step: int, s: RobustSettings) -> float:
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    span = max(s.train_steps - s.warmup, 1)
    return 0.5 * s.lr * (1 + math.cos(math.pi * (step - s.warmup) / span))


def _save_checkpoint(out: Path, model: Any, opt: Any, names: list[str], meta: dict[str, Any]) -> None:
    import torch
    from safetensors.torch import save_file

    params = dict(model.named_parameters())
    tensors = {f"model.{n}": params[n].detach().contiguous() for n in names}
    for n in names:
        st = opt.state.get(params[n], {})
        for k in ("exp_avg", "exp_avg_sq"):
            if k in st:
                tensors[f"opt.{n}.{k}"] = st[k].contiguous()
        if "step" in st:
            tensors[f"opt.{n}.step"] = torch.as_tensor(st["step"], dtype=torch.float32).reshape(1)
    tmp = out / (CHECKPOINT + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(out / CHECKPOINT)
    tmpm = out / (CHECKPOINT_META + ".tmp")
    tmpm.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    tmpm.replace(out / CHECKPOINT_META)  # the meta goes last: it names a checkpoint that is complete


def _load_checkpoint(out: Path, model: Any, opt: Any, names: list[str], key: str) -> dict[str, Any] | None:
    import torch
    from safetensors.torch import load_file

    try:
        meta = json.loads((out / CHECKPOINT_META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("settings_key") != key or not (out / CHECKPOINT).is_file():
        return None  # another recipe's checkpoint: start over rather than mix
    t = load_file(str(out / CHECKPOINT))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n in names:
            params[n].copy_(t[f"model.{n}"])
    for n in names:
        if f"opt.{n}.exp_avg" in t:
            opt.state[params[n]] = {"step": t[f"opt.{n}.step"].reshape(()).clone(), "exp_avg": t[f"opt.{n}.exp_avg"],
                                    "exp_avg_sq": t[f"opt.{n}.exp_avg_sq"]}
    return meta


def train(backend: Any, settings: RobustSettings, images: np.ndarray, labels: Sequence[int] | None,
          classes: Sequence[str], templates: Sequence[str], out: str | Path,
          progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fine-tune a copy of `backend.model`'s vision tower on `images` (uint8 [N, S, S, 3]; `labels` are needed by
    TeCoA only); checkpoints into `out` and resumes from a checkpoint of the same settings there. Returns
    {"model": the fine-tuned model (eval mode), "history", "steps_done", "train_seconds", "stopped_early"}."""
    import torch

    from safeglass.clip.adversarial import embedding_l2, image_encoder, pgd, to_unit, zero_shot_ce
    from safeglass.clip.zeroshot import TextCache

    s = settings
    say = progress or (lambda _line: None)
    if s.method == "tecoa" and labels is None:
        raise ValueError("robust: TeCoA is supervised; give labels (FARE needs none)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(backend.model).eval()  # ViTs here have no dropout or batch norm: eval mode trains the same
    names = vision_names(model)
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)
    opt = torch.optim.AdamW([p for n, p in model.named_parameters() if n in names], lr=s.lr,
                            weight_decay=s.weight_decay)
    class_emb = TextCache().class_embeddings(backend, classes, templates) if s.method == "tecoa" else None
    scale = backend.logit_scale()
    enc = image_encoder(backend, model, normalize=s.method == "tecoa")
    orig = image_encoder(backend, backend.model, normalize=False)
    y_all = torch.as_tensor(np.asarray(labels if labels is not None else np.zeros(len(images))), dtype=torch.long)
    key = s.key()
    meta = _load_checkpoint(out, model, opt, names, key)
    start = int(meta["step"]) if meta else 0
    history: list[dict[str, float]] = list(meta["history"]) if meta else []
    spent = float(meta["train_seconds"]) if meta else 0.0
    if meta:
        say(f"robust {s.method}: resuming at step {start} of {s.train_steps} ({spent:.0f} s spent)")
    t0 = time.perf_counter()
    stopped_early = None
    step = start
    for step in range(start, s.train_steps):
        if s.time_budget_s is not None and spent + time.perf_counter() - t0 >= s.time_budget_s:
            stopped_early = step
            say(f"robust {s.method}: time budget {s.time_budget_s:.0f} s reached at step {step}")
            break
        rows = torch.as_tensor(np.sort(np.random.default_rng([s.seed, step, 5]).choice(
            len(images), min(s.batch_size, len(images)), replace=False)))
        x = to_unit(images[rows.numpy()])
        local = torch.arange(len(x))
        if s.method == "tecoa":
            loss_fn = zero_shot_ce(enc, class_emb, y_all[rows], scale)
        else:
            with torch.no_grad():
                target = orig(x)
            loss_fn = embedding_l2(enc, target)
        x_adv = pgd(loss_fn, x, s.eps / 255.0, s.attack_steps, s.step, seed=s.seed * 1_000_003 + step, rows=local)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, s)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(x_adv, local).mean()
        loss.backward()
        opt.step()
        history.append({"step": step + 1, "loss": round(float(loss.detach()), 5)})
        done = step + 1
        if done % s.checkpoint_every == 0 or done == s.train_steps:
            elapsed = spent + time.perf_counter() - t0
            _save_checkpoint(out, model, opt, names, {"settings_key": key, "settings": asdict(s), "step": done,
                                                       "train_seconds": round(elapsed, 2), "history": history})
        if done % max(1, s.train_steps // 20) == 0 or done == s.train_steps:
            el = spent + time.perf_counter() - t0
            say(f"robust {s.method} eps {s.eps:g}/255: step {done}/{s.train_steps}  "
                f"adv loss {float(loss.detach()):.4f}  lr {lr_at(step, s):.2e}  {el:.0f} s")
    else:
        step = s.train_steps
    for p in model.parameters():
        p.requires_grad_(False)
    return {"model": model.eval(), "history": history, "steps_done": stopped_early if stopped_early is not None
            else step, "train_seconds": round(spent + time.perf_counter() - t0, 2), "stopped_early": stopped_early,
            "settings": asdict(s), "settings_key": key}


def save_vision(model: Any, path: str | Path) -> str:
    """The vision tower's weights as safetensors; returns their sha256."""
    from safetensors.torch import save_file

    from safeglass.hashing import file_hash

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(vision_state(model), str(path), metadata={"format": "pt"})
    return file_hash(str(path), length=64)


def load_vision(model: Any, path: str | Path) -> Any:
    """`model` (a copy of the base model) with the vision tower read from `path`; every stored tensor must match
    a vision parameter of the base model, and every vision parameter must be stored."""
    import torch
    from safetensors.torch import load_file

    t = load_file(str(path))
    want = set(vision_names(model))
    if set(t) != want:
        missing, extra = sorted(want - set(t))[:3], sorted(set(t) - want)[:3]
        raise ValueError(f"robust: {path} does not fit the base model's vision tower (missing {missing}, "
                         f"unexpected {extra})")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in t.items():
            params[k].copy_(v)
    return model.eval()
