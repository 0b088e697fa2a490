"""`safeglass clip attack` and `safeglass clip robust-train`: a clip config in, one JSON result (or a trained
vision tower with its card) out.

attack: zero-shot accuracy on the `test` split, clean and under l-inf PGD / APGD at each eps of the config's
`adversarial` block, with Wilson intervals and the mean attacked loss (clip-attack.json).
robust-train: TeCoA / FARE fine-tuning (clip.robust) by the config's `robust` block. On ShapeCLIP it builds a
robust ShapeCLIP organism (organisms.shapeclip_robust: vision.safetensors + card.json, loadable as
`model: {organism: shapeclip-tecoa-eps4, path: OUT}`); on any other CLIP it writes vision.safetensors and a
card naming the base model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from safeglass.clip.config import AdversarialBlock, ClipConfig, RobustBlock, parse_clip_config
from safeglass.clip.run import FORMAT, _backend, _finished, _pct, _say, _write, load_split, provenance, templates_of

ATTACK_JSON = "clip-attack.json"
ROBUST_CARD = "card.json"


def with_organism(cfg: ClipConfig, organism: str | None) -> ClipConfig:
    """`cfg` with its model replaced by a CLIP organism (the config hash follows the new model)."""
    if organism is None:
        return cfg
    raw = {**cfg.raw, "model": {"organism": organism}}
    base = Path(cfg.source).resolve().parent if cfg.source != "<dict>" else None
    return parse_clip_config(raw, cfg.source, base)


def attack(cfg: ClipConfig, out: str | Path, progress: Callable[[str], None] | None = None,
           backend: Any = None) -> dict[str, Any]:
    """Clean vs PGD / APGD zero-shot accuracy at each eps; writes OUT/clip-attack.json and returns the result."""
    from safeglass.clip.adversarial import robust_predictions
    from safeglass.clip.images import ImageSet
    from safeglass.clip.zeroshot import TextCache, accuracy

    say = _say(progress)
    if (done := _finished(Path(out) / ATTACK_JSON, cfg, say)) is not None:
        return done
    t0 = time.perf_counter()
    adv = cfg.adversarial or AdversarialBlock().model_dump()
    methods = [adv["method"]] if isinstance(adv["method"], str) else list(dict.fromkeys(adv["method"]))
    b = backend if backend is not None else _backend(cfg)
    data = load_split(cfg, b.image_size, "test")
    if adv["n"] is not None and adv["n"] < len(data.labels):
        data = ImageSet(data.images[:adv["n"]], data.labels[:adv["n"]], data.classes, None,
                        {**data.meta, "n_attacked": adv["n"]})
    templates = templates_of(cfg)
    emb = TextCache().class_embeddings(b, data.classes, templates)
    say(f"clip attack: {len(data.labels)} images, {', '.join(methods)} with {adv['steps']} steps at eps "
        f"{', '.join(f'{e:g}' for e in adv['eps'])}/255")
    clean = robust_predictions(b, data.images, data.labels, emb, 0.0, 0, "pgd", cfg.seed, cfg.batch_size)
    rows: list[dict[str, Any]] = []
    for method in methods:
        for eps in adv["eps"]:
            t = time.perf_counter()
            step = adv["step_size"] / 255 if adv["step_size"] is not None and method == "pgd" else None
            r = robust_predictions(b, data.images, data.labels, emb, eps / 255, adv["steps"], method, cfg.seed,
                                   cfg.batch_size, step)
            rows.append({"method": method, "eps": eps, "eps_unit": "1/255", "steps": adv["steps"],
                         "accuracy": accuracy(r["predictions"], data.labels),
                         "mean_loss": round(float(r["loss"].mean()), 4),
                         "seconds": round(time.perf_counter() - t, 1)})
            say(f"clip attack: {method} eps {eps:g}/255: {_pct(rows[-1]['accuracy'])}")
    result: dict[str, Any] = {
        "format": FORMAT, "kind": "clip attack", "name": cfg.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **provenance(cfg, b),
        "dataset": {**data.meta, "n": len(data.labels), "classes": list(data.classes)},
        "templates": list(templates), "adversarial": adv,
        "threat_model": "l-inf, [0, 1] pixels, through the model's normalisation; zero-shot cross-entropy",
        "clean": accuracy(clean["predictions"], data.labels), "attacks": rows,
    }
    result["seconds"] = round(time.perf_counter() - t0, 2)
    _write(Path(out) / ATTACK_JSON, result)
    say(f"clip attack: wrote {Path(out) / ATTACK_JSON}")
    return result


def attack_table(result: dict[str, Any]) -> str:
    m = result["model"]
    head = f"{result['name']}: {m.get('name') or m.get('family')} ({m['source']}), {result['dataset']['n']} images"
    rows = [("clean", _pct(result["clean"]))]
    rows += [(f"{r['method'].upper()}-{r['steps']} at {r['eps']:g}/255", _pct(r["accuracy"]))
             for r in result["attacks"]]
    w = max(len(k) for k, _ in rows)
    return "\n".join([head, *(f"  {k:<{w}}  {v}" for k, v in rows)])


def settings_of(cfg: ClipConfig) -> Any:
    from safeglass.clip.robust import RobustSettings

    r = dict(cfg.robust or RobustBlock().model_dump())
    r.pop("train_n")
    return RobustSettings(**r, seed=cfg.seed)


def robust_train(cfg: ClipConfig, out: str | Path, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fine-tune the config's model by its `robust` block; writes the vision tower and card.json into OUT."""
    from safeglass.clip.backends import CLIP_ORGANISMS

    organism = cfg.model.get("organism")
    if organism is not None and organism != "shapeclip":
        raise ValueError(f"clip robust-train: start from shapeclip (or a hub / random CLIP), not {organism!r}")
    s = settings_of(cfg)
    train_n = (cfg.robust or RobustBlock().model_dump())["train_n"]
    if organism == "shapeclip" and cfg.data["source"] == "shapeworld":
        from safeglass.organisms import shapeclip_robust

        variant = f"{s.method}-eps{s.eps:g}"
        known = f"shapeclip-{variant}" in CLIP_ORGANISMS
        return shapeclip_robust.build(variant if known else "custom", cfg.seed, out, progress, settings=s,
                                      train_n=train_n)
    return _train_generic(cfg, s, train_n, Path(out), progress)


