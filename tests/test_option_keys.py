"""Every option of every registered component changes its result key, except those that only change speed or
placement (``option_keys.NON_OUTPUT_ARGS``). A new component, or an option added to one, is checked without
writing a test: it fails here until its key covers it (or the table below says how to vary it)."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from safeglass.config import ComponentSpec, modifier_key
from safeglass.eval.plan import defense_key
from safeglass.option_keys import NON_OUTPUT_ARGS, KeyedByOptions
from safeglass.options import REQUIRED
from safeglass.registry import registry

KINDS = ("defenses", "attacks", "modifiers", "judges", "scorers", "targets")

# Required options a component cannot be built without.
BASE_ARGS: dict[tuple[str, str], dict[str, Any]] = {
    ("defenses", "chain"): {"steps": ["safety_prompt"]},
    ("defenses", "adaptive"): {"selector_file": "<selector A>"},
    ("modifiers", "glasses"): {"path": "<glasses A>"},
    ("modifiers", "ablate-heads"): {"heads": [[0, 1]]},
    ("judges", "llm-judge"): {"target": "echo"},
    ("targets", "hf-lm"): {"model": "org/model"},
    ("targets", "hf-vlm"): {"model": "org/vlm"},
    ("targets", "llama-cpp"): {"model": "org/model-gguf"},
    ("targets", "openai"): {"base_url": "http://127.0.0.1:9/v1", "model": "m"},
    ("attacks", "transfer"): {"from_run": "<run A>"},
}

# Values no rule below derives (enumerations, expressions, None defaults, objects); "<file>" is a fresh file,
# "<png>" a fresh picture, "<pictures>" a fresh folder holding one.
ALTERNATIVES: dict[Any, Any] = {  # by option name, or (kind, name, option) where names collide
    ("defenses", "chain", "steps"): ["safety_prompt", "none"],
    ("judges", "three-way", "partial"): "substance", ("judges", "three-way-v3", "partial"): "substance",
    ("judges", "three-way-v4", "partial"): "on_topic",
    "judge": {"name": "proxy-harm", "args": {"threshold": 0.9}},
    "prompt_file": "<file>", "template_file": "<file>", "rubric_file": "<file>",
    "template": "prefix_injection", "words": ["bomb"], "variants": {"bomb": "bombs"}, "canvas": "plain",
    "missing": "whole", "first": "first", "rephrase": "mmsb", "word_types": {"bomb": "product"},
    "epsilon": 8 / 255, "step_size": 2 / 255, "early_stop": 0.1, "blank_size": 32, "image_size": 96,
    "path": "<glasses B>", "label": "max", "family": "qwen2", "dtype": "float16", "rubric": "toxicity",
    "target": "refuser", "extra_phrases": ["no way"], "responses": {"a": "b"}, "default": ["x"],
    "extra_body": {"top_k": 3}, "gguf_file": "m.Q4.gguf", "revision": "abc123", "chat_template": "{{ x }}",
    "system_prompt": "Judge.", "weights_path": "<file>", "tokenizer_path": "<file>", "vectorizer_path": "<file>",
    "model_path": "<file>", "threads": 3, "api_key_env": "OTHER_KEY", "base_url": "http://127.0.0.1:8/v1",
    "model": "org/other", "name": "other-name", "threshold": 0.33, "field": "label", "request_threshold": 0.4,
    ("attacks", "sd-typo", "image_dir"): "<pictures>", "image_file": "<png>", "typographic": {"canvas": "plain"},
    "norm": "l2", "patch": 0.2, "patch_at": [0.0, 1.0], "objective": "away-from-refusal", "refusals": ["No."],
    "through": {"name": "safety_prompt", "args": {"prompt": "Be safe."}},
    ("attacks", "transfer", "from_run"): "<run B>", ("attacks", "transfer", "attack"): "apgd",
    ("attacks", "transfer", "from_target"): "b",
    "perturbation": "noise", ("defenses", "smoothvlm", "text_only"): "swap", ("defenses", "ecso", "text_only"): "keep",
    "image_mutators": ["hflip", "crop"], "text_mutators": ["delete"], "mutate": "both",
    "pre_judge": "image-nsfw", "post_judge": {"name": "proxy-harm", "args": {"threshold": 0.9}}, "combine": "both",
    ("defenses", "adashield-a", "train"): {"name": "advbench"}, ("defenses", "adashield-a", "train_attack"): "figstep",
    "pool_file": "<file>", "initial_prompt": "Decline harmful requests.",
    ("defenses", "adaptive", "selector_file"): "<selector B>",
    ("modifiers", "ablate-heads", "heads"): [[1, 0]], ("modifiers", "ablate-heads", "positions"): "all",
    ("modifiers", "unlearn", "subset"): "easy", ("modifiers", "unlearn", "ranking"): "<file>",
    ("modifiers", "unlearn", "top_layers"): 4,
}

# Options read only in the company of another setting.
CONTEXT: dict[tuple[str, str, str], dict[str, Any]] = {
    ("attacks", "typographic", "word_types"): {"rephrase": "mmsb"},  # MM-SafetyBench's wording reads the types
    ("attacks", "typographic", "missing"): {"canvas": "plain"},  # a whole request is written on a plain canvas
    ("attacks", "pgd", "patch_at"): {"patch": 0.2},  # a position for a patch
    ("attacks", "apgd", "patch_at"): {"patch": 0.2},
}

# Options keyed another way than by their value, and where that is tested.
V2_JUDGES = ("fulfilment", "refusal-v2", "three-way", "fulfilment-v3", "refusal-v3", "three-way-v3", "fulfilment-v4",
             "refusal-v4", "three-way-v4", "fulfilment-ce", "refusal-ce")
NOT_BY_VALUE: dict[tuple[str, str, str], str] = {
    # an organism's folder leaves the key, its weights' hashes enter (tests/test_organisms_*: key by weights)
    ("targets", "safesmol", "path"): "weights by content",
    ("targets", "safesmol-v1", "path"): "weights by content",
    ("targets", "safesmol-vl", "path"): "weights by content",
    ("targets", "safesmol-vl-v1", "path"): "weights by content",
    ("targets", "safesmol-vl-v2", "path"): "weights by content",
    # a proxy judge's heads enter by content (tests/test_judges_proxy.py); the embedder object is the default's
    ("judges", "proxy-refusal", "weights"): "heads by content",
    ("judges", "proxy-harm", "weights"): "heads by content",
    ("judges", "proxy-refusal", "embedder"): "an object, not a config value",
    ("judges", "proxy-harm", "embedder"): "an object, not a config value",
    # the request head and the heads it gates enter by content (tests/test_judges_proxy_request.py)
    ("judges", "proxy-request", "weights"): "head by content",
    ("judges", "proxy-harm-gated", "weights"): "heads by content",
    ("judges", "proxy-harm-gated", "request_weights"): "head by content",
    ("judges", "proxy-request", "embedder"): "an object, not a config value",
    ("judges", "proxy-harm-gated", "embedder"): "an object, not a config value",
    # judges v2: heads by content (fulfilment_key_args), embedder an object
    **{("judges", j, "weights"): "heads by content" for j in V2_JUDGES},
    **{("judges", j, "embedder"): "an object, not a config value" for j in V2_JUDGES},
    # the heads a clip defend result kept enter by content (tests/test_clip_ablation_modifier.py)
    ("modifiers", "ablate-heads", "from_result"): "heads by content",
}


def _file(tmp_path: Path, text: str) -> str:
    p = tmp_path / f"f{abs(hash(text)) % 10**8}.txt"
    p.write_text(text + " {prompt}", encoding="utf-8")
    return str(p)


def _glasses(tmp_path: Path, tag: str) -> str:
    import json

    folder = tmp_path / f"glasses-{tag}"
    folder.mkdir(exist_ok=True)
    (folder / "glasses.json").write_text(json.dumps({"method": "det0", "hash": tag}), encoding="utf-8")
    return str(folder)


def _picture(path: Path, tag: str) -> Path:
    from PIL import Image

    Image.new("RGB", (8, 8), (len(tag) * 40 % 256, ord(tag[-1]) % 256, 0)).save(path)
    return path


def _run(tmp_path: Path, tag: str) -> str:
    """A run folder whose store holds attacked samples of attacks pgd and apgd, replies of targets a and b."""
    from safeglass.eval.store import GenerationRow, Store

    folder = tmp_path / f"run-{tag.strip('<>').replace(' ', '-')}"
    folder.mkdir(exist_ok=True)

    def record(attack: str, target: str) -> str:
        image = {"ref": f"{tag}-{attack}-{target}.png", "hash": f"{tag}-{attack}-{target}"}
        return json.dumps({"id": "s0", "turns": [{"role": "user", "text": "q", "images": [image]}], "metadata": {}})

    with Store(folder / "store.sqlite") as store:
        store.add_attacked([(f"{tag}-{a}", a, "s0", record(a, "a")) for a in ("pgd", "apgd")])
        store.add_generations([GenerationRow(f"{tag}-{a}-{t}", t, "d", "none", a, "s0", "harmful", "c", "q",
                                             record(a, t), "r", 1, 1, 0.0, "stop", "{}", 0.0)
                               for a in ("pgd", "apgd") for t in ("a", "b")])
    return str(folder)


def _selector(tmp_path: Path, tag: str) -> str:
    """A valid selector file (one signal, one configuration) whose content differs by tag."""
    selector = {"format": "safeglass-selector", "version": 1, "target": tag,
                "signals": [{"id": "ocr", "judge": "image-ocr", "args": {}}], "configurations": {"none": ["none"]},
                "rule": {"cells": {}, "fallback": "none"}}
    path = tmp_path / f"selector-{tag.strip('<>').replace(' ', '-')}.json"
    path.write_text(json.dumps(selector), encoding="utf-8")
    return str(path)


def _materialise(value: Any, tmp_path: Path, tag: str) -> Any:
    if value == "<file>":
        return _file(tmp_path, f"file {tag}")
    if value == "<png>":
        return str(_picture(tmp_path / f"picture-{tag}.png", tag))
    if value == "<pictures>":
        (tmp_path / f"pictures-{tag}").mkdir(exist_ok=True)
        return str(_picture(tmp_path / f"pictures-{tag}" / "scene.png", tag).parent)
    if isinstance(value, str) and value.startswith("<glasses"):
        return _glasses(tmp_path, value)
    if isinstance(value, str) and value.startswith("<run"):
        return _run(tmp_path, value)
    if isinstance(value, str) and value.startswith("<selector"):
        return _selector(tmp_path, value)
    return value


def _derived(default: str) -> Any:
    """Another value of the default's type, where the default is a literal that says it."""
    try:
        value = ast.literal_eval(default)
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 if value else 0.25
    if isinstance(value, str):
        return value + " (changed)"
    return None


