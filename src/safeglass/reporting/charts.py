"""Inline SVG charts for the HTML report.

Plain string building, no JS and no network: the report must open from a USB stick on an
air-gapped machine. Every piece of text that reaches the SVG goes through ``html.escape``, since
labels and categories come from datasets and configs we do not control. The ``xmlns`` attribute is
left off on purpose: inline SVG in HTML5 does not need it, and it keeps the report free of URLs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

# Colour-blind-friendly palette (Okabe-Ito), cycled for series.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _finite(x: float | None) -> bool:
    return x is not None and isinstance(x, int | float) and math.isfinite(x)


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, x))


def _pct(x: float | None) -> str:
    return f"{100 * x:.1f}%" if _finite(x) else "n/a"


@dataclass
class Bar:
    """One bar: a proportion in [0, 1] with its confidence interval."""

    label: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None


def bar_chart(bars: list[Bar], *, title: str = "", color: str = PALETTE[0], label_width: int = 170,
              width: int = 560, bar_height: int = 18, gap: int = 8) -> str:
    """Horizontal bar chart of proportions (0-100 %) with CI whiskers, as an inline ``<svg>``.

    Each bar is a ``<rect class="bar">`` so callers (and tests) can count them.
    """
    top, bottom, right_pad = 26 if title else 8, 28, 54
    plot_w = max(60, width - label_width - right_pad)
    height = top + bottom + len(bars) * (bar_height + gap)
    x0 = label_width
    out = [f'<svg class="chart bar-chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'role="img" aria-label="{_e(title or "bar chart")}">']
    if title:
        out.append(f'<text class="chart-title" x="4" y="16">{_e(title)}</text>')
    # Gridlines every 25 % so values can be read without hovering.
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        x = x0 + tick * plot_w
        y_end = height - bottom + 4
        out.append(f'<line class="grid" x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{y_end}"/>')
        out.append(f'<text class="tick" x="{x:.1f}" y="{y_end + 14}" text-anchor="middle">{int(tick * 100)}%</text>')
    for i, b in enumerate(bars):
        y = top + i * (bar_height + gap)
        cy = y + bar_height / 2
        max_chars = max(6, label_width // 7)
        label = b.label if len(b.label) <= max_chars else b.label[:max_chars - 1] + "…"
        out.append(f'<text class="bar-label" x="{x0 - 6}" y="{cy + 4:.1f}" text-anchor="end">'
                   f'<title>{_e(b.label)}</title>{_e(label)}</text>')
        v = _clip01(b.value) if _finite(b.value) else 0.0
        tip = f"{b.label}: {_pct(b.value)}"
        if _finite(b.ci_low) and _finite(b.ci_high):
            tip += f" [{_pct(b.ci_low)}, {_pct(b.ci_high)}]"
        if b.n is not None:
            tip += f", n={b.n}"
        out.append(f'<rect class="bar" x="{x0}" y="{y}" width="{v * plot_w:.1f}" height="{bar_height}" '
                   f'fill="{_e(color)}" data-label="{_e(b.label)}"><title>{_e(tip)}</title></rect>')
        if _finite(b.ci_low) and _finite(b.ci_high):
            lo, hi = x0 + _clip01(b.ci_low) * plot_w, x0 + _clip01(b.ci_high) * plot_w
            out.append(f'<path class="whisker" d="M{lo:.1f} {cy:.1f}H{hi:.1f}M{lo:.1f} {cy - 5:.1f}V{cy + 5:.1f}'
                       f'M{hi:.1f} {cy - 5:.1f}V{cy + 5:.1f}"/>')
        out.append(f'<text class="bar-value" x="{x0 + plot_w + 6}" y="{cy + 4:.1f}">{_e(_pct(b.value))}</text>')
    out.append("</svg>")
    return "".join(out)


@dataclass
class Point:
    """One (target, defense) point of the trade-off plot; ``None`` marks a missing axis."""

    label: str
    x: float | None
    y: float | None
    x_low: float | None = None
    x_high: float | None = None
    y_low: float | None = None
    y_high: float | None = None


def scatter_plot(points: list[Point], *, x_label: str, y_label: str, title: str = "", size: int = 360,
                 legend_width: int = 320) -> str:
    """Scatter of proportions with CI error bars and a legend, as an inline ``<svg>``.

    Points missing one coordinate are drawn in an "n/a" strip beside that axis rather than at 0,
    so a missing measurement never reads as a perfect score.
    """
    left, top, strip, bottom = 56, 28 if title else 12, 22, 44
    plot = size
    x0, y0 = left + strip, top  # top-left of the plotting area proper
    width = x0 + plot + 20 + legend_width
    height = top + plot + strip + bottom
    need_x_strip = any(p.x is None or not _finite(p.x) for p in points)
    need_y_strip = any(p.y is None or not _finite(p.y) for p in points)

    def px(v: float) -> float:
        return x0 + _clip01(v) * plot

    def py(v: float) -> float:
        return y0 + (1 - _clip01(v)) * plot

    out = [f'<svg class="chart scatter" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'role="img" aria-label="{_e(title or "scatter plot")}">']
    if title:
        out.append(f'<text class="chart-title" x="4" y="16">{_e(title)}</text>')
    out.append(f'<rect class="plot-bg" x="{x0}" y="{y0}" width="{plot}" height="{plot}"/>')
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        gx, gy = px(tick), py(tick)
        out.append(f'<line class="grid" x1="{gx:.1f}" y1="{y0}" x2="{gx:.1f}" y2="{y0 + plot}"/>')
        out.append(f'<line class="grid" x1="{x0}" y1="{gy:.1f}" x2="{x0 + plot}" y2="{gy:.1f}"/>')
        out.append(f'<text class="tick" x="{gx:.1f}" y="{y0 + plot + strip + 14}" '
                   f'text-anchor="middle">{int(tick * 100)}%</text>')
        out.append(f'<text class="tick" x="{left - 4}" y="{gy + 4:.1f}" text-anchor="end">{int(tick * 100)}%</text>')
    if need_x_strip:
        out.append(f'<rect class="na-strip" x="{left}" y="{y0}" width="{strip - 4}" height="{plot}"/>'
                   f'<text class="tick" x="{left + strip / 2 - 2}" y="{y0 + plot + 14}" '
                   'text-anchor="middle">n/a</text>')
    if need_y_strip:
        out.append(f'<rect class="na-strip" x="{x0}" y="{y0 + plot + 4}" width="{plot}" height="{strip - 4}"/>'
                   f'<text class="tick" x="{left - 4}" y="{y0 + plot + strip / 2 + 6}" text-anchor="end">n/a</text>')
    cx_label = x0 + plot / 2
    out.append(f'<text class="axis-label" x="{cx_label}" y="{height - 8}" text-anchor="middle">{_e(x_label)}</text>')
    out.append(f'<text class="axis-label" transform="translate(14 {y0 + plot / 2}) rotate(-90)" '
               f'text-anchor="middle">{_e(y_label)}</text>')
    for i, p in enumerate(points):
        color = PALETTE[i % len(PALETTE)]
        has_x, has_y = _finite(p.x), _finite(p.y)
        cx = px(p.x) if has_x else left + (strip - 4) / 2
        cy = py(p.y) if has_y else y0 + plot + 4 + (strip - 4) / 2
        parts = []
        if has_x and _finite(p.x_low) and _finite(p.x_high):
            a, b = px(p.x_low), px(p.x_high)
            parts.append(f"M{a:.1f} {cy:.1f}H{b:.1f}"
                         f"M{a:.1f} {cy - 4:.1f}V{cy + 4:.1f}M{b:.1f} {cy - 4:.1f}V{cy + 4:.1f}")
        if has_y and _finite(p.y_low) and _finite(p.y_high):
            a, b = py(p.y_low), py(p.y_high)
            parts.append(f"M{cx:.1f} {a:.1f}V{b:.1f}"
                         f"M{cx - 4:.1f} {a:.1f}H{cx + 4:.1f}M{cx - 4:.1f} {b:.1f}H{cx + 4:.1f}")
        if parts:
            out.append(f'<path class="errbar" stroke="{color}" d="{"".join(parts)}"/>')
        tip = f"{p.label}: x={_pct(p.x)}, y={_pct(p.y)}"
        out.append(f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="5.5" fill="{color}" '
                   f'data-label="{_e(p.label)}"><title>{_e(tip)}</title></circle>')
        ly = top + 8 + i * 20
        lx = x0 + plot + 24
        text = p.label if len(p.label) <= 44 else p.label[:43] + "…"
        out.append(f'<circle cx="{lx}" cy="{ly}" r="5" fill="{color}"/>'
                   f'<text class="legend" x="{lx + 10}" y="{ly + 4}"><title>{_e(p.label)}</title>{_e(text)}</text>')
    out.append("</svg>")
    return "".join(out)
