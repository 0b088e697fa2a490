"""The `clip` config kind: one Schema for `safeglass clip eval` and `safeglass clip defend`.

    model: {organism: shapeclip}          # or {random: clip|siglip, seed: 0}, or {hub: openai/clip-vit-base-patch32}
    data: {source: shapeworld, n: 1000, seed: 0}     # or {source: folder, image_dir: photos/, n: 500}
    templates: ["a photo of a {}"]
    attack: {word: wrong-class, size: 0.22, position: auto}
    scam_templates: [...]                  # the SCAM choice's templates (default: the templates)
    defend: {fit_n: 500, max_clean_drop_points: 1.0}
    adversarial: {eps: [2, 4], steps: 10, method: [pgd, apgd], n: 500}   # `clip attack`
    robust: {method: tecoa, eps: 4, attack_steps: 3, train_steps: 120}  # `clip robust-train`

Every problem names the file and the field (`schema.validate`); paths are read from the config file's folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from safeglass.schema import Number, Problem, Schema, validate

NOT_IN_KEY = ("name", "description", "batch_size")  # what does not change a result
OPTIONAL_BLOCKS = ("adversarial", "robust")


class ModelBlock(Schema):
    organism: str | None = None
    path: str | None = None
    random: Literal["clip", "siglip"] | None = None
    seed: int = Field(0, ge=0)
    hub: str | None = None
    revision: str | None = None


class DataBlock(Schema):
    source: Literal["shapeworld", "folder"] = "shapeworld"
    image_dir: str | None = None
    n: int = Field(1000, ge=1)
    seed: int = Field(0, ge=0)
    image_size: int | None = Field(None, ge=8)  # None: the model's input side


class AttackBlock(Schema):
    word: str = "wrong-class"
    font: Literal["sans", "serif", "mono"] = "sans"
    size: Number = Field(0.22, ge=0.05, le=0.6)
    colour: str | None = None
    opacity: Number = Field(1.0, gt=0, le=1)
    position: str | list[Number] = "auto"
    postit: bool = False


class DefendBlock(Schema):
    fit_n: int = Field(500, ge=1)
    fit_seed: int = Field(0, ge=0)
    max_clean_drop_points: Number = Field(1.0, ge=0)
    min_gain_points: Number = Field(0.1, ge=0)
    patience: int = Field(10, ge=1)


class AdversarialBlock(Schema):
    """`safeglass clip attack`: l-inf zero-shot attacks at each eps (in 1/255 of [0, 1] pixels)."""
    eps: list[Number] = Field([2, 4], min_length=1)
    steps: int = Field(10, ge=0)
    method: Literal["pgd", "apgd"] | list[Literal["pgd", "apgd"]] = ["pgd", "apgd"]
    step_size: Number | None = Field(None, gt=0)  # PGD only, in 1/255; None: 2.5 * eps / steps
    n: int | None = Field(None, ge=1)             # None: data.n


class RobustBlock(Schema):
    """`safeglass clip robust-train`: TeCoA / FARE fine-tuning of the vision tower (see clip.robust)."""
    method: Literal["tecoa", "fare"] = "tecoa"
    eps: Number = Field(4, ge=0)                  # in 1/255
    attack_steps: int = Field(10, ge=0)
    step_size: Number | None = Field(None, gt=0)  # in 1/255; None: max(1, 2.5 * eps / attack_steps)
    train_steps: int = Field(200, ge=0)
    batch_size: int = Field(32, ge=1)
    lr: Number = Field(1e-4, gt=0)
    weight_decay: Number = Field(1e-4, ge=0)
    warmup: int = Field(10, ge=0)
    checkpoint_every: int = Field(20, ge=1)
    time_budget_s: Number | None = Field(None, gt=0)
    train_n: int = Field(4096, ge=1)              # training images (ShapeCLIP's training world, or the folder)


class ClipSchema(Schema):
    config_kind: ClassVar[str] = "clip"

    name: str | None = None
    description: str | None = None
    model: ModelBlock
    data: DataBlock = DataBlock()
    classes: list[str] | None = Field(None, min_length=2)   # None: ShapeWorld's shapes, or the folder's subfolders
    templates: list[str] | None = Field(None, min_length=1)  # None: a set the model can read (see zeroshot)
    attack: AttackBlock = AttackBlock()
    scam_templates: list[str] | None = Field(None, min_length=1)
    defend: DefendBlock | None = None
    adversarial: AdversarialBlock | None = None
    robust: RobustBlock | None = None
    seed: int = Field(0, ge=0)
    batch_size: int = Field(256, ge=1)

    def cross_check(self) -> list[Problem]:
        from safeglass.clip.backends import MODEL_KEYS
        from safeglass.clip.typography import NEEDS_SCENE, POSITIONS, SCENE_POSITIONS
        from safeglass.data.shapeworld.world import COLOUR_NAMES

        problems: list[Problem] = []
        given = [k for k in MODEL_KEYS if getattr(self.model, k) is not None]
        if len(given) != 1:
            problems.append((("model",), f"give exactly one of {', '.join(MODEL_KEYS)}"))
        from safeglass.clip.backends import CLIP_ORGANISMS

        if self.model.organism is not None and self.model.organism not in CLIP_ORGANISMS:
            problems.append((("model", "organism"),
                             f"{self.model.organism!r} is not a CLIP organism; known: {', '.join(CLIP_ORGANISMS)}"))
        if self.data.source == "folder" and not self.data.image_dir:
            problems.append((("data", "image_dir"), "a folder source needs image_dir (a folder of class subfolders)"))
        if self.data.source == "shapeworld" and self.data.image_dir:
            problems.append((("data", "image_dir"), "only a folder source reads image_dir"))
        a = self.attack
        if a.colour is not None and a.colour not in COLOUR_NAMES:
            problems.append((("attack", "colour"), f"expected one of {', '.join(COLOUR_NAMES)}, got {a.colour!r}"))
        names = (*POSITIONS, "random", *SCENE_POSITIONS)
        if self.data.source != "shapeworld":
            names = tuple(n for n in names if n not in NEEDS_SCENE)
        if isinstance(a.position, str) and a.position not in names:
            problems.append((("attack", "position"), f"expected one of {', '.join(names)} or [x, y], "
                                                     f"got {a.position!r}"))
        if isinstance(a.position, list) and (len(a.position) != 2 or not all(0 <= v <= 1 for v in a.position)):
            problems.append((("attack", "position"), "an [x, y] centre is two fractions of the side"))
        for fld in ("templates", "scam_templates"):
            for i, t in enumerate(getattr(self, fld) or []):
                if t.count("{}") != 1:
                    problems.append(((fld, i), f"a template holds one {{}} for the class name, got {t!r}"))
        return problems


@dataclass(frozen=True)
class ClipConfig:
    name: str
    model: dict[str, Any]
    data: dict[str, Any]
    classes: tuple[str, ...] | None
    templates: tuple[str, ...] | None
    attack: dict[str, Any]
    scam_templates: tuple[str, ...] | None
    defend: dict[str, Any] | None
    seed: int
    batch_size: int
    source: str
    raw: dict[str, Any] = field(default_factory=dict)
    hash: str = ""
    adversarial: dict[str, Any] | None = None
    robust: dict[str, Any] | None = None


def parse_clip_config(raw: Any, source: str = "<dict>", base_dir: str | Path | None = None) -> ClipConfig:
    """A validated ClipConfig; every error names the file and the field."""
    from safeglass.config import resolve_paths
    from safeglass.hashing import content_hash

    given = resolve_paths(raw, Path(base_dir)) if base_dir is not None and isinstance(raw, dict) else raw
    cfg = validate(ClipSchema, given, source)
    dumped = cfg.model_dump()
    # an absent optional block leaves the hash as it was before the block existed (finished results stay found)
    keyed = {k: v for k, v in dumped.items() if k not in NOT_IN_KEY and not (k in OPTIONAL_BLOCKS and v is None)}
    return ClipConfig(
        name=cfg.name or (Path(source).stem if source != "<dict>" else "clip"),
        model={k: v for k, v in dumped["model"].items() if v is not None},
        data=dumped["data"], classes=tuple(cfg.classes) if cfg.classes else None,
        templates=tuple(cfg.templates) if cfg.templates else None, attack=dumped["attack"],
        scam_templates=tuple(cfg.scam_templates) if cfg.scam_templates else None,
        defend=dumped["defend"], seed=cfg.seed, batch_size=cfg.batch_size, source=source,
        raw=raw if isinstance(raw, dict) else {}, hash=content_hash(keyed),
        adversarial=dumped["adversarial"], robust=dumped["robust"])


def load_clip_config(path: str | Path) -> ClipConfig:
    from safeglass.config import read_config

    raw, source, base_dir = read_config(path)
    return parse_clip_config(raw, source, base_dir)