def key_of(kind: str, name: str, args: dict[str, Any]) -> Any:
    if kind == "defenses":
        return defense_key(registry(kind).build(name, **args))
    if kind == "attacks":
        return registry(kind).build(name, **args).config()
    if kind == "modifiers":
        return modifier_key(ComponentSpec(kind, name, name, args))
    return ComponentSpec(kind, name, name, args).key_config()


def cases() -> list[tuple[str, str, str]]:
    return [(kind, e.name, o.name) for kind in KINDS for e in registry(kind)
            for o in registry(kind).options(e.name).options]


@pytest.mark.parametrize(("kind", "name", "option"), cases(), ids=lambda v: str(v))
def test_every_option_that_changes_an_output_changes_the_key(kind, name, option, tmp_path):
    if (kind, name, option) in NOT_BY_VALUE:
        return
    spec = registry(kind).options(name).get(option)
    base = {k: _materialise(v, tmp_path, "a") for k, v in BASE_ARGS.get((kind, name), {}).items()}
    other = ALTERNATIVES.get((kind, name, option), ALTERNATIVES.get(option))
    if other is None and spec.default != REQUIRED:
        other = _derived(spec.default)
    assert other is not None, f"{kind} {name}: say in ALTERNATIVES how to vary option {option!r}"
    base.update(CONTEXT.get((kind, name, option), {}))
    changed = {**base, option: _materialise(other, tmp_path, "b")}
    before, after = key_of(kind, name, base), key_of(kind, name, changed)
    if option in NON_OUTPUT_ARGS:
        assert before == after, f"{kind} {name}: {option!r} changes only speed or placement, yet moves the key"
    else:
        assert before != after, f"{kind} {name}: option {option!r} changes outputs but not the result key"


