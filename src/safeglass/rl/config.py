"""The `rl` config kind (`safeglass rl attack`): the victim, the threat, the attacks and the evaluation seeds.

    victim: {packaged: mumimo-dqn}        # or {path: dir/with/model.safetensors+card.json}, or {train: {steps: 20000}}
    threat: {box_k: 2.0, plausible_k: 2.0, max_gain_db: 15.0}
    attacks: [none, random, greedy, fggm, pgd]
    fggm: {steps: 80, starts: 4, samples: 10000, box_ks: [1.0, 0.5, 0.25]}
    pgd: {steps: 20, over_claim: true}
    eval: {seeds: [100, 101, 102, 103, 104], horizon: 200}

The environment is the victim's own (its card's `env`); `train` trains one with the packaged recipe into OUT/victim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from safeglass.schema import Number, Problem, Schema

ATTACKS = ("none", "random", "greedy", "fggm", "pgd")


class TrainBlock(Schema):
    steps: int = Field(20000, ge=100)
    seed: int = Field(0, ge=0)


class VictimBlock(Schema):
    packaged: str | None = None
    path: str | None = None
    train: TrainBlock | None = None


class ThreatBlock(Schema):
    box_k: Number = Field(2.0, gt=0, le=5)
    plausible_k: Number = Field(2.0, gt=0, le=5)
    max_gain_db: Number = 15.0


class FggmBlock(Schema):
    steps: int = Field(80, ge=1)
    starts: int = Field(4, ge=1)
    samples: int = Field(10000, ge=100)
    box_ks: list[Number] = [1.0, 0.5, 0.25]  # smaller boxes tried, in turn, while the full one certifies nothing


class PgdBlock(Schema):
    steps: int = Field(20, ge=1)
    over_claim: bool = True  # reports never below the adversary's true gain (attacks.pgd_reports)


class EvalBlock(Schema):
    seeds: list[int] = Field([100, 101, 102, 103, 104], min_length=1)
    horizon: int = Field(200, ge=10)


class RlSchema(Schema):
    config_kind: ClassVar[str] = "rl"

    name: str | None = None
    description: str | None = None
    victim: VictimBlock = VictimBlock(packaged="mumimo-dqn")
    threat: ThreatBlock = ThreatBlock()
    attacks: list[Literal["none", "random", "greedy", "fggm", "pgd"]] = Field(list(ATTACKS), min_length=1)
    fggm: FggmBlock = FggmBlock()
    pgd: PgdBlock = PgdBlock()
    eval: EvalBlock = EvalBlock()
    seed: int = Field(0, ge=0)

    def cross_check(self) -> list[Problem]:
        given = [k for k in ("packaged", "path", "train") if getattr(self.victim, k) is not None]
        problems: list[Problem] = []
        if len(given) != 1:
            problems.append((("victim",), "give exactly one of packaged, path, train"))
        if "none" not in self.attacks:
            problems.append((("attacks",), "the reductions are measured against `none` (truthful reports): list it"))
        return problems


@dataclass(frozen=True)
class RlConfig:
    name: str
    victim: dict[str, Any]
    threat: dict[str, Any]
    attacks: tuple[str, ...]
    fggm: dict[str, Any]
    pgd: dict[str, Any]
    eval: dict[str, Any]
    seed: int
    source: str
    raw: dict[str, Any] = field(default_factory=dict)
    hash: str = ""


def parse_rl_config(raw: Any, source: str = "<dict>", base_dir: str | Path | None = None) -> RlConfig:
    """A validated RlConfig; every error names the file and the field."""
    from safeglass.config import kind_name, validate_kind
    from safeglass.hashing import content_hash

    cfg = validate_kind(RlSchema, raw, source, base_dir)
    dumped = cfg.model_dump()
    keyed = {k: v for k, v in dumped.items() if k not in ("name", "description")}
    return RlConfig(name=kind_name(cfg.name, source, "rl"),
                    victim={k: v for k, v in dumped["victim"].items() if v is not None}, threat=dumped["threat"],
                    attacks=tuple(cfg.attacks), fggm=dumped["fggm"], pgd=dumped["pgd"], eval=dumped["eval"],
                    seed=cfg.seed, source=source, raw=raw if isinstance(raw, dict) else {},
                    hash=content_hash(keyed))


def load_rl_config(path: str | Path) -> RlConfig:
    from safeglass.config import read_config

    raw, source, base_dir = read_config(path)
    return parse_rl_config(raw, source, base_dir)
