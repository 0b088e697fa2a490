"""The report's figures, drawn with PIL (matplotlib is not installed here): the accuracy matrix as a heat map, the
sweep's accuracy curves with their intervals, and the memory's synthetic share after each task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (0, 0, 0), (90, 90, 200)]


def _font(size: int = 12):
    from PIL import ImageFont

    from safeglass.data.shapeworld.render import font_path

    path = font_path("sans")
    return ImageFont.truetype(path, size) if path else ImageFont.load_default()


def heatmap(matrix: Any, path: Path, title: str) -> Path:
    """R[i, j] (rows: after training task i; columns: tested on task j), white 0 to dark blue 1, values written."""
    from PIL import Image, ImageDraw

    r = np.asarray(matrix, float)
    n, cell, left, top = r.shape[0], 56, 70, 50
    img = Image.new("RGB", (left + n * cell + 20, top + n * cell + 40), "white")
    d, f = ImageDraw.Draw(img), _font(12)
    d.text((10, 10), title, fill="black", font=f)
    for i in range(n):
        d.text((10, top + i * cell + cell // 2 - 6), f"after {i + 1}", fill="black", font=f)
        d.text((left + i * cell + cell // 2 - 12, top + n * cell + 8), f"task {i + 1}", fill="black", font=f)
        for j in range(n):
            v = float(np.clip(r[i, j], 0, 1))
            colour = tuple(int(255 - v * (255 - c)) for c in (8, 48, 107))
            x0, y0 = left + j * cell, top + i * cell
            d.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=colour, outline="white")
            d.text((x0 + 14, y0 + cell // 2 - 6), f"{100 * r[i, j]:.0f}", fill="white" if v > 0.5 else "black", font=f)
    img.save(path)
    return path


def _axes(d: Any, box: tuple[int, int, int, int], xs: list[float], f: Any, ylabel: str) -> None:
    x0, y0, x1, y1 = box
    d.line([x0, y1, x1, y1], fill="black")
    d.line([x0, y0, x0, y1], fill="black")
    for v in (0, 0.25, 0.5, 0.75, 1.0):
        y = y1 - v * (y1 - y0)
        d.line([x0 - 4, y, x0, y], fill="black")
        d.text((x0 - 34, y - 6), f"{100 * v:.0f}", fill="black", font=f)
    d.text((x0 - 60, y0 - 24), ylabel, fill="black", font=f)


def curves(series: dict[str, list[tuple[float, float, float]]], xs: list[float], path: Path, title: str,
           xlabel: str, ylabel: str, xticks: list[str] | None = None) -> Path:
    """One line per series over xs, with its interval as a vertical bar at each x; y from 0 to 1."""
    from PIL import Image, ImageDraw

    w, h, box = 760, 440, (70, 50, 540, 390)
    img = Image.new("RGB", (w, h), "white")
    d, f = ImageDraw.Draw(img), _font(12)
    d.text((10, 10), title, fill="black", font=f)
    _axes(d, box, xs, f, ylabel)
    x0, y0, x1, y1 = box
    span = (max(xs) - min(xs)) or 1.0

    def px(x: float, y: float) -> tuple[float, float]:
        return x0 + 10 + (x - min(xs)) / span * (x1 - x0 - 20), y1 - float(np.clip(y, 0, 1)) * (y1 - y0)

    for i, x in enumerate(xs):
        d.text((px(x, 0)[0] - 10, y1 + 6), xticks[i] if xticks else f"{100 * x:.0f}", fill="black", font=f)
    d.text(((x0 + x1) // 2 - 40, y1 + 24), xlabel, fill="black", font=f)
    for k, (name, pts) in enumerate(series.items()):
        colour = PALETTE[k % len(PALETTE)]
        dash = "+gate" in name
        xy = [px(x, m) for x, (m, _, _) in zip(xs, pts)]
        d.line(xy, fill=colour, width=1 if dash else 2)
        for (x, (_, lo, hi)), (cx, cy) in zip(zip(xs, pts), xy):
            d.line([px(x, lo), px(x, hi)], fill=colour)
            d.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], outline=colour, fill="white" if dash else colour)
        d.line([x1 + 20, y0 + 18 * k + 6, x1 + 44, y0 + 18 * k + 6], fill=colour, width=2)
        d.text((x1 + 50, y0 + 18 * k), name, fill="black", font=f)
    img.save(path)
    return path


def run_plots(result: dict[str, Any], out: Path) -> dict[str, str]:
    plots = {}
    for s, c in result["cells"].items():
        p = out / "plots" / f"matrix-{s.replace('+', '_')}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        plots[f"matrix {s}"] = str(heatmap(c["matrix"], p, f"{s}: accuracy (%) at contamination {result['ratio']:g}"))
    shares = {s: [(m["synthetic_share"], m["synthetic_share"], m["synthetic_share"]) for m in c["memory"]]
              for s, c in result["cells"].items() if c["memory"]}
    if shares:
        n = max(len(v) for v in shares.values())
        shares = {s: v for s, v in shares.items() if len(v) == n}
        plots["memory"] = str(curves(shares, [i / max(n - 1, 1) for i in range(n)], out / "plots" / "memory.png",
                                     f"memory's synthetic share after each task (ratio {result['ratio']:g})",
                                     "after task", "synthetic %", [str(i + 1) for i in range(n)]))
    return plots


def sweep_plots(result: dict[str, Any], cells: list[dict[str, Any]], out: Path) -> dict[str, str]:
    (out / "plots").mkdir(parents=True, exist_ok=True)
    ratios = result["ratios"]
    plots = {}
    for metric, label in (("average_accuracy", "average accuracy %"), ("average_forgetting", "forgetting (points)")):
        series = {s: [(per[f"{r:g}"][metric]["mean"], per[f"{r:g}"][metric]["ci_low"], per[f"{r:g}"][metric]["ci_high"])
                      for r in ratios] for s, per in result["table"].items()}
        plots[metric] = str(curves(series, ratios, out / "plots" / f"sweep-{metric}.png",
                                   f"{result['name']}: {label} vs contamination, 95 % intervals over "
                                   f"{len(result['seeds'])} seeds", "contamination %", label))
    mid = min(ratios, key=lambda r: abs(r - 0.5))
    shares = {s: per[f"{mid:g}"]["memory_synthetic_share"] for s, per in result["table"].items()
              if per[f"{mid:g}"]["memory_synthetic_share"]}
    if shares:
        n = max(len(v) for v in shares.values())
        plots["memory"] = str(curves({s: [(v, v, v) for v in vals] for s, vals in shares.items() if len(vals) == n},
                                     [i / max(n - 1, 1) for i in range(n)], out / "plots" / "sweep-memory.png",
                                     f"memory's synthetic share after each task at contamination {mid:g} (seed mean; "
                                     "reservoir strategies coincide)", "after task", "synthetic %",
                                     [str(i + 1) for i in range(n)]))
    for s in result["strategies"]:
        mine = [c for c in cells if c["strategy"] == s and c["ratio"] == mid]
        if mine:
            p = out / "plots" / f"matrix-{s.replace('+', '_')}-r{round(100 * mid):03d}.png"
            plots[f"matrix {s}"] = str(heatmap(np.mean([c["matrix"] for c in mine], axis=0), p,
                                               f"{s}: accuracy (%) at contamination {mid:g}, seed mean"))
    return plots
