"""The robust-CLIP classification rows as Markdown: for each model folder under RUNS (one per model, each holding the
clip-attack.json and clip-eval.json that `safeglass clip attack | eval --organism NAME --out RUNS/NAME` wrote), clean,
PGD / APGD robust and typographic accuracy with Wilson intervals, and the typographic drop. With --paired, each robust
organism's drop minus base ShapeCLIP's, paired by image on the eval set of configs/clip-shapeclip.yaml (bootstrap 95 %
interval): does robustness amplify the typographic drop?

    python scripts/clip_robust_table.py runs/clip-robust [--paired] [--also NAME=FOLDER ...]

`--also shapeclip-tecoa-eps4=runs/x` adds a build of an organism kept elsewhere to the paired table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ORDER = ("shapeclip", "shapeclip-tecoa-eps2", "shapeclip-tecoa-eps4", "shapeclip-fare-eps2", "shapeclip-fare-eps4")


def pct(p: dict) -> str:
    return f"{100 * p['rate']:.1f} [{100 * p['ci_low']:.1f}, {100 * p['ci_high']:.1f}]"


def rows(root: Path) -> list[str]:
    names = [n for n in ORDER if (root / n).is_dir()] + sorted(
        d.name for d in root.iterdir() if d.is_dir() and d.name not in ORDER)
    out = ["| model | clean (attack set) | PGD-10 2/255 | APGD-10 2/255 | PGD-10 4/255 | APGD-10 4/255 "
           "| clean (eval set) | typographic | drop (points) | follows the word |", "| --- " * 10 + "|"]
    for n in names:
        att = json.loads((root / n / "clip-attack.json").read_text(encoding="utf-8"))
        ev = json.loads((root / n / "clip-eval.json").read_text(encoding="utf-8"))
        by = {(a["method"], a["eps"]): a["accuracy"] for a in att["attacks"]}
        cells = [pct(by[(m, e)]) if (m, e) in by else "n/a" for e in (2, 4) for m in ("pgd", "apgd")]
        out.append(f"| {n} | {pct(att['clean'])} | {' | '.join(cells)} | {pct(ev['clean'])} | "
                   f"{pct(ev['typographic'])} | {ev['typographic_drop_points']:.1f} | {pct(ev['follows_word'])} |")
    return out


def paired(names: list[str], config: str = "configs/clip-shapeclip.yaml") -> list[str]:
    import numpy as np

    from safeglass.clip.attack_run import with_organism
    from safeglass.clip.backends import load_backend
    from safeglass.clip.config import load_clip_config
    from safeglass.clip.run import attacked_split, load_split, templates_of
    from safeglass.clip.zeroshot import TextCache, predict
    from safeglass.stats import paired_bootstrap

    def drops(name: str) -> np.ndarray:
        organism, _, path = name.partition("=")  # NAME=FOLDER: a build of that organism elsewhere
        cfg = with_organism(load_clip_config(config), organism)
        b = load_backend({**cfg.model, **({"path": path} if path else {})})
        data = load_split(cfg, b.image_size, "test")
        att = attacked_split(cfg, data)
        cache = TextCache()
        c = predict(b, data.images, data.classes, templates_of(cfg), cache) == data.labels
        t = predict(b, att.images, data.classes, templates_of(cfg), cache) == data.labels
        return c.astype(float) - t.astype(float)  # per image: 1 = the word broke a correct answer

    base = drops("shapeclip")
    out = ["| model | drop minus base drop (points) | 95 % interval | p |", "| --- | --- | --- | --- |"]
    for n in names:
        d = paired_bootstrap(drops(n), base)
        out.append(f"| {n} | {100 * d['delta']:+.1f} | [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}] | "
                   f"{d['p_value']:.3f} |")
    return out


if __name__ == "__main__":
    argv = sys.argv[1:]
    also = [argv[i + 1] for i, a in enumerate(argv) if a == "--also"]
    args = [a for a in argv if not a.startswith("--") and a not in also]
    root = Path(args[0] if args else "runs/clip-robust")
    print("\n".join(rows(root)))
    if "--paired" in argv:
        print()
        print("\n".join(paired([n for n in ORDER[1:] if (root / n).is_dir()] + also)))
