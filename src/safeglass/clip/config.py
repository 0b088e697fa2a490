"""The `clip` config kind: one Schema for `safeglass clip eval` and `safeglass clip defend`.

    model: {organism: shapeclip}          # or {random: clip|siglip, seed: 0}, or {hub: openai/clip-vit-base-patch32}
    data: {source: shapeworld, n: 1000, seed: 0}     # or {source: folder, image_dir: photos/, n: 500}
                                          # or {source: rta100 | paint-typo | scam, path: DIR[, type: SCAM]}
    templates: ["a photo of a {}"]
    attack: {word: wrong-class, size: 0.22, position: auto}
    scam_templates: [...]                  # the SCAM choice's templates (default: the templates)
    defend: {fit_n: 500, max_clean_drop_points: 1.0}
    segment: {background: fit, fit_n: 200}   # `safeglass clip segment`: MaskCLIP mIoU, clean vs attacked
    vqa: {target: {name: safesmol-vl}, n: 200}  # `safeglass clip vqa`: a VLM's answers, clean vs attacked
    adversarial: {eps: [2, 4], steps: 10, method: [pgd, apgd], n: 500}   # `clip attack`
    robust: {method: tecoa, eps: 4, attack_steps: 3, train_steps: 120}  # `clip robust-train`

Every problem names the file and the field (`schema.validate`); paths are read from the config file's folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from safeglass.schema import Number, Problem, Schema

NOT_IN_KEY = ("name", "description", "batch_size")  # what does not change a result
# The fields of the first clip configs. A field added since is left out of the hash while it is unset (None), so
# configs written before it keep their hashes and their finished results.
FIRST_FIELDS = {"": ("model", "data", "classes", "templates", "attack", "scam_templates", "defend", "seed"),
                "model": ("organism", "path", "random", "seed", "hub", "revision"),
                "data": ("source", "image_dir", "n", "seed", "image_size")}


class ModelBlock(Schema):
    organism: str | None = None
    path: str | None = None
    random: Literal["clip", "siglip"] | None = None
    seed: int = Field(0, ge=0)
    hub: str | None = None
    revision: str | None = None
    open_clip: str | None = None   # an open_clip architecture or hf-hub: name (the optional open_clip backend)
    pretrained: str | None = None  # its open_clip pretrained tag


class DataBlock(Schema):
    # rta100 / paint-typo / scam come attacked: read from `path` (clip/datasets.py); `type` picks SCAM's subset
    source: Literal["shapeworld", "folder", "rta100", "paint-typo", "scam"] = "shapeworld"
    image_dir: str | None = None
    path: str | None = None
    type: Literal["SCAM", "NoSCAM", "SynthSCAM"] | None = None
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


class PrefixBlock(Schema):  # Defense-Prefix's training (clip/prefix.py)
    steps: int = Field(100, ge=1)
    lr: Number = Field(0.01, gt=0)
    identity_weight: Number = Field(1.0, ge=0)


class PaintBlock(Schema):  # PAINT's patch and interpolation grid (clip/paint.py)
    epochs: int = Field(3, ge=1)
    lr: Number = Field(1e-4, gt=0)
    weight_decay: Number = Field(0.1, ge=0)
    batch_size: int = Field(64, ge=1)
    alphas: list[Number] = Field([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], min_length=2)
    select_share: Number = Field(0.5, gt=0, lt=1)


DEFEND_METHODS = ("dyslexify", "prefix", "paint")


class DefendBlock(Schema):
    fit_n: int = Field(500, ge=1)
    fit_seed: int = Field(0, ge=0)
    max_clean_drop_points: Number = Field(1.0, ge=0)
    min_gain_points: Number = Field(0.1, ge=0)
    patience: int = Field(10, ge=1)
    methods: list[Literal["dyslexify", "prefix", "paint"]] = Field(["dyslexify"], min_length=1)
    prefix: PrefixBlock = PrefixBlock()
    paint: PaintBlock = PaintBlock()


class AmplifyBlock(Schema):
    models: list[ModelBlock] = Field(min_length=1)  # the variants, scored against the config's `model` (the base)
    tasks: list[Literal["classify", "segment", "vqa"]] = Field(["classify"], min_length=1)
    resamples: int = Field(1000, ge=100)


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


class SegmentBlock(Schema):
    image_dir: str | None = None               # a VOC-format folder; None: ShapeWorld masks (data.n, data.seed)
    voc_split: str = "val"
    voc_classes: list[str] | None = Field(None, min_length=1)   # None: VOC's 20
    background: str | Number = "fit"           # fit (a threshold fitted on the fit split), a prompt, or a cosine
    fit_n: int = Field(200, ge=1)
    fit_seed: int = Field(0, ge=0)
    ffn: bool = True                           # MaskCLIP keeps the last block's MLP on the value path
    resamples: int = Field(1000, ge=10)


class TargetRef(Schema):
    name: str = "safesmol-vl"
    args: dict[str, Any] = Field(default_factory=dict)


class VqaBlock(Schema):
    target: TargetRef = TargetRef()
    n: int = Field(200, ge=1)
    seed: int = Field(0, ge=0)
    max_new_tokens: int = Field(8, ge=1, le=256)
    defense: str | None = "default"            # default: the shipped instruction; None: no defense arm
    defense_place: Literal["system", "prepend"] = "system"
    swap_tower: bool = False                   # run the VLM with `model`'s vision tower (RobustVLM's protocol)


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
    segment: SegmentBlock | None = None
    vqa: VqaBlock | None = None
    amplify: AmplifyBlock | None = None
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
        for i, m in enumerate(self.amplify.models if self.amplify else []):
            if len([k for k in MODEL_KEYS if getattr(m, k) is not None]) != 1:
                problems.append((("amplify", "models", i), f"give exactly one of {', '.join(MODEL_KEYS)}"))
        from safeglass.clip.backends import CLIP_ORGANISMS

        if self.model.organism is not None and self.model.organism not in CLIP_ORGANISMS:
            problems.append((("model", "organism"),
                             f"{self.model.organism!r} is not a CLIP organism; known: {', '.join(CLIP_ORGANISMS)}"))
        if self.data.source == "folder" and not self.data.image_dir:
            problems.append((("data", "image_dir"), "a folder source needs image_dir (a folder of class subfolders)"))
        if self.data.source == "shapeworld" and self.data.image_dir:
            problems.append((("data", "image_dir"), "only a folder source reads image_dir"))
        problems += _dataset_problems(self)
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
        if self.defend is not None:
            if len(set(self.defend.methods)) != len(self.defend.methods):
                problems.append((("defend", "methods"), "a method is listed twice"))
            if 0 not in self.defend.paint.alphas or not all(0 <= a <= 1 for a in self.defend.paint.alphas):
                problems.append((("defend", "paint", "alphas"), "the grid holds 0 (the unpatched model) and "
                                                                 "values in [0, 1]"))
        return problems


def _dataset_problems(cfg: ClipSchema) -> list[Problem]:
    from safeglass.clip.datasets import ATTACKED_SOURCES, SCAM_SOURCE

    d, out = cfg.data, []
    if d.source in ATTACKED_SOURCES and not d.path:
        out.append((("data", "path"), f"a {d.source} source needs path (the local copy of the dataset)"))
    if d.source not in ATTACKED_SOURCES and d.path:
        out.append((("data", "path"), f"only {', '.join(ATTACKED_SOURCES)} sources read path"))
    if d.type is not None and d.source != SCAM_SOURCE:
        out.append((("data", "type"), "only a scam source reads type"))
    if d.source in ATTACKED_SOURCES and cfg.defend is not None:
        out.append((("defend",), f"defend needs the written words' boxes, which {d.source} does not record; "
                                 "defend on shapeworld or a folder source"))
    return out


def _unkeyed_defaults(dumped: dict[str, Any]) -> dict[str, Any]:
    """The defend block's later fields (methods, prefix, paint) at their defaults leave the hash as it was
    before they existed, so results made then keep their keys."""
    d = dumped.get("defend")
    if d is None:
        return dumped
    default = DefendBlock().model_dump()
    kept = {k: v for k, v in d.items() if k not in ("methods", "prefix", "paint") or v != default[k]}
    return {**dumped, "defend": kept}


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
    amplify: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    hash: str = ""
    segment: dict[str, Any] | None = None
    vqa: dict[str, Any] | None = None
    adversarial: dict[str, Any] | None = None
    robust: dict[str, Any] | None = None


def parse_clip_config(raw: Any, source: str = "<dict>", base_dir: str | Path | None = None) -> ClipConfig:
    """A validated ClipConfig; every error names the file and the field."""
    from safeglass.config import keyed_fields, kind_name, validate_kind
    from safeglass.hashing import content_hash

    cfg = validate_kind(ClipSchema, raw, source, base_dir)
    dumped = cfg.model_dump()
    keyed = _unkeyed_defaults(keyed_fields(dumped, NOT_IN_KEY, FIRST_FIELDS))
    return ClipConfig(
        name=kind_name(cfg.name, source, "clip"),
        model={k: v for k, v in dumped["model"].items() if v is not None},
        data=dumped["data"], classes=tuple(cfg.classes) if cfg.classes else None,
        templates=tuple(cfg.templates) if cfg.templates else None, attack=dumped["attack"],
        scam_templates=tuple(cfg.scam_templates) if cfg.scam_templates else None,
        defend=dumped["defend"], amplify=_amplify_block(dumped["amplify"]), seed=cfg.seed,
        batch_size=cfg.batch_size, source=source,
        raw=raw if isinstance(raw, dict) else {}, hash=content_hash(keyed),
        adversarial=dumped["adversarial"], robust=dumped["robust"], segment=dumped["segment"],
        vqa=dumped["vqa"])


def _amplify_block(block: dict[str, Any] | None) -> dict[str, Any] | None:
    if block is None:
        return None
    return {**block, "models": [{k: v for k, v in m.items() if v is not None} for m in block["models"]]}


def load_clip_config(path: str | Path) -> ClipConfig:
    from safeglass.config import read_config

    raw, source, base_dir = read_config(path)
    return parse_clip_config(raw, source, base_dir)