def test_the_table_names_no_option_that_no_component_has():
    """A stale entry would hide nothing, but it misleads whoever reads the table."""
    names = {o for _, _, o in cases()} | set(cases())
    assert set(ALTERNATIVES) - names == set()


class _Probe(KeyedByOptions):
    name = "probe"

    def __init__(self, copies: int = 4, rate: float = 0.1, batch_size: int = 8, **extra: Any) -> None:
        self.copies = copies


class _Child(_Probe):
    def __init__(self, mode: str = "mask", **kw: Any) -> None:
        super().__init__(copies=9, **kw)


def test_a_component_without_a_hand_written_key_is_keyed_by_every_output_option(tmp_path):
    assert _Probe().option_key() == {"name": "probe", "copies": 4, "rate": 0.1}
    assert _Probe(copies=5).option_key() != _Probe().option_key()
    assert _Probe(batch_size=64).option_key() == _Probe().option_key()
    assert _Probe(extra_knob=1).option_key()["extra_knob"] == 1
    # the outermost constructor's options are the ones recorded, not what it passed to super()
    assert _Child(mode="noise").option_key() == {"name": "probe", "mode": "noise"}
    # a file option by its content: an edited file moves the key, the same content elsewhere does not
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("one"), b.write_text("one")
    assert _Probe(rules_file=str(a)).option_key() == _Probe(rules_file=str(b)).option_key()
    b.write_text("two")
    assert _Probe(rules_file=str(a)).option_key() != _Probe(rules_file=str(b)).option_key()
