"""`safeglass clip segment`: MaskCLIP zero-shot segmentation on clean and typographically attacked images.

The ground truth is ShapeWorld's masks (the config's `data` draws the `test` split; the `fit` split fits the
background threshold) or a VOC-format folder (`segment.image_dir`). The attack is the config's `attack`, written by
`typography.attack_set` on the same images. The pixels the attack changed (the glyphs, or the whole note of a
post-it) are ignored (255) when clean and attacked maps are compared: the damage is then what the word does to the
rest of the image, not the pixels it covers, which no segmenter could label as the object under them. The clean
mIoU on every pixel is reported too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from safeglass.clip import segment as S
from safeglass.clip.config import ClipConfig
from safeglass.clip.run import (
    FORMAT,
    _backend,
    _finished,
    _say,
    _write,
    provenance,
    spec_of,
    templates_of,
)
from safeglass.clip.segdata import SegSet
from safeglass.clip.typography import attack_set
from safeglass.clip.zeroshot import TextCache
from safeglass.schema import ConfigError

SEGMENT_JSON = "clip-segment.json"
DEFAULTS: dict[str, Any] = {"image_dir": None, "voc_split": "val", "voc_classes": None, "background": "fit",
                            "fit_n": 200, "fit_seed": 0, "ffn": True, "resamples": 1000}


def settings(cfg: ClipConfig) -> dict[str, Any]:
    return {**DEFAULTS, **(cfg.segment or {})}


def load_sets(cfg: ClipConfig, image_size: int) -> tuple[SegSet, SegSet | None]:
    """(test set, fitting set or None): ShapeWorld's `test` and `fit` splits, or a VOC folder (no fitting set)."""
    from safeglass.clip import segdata

    s, d = settings(cfg), cfg.data
    size = d["image_size"] or image_size
    if s["image_dir"]:
        given = s["voc_classes"] or cfg.classes     # the config's classes name a VOC folder's labels too
        classes = tuple(given) if given else None
        return segdata.voc(s["image_dir"], size, s["voc_split"], classes, d["n"], d["seed"]), None
    return (segdata.shapeworld(d["n"], d["seed"], size, "test"),
            segdata.shapeworld(s["fit_n"], s["fit_seed"], size, "fit"))


def attack_labels(data: SegSet) -> np.ndarray:
    """The class each image's wrong-class word must avoid: the main object (ShapeWorld) or, on a VOC image, the
    class with most pixels (0, the first class, on an image without any)."""
    if (data.labels >= 0).all():
        return data.labels
    out = []
    for m in data.masks:
        counts = np.bincount(m[(m != S.IGNORE) & (m > 0)].ravel(), minlength=len(data.classes) + 1)[1:]
        out.append(int(counts.argmax()))
    return np.array(out, np.int64)


def evaluate_segmentation(cfg: ClipConfig, out: str | Path, progress: Callable[[str], None] | None = None,
                          backend: Any = None) -> dict[str, Any]:
    """Clean vs attacked mIoU (and pixel accuracy); writes OUT/clip-segment.json and returns it."""
    say = _say(progress)
    if (done := _finished(Path(out) / SEGMENT_JSON, cfg, say)) is not None:
        return done
    t0 = time.perf_counter()
    b = backend if backend is not None else _backend(cfg)
    s = settings(cfg)
    test, fit = load_sets(cfg, b.image_size)
    if cfg.classes and len(cfg.classes) != len(test.classes):
        raise ConfigError(f"{cfg.source}: field 'classes': {len(cfg.classes)} names for {len(test.classes)} classes "
                          f"({', '.join(test.classes)})")
    classes = tuple(cfg.classes) if cfg.classes else test.classes
    templates = templates_of(cfg)
    cache = TextCache()
    names = ("background", *classes)
    say(f"clip segment: {len(test.images)} images, {len(classes)} classes + background, {len(templates)} templates")

    # the background: a threshold fitted on the fit split, a given cosine, or a prompt (a class of its own)
    bg_given = s["background"]
    fitted = None
    if bg_given == "fit":
        if fit is None:
            raise ValueError(f"{cfg.source}: field 'segment.background': a VOC folder has no fitting split; give "
                             "a prompt (e.g. background) or a cosine threshold")
        fit_scores = S.class_scores(b, S.dense_features(b, fit.images, s["ffn"]), classes, templates, cache,
                                    fit.images.shape[1])
        t, m = S.fit_threshold(fit_scores, fit.masks, len(names))
        background = S.Background(threshold=t)
        fitted = {"threshold": round(t, 6), "fit_miou": round(m, 4), "fit_n": len(fit.images),
                  "fit_seed": s["fit_seed"]}
    elif isinstance(bg_given, (int, float)):
        background = S.Background(threshold=float(bg_given))
    else:
        background = S.Background(prompt=str(bg_given))

    spec = spec_of(cfg)
    attacked = attack_set(test.images, attack_labels(test), classes, spec, cfg.seed, test.scenes)
    changed = (attacked.images != test.images).any(-1)
    truth_same = np.where(changed, S.IGNORE, test.masks).astype(np.uint8)

    def scores_of(images: np.ndarray) -> Any:
        feats = S.dense_features(b, images, s["ffn"])
        return S.class_scores(b, feats, classes, templates, cache, images.shape[1], background.prompt)

    sc_clean = scores_of(test.images)
    p_clean, p_att = S.label_maps(sc_clean, background), S.label_maps(scores_of(attacked.images), background)
    r = s["resamples"]
    all_bg = np.zeros_like(test.masks)
    result: dict[str, Any] = {
        "format": FORMAT, "kind": "clip segment", "name": cfg.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **provenance(cfg, b),
        "dataset": {**{k: v for k, v in test.meta.items() if k != "ids"}, "classes": list(classes)},
        "templates": list(templates),
        "method": {"dense": "maskclip value path", "ffn": s["ffn"], "background": background.record(),
                   "fitted": fitted, "text_pixels": "ignored (255) in the clean/attacked comparison"},
        "attack": {**spec.record(), **attacked.summary(), "changed_pixel_share": round(float(changed.mean()), 4)},
        "clean_all_pixels": S.score(p_clean, test.masks, names, r, cfg.seed),
        "clean": S.score(p_clean, truth_same, names, r, cfg.seed),
        "typographic": S.score(p_att, truth_same, names, r, cfg.seed),
        "drop": S.paired_drop(p_clean, p_att, truth_same, len(names), r, cfg.seed),
        "all_background": S.score(all_bg, test.masks, names, r, cfg.seed),
        "localisation": S.localisation(sc_clean, test.masks, background.prompt is not None),
    }
    result["seconds"] = round(time.perf_counter() - t0, 2)
    _write(Path(out) / SEGMENT_JSON, result)
    say(f"clip segment: wrote {Path(out) / SEGMENT_JSON}")
    return result


