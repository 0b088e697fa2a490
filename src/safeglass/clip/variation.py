"""A natural-variation search on ShapeCLIP's world: which described scene attributes, alone or in pairs, flip a
CLIP model's zero-shot prediction when nothing is written on the image.

Base scenes are the eval's ShapeWorld `test` split (one large shape; see data/shapeworld/shapeclip_world.py for
what ShapeCLIP was trained on: large shapes only, no occluders, mostly plain backgrounds and solid fills). One
attribute at a time is set to each of its values on every base scene that does not already have that value, the
scene is rendered again (world.render) and classified; then the values that flipped most are combined in pairs
across attributes. A flip is a prediction that differs from the same unvaried scene's. Rates come with Wilson
intervals, and `ranked` says each result in words, with the class it hurts most:

    "a small shape flips the prediction on 41 % [36, 46] of 317 scenes (accuracy 97 % -> 58 %); worst: a small
     star is called a circle 63 % of the time"

Seeded (the base scenes and the occluders' noise), and bounded by a budget in images encoded.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from safeglass.data.shapeworld.world import (
    BACKGROUNDS,
    COLOUR_NAMES,
    SIZES,
    TEXTURES,
    Background,
    Occluder,
    Scene,
    render,
)
from safeglass.stats import proportion

VARY_JSON = "clip-vary.json"

# Centres of the nine regions, kept 0.3 from the edges so that a large shape (radius up to 0.242) stays whole.
REGION_CENTRES: dict[str, tuple[float, float]] = {
    f"{row}{' ' if row and col else ''}{col}".strip() or "center": (x, y)
    for row, y in (("top", 0.3), ("", 0.5), ("bottom", 0.7)) for col, x in (("left", 0.3), ("", 0.5), ("right", 0.7))}
OCCLUDER_SIDES = ("left", "right", "top", "bottom")
OCCLUDED_SHARE = 0.4   # of the object's width (or height) hidden, from one side: ShapeWorld draws 25-50 %
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "background": BACKGROUNDS, "background colour": COLOUR_NAMES, "texture": TEXTURES,
    "position": tuple(REGION_CENTRES), "size": tuple(SIZES), "occluder": OCCLUDER_SIDES, "colour": COLOUR_NAMES,
}


def current(scene: Scene, attribute: str) -> str | None:
    """The scene's own value of `attribute` (None for an occluder when it has none)."""
    o = scene.main
    if attribute == "background":
        return scene.background.kind
    if attribute == "background colour":
        return scene.background.colour
    if attribute == "texture":
        return o.texture
    if attribute == "position":
        return min(REGION_CENTRES, key=lambda r: (REGION_CENTRES[r][0] - o.x) ** 2 + (REGION_CENTRES[r][1] - o.y) ** 2)
    if attribute == "size":
        return o.size
    if attribute == "occluder":
        return None if not scene.occluders else "present"
    if attribute == "colour":
        return o.colour
    raise KeyError(f"variation: unknown attribute {attribute!r}; known: {', '.join(ATTRIBUTES)}")


def _occluder(scene: Scene, side: str) -> Occluder:
    o = scene.main
    r, pad, cut = o.radius, 0.02, 2 * o.radius * OCCLUDED_SHARE
    x0, y0, x1, y1 = o.x - r - pad, o.y - r - pad, o.x + r + pad, o.y + r + pad
    if side == "left":
        x1 = o.x - r + cut
    elif side == "right":
        x0 = o.x + r - cut
    elif side == "top":
        y1 = o.y - r + cut
    else:
        y0 = o.y + r - cut
    # kept off the image's outer pixels, where a hand-made backend (the tests') or a border statistic looks
    x0, y0, x1, y1 = (round(min(0.97, max(0.03, v)), 4) for v in (x0, y0, x1, y1))
    return Occluder(x0, y0, x1, y1, 0, scene.qa_seed % 64)


