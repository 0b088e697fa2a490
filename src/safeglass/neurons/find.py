"""`neurons find`: a YAML config in; recorded expertise, default glasses and a summary out.

    name: smollm2-toxigen                 # optional
    target: {name: tiny, args: {family: llama}}   # or a registry name: smollm2
    toxic:                                # sources whose items are all toxic
      - {dataset: toxigen-200, kind: harmful, limit: 100}
    non_toxic:
      - {dataset: toxigen-200, kind: benign, limit: 100}
      - {jsonl: neutral.jsonl, text: text, limit: 50}
    labelled:                             # sources with a label per item (1 / true / "toxic" = toxic)
      - {jsonl: items.jsonl, text: text, label: label, response: response, image: image}
      - {dataset: toxigen-200}            # harmful samples toxic, benign ones not
    span: auto                            # response | prompt | image | all | auto
    pooling: max                          # max | mean
    components: [language_model]
    batch_size: 8
    seed: 0
    glasses: {method: sgm, strength: 1.0, curve: linear}

A dataset source takes a registry name with ``args``, ``limit``, ``kind`` (keep only harmful or
benign samples) and ``response`` (a metadata field holding the response to teacher-force). A JSONL
source names its fields: ``text`` (the user turn, default "text"), ``response``, ``image`` (a path
relative to the file, or a list) and, in ``labelled``, ``label`` (default "label"); relative JSONL
paths are read from the config's folder. ``span: auto`` is "response" when every item has a
response, else "prompt".
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from safeglass.config import ConfigError, Named, read_config, resolve_paths
from safeglass.schema import Args, Problem, Schema, validate
from safeglass.types import Conversation, ImageRef, Turn

TOXIC_VALUES = {True, "1", "true", "yes", "toxic", "harmful", "unsafe"}
NON_TOXIC_VALUES = {False, "0", "false", "no", "non-toxic", "non_toxic", "nontoxic", "benign", "safe"}
EXPERTISE_SUMMARY = "summary.json"
GLASSES_SUBDIR = "glasses"


@dataclass
class FindConfig:
    name: str
    target: dict[str, Any]          # {"name": ..., "args": {...}}
    sources: list[dict[str, Any]]   # each with "role": toxic | non_toxic | labelled
    span: str = "auto"
    pooling: str = "max"
    components: tuple[str, ...] = ("language_model",)
    batch_size: int = 8
    seed: int = 0
    glasses: dict[str, Any] = field(default_factory=lambda: {"method": "sgm"})
    source: str = "<dict>"
    base_dir: Path = field(default_factory=Path.cwd)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class LabelledItem:
    conversation: Conversation
    response: str | None
    toxic: bool


def load_find_config(path: str | Path) -> FindConfig:
    raw, source, base_dir = read_config(path)
    return parse_find_config(raw, source=source, base_dir=base_dir)


class Source(Schema):
    """A dataset source (``dataset``, ``args``, ``kind``) or a JSONL one (``jsonl``, ``text``, ``image``)."""

    dataset: str | None = None
    args: Args = {}
    kind: Literal["harmful", "benign"] | None = None
    jsonl: str | None = None
    text: str | None = None
    image: str | None = None
    response: str | None = None
    limit: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        if (self.dataset is None) == (self.jsonl is None):
            raise ValueError("a source is a mapping with either 'dataset' or 'jsonl'")
        other = JSONL_ONLY if self.dataset is not None else DATASET_ONLY
        wrong = sorted(other & self.model_fields_set)
        if wrong:
            raise ValueError(f"{', '.join(wrong)}: not a field of a {'dataset' if self.dataset else 'jsonl'} source")
        return self


class LabelledSource(Source):
    label: str | None = None   # the JSONL field holding each item's label


DATASET_ONLY = frozenset({"args", "kind"})
JSONL_ONLY = frozenset({"text", "image", "label"})


class FindSchema(Schema):
    config_kind: ClassVar[str] = "neurons find"

    name: str | None = None
    description: str | None = None
    target: Named
    toxic: list[Source] | None = None
    non_toxic: list[Source] | None = None
    labelled: list[LabelledSource] | None = None
    span: str = "auto"
    pooling: str = "max"
    components: list[str] = Field(["language_model"], min_length=1)
    batch_size: int = Field(8, ge=1)
    seed: int = Field(0, ge=0)
    glasses: dict[str, Any] | None = None   # {method: sgm} when absent

    @field_validator("components", mode="before")
    @classmethod
    def _one_component(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def cross_check(self) -> list[Problem]:
        from safeglass.neurons.recording import COMPONENTS, POOLINGS, SPANS  # torch: not at import

        problems: list[Problem] = []
        for field_name, value, allowed in (("span", self.span, (*SPANS, "auto")), ("pooling", self.pooling, POOLINGS)):
            if value not in allowed:
                problems.append(((field_name,), f"expected one of {', '.join(allowed)}, got {value!r}"))
        problems += [(("components", i), f"expected one of {', '.join(COMPONENTS)}, got {c!r}")
                     for i, c in enumerate(self.components) if c not in COMPONENTS]
        if self.glasses is not None and "method" not in self.glasses:
            problems.append((("glasses",), "give a mapping with 'method' (and its parameters)"))
        if not self.labelled and not (self.toxic and self.non_toxic):
            problems.append(((), "give toxic and non_toxic sources, or labelled ones"))
        return problems


def parse_find_config(raw: Any, source: str = "<dict>", base_dir: str | Path | None = None) -> FindConfig:
    """A validated FindConfig; every error names the file and the field."""
    given = raw
    if isinstance(raw, dict) and "target" in raw:  # JSONL paths are read against base_dir when they are read
        given = {**raw, "target": resolve_paths(raw["target"], Path(base_dir) if base_dir is not None else None)}
    cfg = validate(FindSchema, given, source)
    sources = [{"role": role, "where": f"{source}: field '{role}[{i}]'", **raw[role][i]}
               for role in ("toxic", "non_toxic", "labelled") for i in range(len(getattr(cfg, role) or []))]
    return FindConfig(
        name=cfg.name or Path(source).stem, target={"name": cfg.target.name, "args": dict(cfg.target.args)},
        sources=sources, span=cfg.span, pooling=cfg.pooling, components=tuple(cfg.components),
        batch_size=cfg.batch_size, seed=cfg.seed, glasses=dict(cfg.glasses or {"method": "sgm"}), source=source,
        base_dir=Path(base_dir) if base_dir is not None else Path.cwd(), raw=raw)


# --- items -----------------------------------------------------------------------------------------

def load_items(cfg: FindConfig) -> tuple[list[LabelledItem], list[dict[str, Any]]]:
    """Every source's items with their labels, and a description of each source for provenance."""
    items: list[LabelledItem] = []
    described = []
    for src in cfg.sources:
        got = _dataset_items(src) if "dataset" in src else _jsonl_items(src, cfg.base_dir)
        new, desc = got
        items.extend(new)
        described.append({**desc, "role": src["role"], "n": len(new), "n_toxic": sum(i.toxic for i in new)})
    n_toxic = sum(i.toxic for i in items)
    if n_toxic == 0 or n_toxic == len(items):
        raise ConfigError(f"{cfg.source}: the sources give {n_toxic} toxic and {len(items) - n_toxic} non-toxic "
                          "items; expertise needs both")
    return items, described