def table(result: dict[str, Any]) -> str:
    m = result["model"]

    def row(x: dict[str, Any]) -> str:
        return f"{100 * x['miou']:5.1f} [{100 * x['ci_low']:.1f}, {100 * x['ci_high']:.1f}]  pixel acc " \
               f"{100 * x['pixel_accuracy']:.1f} %"

    d = result["drop"]
    rows = [("clean mIoU (all pixels)", row(result["clean_all_pixels"])),
            ("clean mIoU (text pixels ignored)", row(result["clean"])),
            ("typographic mIoU", row(result["typographic"])),
            ("drop (points)", f"{d['points']:.2f} [{d['ci_low']:.2f}, {d['ci_high']:.2f}]"),
            ("all-background baseline", row(result["all_background"])),
            ("class score, own pixels - background", f"{result['localisation']['mean_gap']:+.3f} (positive on "
                                                     f"{100 * result['localisation']['positive_share']:.0f} %)")]
    w = max(len(k) for k, _ in rows)
    head = f"{result['name']}: {m.get('name') or m.get('family')} ({m['source']}), {result['dataset']['n']} images"
    return "\n".join([head, *(f"  {k:<{w}}  {v}" for k, v in rows)])


# ------------------------------------------------------------------------------------ the amplification table


def miou_reduce(sums: np.ndarray, n: int) -> np.ndarray:
    """mIoU from [R, 3K] column sums of per-image (intersection, union, ground-truth pixels) per label."""
    k = sums.shape[1] // 3
    inter, union, gt = sums[:, :k], sums[:, k:2 * k], sums[:, 2 * k:]
    present = gt > 0
    ratio = np.divide(inter, union, out=np.zeros_like(inter, dtype=np.float64), where=union > 0)
    return (ratio * present).sum(1) / np.maximum(present.sum(1), 1)


def amplify_arrays(backend: Any, data: Any, attacked: Any, templates: Any, cache: TextCache, cfg: ClipConfig,
                   **_: Any) -> tuple[np.ndarray, np.ndarray]:
    """`clip amplify`'s segment task: per image, (intersection, union, ground truth) per label on clean and
    attacked images, attacked pixels ignored in both, the background threshold fitted on the fit split for each
    model. ShapeWorld data only (its scenes give the masks)."""
    from safeglass.clip import segdata

    if data.scenes is None:
        raise ValueError(f"{cfg.source}: field 'amplify.tasks': the segment task needs ShapeWorld data (masks); "
                         "`safeglass clip segment` reads VOC folders")
    s = settings(cfg)
    size = data.images.shape[1]
    names = ("background", *data.classes)
    fit = segdata.shapeworld(s["fit_n"], s["fit_seed"], size, "fit")
    fit_scores = S.class_scores(backend, S.dense_features(backend, fit.images, s["ffn"]), data.classes, templates,
                                cache, size)
    background = S.Background(threshold=S.fit_threshold(fit_scores, fit.masks, len(names))[0])
    truth = segdata.shapeworld_masks(data.scenes, tuple(data.classes), size)
    truth = np.where((attacked.images != data.images).any(-1), S.IGNORE, truth).astype(np.uint8)

    def stats(images: np.ndarray) -> np.ndarray:
        sc = S.class_scores(backend, S.dense_features(backend, images, s["ffn"]), data.classes, templates, cache,
                            size)
        c = S.counts(S.label_maps(sc, background), truth, len(names))
        return np.concatenate([c.inter, c.union, c.gt], 1).astype(np.float64)

    return stats(data.images), stats(attacked.images)
