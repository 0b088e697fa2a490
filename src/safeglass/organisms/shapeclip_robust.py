"""Robust ShapeCLIPs: ShapeCLIP's vision tower fine-tuned by TeCoA or FARE (clip.robust) at l-inf 2/255 or 4/255.

Four organisms, one recipe each (`VARIANTS`): shapeclip-tecoa-eps2, shapeclip-tecoa-eps4, shapeclip-fare-eps2,
shapeclip-fare-eps4. A build folder holds only the vision tower (`vision.safetensors`, ~2.6 MB) and card.json;
the text tower, tokenizer and processor are ShapeCLIP's, found by the sha256 its card records (a rebuilt
ShapeCLIP with other weights does not fit and is refused). Training images come from ShapeCLIP's own training
world (`shapeclip.training_scenes`, on a stream of their own), so the fine-tuning sees what ShapeCLIP saw.

The card measures what the amplification table needs: clean and typographic zero-shot accuracy on ShapeCLIP's
card set (`shapeclip.evaluate`, so the figures sit beside ShapeCLIP's card), and PGD-10 zero-shot robust
accuracy at 2/255 and 4/255 on the `test` split of clip.images.shapeworld.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from safeglass.clip.robust import VISION_WEIGHTS, RobustSettings
from safeglass.organisms import shapeclip

# One recipe for all four: 3 PGD steps of 2.5 eps / 3 (at least 1/255) instead of RobustVLM's 10 of 1/255, 120
# steps of a CPU-sized batch (3,840 adversarial images), about 4 minutes on 2 shared cores; the time budget is a cap.
BASE_SETTINGS = RobustSettings(method="tecoa", eps=4, attack_steps=3, train_steps=120, batch_size=32, lr=2e-4,
                               weight_decay=1e-4, warmup=10, checkpoint_every=10, time_budget_s=300)
VARIANTS: dict[str, RobustSettings] = {
    f"{m}-eps{e}": replace(BASE_SETTINGS, method=m, eps=e) for m in ("tecoa", "fare") for e in (2, 4)}
NAMES = tuple(f"shapeclip-{v}" for v in VARIANTS)
POOL = 4096            # training images rendered once (the batches are drawn from them by (seed, step))
POOL_STREAM = 19_019   # their scenes' seed stream, apart from ShapeCLIP's (0..) and its card set (+1,000,003)
ROBUST_EVAL_N = 300    # images of the `test` split attacked for the card's robust accuracy
GOALS = {"robust_accuracy_gain_points_min": 20.0, "zero_shot_clean_min": 0.7}


def name_of(variant: str) -> str:
    return f"shapeclip-{variant}"


def variant_of(name: str) -> str:
    v = name.removeprefix("shapeclip-")
    if v not in VARIANTS:
        raise ValueError(f"robust ShapeCLIP: unknown organism {name!r}; known: {', '.join(NAMES)}")
    return v


def training_images(seed: int, n: int = POOL, words: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """`n` images of ShapeCLIP's training world with their shape labels: words included as ShapeCLIP saw them (half
    the images, 80 % of those their own shape's name), or none (`words=False`, the ablation in docs/clip.md)."""
    cfg = shapeclip.ShapeCLIPConfig() if words else replace(shapeclip.ShapeCLIPConfig(), p_text=0.0)
    scenes = shapeclip.training_scenes(cfg, n, np.random.default_rng([seed, POOL_STREAM]))
    return shapeclip._render(scenes, cfg.image_size), np.array([cfg.shapes.index(s.main.shape) for s in scenes])


def base_model(sha256: str | None = None) -> tuple[Any, Any, Any, Path]:
    """ShapeCLIP (model, tokenizer, processor, folder): the build whose weights' sha256 is `sha256` (any build when
    None), rebuilt ones first."""
    from safeglass.organisms import registry

    seen = []
    for d in registry.version_dirs("shapeclip"):
        c = registry.card("shapeclip", d)
        if c is None or not (d / "model.safetensors").is_file():
            continue
        seen.append(str(c.get("weights_sha256"))[:12])
        if sha256 is None or c.get("weights_sha256") == sha256:
            return (*shapeclip.load_dir(d), d)
    raise FileNotFoundError(f"robust ShapeCLIP: no ShapeCLIP build with weights sha256 {str(sha256)[:12]}... "
                            f"(found: {', '.join(seen) or 'none'}); these vision weights were trained on it")


