"""The failure-mode report of a CLIP run folder: `safeglass clip report RUN_DIR` (and `safeglass report RUN_DIR`
on a folder holding clip-*.json but no run store).

From clip-eval.json, clip-defend.json, clip-vary.json and clip-amplify.json, whichever are there, it writes
RUN_DIR/clip-report.md and RUN_DIR/clip-report.html with the same tables (values as the JSON has them), and
pictures into RUN_DIR/clip-report/: the typographic failures (re-scored with the eval's config: right when clean,
wrong when attacked, the largest wrong-class margins first) beside their patch attribution maps, and the variation
search's flips (unvaried scene beside the varied one). The Markdown links the pictures relatively; the HTML page
embeds the same PNG bytes as data URIs (the report pages' policy loads nothing from anywhere), and links the files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from safeglass.clip.amplify import AMPLIFY_JSON
from safeglass.clip.run import DEFEND_JSON, EVAL_JSON
from safeglass.clip.variation import VARY_JSON, per_attribute
from safeglass.reporting.pages import Part, write_pages

REPORT_MD = "clip-report.md"
REPORT_HTML = "clip-report.html"
PICTURES = "clip-report"
RESULTS = (EVAL_JSON, DEFEND_JSON, VARY_JSON, AMPLIFY_JSON)  # what a clip run folder may hold


def _pct(p: dict[str, Any] | None) -> str:
    if not p or p.get("rate") is None:
        return "n/a"
    return f"{100 * p['rate']:.1f} % [{100 * p['ci_low']:.1f}, {100 * p['ci_high']:.1f}] (n={p['n']})"


def _load(run_dir: Path, name: str) -> dict[str, Any] | None:
    path = run_dir / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def is_clip_run(run_dir: str | Path) -> bool:
    return any((Path(run_dir) / n).is_file() for n in RESULTS)


def _model(result: dict[str, Any]) -> str:
    m = result["model"]
    return f"{m.get('name') or m.get('family')} ({m['source']}, {m.get('class', '')})"


def eval_part(r: dict[str, Any]) -> Part:
    a = r["attack"]
    area = a.get("mean_postit_area")
    attack = (f"read from the dataset ({r['dataset']['source']}"
              + (f", mean post-it area {100 * area:.1f} % of the image)" if area is not None else ")")
              if a.get("from") == "dataset"
              else f"word {a['word']}, size {a['size']}, position {a['position']}, post-it {a['postit']}")
    drop = r["typographic_drop_points"]
    rows = [["clean accuracy", _pct(r["clean"])], ["typographic accuracy", _pct(r["typographic"])],
            ["drop (points)", "n/a" if drop is None else f"{drop:.1f}"],
            ["follows the written word", _pct(r["follows_word"])],
            ["SCAM: object chosen (template mean)", f"{100 * r['scam']['object_rate']:.1f} %"],
            ["SCAM: attack word chosen", f"{100 * r['scam']['attack_rate']:.1f} %"]]
    return Part("Typographic attack (clip eval)", [(["measure", "value"], rows)],
                [f"Model: {_model(r)}; data: {r['dataset']['source']}, {r['dataset']['n']} images, seed "
                 f"{r['dataset'].get('seed')}; attack: {attack}; config hash {r['config']['hash']}."])


def defend_part(r: dict[str, Any]) -> Part:
    t, rec = r["test"], r["recovered"]
    rows = [["held-out clean", _pct(t["clean"])], ["held-out typographic", _pct(t["typographic"])],
            ["clean, heads ablated", _pct(t["clean_ablated"])],
            ["typographic, heads ablated", _pct(t["typographic_ablated"])],
            ["heads kept", ", ".join(f"L{h[0]}H{h[1]}" for h in r["fit"]["kept"]) or "none"],
            ["loss recovered", "n/a" if rec is None else f"{100 * rec:.1f} %"],
            ["clean loss (points)", f"{r['clean_loss_points']:.2f}"],
            ["goal (>= 50 % recovered at <= 1 point)", "met" if r["goal"]["met"] else "not met"]]
    return Part("Dyslexify head ablation (clip defend)", [(["measure", "value"], rows)],
                [f"Model: {_model(r)}; config hash {r['config']['hash']}."])


def vary_part(r: dict[str, Any], pictures: Path) -> Part:
    rows = [[a, e["value"], _pct(e["flip"]), _pct(e["accuracy"])] for a, e in per_attribute(r).items()]
    pair_rows = [[" + ".join(f"{a}={v}" for a, v in p["changes"]), _pct(p["flip"]), _pct(p["accuracy"])]
                 for p in sorted(r["pairs"], key=lambda p: -p["flip"]["rate"])]
    b = r["base_accuracy"]
    part = Part("Natural variation (clip vary)",
                [(["attribute", "value that flips most", "flip rate", "accuracy"], rows),
                 (["pair", "flip rate", "accuracy"], pair_rows)],
                [f"Model: {_model(r)}; {r['dataset']['n']} unvaried ShapeWorld scenes (seed {r['dataset']['seed']}), "
                 f"unvaried accuracy {_pct(b)}; {r['images_encoded']} images; budget {r['settings']['budget']}.",
                 "The variations that flip the prediction most:",
                 *[f"{i + 1}. {w}" for i, w in enumerate(r["ranked"][:10])]])
    grid = _variation_grid(r, pictures)
    if grid is not None:
        part.pictures.append((grid, "Each row: an unvaried scene and the same scene with one attribute set to its "
                                    "value that flips most, with what the model called each."))
    return part


def amplify_part(r: dict[str, Any]) -> Part:
    """The amplification table: per task, each model's clean, typographic, drop and the drop's difference from the
    base model, in points with their bootstrap intervals, as clip-amplify.json holds them."""

    def ci(d: dict[str, Any]) -> str:
        return "n/a" if d["value"] is None else f"{d['value']:+.1f} [{d['ci_low']:+.1f}, {d['ci_high']:+.1f}]"

    metrics = ", ".join(f"{t}: {r['rows'][t][0]['metric']}" for t in r["tasks"])
    tables = []
    for task in r["tasks"]:
        rows = [[task, x["model"], f"{x['clean']['value']:.1f}", f"{x['attacked']['value']:.1f}", ci(x["drop"]),
                 "" if x["model"] == r["base"] else ci(x["amplification"]),
                 "" if x["model"] == r["base"] else ci(x["relative_amplification"])] for x in r["rows"][task]]
        tables.append((["task", "model", "clean", "typographic", "drop", "drop minus base", "relative drop minus base"],
                       rows))
    return Part("Does robustness amplify typographic vulnerability? (clip amplify)", tables,
                [f"Base {r['base']} against {len(r['models']) - 1} variants; points of each task's metric "
                 f"({metrics}), 95 % bootstrap intervals over {r['resamples']} resamples of the shared "
                 f"images; config hash {r['config']['hash']}. A positive difference: the variant loses more to the "
                 "written word than the base does."])


def _variation_grid(r: dict[str, Any], pictures: Path, rows: int = 7) -> Path | None:
    from safeglass.clip.pictures import grid
    from safeglass.data.shapeworld.world import Scene, render

    size = r["dataset"]["image_size"]
    # one row an attribute (its value that flips most), so one failure mode does not fill the picture
    best: dict[str, dict[str, Any]] = {}
    for e in sorted(r["singles"], key=lambda e: -e["flip"]["rate"]):
        if e["examples"]:
            best.setdefault(e["changes"][0][0], e)
    cells = []
    for e in list(best.values())[:rows]:
        ex = e["examples"][0]
        what = ", ".join(f"{a} {v}" for a, v in e["changes"])
        cells.append([(render(Scene.from_dict(ex["base"]), size)[0], f"{ex['label']}, unvaried\ncalled "
                                                                     f"{ex['base_pred']}"),
                      (render(Scene.from_dict(ex["varied"]), size)[0], f"{what}\ncalled {ex['pred']}")])
    if not cells:
        return None
    return grid(cells, pictures / "variation.png", "natural variations that flip the prediction")


def idx_all(data: Any) -> range:
    return range(len(data.labels))


def failure_part(r: dict[str, Any], pictures: Path, worst: int, say: Callable[[str], None],
                 backend: Any = None) -> Part | None:
    """The eval's worst typographic failures with attribution maps, recomputed from its recorded config."""
    from safeglass.clip.attribution import patch_attribution, worst_failures
    from safeglass.clip.config import parse_clip_config
    from safeglass.clip.pictures import grid, overlay
    from safeglass.clip.run import _backend, eval_sets, templates_of
    from safeglass.clip.zeroshot import TextCache

    src = r["config"]["source"]
    cfg = parse_clip_config(r["config"]["raw"], src, Path(src).parent if src != "<dict>" else None)
    if cfg.hash != r["config"]["hash"]:
        say(f"clip report: {src} no longer parses to the eval's config hash; failures are not drawn")
        return None
    b = backend if backend is not None else _backend(cfg)
    data, clean, attacked = eval_sets(cfg, b.image_size, say)
    twin = clean.meta.get("twin_of") if clean is not None else None   # SCAM: clean twins of some images only
    att_images = attacked.images[twin] if twin is not None else attacked.images
    words = list(np.asarray(attacked.words)[twin]) if twin is not None else list(attacked.words)
    labels = clean.labels if clean is not None else data.labels
    templates, cache = templates_of(cfg), TextCache()
    fails = worst_failures(b, None if clean is None else clean.images, att_images, labels, data.classes, words,
                           templates, worst, cache)
    if not fails:
        return Part("Typographic failures", lines=["No image is right when clean and wrong when attacked."])
    say(f"clip report: attribution maps for {len(fails)} failures")
    cls = cache.class_embeddings(b, data.classes, templates)
    idx = [f.index for f in fails]
    to_wrong = cls[[data.classes.index(f.attacked_pred) for f in fails]]
    m_att, _ = patch_attribution(b, att_images[idx], to_wrong)
    attacked_cells = [[(att_images[i], f"label {f.label}, word '{f.word}'\ncalled {f.attacked_pred}"),
                       (overlay(att_images[i], ma), f"evidence for\n{f.attacked_pred}")]
                      for i, f, ma in zip(idx, fails, m_att)]
    if clean is None:   # RTA-100, PAINT: no clean image to compare with
        cells = attacked_cells
    else:
        m_clean, _ = patch_attribution(b, clean.images[idx], cls[[data.classes.index(f.label) for f in fails]])
        cells = [[(clean.images[i], f"clean: {f.label}\ncalled {f.clean_pred}"),
                  (overlay(clean.images[i], mc), f"evidence for\n{f.label}"), *att]
                 for i, f, mc, att in zip(idx, fails, m_clean, attacked_cells)]
    path = grid(cells, pictures / "failures.png", "typographic failures: clean vs attacked, with patch attribution")
    files = None if data.files is None else [data.files[j] for j in (twin if twin is not None else idx_all(data))]
    rows = [[str(f.index), (files[f.index] if files else ""), f.label, f.word, f.clean_pred or "n/a",
             f.attacked_pred, f"{f.margin:.2f}"] for f in fails]
    which = ("The images the model gets right clean and wrong attacked" if clean is not None else
             f"The attacked images the model gets wrong ({data.meta['source']} has no clean twins)")
    return Part("Typographic failures", [(["image", "file", "label", "written word", "clean prediction",
                                           "attacked prediction", "wrong-class margin (logit)"], rows)],
                [f"{which}, largest wrong-class margin first. Red: the patches whose pixels raise the explained "
                 "class's logit (integrated gradients from a grey image, summed per patch; clip/attribution.py)."],
                [(path, "Each row: " + ("clean image, its evidence for the label, " if clean is not None else "")
                  + "attacked image, its evidence for the wrong class.")])