def apply(scene: Scene, attribute: str, value: str) -> Scene | None:
    """`scene` with `attribute` set to `value`; None where that would not change it or cannot be drawn (an object
    coloured as its background would vanish)."""
    if attribute not in ATTRIBUTES or value not in ATTRIBUTES[attribute]:
        raise KeyError(f"variation: {attribute}={value!r} is not a described value; known: "
                       f"{', '.join(f'{a}: {list(v)}' for a, v in ATTRIBUTES.items())}")
    if current(scene, attribute) == value or (attribute == "occluder" and scene.occluders):
        return None
    o, bg = scene.main, scene.background
    if attribute == "background":
        return dataclasses.replace(scene, background=Background(value, bg.colour, bg.variant))
    if attribute == "background colour":
        if value == o.colour:
            return None
        return dataclasses.replace(scene, background=Background(bg.kind, value, bg.variant))
    if attribute == "occluder":
        return dataclasses.replace(scene, occluders=(_occluder(scene, value),))
    if attribute == "colour":
        if value == bg.colour:
            return None
        main = dataclasses.replace(o, colour=value)
    elif attribute == "texture":
        main = dataclasses.replace(o, texture=value)
    elif attribute == "position":
        x, y = REGION_CENTRES[value]
        main = dataclasses.replace(o, x=x, y=y)
    else:  # size: the radius keeps the scene's own jitter around the size's nominal radius
        main = dataclasses.replace(o, size=value, radius=round(o.radius * SIZES[value] / SIZES[o.size], 4))
    return dataclasses.replace(scene, objects=(main, *scene.objects[1:]))


def apply_all(scene: Scene, changes: Sequence[tuple[str, str]]) -> Scene | None:
    """Each change in turn (the occluder last, so it covers the object where it ended up); None if any is void."""
    out: Scene | None = scene
    for a, v in sorted(changes, key=lambda c: c[0] == "occluder"):
        out = apply(out, a, v) if out is not None else None
    return out


# ------------------------------------------------------------------------------------------------- words


def _phrase(changes: Sequence[tuple[str, str]], noun: str) -> str:
    """'a small red striped star on a checker background in the top left, partly hidden from the left'."""
    got = dict(changes)
    adj = [got[a] for a in ("size", "colour") if a in got]
    if "texture" in got:
        adj.append({"solid": "solid", "striped": "striped", "dotted": "dotted"}[got["texture"]])
    words = " ".join([*adj, noun])
    bg = " ".join(v for v in (got.get("background colour"), got.get("background")) if v)
    if bg:
        words += f" on a {bg} background"
    if "position" in got:
        words += f" in the {got['position']}" if got["position"] != "center" else " in the centre"
    if "occluder" in got:
        words += f", partly hidden from the {got['occluder']}"
    return ("an " if words[0] in "aeiou" else "a ") + words


def describe(entry: dict[str, Any]) -> str:
    """One result in words: its flip rate, its accuracy change and the class it hurts most."""
    f, a, b = entry["flip"], entry["accuracy"], entry["base_accuracy"]
    line = (f"{_phrase(entry['changes'], 'shape')} flips the prediction on {100 * f['rate']:.0f} % "
            f"[{100 * f['ci_low']:.0f}, {100 * f['ci_high']:.0f}] of {f['n']} scenes (accuracy "
            f"{100 * b['rate']:.0f} % -> {100 * a['rate']:.0f} %)")
    w = entry.get("worst")
    if w:
        line += (f"; worst: {_phrase(entry['changes'], w['shape'])} is called a {w['called']} "
                 f"{100 * w['rate']:.0f} % of the time ({w['k']} of {w['n']})")
    return line


# ------------------------------------------------------------------------------------------------ search


