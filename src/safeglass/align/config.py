"""The `align` config kind, read by `safeglass align audit`:

    model: {organism: safesmol}          # or {tiny: llama, seed: 0}, or {hub: HF id or local folder}
    prealign: {steps: 80, lr: 0.003}      # optional: teach the model the refusals first (a test model)
    data: {forget_n: 48, retain_n: 24, heldout_n: 32, lookalikes_n: 16, fluency_n: 12, max_prompt_chars: 160}
    method: {name: npo, lr: 0.0003, batch_size: 8, beta: 0.1, retain_weight: 1.0, top_layers: 8, wordings: 4}
    forgetting: {steps: 24, every: 3}
    attack: {examples: 8, steps: 24, every: 6, subsets: [easy, random, hard]}
    budget: {examples: [4, 16], target_asr: 0.5}
    persistence: {benign_steps: 24, realign_steps: 24, relearn_steps: 12, eval_every: 6, return_frac: 0.9}
    baselines: [ga, gd, npo, rmu, refusal_prefix]   # each method on the random subset at the attack's budget
    eval: {max_new_tokens: 24, batch_size: 32, judges: [proxy-refusal, keyword-refusal], goal_judge: proxy-refusal,
           openers: ["I'm sorry, but I can't", "I won't provide help"]}   # the margins' refusal openings

Every problem names the file and the field; the hash covers what changes results (not name or description).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from safeglass.schema import Number, Problem, Schema

NOT_IN_KEY = ("name", "description")
# the fields of the first align configs: one added since stays out of the hash while unset, so older configs keep
# their hashes and finished phases
FIRST_FIELDS = {"": ("model", "prealign", "data", "method", "forgetting", "attack", "budget", "persistence",
                     "baselines", "eval", "seed", "threads"),
                "eval": ("max_new_tokens", "batch_size", "judges", "goal_judge", "judged"),
                "method": ("name", "lr", "batch_size", "beta", "retain_weight", "layer", "steering_coeff", "rmu_alpha",
                           "lora_r", "lora_alpha", "top_layers")}
SUBSETS = ("easy", "random", "hard")


class ModelBlock(Schema):
    organism: Literal["safesmol", "safesmol-v1"] | None = None
    path: str | None = None  # an organism build folder (with organism) or a local HF folder (alone)
    tiny: Literal["llama"] | None = None
    seed: int = Field(0, ge=0)
    hub: str | None = None


class PrealignBlock(Schema):
    steps: int = Field(80, ge=1)
    lr: Number = Field(3e-3, gt=0)
    batch_size: int = Field(8, ge=1)


class DataBlock(Schema):
    forget_n: int = Field(48, ge=4)
    retain_n: int = Field(24, ge=1)
    heldout_n: int = Field(32, ge=2)
    lookalikes_n: int = Field(16, ge=0)
    fluency_n: int = Field(12, ge=0)
    max_prompt_chars: int = Field(160, ge=20)
    answer_tokens: int = Field(32, ge=1)


class MethodBlock(Schema):
    name: Literal["ga", "gd", "npo", "rmu"] = "npo"
    lr: Number = Field(3e-4, gt=0)
    batch_size: int = Field(8, ge=1)
    beta: Number = Field(0.1, gt=0)
    retain_weight: Number = Field(1.0, ge=0)
    layer: int = -2
    steering_coeff: Number = Field(4.0, gt=0)
    rmu_alpha: Number = Field(1.0, ge=0)
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    top_layers: int | None = Field(None, ge=1)
    # each harmful prompt unlearnt with this many refusal wordings (its own and others of the refusal templates):
    # a model that refuses in several wordings moves to another when only one is unlearnt; unset: its own only
    wordings: int | None = Field(None, ge=1, le=12)


class ForgettingBlock(Schema):
    steps: int = Field(24, ge=1)
    every: int = Field(3, ge=1)
    lr: Number | None = Field(None, gt=0)  # None: the method's; lower spreads the flips over more probes


class AttackBlock(Schema):
    examples: int = Field(8, ge=1)
    steps: int = Field(24, ge=1)
    every: int = Field(6, ge=1)
    subsets: list[Literal["easy", "random", "hard"]] = Field(default_factory=lambda: list(SUBSETS), min_length=1)


class BudgetBlock(Schema):
    examples: list[int] = Field(default_factory=list)
    target_asr: Number = Field(0.5, gt=0, le=1)


class PersistenceBlock(Schema):
    benign_steps: int = Field(24, ge=1)
    realign_steps: int = Field(24, ge=1)
    relearn_steps: int = Field(12, ge=1)
    eval_every: int = Field(6, ge=1)
    return_frac: Number = Field(0.9, gt=0, le=1)


class EvalBlock(Schema):
    max_new_tokens: int = Field(24, ge=1)
    batch_size: int = Field(32, ge=1)
    judges: list[str] = Field(default_factory=lambda: ["proxy-refusal", "keyword-refusal"], min_length=1)
    goal_judge: str = "proxy-refusal"
    # which probes generate replies for the judges: every probe; each curve's ends (step 0 and the last; the curves
    # read the one-pass margins); only the aligned model and the end of each equal-budget attack ("attack": the
    # cheapest that still judges the goal's comparison); or none (a tiny test model's replies are noise)
    judged: Literal["all", "ends", "attack", "none"] = "ends"
    # the refusal openings the one-pass margins read (held-out prompts and the forgetting probes, a soft maximum over
    # them): the model's own refusal wordings, so that unlearning one wording while the model moves to another is
    # not counted as a flip; unset: the generic "I'm sorry, but I can't" (held-out) and each example's own refusal
    openers: list[str] | None = Field(None, min_length=1)


class AlignSchema(Schema):
    config_kind: ClassVar[str] = "align"

    name: str | None = None
    description: str | None = None
    model: ModelBlock
    prealign: PrealignBlock | None = None
    data: DataBlock = DataBlock()
    method: MethodBlock = MethodBlock()
    forgetting: ForgettingBlock = ForgettingBlock()
    attack: AttackBlock = AttackBlock()
    budget: BudgetBlock = BudgetBlock()
    persistence: PersistenceBlock | None = PersistenceBlock()
    baselines: list[Literal["ga", "gd", "npo", "rmu", "refusal_prefix"]] = Field(default_factory=list)
    eval: EvalBlock = EvalBlock()
    seed: int = Field(0, ge=0)
    threads: int = Field(1, ge=1)

    def cross_check(self) -> list[Problem]:
        from safeglass.registry import registry

        problems: list[Problem] = []
        m = self.model
        if sum(x is not None for x in (m.organism, m.tiny, m.hub)) + (m.path is not None and m.organism is None) != 1:
            problems.append((("model",), "give exactly one of organism, tiny, hub or path"))
        judges = registry("judges")
        for i, j in enumerate(self.eval.judges):
            if j not in judges:
                problems.append((("eval", "judges", i), f"unknown judge {j!r}"))
        if self.eval.goal_judge not in self.eval.judges:
            problems.append((("eval", "goal_judge"), f"{self.eval.goal_judge!r} is not one of eval.judges"))
        if self.attack.examples > self.data.forget_n:
            problems.append((("attack", "examples"), f"more than data.forget_n ({self.data.forget_n})"))
        for i, k in enumerate(self.budget.examples):
            if not 1 <= k <= self.data.forget_n:
                problems.append((("budget", "examples", i), f"between 1 and data.forget_n ({self.data.forget_n})"))
        if self.attack.steps % self.attack.every:
            problems.append((("attack", "every"), "must divide attack.steps (the curves end on a probe)"))
        return problems


@dataclass(frozen=True)
class AlignConfig:
    name: str
    model: dict[str, Any]
    prealign: dict[str, Any] | None
    data: dict[str, Any]
    method: dict[str, Any]
    forgetting: dict[str, Any]
    attack: dict[str, Any]
    budget: dict[str, Any]
    persistence: dict[str, Any] | None
    baselines: tuple[str, ...]
    eval: dict[str, Any]
    seed: int
    threads: int
    source: str
    hash: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


def parse_align_config(raw: Any, source: str = "<dict>", base_dir: str | Path | None = None) -> AlignConfig:
    """A validated AlignConfig; every error names the file and the field."""
    from safeglass.config import keyed_fields, kind_name, validate_kind
    from safeglass.hashing import content_hash

    cfg = validate_kind(AlignSchema, raw, source, base_dir)
    d = cfg.model_dump()
    keyed = keyed_fields(d, NOT_IN_KEY, FIRST_FIELDS)
    return AlignConfig(name=kind_name(cfg.name, source, "align"),
                       model={k: v for k, v in d["model"].items() if v is not None}, prealign=d["prealign"],
                       data=d["data"], method=d["method"], forgetting=d["forgetting"], attack=d["attack"],
                       budget=d["budget"], persistence=d["persistence"], baselines=tuple(d["baselines"]),
                       eval=d["eval"], seed=cfg.seed, threads=cfg.threads, source=source, hash=content_hash(keyed),
                       raw=raw if isinstance(raw, dict) else {})


def load_align_config(path: str | Path) -> AlignConfig:
    from safeglass.config import read_config

    raw, source, base_dir = read_config(path)
    return parse_align_config(raw, source, base_dir)