def install_dir(config: str | Path) -> Path:
    """Where `robust-train --install` writes: the package's weights folder of the organism the config builds."""
    from safeglass.clip.backends import CLIP_ORGANISMS
    from safeglass.clip.config import load_clip_config
    from safeglass.organisms.registry import PACKAGE_WEIGHTS

    cfg = load_clip_config(config)
    s = settings_of(cfg)
    name = f"shapeclip-{s.method}-eps{s.eps:g}"
    if cfg.model.get("organism") != "shapeclip" or name not in CLIP_ORGANISMS:
        raise ValueError(f"clip robust-train --install: only the packaged robust ShapeCLIPs install "
                         f"({', '.join(CLIP_ORGANISMS[1:])}); this config builds {name} from {cfg.model}")
    return PACKAGE_WEIGHTS / name


def _train_generic(cfg: ClipConfig, s: Any, train_n: int, out: Path,
                   progress: Callable[[str], None] | None) -> dict[str, Any]:
    from safeglass.clip.images import ImageSet
    from safeglass.clip.robust import VISION_WEIGHTS, save_vision, train

    say = _say(progress)
    t0 = time.perf_counter()
    b = _backend(cfg)
    data = load_split(cfg, b.image_size, "fit" if cfg.defend is not None else "test")
    if len(data.labels) > train_n:
        data = ImageSet(data.images[:train_n], data.labels[:train_n], data.classes, None, data.meta)
    trained = train(b, s, data.images, data.labels, data.classes, templates_of(cfg), out, say)
    sha = save_vision(trained["model"], out / VISION_WEIGHTS)
    card = {"name": cfg.name, "kind": "robust CLIP vision tower", **provenance(cfg, b),
            "recipe": asdict(s), "recipe_key": trained["settings_key"], "train_seconds": trained["train_seconds"],
            "steps_done": trained["steps_done"], "stopped_early_at_step": trained["stopped_early"],
            "training_data": {**data.meta, "n": int(len(data.labels))}, "history": trained["history"],
            "weights_sha256": sha, "build_seconds": round(time.perf_counter() - t0, 1)}
    (out / ROBUST_CARD).write_text(json.dumps(card, indent=2, default=str) + "\n", encoding="utf-8")
    return card


def robust_table(card: dict[str, Any]) -> str:
    r = card["recipe"]
    lines = [f"{card['name']}: {r['method']} at eps {r['eps']:g}/255, {card['steps_done']} steps in "
             f"{card['train_seconds']:.0f} s"]
    meas = card.get("measured") or {}
    for label, key in (("zero-shot clean", "zero_shot_clean"), ("typographic", "zero_shot_typographic"),
                       ("PGD-10 robust at 2/255", "pgd10_robust_eps2"), ("PGD-10 robust at 4/255", "pgd10_robust_eps4"),
                       ("base PGD-10 at 2/255", "base_pgd10_robust_eps2"),
                       ("base PGD-10 at 4/255", "base_pgd10_robust_eps4")):
        if isinstance(meas.get(key), int | float):
            lines.append(f"  {label:<24}  {100 * meas[key]:5.1f} %")
    return "\n".join(lines)

