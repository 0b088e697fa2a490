"""The adaptive selector as a defense: per input, cheap signals (judges' flags: text in the image, an injection or
NSFW score, a harmful request) pick one of several configurations (chains of defenses), by a rule fitted offline
(``study/selector.py``) and saved as a selector file (``defenses/selector_rule.py``).

Each sample's trace says what was chosen and why (the signals, the cell, whether the fallback was used, the figures
the cell was fitted on), before the chosen chain's own calls. The file enters the key by content, with each
configuration's key, so an edited or re-fitted selector never reuses replies made under another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from safeglass.defenses.base import Defense
from safeglass.defenses.chain import Chain
from safeglass.defenses.context import DefenseContext, Uses
from safeglass.defenses.selector_rule import SelectorError, choose, load_selector
from safeglass.types import Generation, GenerationParams, JudgeInput, Sample, Target


class Adaptive(Defense):
    """Chooses a configuration per input from cheap signals, by a fitted selector file.

    Args:
        selector_file: the selector JSON (``safeglass.study.selector.fit_selector`` / ``save_selector``): its
            signals (judges whose flag is read per input), configurations (chains of defenses) and rule (a
            configuration per combination of flags, and a fallback); keyed by content.
    """

    name = "adaptive"

    def __init__(self, selector_file: str) -> None:
        self.selector_file = str(selector_file)
        self.selector = load_selector(self.selector_file)
        self.signal_refs = {
            s["id"]: Uses("judges", s["judge"], dict(s.get("args") or {}), role=f"signal {s['id']}",
                          needs=("signal",), where=f"adaptive: {self.selector_file}: signals[{i}]")
            for i, s in enumerate(self.selector["signals"])}
        self.chains: dict[str, Chain] = {}
        for cid, steps in self.selector["configurations"].items():
            try:
                self.chains[cid] = Chain(steps)
            except (ValueError, KeyError) as exc:  # an unknown defense name or option, said with its place
                raise SelectorError(f"{self.selector_file}: field 'configurations.{cid}': {exc}") from exc

    def config(self) -> dict[str, Any]:
        # the file by content, and each configuration's own key (a step's prompt_file by content, too)
        return {**self.option_key(), "configurations": {cid: c.config() for cid, c in self.chains.items()}}

    def uses(self) -> list[Uses]:
        return [*self.signal_refs.values(), *(u for c in self.chains.values() for u in c.uses())]

    def setup(self, ctx: DefenseContext) -> None:
        super().setup(ctx)
        for chain in self.chains.values():
            chain.setup(ctx)

    def signals(self, samples: Sequence[Sample]) -> list[dict[str, bool]]:
        """Each signal's flag per sample, traced. A judge sees the request and its images only: not the sample's kind
        or category, which a deployed selector (``serve``) would not know either."""
        assert self.ctx is not None
        items = [JudgeInput(s.prompt, "", images=s.images) for s in samples]
        flags: list[dict[str, bool]] = [{} for _ in samples]
        for sid, ref in self.signal_refs.items():
            for i, v in enumerate(self.ctx.judge(ref.role, ref, items)):
                flags[i][sid] = bool(v.flag)
        return flags

    def generate(self, target: Target, samples: Sequence[Sample], params: GenerationParams) -> list[Generation]:
        if self.ctx is None:
            raise RuntimeError("adaptive needs a defense context (it is set up by the runner)")
        if not samples:
            return []
        choices = [choose(self.selector, f) for f in self.signals(samples)]
        groups: dict[str, list[int]] = {}
        for i, (cid, why) in enumerate(choices):
            groups.setdefault(cid, []).append(i)
            self.ctx.record(i, {"role": "selector", "selector": why, "note": _note(why)})
        out: list[Generation | None] = [None] * len(samples)
        for cid, idx in groups.items():  # one batch per configuration, in order of first use
            with self.ctx.part(idx):  # the chain's sub-calls are traced under their own samples
                gens = self.chains[cid].generate(target, [samples[i] for i in idx], params)
            for i, g in zip(idx, gens, strict=True):
                out[i] = replace(g, extra={**g.extra, "selector": choices[i][1]})
        return [g for g in out if g is not None]


def _note(why: dict[str, Any]) -> str:
    """The choice in words, shown beside the trace entry in the report's sample browser."""
    on = [s for s, v in why["signals"].items() if v]
    said = f"signals on: {', '.join(on)}" if on else "no signal on"
    fitted = why.get("fitted") or {}
    figures = (f"; fitted on {fitted.get('n_harmful', 0)} harmful / {fitted.get('n_benign', 0)} benign, "
               f"{fitted.get('harmful_bad', 0)} / {fitted.get('benign_bad', 0)} bad") if fitted else ""
    how = "fallback (cell never seen in fitting)" if why["fallback"] else f"cell {why['cell']}"
    return f"{why['configuration']}: {said}; {how}{figures}"
