"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML): PGD whose step size needs no tuning.

Threat model and shapes as ``pgd`` (``attacks/gradient.py``): white-box, gradients through the target's
differentiable preprocessing to a [N,3,H,W] image tensor in [0, 1] at the processor's size, weights frozen, an
l-inf or l2 budget (optionally a patch), every iterate on the 8-bit grid, the best-loss image kept. The objective
(toward a target string, or away from refusal) and ``through`` (optimise the defended conversation) are pgd's.

The step rule, minimising the loss L:

- the step size eta starts at 2 * epsilon; the first step is a plain projected step, the next ones add momentum:
  z = P(x_k - eta * d(grad)), x_{k+1} = P(x_k + 0.75 (z - x_k) + 0.25 (x_k - x_{k-1}));
- at checkpoints eta is halved, and the iterate restarts from the best image so far, when fewer than rho = 0.75
  of the steps since the last checkpoint lowered the loss, or when eta was not halved at the last checkpoint and
  the best loss has not improved since.

Simplifications, against the paper and its reference code (autoattack):

- one run per sample, no restarts, no EOT; the loss is pgd's (a target string's NLL, or the refusals'
  log-probability), not cross-entropy or the DLR margin;
- every iterate is projected onto the 8-bit grid, so a move smaller than half a grey level is lost; for l-inf,
  eta is therefore never halved below one grey level (1/255);
- checkpoints as the reference code counts them: the first after max(int(0.22 N), 1) steps, each next interval
  shorter by max(int(0.03 N), 1), down to max(int(0.06 N), 1) (N: the step budget);
- right after a restart from the best image the step has no momentum (the reference code takes the jump from the
  last iterate to the best one as momentum).

Example::

    attacks:
      - {name: apgd, args: {steps: 100, epsilon: 0.0627, target_text: "Sure, here is", blank_size: 64}}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from safeglass.attacks.gradient import GREY_LEVEL, Budget, PGDAttack


class APGDAttack(PGDAttack):
    """Auto-PGD (Croce & Hein 2020) on the input images: pgd's objectives and budget, with a step size that starts
    at 2 * epsilon and halves at checkpoints where progress stalls, and momentum.

    Args:
        target_text: the reply opening the image pushes the model toward (``objective: target``).
        epsilon: budget around the original image in the norm, in [0, 1] pixel units (l-inf: 16/255 = 0.0627;
            with ``norm: l2``, the l2 length of each image's perturbation).
        steps: the step budget per sample (one forward and backward pass each).
        early_stop: stop a sample once its loss falls below this (``target``: NLL in nats).
        blank_size: give text-only samples a mid-grey square image of this side to optimise.
        seed: seed of the random start inside the budget (and of the patch position).
        norm: the budget's norm, ``linf`` or ``l2``.
        patch: change only a patch covering this fraction of each side (e.g. 0.2), at the processor's size;
            unset: the whole image. With ``epsilon: 1`` the patch is unrestricted.
        patch_at: the patch's position, (top, left) as fractions of the room left for it (0: top / left edge, 1:
            bottom / right edge); unset: drawn per sample from the seed and the sample id.
        objective: ``target`` (toward ``target_text``) or ``away-from-refusal`` (lower the probability of every
            refusal opening in ``refusals``).
        refusals: the refusal openings ``away-from-refusal`` pushes away from (unset: safeglass's own list).
        through: a defense (registry name or ``{name, args}``) whose input transform is applied to the conversation
            while optimising (an adaptive attack).
        momentum: weight of the new step against the last move (the paper's alpha, 0.75).
        rho: the share of steps between checkpoints that must lower the loss for eta to be kept (0.75).
    """

    name = "apgd"

    def __init__(self, target_text: str = "Sure, here is", epsilon: float = 16 / 255, steps: int = 50,
                 early_stop: float | None = None, blank_size: int | None = None, seed: int = 0,
                 norm: Literal["linf", "l2"] = "linf", patch: float | None = None,
                 patch_at: list[float] | None = None, objective: Literal["target", "away-from-refusal"] = "target",
                 refusals: list[str] | None = None, through: str | dict[str, Any] | None = None,
                 momentum: float = 0.75, rho: float = 0.75) -> None:
        # the step size is not an option: it starts at 2 * epsilon and adapts
        super().__init__(target_text, epsilon, 2 * epsilon, steps, early_stop, blank_size, seed, norm, patch,
                         patch_at, objective, refusals, through)
        if not 0 < momentum <= 1 or not 0 < rho <= 1:
            raise ValueError(f"{self.name}: momentum and rho are in (0, 1]")
        self.momentum, self.rho = float(momentum), float(rho)

    def config(self) -> dict[str, Any]:
        cfg = {k: v for k, v in super().config().items() if k != "step_size"}
        return {**cfg, "momentum": self.momentum, "rho": self.rho}

    def _optimise(self, loss_at: Callable[[Any], tuple[float, Any]], x: Any,
                  budget: Budget) -> tuple[Any, float, list[float], dict[str, Any]]:
        import torch

        n = self.steps
        eta = 2 * self.epsilon
        floor = GREY_LEVEL if self.norm == "linf" else 0.0
        interval, shrink, shortest = max(int(0.22 * n), 1), max(int(0.03 * n), 1), max(int(0.06 * n), 1)
        next_check = interval
        best, best_loss, best_grad = x.clone(), float("inf"), None
        losses: list[float] = []
        x_prev = None  # the iterate before x (the momentum term); None right after a (re)start
        last_value, lowered = float("inf"), 0
        best_at_check, halved_at_check, halvings = float("inf"), False, 0
        for k in range(n):
            value, grad = loss_at(x)
            losses.append(round(value, 4))
            lowered += k > 0 and value < last_value
            last_value = value
            if value < best_loss:
                best, best_loss, best_grad = x.detach().clone(), value, grad.detach().clone()
            if self.early_stop is not None and value < self.early_stop:
                break
            if k + 1 == next_check:
                stalled = not halved_at_check and best_loss >= best_at_check
                halved_at_check = lowered < self.rho * interval or stalled
                if halved_at_check:
                    eta, halvings = max(eta / 2, floor), halvings + 1
                    x, grad, x_prev = best.clone(), best_grad, None
                best_at_check, lowered = best_loss, 0
                interval = max(interval - shrink, shortest)
                next_check += interval
            with torch.no_grad():
                x = x.detach()
                z = budget.project(x - eta * budget.direction(grad))
                if x_prev is not None:
                    z = budget.project(x + self.momentum * (z - x) + (1 - self.momentum) * (x - x_prev))
                x_prev, x = x, z
        return best, best_loss, losses, {"attack_halvings": halvings, "attack_last_step_size": round(eta, 6)}