# ------------------------------------------------------------------------------------------------ render


def write_clip_report(run_dir: str | Path, worst: int = 6, progress: Callable[[str], None] | None = None,
                      backend: Any = None) -> dict[str, Path]:
    """Write clip-report.md, clip-report.html and RUN_DIR/clip-report/*.png; returns their paths (`report`: the
    HTML page, as `safeglass report` names a run's)."""
    say = progress or (lambda _line: None)
    run = Path(run_dir)
    ev, de, va, am = (_load(run, n) for n in RESULTS)
    if ev is None and de is None and va is None and am is None:
        raise FileNotFoundError(f"clip report: {run} holds none of {', '.join(RESULTS)}")
    pictures = run / PICTURES
    pictures.mkdir(parents=True, exist_ok=True)
    parts: list[Part] = []
    if ev is not None:
        parts.append(eval_part(ev))
        if worst > 0 and (fp := failure_part(ev, pictures, worst, say, backend)) is not None:
            parts.append(fp)
    if de is not None:
        parts.append(defend_part(de))
    if va is not None:
        parts.append(vary_part(va, pictures))
    if am is not None:
        parts.append(amplify_part(am))
    name = next(r["name"] for r in (ev, de, va, am) if r is not None)
    title = f"safeglass CLIP failure modes: {name}"
    out = write_pages(parts, run, title, Path(REPORT_MD).stem)
    out.update({path.stem: path for p in parts for path, _ in p.pictures})
    say(f"clip report: wrote {run / REPORT_MD} and {run / REPORT_HTML}")
    return out
