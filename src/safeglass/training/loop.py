"""One training stage's steps: a time budget checked before each step, the learning-rate curve applied, and the
optimizer update with gradient clipping. No checkpoints: no recipe had one, and a resumed build would have to give
the same weights as an unbroken one (a rerun of a recipe is cheaper than proving that)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from safeglass.training.schedule import cosine_with_warmup, warmup_steps

log = logging.getLogger("safeglass.training")


class TrainLoop:
    """``for step in loop: ...; loop.update(loss)`` runs `steps` steps of `opt` at `lr` times the warmup-cosine
    factor, stopping early (before a step) once `time_budget_s` seconds have passed since the first step began.
    Where it stopped is kept for the card (`stopped_at`, `steps_done`, `stop_fields`)."""

    def __init__(self, opt: Any, params: Sequence[Any], lr: float, steps: int, warmup_frac: float, *,
                 time_budget_s: float | None = None, label: str = "training",
                 say: Callable[[str], None] | None = None, clip_norm: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.opt, self.params, self.lr, self.steps = opt, list(params), lr, steps
        self.warmup = warmup_steps(steps, warmup_frac)
        self.time_budget_s, self.label, self.say = time_budget_s, label, say or log.info
        self.clip_norm, self.clock = clip_norm, clock
        self.stopped_at: int | None = None
        self.started: float | None = None

    def __iter__(self) -> Iterator[int]:
        self.started = self.clock()
        for step in range(self.steps):
            if self.time_budget_s is not None and self.clock() - self.started > self.time_budget_s:
                self.stopped_at = step
                self.say(f"{self.label}: time budget {self.time_budget_s:.0f}s spent at step {step}")
                return
            for grp in self.opt.param_groups:
                grp["lr"] = self.lr * cosine_with_warmup(step, self.steps, self.warmup)
            yield step

    def update(self, loss: Any) -> None:
        """One optimizer step on `loss`, gradients clipped to `clip_norm` (one outlier batch cannot throw a small
        adapter or projector far off)."""
        import torch

        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm)
        self.opt.step()

    def elapsed(self) -> float:
        """Seconds since the first step began (0 before)."""
        return 0.0 if self.started is None else self.clock() - self.started

    def due(self, step: int, every: int) -> bool:
        """Whether a periodic probe runs after `step`: every `every` steps and after the last one."""
        return (step + 1) % every == 0 or step == self.steps - 1

    @property
    def steps_done(self) -> int:
        return self.stopped_at if self.stopped_at is not None else self.steps

    def stop_fields(self) -> dict[str, int | None]:
        """The card's record of the budget: steps done, and the step it stopped at (None: all were done)."""
        return {"steps_done": self.steps_done, "stopped_early_at_step": self.stopped_at}
