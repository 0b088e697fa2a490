"""Persistence of an unlearning attack: from the attacked model, (a) K steps of benign fine-tuning (does refusal
come back by itself?), (b) re-alignment with the original refusals (how many steps restore it?), and (c) the
relearning attack: the same attack again on the re-aligned model (does the damage come back faster than it came
the first time?). Refusal "returns" when the held-out refusal is at least ``return_frac`` of the aligned model's."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from safeglass.align.attack import curve_run, first_step_reaching
from safeglass.align.measure import Pair


def refusal_rate(point: dict[str, Any]) -> float:
    return 1 - point["asr"]


def returns_at(curve: Sequence[dict[str, Any]], level: float) -> int | None:
    """The first probed step (after 0) whose held-out refusal is at least `level` (None: not within the curve)."""
    for p in curve:
        if p["step"] > 0 and refusal_rate(p) >= level - 1e-9:
            return int(p["step"])
    return None


def persistence(unlearner: Any, attacked: list[Any], method: str, attack_pairs: Sequence[Pair],
                realign_pairs: Sequence[Pair], retain: Sequence[Pair], spec: dict[str, Any],
                attack_curve: Sequence[dict[str, Any]], aligned_refusal: float,
                evaluate: Callable[[bool], dict[str, Any]], say: Callable[[str], None] = print) -> dict[str, Any]:
    """Benign fine-tuning and re-alignment from the `attacked` adapter state, then relearning from the re-aligned
    state; curves and the steps at which refusal returns / the attack's success comes back."""
    every, level = int(spec["eval_every"]), float(spec["return_frac"]) * aligned_refusal
    out: dict[str, Any] = {"return_level": round(level, 4), "aligned_refusal": round(aligned_refusal, 4)}
    unlearner.restore(attacked)
    out["benign"] = curve_run(unlearner, "sft", retain, [], int(spec["benign_steps"]), every, evaluate,
                              stream=40, label="align persistence: benign fine-tuning", say=say,
                              start=attack_curve[-1])
    out["benign_refusal_returns_at"] = returns_at(out["benign"], level)
    unlearner.restore(attacked)
    out["realign"] = curve_run(unlearner, "sft", realign_pairs, [], int(spec["realign_steps"]), every, evaluate,
                               stream=41, label="align persistence: re-alignment", say=say,
                               start=attack_curve[-1])
    out["realign_refusal_returns_at"] = returns_at(out["realign"], level)
    first_final = attack_curve[-1]["asr"]
    out["relearn"] = curve_run(unlearner, method, attack_pairs, retain, int(spec["relearn_steps"]), every, evaluate,
                               stream=42, label="align persistence: relearning attack", say=say,
                               start=out["realign"][-1])
    out["relearn_steps_to_first_final"] = first_step_reaching(out["relearn"][1:], first_final) \
        if len(out["relearn"]) > 1 else None
    out["first_attack_steps_to_final"] = first_step_reaching(list(attack_curve), first_final)
    return out
