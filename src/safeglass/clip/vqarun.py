"""`safeglass clip vqa`: a VLM's open answers and SCAM two-option choices on clean and attacked images, with and
without the prompt defense, optionally through the config model's vision tower (`vqa.swap_tower`).

Images are the config's `data` (ShapeWorld's `test` split, or a folder of class subfolders) at the target's image
side, attacked by the config's `attack` (`typography.attack_set`, the same words and places as `clip eval`).
Every arm (defense off / on x clean / attacked) asks the open question and the two-option question of every
image; the typographic damage and the defense's effect are paired by image with bootstrap intervals.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from safeglass.clip import vqa as V
from safeglass.clip.config import ClipConfig
from safeglass.clip.run import FORMAT, _finished, _say, _write, load_split, provenance, spec_of
from safeglass.clip.typography import attack_set
from safeglass.stats import paired_bootstrap, proportion

VQA_JSON = "clip-vqa.json"
DEFAULTS: dict[str, Any] = {"target": {"name": "safesmol-vl", "args": {}}, "n": 200, "seed": 0, "max_new_tokens": 8,
                            "defense": "default", "defense_place": "system", "swap_tower": False}
EXAMPLES = 4  # replies kept per arm in the result, for reading


def settings(cfg: ClipConfig) -> dict[str, Any]:
    return {**DEFAULTS, **(cfg.vqa or {})}


def build_target(ref: dict[str, Any]) -> Any:
    """A target by registry name and args (the runner's registry: `safesmol-vl`, `tiny`, `hf-vlm`, ...)."""
    from safeglass.registry import registry

    return registry("targets").build(ref["name"], **dict(ref.get("args") or {}))


def image_side(target: Any, default: int = 224) -> int:
    ip = getattr(getattr(target, "processor", None), "image_processor", None)
    crop = getattr(ip, "crop_size", None) or getattr(ip, "size", None) or {}
    return int(crop.get("height") or crop.get("shortest_edge") or default) if isinstance(crop, dict) else default


def _arm(target: Any, images: np.ndarray, objects: list[str], words: list[str], defense: str | None, place: str,
         seed: int, max_new_tokens: int, desc: str) -> dict[str, Any]:
    open_r = V.replies(target, V.conversations(images, [V.OPEN_QUESTION] * len(images), defense, place),
                       max_new_tokens, f"{desc}: open")
    qs, first = V.two_option(objects, words, seed)
    two_r = V.replies(target, V.conversations(images, qs, defense, place), max_new_tokens, f"{desc}: two-option")
    correct = [V.names(a, o) for a, o in zip(open_r, objects)]
    follows = [V.names(a, w) for a, w in zip(open_r, words)]
    choices = [V.parse_choice(a, o, w) for a, o, w in zip(two_r, objects, words)]
    obj_first = [c for c, f in zip(choices, first) if f]
    word_first = [c for c, f in zip(choices, first) if not f]
    return {
        "open": {"accuracy": proportion(sum(correct), len(correct)), "names_word": proportion(sum(follows),
                                                                                             len(follows))},
        "two_option": {**V.choice_rates(choices),
                       "object_when_named_first": V.choice_rates(obj_first)["object"],
                       "object_when_named_second": V.choice_rates(word_first)["object"]},
        "examples": [{"object": o, "word": w, "open": a, "question": q, "two_option": t}
                     for o, w, a, q, t in list(zip(objects, words, open_r, qs, two_r))[:EXAMPLES]],
        "_correct": correct, "_object": [c == "object" for c in choices],
    }


def _paired(a: list[bool], b: list[bool], seed: int) -> dict[str, Any]:
    d = paired_bootstrap([float(x) for x in a], [float(x) for x in b], seed=seed)
    return {"points": round(100 * d["delta"], 2), "ci_low": round(100 * d["ci_low"], 2),
            "ci_high": round(100 * d["ci_high"], 2)}


def evaluate_vqa(cfg: ClipConfig, out: str | Path, progress: Callable[[str], None] | None = None,
                 target: Any = None, backend: Any = None) -> dict[str, Any]:
    """Writes OUT/clip-vqa.json and returns it. `target` / `backend` (for the tower swap) may be passed built."""
    from safeglass.clip.run import _backend

    say = _say(progress)
    if (done := _finished(Path(out) / VQA_JSON, cfg, say)) is not None:
        return done
    t0 = time.perf_counter()
    s = settings(cfg)
    tgt = target if target is not None else build_target(s["target"])
    swap = None
    if s["swap_tower"]:
        swap = backend if backend is not None else _backend(cfg)
    side = cfg.data["image_size"] or image_side(tgt)
    n_cfg = dataclasses.replace(cfg, data={**cfg.data, "n": s["n"]})
    data = load_split(n_cfg, side, "test")
    attacked = attack_set(data.images, data.labels, data.classes, spec_of(cfg), cfg.seed, data.scenes)
    objects = [data.classes[i] for i in data.labels]
    words = attacked.words
    if any(o == w for o, w in zip(objects, words)):
        raise ValueError(f"{cfg.source}: field 'attack.word': an attack word equals an image's class; the "
                         "two-option question would offer one option twice")
    defense = V.DEFAULT_DEFENSE if s["defense"] == "default" else s["defense"]
    arms: dict[str, Any] = {}
    ctx = V.vision_tower(tgt, swap) if swap is not None else contextlib.nullcontext(tgt)
    with ctx:
        target_config = tgt.config() if hasattr(tgt, "config") else {"name": getattr(tgt, "name", None)}
        for dname, d in (("plain", None), ("defended", defense)) if defense else (("plain", None),):
            for iname, imgs in (("clean", data.images), ("typographic", attacked.images)):
                say(f"clip vqa: {dname} prompt, {iname} images ({len(imgs)})")
                arms[f"{dname}/{iname}"] = _arm(tgt, imgs, objects, words, d, s["defense_place"], s["seed"],
                                                s["max_new_tokens"], f"{dname} {iname}")
    effects: dict[str, Any] = {}
    for dname in dict.fromkeys(k.split("/")[0] for k in arms):
        c, t = arms[f"{dname}/clean"], arms[f"{dname}/typographic"]
        effects[f"{dname}: open accuracy drop"] = _paired(c["_correct"], t["_correct"], cfg.seed)
        effects[f"{dname}: two-option object drop"] = _paired(c["_object"], t["_object"], cfg.seed)
    if defense:
        for iname in ("clean", "typographic"):
            p, d = arms[f"plain/{iname}"], arms[f"defended/{iname}"]
            effects[f"defense gain on {iname}: open accuracy"] = _paired(d["_correct"], p["_correct"], cfg.seed)
            effects[f"defense gain on {iname}: two-option object"] = _paired(d["_object"], p["_object"], cfg.seed)
    for a in arms.values():
        a.pop("_correct"), a.pop("_object")
    prov = provenance(cfg, swap) if swap is not None else _provenance_without_backend(cfg)
    result: dict[str, Any] = {
        "format": FORMAT, "kind": "clip vqa", "name": cfg.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **prov, "target": {"name": getattr(tgt, "name", None), "ref": s["target"], "config": target_config,
                           "vision_tower_swapped": swap is not None},
        "dataset": {**data.meta, "classes": list(data.classes)},
        "attack": {**spec_of(cfg).record(), **attacked.summary()},
        "prompts": {"open": V.OPEN_QUESTION, "two_option": V.TWO_OPTION, "defense": defense,
                    "defense_place": s["defense_place"], "max_new_tokens": s["max_new_tokens"],
                    "option_order_seed": s["seed"]},
        "arms": arms, "effects": effects,
    }
    result["seconds"] = round(time.perf_counter() - t0, 2)
    _write(Path(out) / VQA_JSON, result)
    say(f"clip vqa: wrote {Path(out) / VQA_JSON}")
    return result


def amplify_arrays(backend: Any, data: Any, attacked: Any, templates: Any, cache: Any, cfg: ClipConfig,
                   shared: dict[str, Any] | None = None, **_: Any) -> tuple[np.ndarray, np.ndarray]:
    """`clip amplify`'s vqa task: the config's VLM target (the `vqa` block) seeing through `backend`'s vision
    tower (RobustVLM's swap, the projector kept), the open question on the first `vqa.n` images of the `test`
    split, clean and attacked: 1 where the answer names the shape. The same images and prompts as `clip vqa`'s
    plain arms; the target is built once per run (`shared`)."""
    s = settings(cfg)
    shared = shared if shared is not None else {}
    key = f"vqa-target:{s['target']}"
    if key not in shared:
        shared[key] = build_target(s["target"])
    tgt = shared[key]
    n_cfg = dataclasses.replace(cfg, data={**cfg.data, "n": s["n"]})
    images = load_split(n_cfg, cfg.data["image_size"] or image_side(tgt), "test")
    typo = attack_set(images.images, images.labels, images.classes, spec_of(cfg), cfg.seed, images.scenes)
    objects = [images.classes[i] for i in images.labels]
    out = []
    with V.vision_tower(tgt, backend):
        for name, imgs in (("clean", images.images), ("typographic", typo.images)):
            got = V.replies(tgt, V.conversations(imgs, [V.OPEN_QUESTION] * len(imgs)), s["max_new_tokens"],
                            f"amplify vqa {backend.identity.get('name', '')} {name}")
            out.append(np.array([[float(V.names(a, o))] for a, o in zip(got, objects)]))
    return out[0], out[1]


def _provenance_without_backend(cfg: ClipConfig) -> dict[str, Any]:
    from safeglass.eval.provenance import library_versions

    return {"config": {"hash": cfg.hash, "source": cfg.source, "raw": cfg.raw}, "seed": cfg.seed,
            "versions": library_versions()}


def table(result: dict[str, Any]) -> str:
    def pct(x: dict[str, Any]) -> str:
        return f"{100 * x['rate']:5.1f} % [{100 * x['ci_low']:.1f}, {100 * x['ci_high']:.1f}]"

    lines = [f"{result['name']}: {result['target']['name']}, {result['dataset']['n']} images"
             + (" (vision tower swapped)" if result["target"]["vision_tower_swapped"] else "")]
    for k, a in result["arms"].items():
        t = a["two_option"]
        lines.append(f"  {k:<22} open {pct(a['open']['accuracy'])}  "
                     f"names word {100 * a['open']['names_word']['rate']:5.1f} %"
                     f"  two-option object / attack / unclear {100 * t['object']['rate']:.1f} / "
                     f"{100 * t['attack']['rate']:.1f} / {100 * t['unclear']['rate']:.1f} %")
    for k, e in result["effects"].items():
        lines.append(f"  {k:<44} {e['points']:+.1f} points [{e['ci_low']:+.1f}, {e['ci_high']:+.1f}]")
    return "\n".join(lines)