def _role_label(src: dict[str, Any], sample_kind: str) -> bool:
    if src["role"] == "toxic":
        return True
    if src["role"] == "non_toxic":
        return False
    return sample_kind == "harmful"


def _dataset_items(src: dict[str, Any]) -> tuple[list[LabelledItem], dict[str, Any]]:
    from safeglass.registry import registry

    where = src["where"]
    try:
        loader = registry("datasets").get(src["dataset"])
        # with a kind filter the limit applies after filtering
        ds = loader(limit=None if src.get("kind") else src.get("limit"), **(src.get("args") or {}))
    except (KeyError, ValueError, FileNotFoundError, TypeError) as exc:
        raise ConfigError(f"{where}: dataset {src['dataset']!r}: {exc}") from None
    samples = [s for s in ds.samples if src.get("kind") in (None, s.kind)]
    if src.get("limit") is not None:
        samples = samples[:src["limit"]]
    items = []
    for s in samples:
        response = None
        if src.get("response"):
            if src["response"] not in s.metadata:
                raise ConfigError(f"{where}.response: sample {s.id} has no metadata field {src['response']!r}")
            response = str(s.metadata[src["response"]])
        items.append(LabelledItem(s.turns, response, _role_label(src, s.kind)))
    desc = {"dataset": src["dataset"], "args": src.get("args") or {}, "kind": src.get("kind"),
            "limit": src.get("limit"), "provenance": ds.provenance}
    return items, desc


def _jsonl_items(src: dict[str, Any], base_dir: Path) -> tuple[list[LabelledItem], dict[str, Any]]:
    from safeglass.hashing import file_hash

    where = src["where"]
    path = Path(src["jsonl"]).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    if not path.is_file():
        raise ConfigError(f"{where}.jsonl: {path} is not a file")
    text_f, resp_f = src.get("text", "text"), src.get("response")
    image_f, label_f = src.get("image"), src.get("label", "label")
    items = []
    limit = src.get("limit")
    for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if limit is not None and len(items) >= limit:
            break
        if not line.strip():
            continue
        at = f"{path}: line {n}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{at}: invalid JSON: {exc.msg}") from None
        if not isinstance(rec, dict):
            raise ConfigError(f"{at}: expected a JSON object")
        text = rec.get(text_f)
        if not isinstance(text, str):
            raise ConfigError(f"{at}: field '{text_f}' must be a string (set 'text:' to the right field)")
        response = None
        if resp_f is not None:
            response = rec.get(resp_f)
            if not isinstance(response, str):
                raise ConfigError(f"{at}: field '{resp_f}' must be a string")
        images: tuple[ImageRef, ...] = ()
        if image_f is not None and rec.get(image_f):
            paths = rec[image_f] if isinstance(rec[image_f], list) else [rec[image_f]]
            for p in paths:
                full = path.parent / str(p)
                if not full.is_file():
                    raise ConfigError(f"{at}: field '{image_f}': image {full} not found")
            images = tuple(ImageRef(path.parent / str(p)) for p in paths)
        if src["role"] == "labelled":
            toxic = _label(rec.get(label_f), f"{at}: field '{label_f}'")
        else:
            toxic = src["role"] == "toxic"
        items.append(LabelledItem((Turn("user", text, images),), response, toxic))
    desc = {"jsonl": str(path), "sha256": file_hash(str(path), length=64), "text": text_f, "response": resp_f,
            "image": image_f, "label": label_f if src["role"] == "labelled" else None, "limit": limit}
    return items, desc


