"""Running an objective through the shared trainer: a LoRA adapter on the model (reset, snapshot and restore
between runs, so one loaded model serves every phase), seeded batches that are a function of the step (a resumed
or repeated run sees the same data), `TrainLoop`'s schedule and clipping, and probes every few steps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from safeglass.align.measure import Pair, encode_pairs
from safeglass.align.methods import Context, objective

TARGET_MODULES: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class MethodConfig:
    """One unlearning recipe: the objective and its hyperparameters, the LoRA and the batch."""

    name: str = "npo"
    lr: float = 1e-4
    batch_size: int = 8
    beta: float = 0.1
    retain_weight: float = 1.0
    layer: int = -2
    steering_coeff: float = 4.0
    rmu_alpha: float = 1.0
    lora_r: int = 8
    lora_alpha: int = 16
    top_layers: int | None = None  # LoRA on the last N decoder layers only (None: all): backward stops there
    target_modules: tuple[str, ...] = TARGET_MODULES
    warmup_frac: float = 0.1
    opener_prefixes: tuple[str, ...] = field(default=())  # refusal_prefix: the openings (empty: SafeSmol's)


def n_layers(model: Any) -> int:
    return int(model.config.num_hidden_layers)


class Unlearner:
    """A model with a LoRA adapter the objectives train. ``reset()`` starts from the model as given (the adapter
    at its seeded initialisation), ``snapshot()`` / ``restore()`` keep a state between phases."""

    def __init__(self, model: Any, tokenizer: Any, cfg: MethodConfig, seed: int = 0) -> None:
        import torch
        from peft import get_peft_model

        from safeglass.training.lora import lora_config, lora_parameters

        self.tokenizer, self.cfg, self.seed = tokenizer, cfg, seed
        lc = lora_config(cfg.lora_r, cfg.lora_alpha, 0.0, cfg.target_modules)
        if cfg.top_layers is not None:
            total = n_layers(model)
            lc.layers_to_transform = list(range(max(0, total - cfg.top_layers), total))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = get_peft_model(model, lc)
        self.params = lora_parameters(self.model)
        self._init = self.snapshot()
        self.model.eval()

    def snapshot(self) -> list[Any]:
        return [p.detach().clone() for p in self.params]

    def restore(self, state: Sequence[Any]) -> None:
        import torch

        with torch.no_grad():
            for p, s in zip(self.params, state, strict=True):
                p.copy_(s)

    def reset(self) -> None:
        self.restore(self._init)

    def batches(self, n: int, step: int, stream: int) -> list[int]:
        """The example indices of `step`: seeded epochs over n examples, a function of (seed, stream, step)."""
        b = min(self.cfg.batch_size, n)
        per_epoch = max(1, n // b)
        epoch, j = divmod(step, per_epoch)
        order = np.random.default_rng([self.seed, stream, epoch]).permutation(n)
        return order[j * b:(j + 1) * b].tolist()

    def run(self, method: str, pairs: Sequence[Pair], steps: int, *, retain: Sequence[Pair] = (),
            lr: float | None = None, stream: int = 0, every: int = 0,
            probe: Callable[[int], None] | None = None, checkpoint_dir: str | Path | None = None,
            label: str = "unlearn", say: Callable[[str], None] | None = None) -> None:
        """`steps` steps of `method` on `pairs` (the refusals, or the answers sft / refusal_prefix train on),
        continuing from the adapter's current state. `probe(step)` runs at step 0 (before training) and after
        every `every` steps (step = steps done)."""
        import torch

        from safeglass.training.encoding import collate, pad_id
        from safeglass.training.loop import TrainLoop

        if not pairs:
            raise ValueError(f"{label}: no examples to train on")
        if method in ("gd", "rmu") and not retain:
            raise ValueError(f"{label}: {method} needs a retain set")
        pad = pad_id(self.tokenizer)
        enc = encode_pairs(self.tokenizer, pairs)
        renc = encode_pairs(self.tokenizer, retain) if retain else []
        ctx = self._context(method, enc, pad)
        ref = self._reference(enc, pad) if method == "npo" else None
        opt = torch.optim.AdamW(self.params, lr=lr if lr is not None else self.cfg.lr, weight_decay=0.0)
        loop = TrainLoop(opt, self.params, lr if lr is not None else self.cfg.lr, steps, self.cfg.warmup_frac,
                         label=label, say=say, checkpoint_dir=checkpoint_dir, checkpoint_every=max(1, every or steps))
        start = loop.resume()
        if probe is not None and start == 0:
            probe(0)
        self.model.train()
        try:
            for step in loop:
                idx = self.batches(len(enc), step, stream)
                fb = collate([enc[i] for i in idx], pad)
                rb = None
                if renc and (method in ("gd", "rmu") or (method == "npo" and ctx.retain_weight > 0)):
                    ridx = self.batches(len(renc), step, stream + 1000)
                    rb = collate([renc[i] for i in ridx], pad)
                loss = objective(self.model, ctx, fb, rb, None if ref is None else ref[idx])
                loop.update(loss)
                if probe is not None and every and (step + 1) % every == 0:
                    self.model.eval()
                    probe(step + 1)
                    self.model.train()
        finally:
            self.model.eval()

    def _context(self, method: str, enc: list[Any], pad: int) -> Context:
        c = self.cfg
        ctx = Context(method, c.beta, c.retain_weight if method != "ga" else 0.0, c.layer, c.steering_coeff,
                      c.rmu_alpha)
        if method != "rmu":
            return ctx
        import torch

        from safeglass.align.methods import layer_output
        from safeglass.training.encoding import collate

        g = torch.Generator().manual_seed(self.seed)
        u = torch.rand(self.model.config.hidden_size, generator=g)  # RMU's u: uniform, then unit length
        with torch.no_grad():
            b = collate(enc[:32], pad)
            h = layer_output(self.model, b, c.layer)
            mask = b["attention_mask"].bool()
            scale = float(h[mask].norm(dim=-1).mean())
        return Context(method, c.beta, c.retain_weight, c.layer, c.steering_coeff, c.rmu_alpha, u / u.norm(), scale)

    def _reference(self, enc: list[Any], pad: int) -> Any:
        """npo's frozen reference: each example's log-likelihood under the model as the run starts."""
        import torch

        from safeglass.align.measure import batch_logprobs
        from safeglass.training.encoding import collate

        out = []
        with torch.no_grad():
            for i in range(0, len(enc), 16):
                out.append(batch_logprobs(self.model, collate(enc[i:i + 16], pad))[0])
        return torch.cat(out)