def load_dir(path: str | Path) -> tuple[Any, Any, Any]:
    """(CLIPModel in eval mode, tokenizer, processor): the base ShapeCLIP with this build's vision tower."""
    from safeglass.clip.robust import load_vision

    path = Path(path)
    card = json.loads((path / "card.json").read_text(encoding="utf-8"))
    model, tokenizer, processor, _ = base_model(card["components"]["shapeclip"]["sha256"])
    return load_vision(model, path / VISION_WEIGHTS), tokenizer, processor


def backend_of(model: Any, tokenizer: Any, processor: Any, identity: dict[str, Any]) -> Any:
    from safeglass.clip.backends import HFBackend

    return HFBackend(model, tokenizer, processor, identity)


def robust_accuracy(backend: Any, eps_list: tuple[float, ...] = (2, 4), steps: int = 10, method: str = "pgd",
                    n: int = ROBUST_EVAL_N, seed: int = 0) -> dict[str, Any]:
    """Zero-shot accuracy under an l-inf attack at each eps (in /255) on the `test` split, with Wilson intervals."""
    from safeglass.clip import images
    from safeglass.clip.adversarial import robust_predictions
    from safeglass.clip.zeroshot import TextCache, accuracy

    data = images.shapeworld(n, seed, backend.image_size, "test")
    emb = TextCache().class_embeddings(backend, data.classes, [shapeclip.PROMPT])
    return {f"eps{e:g}": accuracy(robust_predictions(backend, data.images, data.labels, emb, e / 255, steps,
                                                     method, seed)["predictions"], data.labels) for e in eps_list}


def evaluate(model: Any, tokenizer: Any, processor: Any, cfg: Any, seed: int) -> dict[str, Any]:
    """The card's figures: ShapeCLIP's card measures (clean, typographic) and PGD-10 robust accuracy at 2 and 4."""
    measured = shapeclip.evaluate(model, tokenizer, processor, shapeclip.ShapeCLIPConfig(), seed)
    rob = robust_accuracy(backend_of(model, tokenizer, processor, {"source": "memory"}), seed=seed)
    measured.update({f"pgd10_robust_{k}": round(v["rate"], 4) for k, v in rob.items()})
    measured["robust_intervals"] = {k: [round(v["ci_low"], 4), round(v["ci_high"], 4)] for k, v in rob.items()}
    measured["n_robust"] = ROBUST_EVAL_N
    return measured


def remeasure(path: str | Path, card: dict[str, Any], progress: Any = None) -> dict[str, Any]:
    """The card's figures again from the saved weights (the base model's figures are carried over from the card)."""
    measured = evaluate(*load_dir(path), None, int(card["seed"]))
    keep = ("own_eps", "base_pgd10_robust_eps2", "base_pgd10_robust_eps4", "base_zero_shot_clean",
            "base_zero_shot_typographic")
    return {**measured, **{k: card["measured"].get(k) for k in keep}}


def config_from_card(card: dict[str, Any]) -> RobustSettings:
    return RobustSettings(**card["recipe"])


def goals_report(measured: dict[str, Any], base: dict[str, Any] | None = None) -> tuple[bool, dict[str, float | None]]:
    """Met when clean accuracy stays >= 0.7 and robust accuracy at the organism's own eps (`own_eps` in measured)
    beats the base ShapeCLIP's by >= 20 points (`base_robust_*` in measured)."""
    own = measured.get("own_eps")
    short: dict[str, float | None] = {}
    if measured.get("zero_shot_clean", 0) < GOALS["zero_shot_clean_min"]:
        short["zero_shot_clean"] = round(GOALS["zero_shot_clean_min"] - measured.get("zero_shot_clean", 0), 4)
    gain = None
    if own is not None and measured.get(f"base_pgd10_robust_eps{own}") is not None:
        gain = 100 * (measured[f"pgd10_robust_eps{own}"] - measured[f"base_pgd10_robust_eps{own}"])
    if gain is None or gain < GOALS["robust_accuracy_gain_points_min"]:
        short["robust_accuracy_gain_points"] = None if gain is None else round(
            GOALS["robust_accuracy_gain_points_min"] - gain, 2)
    return not short, short