def _score(predict: Callable[[np.ndarray], np.ndarray], base: list[Scene], base_pred: np.ndarray,
           labels: np.ndarray, classes: Sequence[str], changes: list[tuple[str, str]], size: int,
           keep_examples: int) -> dict[str, Any] | None:
    varied = [(i, s) for i, s in ((i, apply_all(b, changes)) for i, b in enumerate(base)) if s is not None]
    if not varied:
        return None
    idx = np.array([i for i, _ in varied])
    pred = predict(np.stack([render(s, size)[0] for _, s in varied]))
    y, p0 = labels[idx], base_pred[idx]
    flips = pred != p0
    worst = None
    for c in np.unique(y):  # the class this change hurts most, and what it is called instead
        wrong = pred[(y == c)][pred[(y == c)] != c]
        if len(wrong):
            called, k = Counter(wrong.tolist()).most_common(1)[0]
            n_c = int((y == c).sum())
            if worst is None or k / n_c > worst["rate"] or (k / n_c == worst["rate"] and n_c > worst["n"]):
                worst = {"shape": classes[c], "called": classes[called], "k": int(k), "n": n_c, "rate": k / n_c}
    # examples of flips, those that break a right prediction first (the failures a report shows)
    flipped = sorted((k for k in range(len(idx)) if flips[k]), key=lambda k: not (p0[k] == y[k] != pred[k]))
    ex = [{"index": int(idx[k]), "base": base[idx[k]].to_dict(), "varied": varied[k][1].to_dict(),
           "label": classes[y[k]], "base_pred": classes[p0[k]], "pred": classes[pred[k]]}
          for k in flipped[:keep_examples]]
    return {"changes": [list(c) for c in changes], "attributes": sorted({a for a, _ in changes}),
            "flip": proportion(int(flips.sum()), len(idx)), "accuracy": proportion(int((pred == y).sum()), len(idx)),
            "base_accuracy": proportion(int((p0 == y).sum()), len(idx)), "worst": worst, "examples": ex}


