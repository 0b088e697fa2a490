"""The attack suite's report: OUT/rl-report.html with inline SVG (no JS, no network): the victim's throughput over
time under each attack, every user's throughput without and with FGGM, the reduction per attack with its interval,
and the bound tightness (CROWN against intervals)."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import numpy as np

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]


def line_chart(series: list[tuple[str, list[float]]], *, title: str, y_label: str, width: int = 620,
               height: int = 300) -> str:
    """Polylines over a shared x (slot index) as an inline <svg>."""
    left, right, top, bottom = 50, 150, 24, 34
    pw, ph = width - left - right, height - top - bottom
    n = max((len(v) for _, v in series), default=1)
    y_hi = max((max(v) for _, v in series if v), default=1.0) or 1.0
    parts = [f'<svg width="{width}" height="{height}" role="img"><title>{escape(title)}</title>',
             f'<text x="{left}" y="14" font-size="12">{escape(title)}</text>',
             f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#444"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#444"/>',
             f'<text x="{left - 6}" y="{top + 8}" font-size="10" text-anchor="end">{y_hi:.2f}</text>',
             f'<text x="{left - 6}" y="{top + ph}" font-size="10" text-anchor="end">0</text>',
             f'<text x="{left + pw / 2}" y="{height - 6}" font-size="10">slot</text>',
             f'<text x="4" y="{top + ph / 2}" font-size="10">{escape(y_label)}</text>']
    for i, (label, ys) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        pts = " ".join(f"{left + pw * j / max(1, n - 1):.1f},{top + ph * (1 - y / y_hi):.1f}" for j, y in
                       enumerate(ys))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{pts}"/>')
        parts.append(f'<text x="{left + pw + 8}" y="{top + 12 + 14 * i}" font-size="11" fill="{colour}">'
                     f'{escape(label)}</text>')
    return "".join(parts) + "</svg>"


def bar_chart(bars: list[tuple[str, float]], *, title: str, width: int = 620, row: int = 22) -> str:
    """Horizontal bars (non-negative values) as an inline <svg>."""
    left, right, top = 210, 70, 24
    hi = max((v for _, v in bars), default=1.0) or 1.0
    height = top + row * len(bars) + 8
    parts = [f'<svg width="{width}" height="{height}" role="img"><title>{escape(title)}</title>',
             f'<text x="4" y="14" font-size="12">{escape(title)}</text>']
    for i, (label, v) in enumerate(bars):
        y = top + row * i
        w = max(0.0, (width - left - right) * v / hi)
        parts.append(f'<text x="{left - 6}" y="{y + 14}" font-size="11" text-anchor="end">{escape(label)}</text>'
                     f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" '
                     f'fill="{PALETTE[i % len(PALETTE)]}"/>'
                     f'<text x="{left + w + 4:.1f}" y="{y + 14}" font-size="11">{v:.2f}</text>')
    return "".join(parts) + "</svg>"


def write_report(result: dict[str, Any], episodes: dict[tuple[str, int], dict[str, Any]], out: Path) -> Path:
    s = result["summary"]
    attacks = [a for a in s if isinstance(s[a], dict)]
    seed = s[attacks[0]]["seeds"][0]
    smooth = 20
    victim = [(a, np.convolve(episodes[(a, seed)]["victim_series"], np.ones(smooth) / smooth, "valid").tolist())
              for a in attacks]
    charts = [line_chart(victim, title=f"victim's throughput over time (seed {seed}, {smooth}-slot mean)",
                         y_label="bit/s/Hz")]
    for a in ("none", "fggm"):
        if (a, seed) in episodes:
            per = np.asarray(episodes[(a, seed)]["per_user_series"])
            charts.append(line_chart([(f"user {k}", per[:, k].tolist()) for k in range(per.shape[1])],
                                     title=f"every user's throughput, attack {a} (seed {seed})", y_label="bit/s/Hz"))
    rows = "".join(f"<tr><td>{escape(a)}</td><td>{s[a]['victim_rate']:.3f}</td><td>{s[a]['sum_rate']:.2f}</td>"
                   f"<td>{100 * s[a]['reduction']:.1f} % [{100 * s[a]['reduction_ci'][0]:.1f}, "
                   f"{100 * s[a]['reduction_ci'][1]:.1f}]</td></tr>" for a in attacks)
    f = result.get("fggm") or {}
    bounds = ("" if not f else
              f"<h2>Bounds</h2><p>FGGM's universal report {escape(str(f['reports_raw']))} (log10 gain), target "
              f"action {escape(str(f['target_action']))}: CROWN lower bound of the margin over the box "
              f"{f['certified_margin']:.3f}, intervals {f['ibp_margin']:.3f}; certified for the box mean +- "
              f"{f['certified_box_k']} std; victim unscheduled on {100 * f['sampled_success']:.1f} % of sampled "
              f"box observations.</p>")
    b = result.get("bounds")
    if b:
        bounds += (f"<p>Bound tightness over the full box (mean +- {b['box_k']} std, every feature free): mean "
                   f"Q-value bound width CROWN {b['crown_mean_width']} against intervals {b['ibp_mean_width']} "
                   f"(sampled range {b['sampled_mean_range']}); violations in {b['samples']} sampled observations: "
                   f"CROWN {b['crown_violations']}, intervals {b['ibp_violations']}.</p>")
        bounds += bar_chart([("sampled range", b["sampled_mean_range"]), ("CROWN width", b["crown_mean_width"]),
                             ("interval width", b["ibp_mean_width"])],
                            title=f"mean Q-value bound width over the box mean +- {b['box_k']} std")
    if f.get("schedule"):
        bounds += bar_chart([(f"k {r['box_k']}: {m}", -r[f"{m}_margin"]) for r in f["schedule"]
                             for m in ("crown", "ibp")],
                            title="FGGM: how far each bound is from certifying (-margin lower bound; < 0 certifies)")
    html = (f"<!doctype html><meta charset='utf-8'><title>{escape(result['name'])}</title>"
            f"<h1>RL scheduler attack: {escape(result['name'])}</h1>"
            f"<p>victim policy {escape(result['victim']['name'])} ({escape(result['victim']['algorithm'])}), user "
            f"{result['threat']['victim']} targeted by users {escape(str(result['threat']['adversaries']))}; "
            f"config {escape(result['config_hash'])}</p>"
            f"<table border=1 cellpadding=4><tr><th>attack</th><th>victim bit/s/Hz</th><th>sum bit/s/Hz</th>"
            f"<th>victim reduction [95 % CI over seeds]</th></tr>{rows}</table>"
            + "".join(f"<div>{c}</div>" for c in charts) + bounds)
    path = out / "rl-report.html"
    path.write_text(html, encoding="utf-8")
    return path