def build(profile: str = "tecoa-eps4", seed: int = 0, out: str | Path | None = None,
          progress: Callable[[str], None] | None = None, settings: RobustSettings | None = None,
          train_n: int = POOL, words: bool = True) -> dict[str, Any]:
    """Fine-tune ShapeCLIP by the variant's recipe (or `settings`, with `profile` a variant name or "custom"),
    measure it and write vision.safetensors and card.json into `out` (default $SAFEGLASS_HOME/organisms/<name>);
    a killed build resumes from its checkpoint."""
    from safeglass.clip.robust import CHECKPOINT, CHECKPOINT_META, save_vision, train
    from safeglass.organisms import registry
    from safeglass.training import cards

    if settings is None:
        variant_of(profile)
    name = f"shapeclip-{profile}"
    s = replace(settings or VARIANTS[profile], seed=seed)
    out = Path(out) if out is not None else registry.home_dir(name)
    say = progress or (lambda _line: None)
    t0 = time.perf_counter()
    model, tokenizer, processor, base_dir = base_model()
    base_card = registry.card("shapeclip", base_dir) or {}
    base = backend_of(model, tokenizer, processor, {"source": "organism", "name": "shapeclip"})
    images, labels = training_images(seed, train_n, words)
    say(f"{name}: {s.method} eps {s.eps:g}/255 on {len(images)} ShapeCLIP-world images, {s.train_steps} steps "
        f"(budget {s.time_budget_s} s)")
    trained = train(base, s, images, labels, shapeclip.ShapeCLIPConfig().shapes, [shapeclip.PROMPT], out, say)
    say(f"{name}: measuring (clean, typographic, PGD-10 at 2/255 and 4/255)")
    measured = evaluate(trained["model"], tokenizer, processor, None, seed)
    base_rob = robust_accuracy(base, seed=seed)
    measured.update({f"base_pgd10_robust_{k}": round(v["rate"], 4) for k, v in base_rob.items()},
                    own_eps=int(s.eps) if float(s.eps).is_integer() else s.eps,
                    base_zero_shot_clean=base_card.get("measured", {}).get("zero_shot_clean"),
                    base_zero_shot_typographic=base_card.get("measured", {}).get("zero_shot_typographic"))
    met, short = goals_report(measured)
    sha = save_vision(trained["model"], out / VISION_WEIGHTS)
    card = {
        "name": name, "kind": "model organism",
        "description": f"ShapeCLIP with its vision tower fine-tuned by {s.method.upper()} at l-inf {s.eps:g}/255",
        "architecture": {"class": "transformers.CLIPModel", "stored": "vision tower only (vision_model.*, "
                         "visual_projection.*); text tower, tokenizer and processor from shapeclip"},
        "params_stored": int(sum(v.numel() for v in trained["model"].vision_model.parameters())
                             + trained["model"].visual_projection.weight.numel()),
        "seed": seed, "profile": profile,
        "build_seconds": round(time.perf_counter() - t0, 1), "train_seconds": trained["train_seconds"],
        "steps_done": trained["steps_done"], "stopped_early_at_step": trained["stopped_early"],
        "threads": _threads(),
        "measured": measured, "goals": GOALS, "goals_met": met, "shortfall": short,
        "recipe": asdict(s), "recipe_key": trained["settings_key"],
        "training_data": {"world": "shapeclip training world", "n": len(images), "stream": [seed, POOL_STREAM],
                          "words": words},
        "history": trained["history"][:: max(1, len(trained["history"]) // 30)],
        "components": {"shapeclip": {"sha256": base_card.get("weights_sha256"),
                                     "weights_key": registry.weights_key("shapeclip", base_dir)}},
        "weights_sha256": sha,
        "versions": cards.versions("torch", "transformers", "numpy", "safetensors"),
    }
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    for f in (CHECKPOINT, CHECKPOINT_META):  # the card and the weights now say everything the checkpoint did
        (out / f).unlink(missing_ok=True)
    say(f"{name}: wrote {out} (clean {measured['zero_shot_clean']:.3f}, typographic "
        f"{measured['zero_shot_typographic']:.3f}, PGD-10 eps2 {measured['pgd10_robust_eps2']:.3f}, eps4 "
        f"{measured['pgd10_robust_eps4']:.3f})")
    return card


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())
