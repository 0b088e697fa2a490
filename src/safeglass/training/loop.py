"""One training stage's steps: a time budget checked before each step, the learning-rate curve applied, the
optimizer update with gradient clipping, and (when given a folder) checkpoints to resume a killed training from.

A resumed training reaches the weights an unbroken one does (tests/test_training_checkpoint.py): the trainable
tensors, the optimizer state, the random generators, the step and the seconds spent are restored. What the loop
cannot see, the caller restores: its data order (a function of the step, or its own state through `extra`).
The organism recipes give no folder: their builds are short, and their weights are pinned byte for byte."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from safeglass.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from safeglass.training.schedule import cosine_with_warmup, warmup_steps

log = logging.getLogger("safeglass.training")


class TrainLoop:
    """``for step in loop: ...; loop.update(loss)`` runs `steps` steps of `opt` at `lr` times the warmup-cosine
    factor, stopping early (before a step) once `time_budget_s` seconds have passed since the first step began.
    Where it stopped is kept for the card (`stopped_at`, `steps_done`, `stop_fields`).

    With `checkpoint_dir`, the state is saved there every `checkpoint_every` steps and after the last one, and the
    loop starts from the newest checkpoint it finds (build the model and optimizer as for a fresh start first).
    ``extra()`` returns the caller's JSON state to save with each checkpoint; a resumed loop hands it back as
    `extra_state`. Call `resume` before the loop where the caller needs the start step (to skip data)."""

    def __init__(self, opt: Any, params: Sequence[Any], lr: float, steps: int, warmup_frac: float, *,
                 time_budget_s: float | None = None, label: str = "training",
                 say: Callable[[str], None] | None = None, clip_norm: float = 1.0,
                 clock: Callable[[], float] = time.time, checkpoint_dir: str | Path | None = None,
                 checkpoint_every: int = 100, extra: Callable[[], dict[str, Any]] | None = None) -> None:
        self.opt, self.params, self.lr, self.steps = opt, list(params), lr, steps
        self.warmup = warmup_steps(steps, warmup_frac)
        self.time_budget_s, self.label, self.say = time_budget_s, label, say or log.info
        self.clip_norm, self.clock = clip_norm, clock
        if checkpoint_dir is not None and checkpoint_every < 1:
            raise ValueError(f"{label}: checkpoint_every must be at least 1 (got {checkpoint_every})")
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_every, self.extra = checkpoint_every, extra
        self.stopped_at: int | None = None
        self.started: float | None = None
        self.start_step: int | None = None  # set by `resume`: 0, or the step a checkpoint continues at
        self.extra_state: dict[str, Any] = {}
        self._elapsed_before = 0.0

    def resume(self) -> int:
        """The step training starts at, with the newest checkpoint's state restored if there is one (once)."""
        if self.start_step is None:
            self.start_step = 0
            latest = latest_checkpoint(self.checkpoint_dir) if self.checkpoint_dir is not None else None
            if latest is not None:
                meta = load_checkpoint(latest, self.params, self.opt)
                self.start_step, self._elapsed_before = int(meta["next_step"]), float(meta["elapsed"])
                self.extra_state = meta["extra"]
                self.say(f"{self.label}: resumed at step {self.start_step} from {latest}")
        return self.start_step

    def __iter__(self) -> Iterator[int]:
        start = self.resume()
        # a resumed loop counts the seconds spent before the kill, so the time budget covers the whole training
        self.started = self.clock() - self._elapsed_before
        for step in range(start, self.steps):
            if self.time_budget_s is not None and self.clock() - self.started > self.time_budget_s:
                self.stopped_at = step
                self.say(f"{self.label}: time budget {self.time_budget_s:.0f}s spent at step {step}")
                return
            for grp in self.opt.param_groups:
                grp["lr"] = self.lr * cosine_with_warmup(step, self.steps, self.warmup)
            yield step
            # the caller's step (update, probes) is done when control comes back here
            if self.checkpoint_dir is not None and self.due(step, self.checkpoint_every):
                save_checkpoint(self.checkpoint_dir, step + 1, self.params, self.opt, elapsed=self.elapsed(),
                                extra=self.extra() if self.extra is not None else None)

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
