"""The `continual` config kind, read by `safeglass continual run` and `safeglass continual sweep`.

    name: continual-digits
    data: {source: digits, tasks: 5, scenario: class}     # or shapeworld (n, image_size), or folder (image_dir)
    synthetic: {source: generator}                        # or {source: folder, image_dir: generated/}
    contamination: {ratio: 0.5}                           # per_task: [..], per_class: {class name: ratio}
    train: {epochs: 5, batch_size: 32, lr: 0.05, buffer_size: 200}
    strategies: [finetune, er, derpp, er_ace, lwf, gdumb, agem, esrm, er+gate, derpp+gate]
    gate: {quantile: 0.5}
    sweep: {ratios: [0, 0.25, 0.5, 0.75, 1.0], seeds: [0, 1, 2]}
    seed: 0

Every problem names the file and the field; paths are read from the config file's folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from safeglass.schema import Number, Problem, Schema

NOT_IN_KEY = ("name", "description", "strategies", "sweep", "threads")  # what does not change one cell's result


class DataBlock(Schema):
    source: Literal["digits", "shapeworld", "folder"] = "digits"
    image_dir: str | None = None
    image_size: int = Field(16, ge=4)      # shapeworld and folder sources
    n: int = Field(1200, ge=10)            # shapeworld: how many scenes
    grey: bool = True                      # folder: read as grey levels
    tasks: int = Field(5, ge=1)
    scenario: Literal["class", "task"] = "class"
    test_fraction: Number = Field(0.25, gt=0, lt=1)
    split_seed: int = Field(0, ge=0)
    class_order: list[int] | None = None


class SyntheticBlock(Schema):
    source: Literal["generator", "folder"] = "generator"
    image_dir: str | None = None           # a folder of generated images, class subfolders named as the real ones
    packaged: bool = True                  # digits: the committed generator (else one trained on the fly)
    epochs: int = Field(150, ge=1)         # a generator trained on the fly
    temperature: Number = Field(1.0, gt=0)


class ContaminationBlock(Schema):
    ratio: Number = Field(0.5, ge=0, le=1)
    per_task: list[Number] | None = None
    per_class: dict[str, Number] | None = None


class TrainBlock(Schema):
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(32, ge=1)
    replay_batch: int = Field(32, ge=1)
    lr: Number = Field(0.05, gt=0)
    momentum: Number = Field(0.0, ge=0, lt=1)
    hidden: int = Field(256, ge=1)
    layers: int = Field(2, ge=1)
    buffer_size: int = Field(200, ge=1)
    derpp_alpha: Number = Field(0.3, ge=0)
    derpp_beta: Number = Field(0.5, ge=0)
    lwf_lambda: Number = Field(1.0, ge=0)
    lwf_temperature: Number = Field(2.0, gt=0)
    gdumb_epochs: int = Field(30, ge=1)
    esrm_tau: Number = Field(0.07, gt=0)
    esrm_weight: Number = Field(0.1, ge=0)


class GateBlock(Schema):
    quantile: Number = Field(0.5, ge=0, lt=1)
    warmup: int = Field(8, ge=0)


class SweepBlock(Schema):
    ratios: list[Number] = Field([0, 0.25, 0.5, 0.75, 1.0], min_length=1)
    seeds: list[int] = Field([0, 1, 2], min_length=1)


class ContinualSchema(Schema):
    config_kind: ClassVar[str] = "continual"

    name: str | None = None
    description: str | None = None
    data: DataBlock = DataBlock()
    synthetic: SyntheticBlock = SyntheticBlock()
    contamination: ContaminationBlock = ContaminationBlock()
    train: TrainBlock = TrainBlock()
    strategies: list[str] = Field(["finetune", "er", "derpp", "er_ace", "lwf", "gdumb", "agem", "esrm", "er+gate",
                                   "derpp+gate"], min_length=1)
    gate: GateBlock = GateBlock()
    sweep: SweepBlock = SweepBlock()
    seed: int = Field(0, ge=0)
    threads: int = Field(1, ge=1)

    def cross_check(self) -> list[Problem]:
        from safeglass.continual.strategies import known

        problems: list[Problem] = []
        for i, s in enumerate(self.strategies):
            if (p := known(s)) is not None:
                problems.append((("strategies", i), p))
        if len(set(self.strategies)) != len(self.strategies):
            problems.append((("strategies",), "a strategy is named twice"))
        for block in ("data", "synthetic"):
            b = getattr(self, block)
            if b.source == "folder" and not b.image_dir:
                problems.append(((block, "image_dir"),
                                 "a folder source needs image_dir (a folder of class subfolders)"))
            if b.source != "folder" and b.image_dir:
                problems.append(((block, "image_dir"), "only a folder source reads image_dir"))
        c = self.contamination
        if c.per_task is not None:
            if len(c.per_task) != self.data.tasks:
                problems.append((("contamination", "per_task"),
                                 f"{len(c.per_task)} ratios for {self.data.tasks} tasks"))
            problems += [(("contamination", "per_task", i), f"a ratio is in [0, 1], got {r}")
                         for i, r in enumerate(c.per_task) if not 0 <= r <= 1]
        problems += [(("contamination", "per_class", k), f"a ratio is in [0, 1], got {r}")
                     for k, r in (c.per_class or {}).items() if not 0 <= r <= 1]
        problems += [(("sweep", "ratios", i), f"a ratio is in [0, 1], got {r}")
                     for i, r in enumerate(self.sweep.ratios) if not 0 <= r <= 1]
        if self.data.source == "digits" and self.data.tasks > 10:
            problems.append((("data", "tasks"), f"digits has 10 classes, not enough for {self.data.tasks} tasks"))
        return problems


@dataclass(frozen=True)
class ContinualConfig:
    name: str
    data: dict[str, Any]
    synthetic: dict[str, Any]
    contamination: dict[str, Any]
    train: dict[str, Any]
    strategies: tuple[str, ...]
    gate: dict[str, Any]
    sweep: dict[str, Any]
    seed: int
    threads: int
    source: str
    keyed: dict[str, Any] = field(default_factory=dict)  # what a cell depends on (strategy, ratio, seed aside)
    raw: dict[str, Any] = field(default_factory=dict)
    hash: str = ""


def parse_continual_config(raw: Any, source: str = "<dict>", base_dir: str | Path | None = None) -> ContinualConfig:
    """A validated ContinualConfig; every error names the file and the field."""
    from safeglass.config import kind_name, validate_kind
    from safeglass.hashing import content_hash

    cfg = validate_kind(ContinualSchema, raw, source, base_dir)
    dumped = cfg.model_dump()
    keyed = {k: v for k, v in dumped.items() if k not in NOT_IN_KEY}
    return ContinualConfig(
        name=kind_name(cfg.name, source, "continual"), data=dumped["data"],
        synthetic=dumped["synthetic"], contamination=dumped["contamination"], train=dumped["train"],
        strategies=tuple(cfg.strategies), gate=dumped["gate"], sweep=dumped["sweep"], seed=cfg.seed,
        threads=cfg.threads, source=source, keyed=keyed, raw=raw if isinstance(raw, dict) else {},
        hash=content_hash({k: v for k, v in dumped.items() if k not in ("name", "description", "threads")}))


def load_continual_config(path: str | Path) -> ContinualConfig:
    from safeglass.config import read_config

    raw, source, base_dir = read_config(path)
    return parse_continual_config(raw, source, base_dir)