def _label(value: Any, where: str) -> bool:
    key = value.strip().lower() if isinstance(value, str) else value
    if isinstance(key, float) and key in (0.0, 1.0):
        key = int(key)
    if isinstance(key, str | int):  # bool is an int: True == 1, False == 0
        if key in TOXIC_VALUES:
            return True
        if key in NON_TOXIC_VALUES:
            return False
    raise ConfigError(f"{where}: label {value!r} is neither toxic (1, true, toxic) nor non-toxic (0, false, non-toxic)")


# --- the pipeline ----------------------------------------------------------------------------------

def find(cfg: FindConfig, out: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Record, score, and write expertise, default glasses and summary.json under ``out``."""
    import numpy as np
    import torch

    from safeglass.neurons.expertise import Expertise
    from safeglass.neurons.glasses import Glasses
    from safeglass.neurons.recording import record
    from safeglass.registry import registry
    from safeglass.version import __version__

    out = Path(out)
    key = find_key(cfg)
    done = _finished(out, key)
    if done is not None:  # the same config on the same weights found these already: nothing to redo
        return done
    items, described = load_items(cfg)
    span = cfg.span
    if span == "auto":
        span = "response" if all(i.response for i in items) else "prompt"
    # fail on bad glasses parameters before the slow part
    glasses_params = {k: v for k, v in cfg.glasses.items() if k != "method"}
    _check_glasses_params(cfg, glasses_params)
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    target = registry("targets").build(cfg.target["name"], **cfg.target["args"])
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    acts = record(target, [(i.conversation, i.response) for i in items], span=span, pooling=cfg.pooling,
                  components=cfg.components, batch_size=cfg.batch_size, progress=progress)
    t_record = time.perf_counter() - t0
    labels = np.array([i.toxic for i in items])
    provenance = {"config_name": cfg.name, "target_spec": cfg.target, "data": described, "seed": cfg.seed,
                  "safeglass_version": __version__}
    t0 = time.perf_counter()
    expertise = Expertise.compute(acts, labels, provenance)
    t_auroc = time.perf_counter() - t0
    glasses = Glasses.from_expertise(expertise, cfg.glasses["method"], **glasses_params)
    expertise.save(out)
    glasses.save(out / GLASSES_SUBDIR)
    summary = {
        "name": cfg.name, "target": acts.meta["target"], "span": span, "pooling": cfg.pooling,
        "components": list(cfg.components), "n_toxic": int(labels.sum()), "n_non_toxic": int((~labels).sum()),
        "data": described, "expertise_hash": expertise.hash, "expertise": expertise.summary(),
        "glasses": glasses.summary(),
        "seconds": {"load": round(t_load, 3), "record": round(t_record, 3), "auroc": round(t_auroc, 3)},
        "find_key": key,
    }
    (out / EXPERTISE_SUMMARY).write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    return {"expertise": out, "glasses": out / GLASSES_SUBDIR, "summary": out / EXPERTISE_SUMMARY,
            "summary_data": summary}


def find_key(cfg: FindConfig) -> str:
    """What the expertise depends on: the config (less where it was read from) and the target's weights by
    content, as result keys see them (a rebuilt organism or another dtype finds again)."""
    from safeglass.config import ComponentSpec
    from safeglass.hashing import content_hash
    from safeglass.version import __version__

    spec = ComponentSpec("targets", cfg.target["name"], cfg.target["name"], dict(cfg.target.get("args") or {}))
    return content_hash({"raw": cfg.raw, "target": spec.key_config(), "version": __version__})


def _finished(out: Path, key: str) -> dict[str, Any] | None:
    path = out / EXPERTISE_SUMMARY
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if summary.get("find_key") != key or not (out / GLASSES_SUBDIR / "glasses.json").is_file():
        return None
    return {"expertise": out, "glasses": out / GLASSES_SUBDIR, "summary": path, "summary_data": summary,
            "reused": True}


def _check_glasses_params(cfg: FindConfig, params: dict[str, Any]) -> None:
    from safeglass.neurons.glasses import check_params

    try:
        check_params(cfg.glasses["method"], params)
    except ValueError as exc:
        raise ConfigError(f"{cfg.source}: field 'glasses': {exc}") from None
