"""`safeglass clip eval` and `safeglass clip defend`: a clip config in, one JSON result with provenance out.

eval: zero-shot accuracy on clean and typographically attacked images (with Wilson intervals), the share of
attacked images classified as the written word, and the SCAM two-way choice. defend: per-head typographic scores
and Dyslexify's greedy head ablation fitted on the `fit` split, then clean and typographic accuracy with and
without the kept heads on the held-out `test` split (the eval split), and the share of the loss recovered.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from safeglass.clip.config import ClipConfig
from safeglass.clip.images import ImageSet
from safeglass.clip.typography import AttackedSet, TypoSpec, attack_set
from safeglass.clip.zeroshot import OPENAI_TEMPLATES, SHAPECLIP_TEMPLATES, TextCache, accuracy, predict
from safeglass.schema import ConfigError
from safeglass.stats import proportion

FORMAT = "safeglass.clip/1"
EVAL_JSON = "clip-eval.json"
DEFEND_JSON = "clip-defend.json"


def _say(progress: Callable[[str], None] | None) -> Callable[[str], None]:
    return progress or (lambda _line: None)


def templates_of(cfg: ClipConfig) -> tuple[str, ...]:
    if cfg.templates:
        return cfg.templates
    # ShapeCLIP and the tiny models read only ShapeCLIP's word-level vocabulary
    return SHAPECLIP_TEMPLATES if "hub" not in cfg.model else OPENAI_TEMPLATES


def spec_of(cfg: ClipConfig) -> TypoSpec:
    a = dict(cfg.attack)
    if isinstance(a["position"], list):
        a["position"] = tuple(a["position"])
    return TypoSpec(**a)


def load_split(cfg: ClipConfig, image_size: int, split: str) -> ImageSet:
    """The eval (`test`) or fitting (`fit`) split. A folder is cut in two by a seeded permutation: the first
    `defend.fit_n` images fit, the rest are held out."""
    from safeglass.clip import images

    d = cfg.data
    size = d["image_size"] or image_size
    if d["source"] == "shapeworld":
        n, seed = (d["n"], d["seed"]) if split == "test" else (cfg.defend["fit_n"], cfg.defend["fit_seed"])
        got = images.shapeworld(n, seed, size, split)
    else:
        got = images.folder(d["image_dir"], size)
        if cfg.defend is not None:
            order = np.random.default_rng([d["seed"], 7]).permutation(len(got.labels))
            fit_n = cfg.defend["fit_n"]
            if fit_n >= len(order):
                raise ConfigError(f"{cfg.source}: field 'defend.fit_n': {fit_n} leaves no held-out image of "
                                 f"{len(order)}")
            keep = np.sort(order[:fit_n] if split == "fit" else order[fit_n:][:d["n"]])
            got = ImageSet(got.images[keep], got.labels[keep], got.classes, None, {**got.meta, "split": split,
                                                                                  "n": len(keep)})
        elif d["n"] < len(got.labels):
            keep = np.sort(np.random.default_rng(d["seed"]).choice(len(got.labels), d["n"], replace=False))
            got = ImageSet(got.images[keep], got.labels[keep], got.classes, None, {**got.meta, "n": d["n"]})
    if cfg.classes:
        if len(cfg.classes) != len(got.classes):
            raise ConfigError(f"{cfg.source}: field 'classes': {len(cfg.classes)} names for {len(got.classes)} classes "
                             f"({', '.join(got.classes)})")
        got = ImageSet(got.images, got.labels, tuple(cfg.classes), got.scenes, got.meta)
    return got


def eval_sets(cfg: ClipConfig, image_size: int, say: Callable[[str], None] = print
              ) -> tuple[ImageSet, ImageSet | None, AttackedSet]:
    """(the eval set, its clean images or None, its attacked images): attacked here for shapeworld / folder, as
    read for the sets that come attacked (clip/datasets.py)."""
    from safeglass.clip.datasets import ATTACKED_SOURCES, DatasetError, as_attacked, load

    d = cfg.data
    if d["source"] not in ATTACKED_SOURCES:
        data = load_split(cfg, image_size, "test")
        return data, data, attacked_split(cfg, data)
    try:
        data, clean = load(d["source"], d["path"], d["image_size"] or image_size, d["type"] or "SCAM", d["n"],
                           d["seed"], say)
    except DatasetError as exc:
        raise ConfigError(f"{cfg.source}: field 'data.path': {exc}") from None
    if cfg.classes:
        if len(cfg.classes) != len(data.classes):
            raise ConfigError(f"{cfg.source}: field 'classes': {len(cfg.classes)} names for {len(data.classes)} "
                              f"classes ({', '.join(data.classes)})")
        data = dataclasses.replace(data, classes=tuple(cfg.classes))
    return data, clean, as_attacked(data)


def attacked_split(cfg: ClipConfig, data: ImageSet) -> AttackedSet:
    return attack_set(data.images, data.labels, data.classes, spec_of(cfg), cfg.seed, data.scenes)


def provenance(cfg: ClipConfig, backend: Any) -> dict[str, Any]:
    from safeglass.eval.provenance import library_versions

    return {"model": {**backend.identity, "family": backend.family, "class": type(backend.model).__name__,
                      "image_size": backend.image_size},
            "config": {"hash": cfg.hash, "source": cfg.source, "raw": cfg.raw}, "seed": cfg.seed,
            "versions": library_versions()}


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(path)  # atomic: a kill never leaves half a file


def _finished(path: Path, cfg: ClipConfig, say: Callable[[str], None]) -> dict[str, Any] | None:
    """The result a finished command wrote for this very config (same format and config hash), else None: a second
    `make demo` reads it instead of computing it again. A file that does not parse is computed again."""
    try:
        done = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if done.get("format") != FORMAT or (done.get("config") or {}).get("hash") != cfg.hash:
        return None
    say(f"clip: {path} is already done for this config (hash {cfg.hash}); delete it to compute it again")
    return done


def _backend(cfg: ClipConfig) -> Any:
    from safeglass.clip.backends import load_backend

    b = load_backend(cfg.model)
    b.batch_size = cfg.batch_size
    return b


def evaluate(cfg: ClipConfig, out: str | Path, progress: Callable[[str], None] | None = None,
             backend: Any = None) -> dict[str, Any]:
    """Clean vs typographic zero-shot accuracy and SCAM; writes OUT/clip-eval.json and returns the result."""
    from safeglass.clip.scam import scam

    say = _say(progress)
    if (done := _finished(Path(out) / EVAL_JSON, cfg, say)) is not None:
        return done
    t0 = time.perf_counter()
    b = backend if backend is not None else _backend(cfg)
    # A set that comes attacked (RTA-100, PAINT, SCAM) is the typographic set; its clean images are its NoSCAM
    # twins where it has them (None otherwise: clean accuracy is then not measured)
    data, clean_set, attacked = eval_sets(cfg, b.image_size, say)
    templates = templates_of(cfg)
    cache = TextCache()
    say(f"clip eval: {len(data.labels)} images, {len(data.classes)} classes, {len(templates)} templates")
    f_typo = b.encode_images(attacked.images)
    p_typo = predict(b, attacked.images, data.classes, templates, cache, f_typo)
    in_classes = [w in data.classes for w in attacked.words]
    word_idx = np.array([data.classes.index(w) if ok else -1 for w, ok in zip(attacked.words, in_classes)])
    typo = accuracy(p_typo, data.labels)
    clean = None if clean_set is None else accuracy(predict(b, clean_set.images, data.classes, templates, cache),
                                                    clean_set.labels)
    result: dict[str, Any] = {
        "format": FORMAT, "kind": "clip eval", "name": cfg.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **provenance(cfg, b),
        "dataset": {**data.meta, "classes": list(data.classes)},
        "templates": list(templates),
        "attack": ({"from": "dataset", "n": len(data.labels), "mean_postit_area": _nanmean(data.postit_area)}
                   if data.words is not None
                   else {**spec_of(cfg).record(), **attacked.summary()}),
        "clean": clean, "typographic": typo,
        "typographic_drop_points": None if clean is None else round(100 * (clean["rate"] - typo["rate"]), 2),
        "follows_word": accuracy(p_typo[np.array(in_classes)], word_idx[np.array(in_classes)])
        if any(in_classes) else None,
        "scam": scam(b, attacked.images, [data.classes[i] for i in data.labels], attacked.words,
                     cfg.scam_templates or templates, cache, f_typo),
    }
    result["seconds"] = round(time.perf_counter() - t0, 2)
    _write(Path(out) / EVAL_JSON, result)
    say(f"clip eval: wrote {Path(out) / EVAL_JSON}")
    return result


def defend(cfg: ClipConfig, out: str | Path, progress: Callable[[str], None] | None = None,
           backend: Any = None) -> dict[str, Any]:
    """Dyslexify (and, with `defend.methods`, Defense-Prefix and PAINT: clip/compare.py) fitted on the fit split,
    scored on the held-out split; writes OUT/clip-defend.json."""
    from safeglass.clip.dyslexify import GreedySettings, correct, greedy
    from safeglass.clip.heads import typographic_scores
    from safeglass.clip.scoring import score

    say = _say(progress)
    if cfg.defend is None:
        cfg = _with_defaults(cfg)
    from safeglass.clip.datasets import ATTACKED_SOURCES

    if cfg.data["source"] in ATTACKED_SOURCES:
        raise ConfigError(f"{cfg.source}: field 'data.source': defend needs the written words' boxes, which "
                          f"{cfg.data['source']} does not record; defend on shapeworld or a folder source")
    if (done := _finished(Path(out) / DEFEND_JSON, cfg, say)) is not None:
        return done
    start = time.perf_counter()
    b = backend if backend is not None else _backend(cfg)
    templates = templates_of(cfg)
    cache = TextCache()
    fit, test = load_split(cfg, b.image_size, "fit"), load_split(cfg, b.image_size, "test")
    fit_att, test_att = attacked_split(cfg, fit), attacked_split(cfg, test)
    d = cfg.defend
    result: dict[str, Any] = {
        "format": FORMAT, "kind": "clip defend", "name": cfg.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **provenance(cfg, b),
        "dataset": {"fit": {**fit.meta}, "test": {**test.meta}, "classes": list(test.classes)},
        "templates": list(templates), "attack": {**spec_of(cfg).record(), **test_att.summary()},
    }
    base = correct(b, test.images, test_att.images, test.labels, test.classes, templates, cache)
    ablated, kept = None, []
    if "dyslexify" in d.get("methods", ["dyslexify"]):
        say(f"clip defend: scoring {b.num_heads} heads a layer on {len(fit.labels)} fitting images")
        scores = typographic_scores(b, fit_att.images, fit_att.boxes)
        settings = GreedySettings(max_clean_drop=d["max_clean_drop_points"] / 100,
                                  min_gain=d["min_gain_points"] / 100, patience=d["patience"])
        fitted = greedy(b, scores, fit.images, fit_att.images, fit.labels, fit.classes, templates, cache, settings)
        kept = [tuple(h) for h in fitted["kept"]]
        say(f"clip defend: kept {len(kept)} heads ({fitted['stopped']}); scoring the held-out split")
        ablated = correct(b, test.images, test_att.images, test.labels, test.classes, templates, cache, kept)
        s = score(base, ablated, cfg.seed)
        result.update({
            "head_scores": np.round(scores, 5).tolist(), "fit": fitted,
            "test": {"clean": proportion(int(base[0].sum()), len(base[0])),
                     "typographic": proportion(int(base[1].sum()), len(base[1])),
                     "clean_ablated": s["clean"], "typographic_ablated": s["typographic"]},
            "recovered": s["recovered"], "clean_loss_points": s["clean_loss_points"],
            # paired by image (the same images with and without the ablation), bootstrap 95 % intervals in points
            "paired": s["paired"], "goal": s["goal"]})
    if d.get("methods", ["dyslexify"]) != ["dyslexify"]:  # Defense-Prefix and PAINT beside Dyslexify
        from safeglass.clip.compare import methods

        result["undefended"] = {"clean": proportion(int(base[0].sum()), len(base[0])),
                                "typographic": proportion(int(base[1].sum()), len(base[1]))}
        result["methods"] = methods(b, d, cfg.seed, fit, fit_att, test, test_att, templates, cache, base, ablated,
                                    kept, say)
    result["seconds"] = round(time.perf_counter() - start, 2)
    _write(Path(out) / DEFEND_JSON, result)
    say(f"clip defend: wrote {Path(out) / DEFEND_JSON}")
    return result


def _nanmean(x: np.ndarray | None) -> float | None:
    """The mean of the recorded values (None when none is recorded: RTA-100 and PAINT log no note area)."""
    if x is None or not np.isfinite(x).any():
        return None
    return round(float(np.nanmean(x)), 4)


def _with_defaults(cfg: ClipConfig) -> ClipConfig:
    from safeglass.clip.config import DefendBlock

    return dataclasses.replace(cfg, defend=DefendBlock().model_dump())


def _pct(p: dict[str, Any] | None) -> str:
    if not p or p.get("rate") is None:
        return "n/a"
    return f"{100 * p['rate']:5.1f} % [{100 * p['ci_low']:.1f}, {100 * p['ci_high']:.1f}]"


def table(result: dict[str, Any]) -> str:
    """The console summary of an eval or defend result."""
    m = result["model"]
    n = result["dataset"]["n"] if result["kind"] == "clip eval" else result["dataset"]["test"]["n"]
    head = f"{result['name']}: {m.get('name') or m.get('family')} ({m['source']}), {n} held-out images"
    if result["kind"] == "clip eval":
        rows = [("clean accuracy", _pct(result["clean"])), ("typographic accuracy", _pct(result["typographic"])),
                ("drop (points)", "n/a" if result["typographic_drop_points"] is None
                 else f"{result['typographic_drop_points']:.1f}"),
                ("follows the written word", _pct(result["follows_word"])),
                ("SCAM: object chosen (template mean)", f"{100 * result['scam']['object_rate']:5.1f} %"),
                ("SCAM: attack word chosen", f"{100 * result['scam']['attack_rate']:5.1f} %")]
    else:
        rows = []
        if "test" in result:  # Dyslexify ran
            t = result["test"]
            rec = result["recovered"]
            cl = result["paired"]["clean_loss_points"]
            rows = [("held-out clean", _pct(t["clean"])), ("held-out typographic", _pct(t["typographic"])),
                    ("clean, heads ablated", _pct(t["clean_ablated"])),
                    ("typographic, heads ablated", _pct(t["typographic_ablated"])),
                    ("heads kept", ", ".join(f"L{h[0]}H{h[1]}" for h in result["fit"]["kept"]) or "none"),
                    ("loss recovered", "n/a" if rec is None else f"{100 * rec:.1f} %"),
                    ("clean loss (points)",
                     f"{result['clean_loss_points']:.2f} [{cl['ci_low']:.2f}, {cl['ci_high']:.2f}]"),
                    ("goal (>= 50 % at <= 1 point)", "met" if result["goal"]["met"] else "not met")]
        if "methods" in result:
            from safeglass.clip.compare import rows as method_rows

            rows += method_rows(result)
    w = max(len(k) for k, _ in rows)
    return "\n".join([head, *(f"  {k:<{w}}  {v}" for k, v in rows)])