def search(predict: Callable[[np.ndarray], np.ndarray], base: list[Scene], labels: np.ndarray,
           classes: Sequence[str], size: int, top: int = len(ATTRIBUTES), keep_examples: int = 2,
           attributes: dict[str, tuple[str, ...]] | None = None,
           progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every single attribute value, then every pair of the `top` attributes that flipped most, each at its value
    that flipped most. `predict` maps uint8 images (N, size, size, 3) to class indices."""
    say = progress or (lambda _line: None)
    attrs = attributes or ATTRIBUTES
    base_pred = predict(np.stack([render(s, size)[0] for s in base]))
    singles = []
    for a, values in attrs.items():
        for v in values:
            got = _score(predict, base, base_pred, labels, classes, [(a, v)], size, keep_examples)
            if got is not None:
                singles.append(got)
        say(f"clip vary: {a} done")
    # each attribute's value that flips most (ties: the lower accuracy); the `top` attributes whose best flips
    # most are combined in every pair, so each pair of attributes is tried once, at its most damaging values
    best = {}
    for e in sorted(singles, key=lambda e: (-e["flip"]["rate"], e["accuracy"]["rate"], e["changes"])):
        best.setdefault(e["changes"][0][0], tuple(e["changes"][0]))
    chosen = list(best.values())[:top]
    pairs = []
    for c1, c2 in itertools.combinations(chosen, 2):
        got = _score(predict, base, base_pred, labels, classes, [c1, c2], size, keep_examples)
        if got is not None:
            pairs.append(got)
    say(f"clip vary: {len(pairs)} pairs done")
    ranked = sorted([*singles, *pairs], key=lambda e: (-e["flip"]["rate"], -e["flip"]["n"], e["changes"]))
    return {"base_accuracy": proportion(int((base_pred == labels).sum()), len(labels)),
            "singles": singles, "pairs": pairs, "top_singles": [list(c) for c in chosen],
            "ranked": [describe(e) for e in ranked if e["flip"]["k"] > 0][:20]}


def per_attribute(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per attribute: its values' largest flip rate and the value that has it (the report's summary table)."""
    out: dict[str, dict[str, Any]] = {}
    for e in result["singles"]:
        a, v = e["changes"][0]
        if a not in out or e["flip"]["rate"] > out[a]["flip"]["rate"]:
            out[a] = {"value": v, "flip": e["flip"], "accuracy": e["accuracy"]}
    return out


def images_per_base(attributes: dict[str, tuple[str, ...]] | None = None, top: int = len(ATTRIBUTES)) -> int:
    """Images encoded per base scene at most: the base, each value, each pair of the top attributes."""
    attrs = attributes or ATTRIBUTES
    k = min(top, len(attrs))
    return 1 + sum(len(v) for v in attrs.values()) + k * (k - 1) // 2


def run_search(cfg: Any, out: Any, budget: int = 20_000, top: int = len(ATTRIBUTES),
               progress: Callable[[str], None] | None = None, backend: Any = None) -> dict[str, Any]:
    """`safeglass clip vary`: the search on the config's ShapeWorld split within `budget` images; writes
    OUT/clip-vary.json."""
    import json
    from pathlib import Path

    from safeglass.clip import images
    from safeglass.clip.run import FORMAT, _backend, _write, provenance, templates_of
    from safeglass.clip.zeroshot import TextCache, predict
    from safeglass.schema import ConfigError

    say = progress or (lambda _line: None)
    path = Path(out) / VARY_JSON
    settings = {"budget": int(budget), "top": int(top)}
    try:
        done = json.loads(path.read_text(encoding="utf-8"))
        if done.get("format") == FORMAT and done["config"]["hash"] == cfg.hash and done["settings"] == settings:
            say(f"clip vary: {path} is already done for this config and budget; delete it to compute it again")
            return done
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if cfg.data["source"] != "shapeworld":
        raise ConfigError(f"{cfg.source}: field 'data.source': clip vary varies ShapeWorld scenes; "
                          f"got {cfg.data['source']!r}")
    n = budget // images_per_base(top=top)
    if n < 1:
        raise ValueError(f"clip vary: a budget of {budget} images is less than one base scene's "
                         f"{images_per_base(top=top)}")
    n = min(n, cfg.data["n"])
    t0 = time.perf_counter()
    b = backend if backend is not None else _backend(cfg)
    size = cfg.data["image_size"] or b.image_size
    data = images.shapeworld(n, cfg.data["seed"], size, "test")
    templates = templates_of(cfg)
    cache = TextCache()
    n_encoded = [0]

    def classify(imgs: np.ndarray) -> np.ndarray:
        n_encoded[0] += len(imgs)
        return predict(b, imgs, data.classes, templates, cache)

    say(f"clip vary: {n} base scenes, at most {n * images_per_base(top=top)} images")
    found = search(classify, list(data.scenes or []), data.labels, data.classes, size, top, progress=say)
    result = {"format": FORMAT, "kind": "clip vary", "name": cfg.name,
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **provenance(cfg, b),
              "dataset": {**data.meta, "classes": list(data.classes)}, "templates": list(templates),
              "settings": settings, "images_encoded": n_encoded[0], **found,
              "per_attribute": per_attribute(found), "seconds": round(time.perf_counter() - t0, 2)}
    _write(path, result)
    say(f"clip vary: wrote {path}")
    return result


def table(result: dict[str, Any]) -> str:
    """The console summary: base accuracy, the top flips in words."""
    b = result["base_accuracy"]
    lines = [f"{result['name']}: {result['dataset']['n']} base scenes, {result['images_encoded']} images; unvaried "
             f"accuracy {100 * b['rate']:.1f} % [{100 * b['ci_low']:.1f}, {100 * b['ci_high']:.1f}]",
             "  attribute           value        flip rate [95 % CI]      accuracy"]
    for a, e in per_attribute(result).items():
        f, acc = e["flip"], e["accuracy"]
        lines.append(f"  {a:<19} {e['value']:<12} {100 * f['rate']:5.1f} % [{100 * f['ci_low']:.1f}, "
                     f"{100 * f['ci_high']:.1f}]  {100 * acc['rate']:5.1f} %")
    lines.append("  the variations that flip most:")
    lines += [f"  {i + 1}. {w}" for i, w in enumerate(result["ranked"][:10])]
    return "\n".join(lines)
