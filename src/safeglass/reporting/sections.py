"""The public interface for report pages: a ``Section`` type, the formatting helpers and the stylesheet.

A capability (SGM's neurons page, a future one) builds its part of a report as ``Section`` objects and
either hands them to ``render_report(..., sections=[...])`` (they go after the finding and the plots) or
renders its own page with ``page``. Its body is HTML the capability wrote, so every value in it must
pass through ``escape`` (or the ``pct``/``ci``/... helpers, which return plain text to escape): model
outputs, dataset and target names all come from places we do not control.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape as _html_escape
from typing import Any

# No script at all: the CSP for pages that ship none (the run report pins its one script by hash instead).
CSP_NO_SCRIPT = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def escape(text: object) -> str:
    """``text`` as HTML text or attribute value (quotes included); ``None`` becomes the empty string."""
    return _html_escape("" if text is None else str(text), quote=True)


def finite(x: Any) -> bool:
    """A real, finite number (bools are not numbers here: a flag is never a rate)."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def pct(x: Any) -> str:
    """A proportion as a percentage with one decimal, ``n/a`` when missing."""
    return f"{100 * x:.1f}%" if finite(x) else "n/a"


def ci(lo: Any, hi: Any) -> str:
    """An interval of proportions as ``[lo%, hi%]``, ``n/a`` unless both ends are numbers."""
    return f"[{pct(lo)}, {pct(hi)}]" if finite(lo) and finite(hi) else "n/a"


def pp(x: Any) -> str:
    """A difference of proportions in signed percentage points."""
    return f"{100 * x:+.1f} pp" if finite(x) else "n/a"


def num(x: Any, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if finite(x) else "n/a"


def target_labels(summary: dict) -> dict[str, str]:
    """Target name -> the label the summary gives it (the name where it gives none)."""
    return {t.get("name", ""): (t.get("label") or t.get("name", "")) for t in summary.get("targets") or []}


def judge_labels(summary: dict) -> dict[str, str]:
    """Judge key -> the run's id for it (its name, else the key): two configurations of one judge stay apart."""
    return {j.get("key", ""): (j.get("id") or j.get("name") or j.get("key", "")) for j in summary.get("judges") or []}


def table_wrap(table_html: str) -> str:
    """A table in its own horizontal scroller, so a wide table never widens the page."""
    return f"<div class='table-wrap'>{table_html}</div>"


@dataclass(frozen=True)
class Section:
    """One titled part of a report page.

    ``body`` is HTML whose every value the author escaped; ``title`` and ``nav`` are plain text (escaped
    here). ``anchor`` is the element id (derived from the title when empty). Capability sections sort by
    ``order``, ties keeping the order given. ``folded`` puts the body in a closed ``<details>``: for
    reference material a reader opens on purpose.
    """

    title: str
    body: str
    anchor: str = ""
    order: int = 0
    folded: bool = False
    nav: str = ""

    @property
    def id(self) -> str:
        # Ids land in attributes and in #fragment links; keeping them to [a-z0-9-] keeps both trivially safe.
        return re.sub(r"[^a-z0-9-]+", "-", (self.anchor or self.title).lower()).strip("-") or "section"


def render_section(section: Section) -> str:
    """The section as ``<section id=...>``, its body folded into ``<details>`` when asked."""
    head = f"<h2>{escape(section.title)}</h2>"
    if section.folded:
        return (f"<section id='{section.id}' class='folded'><details><summary>{head}</summary>{section.body}"
                "</details></section>")
    return f"<section id='{section.id}'>{head}{section.body}</section>"


def ordered(sections: Sequence[Section]) -> list[Section]:
    return sorted(sections, key=lambda s: s.order)  # sorted() is stable: ties keep the caller's order


def nav(sections: Sequence[Section]) -> str:
    links = "".join(f"<a href='#{s.id}'>{escape(s.nav or s.title)}</a>" for s in sections)
    return f"<nav>{links}</nav>"


def page(title: str, sections: Sequence[Section], *, header: str = "", csp: str = CSP_NO_SCRIPT,
         extra_css: str = "", after_main: str = "") -> str:
    """A whole self-contained document: nav, ``header`` (trusted HTML), the sections in the order given,
    then ``after_main`` (the run report's data blobs and pinned script). Nothing is loaded from anywhere.
    ``csp`` is ours, never data: it goes in verbatim (its quotes are the policy's syntax)."""
    body = nav(sections) + "<main>" + header + "".join(render_section(s) for s in sections) + "</main>"
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{csp}\">"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<meta name='referrer' content='no-referrer'><title>{escape(title)}</title>"
            f"<style>{CSS}{extra_css}</style></head><body>{body}{after_main}</body></html>\n")


# Sequential, colour-blind safe (ColorBrewer YlOrRd, 5 classes): lightness alone orders the classes, and
# the value is printed in every cell, so colour is never the only carrier.
SCALE = [("#ffffcc", "#1f2933"), ("#fed976", "#1f2933"), ("#fd8d3c", "#1f2933"), ("#e31a1c", "#ffffff"),
         ("#800026", "#ffffff")]


def scale_class(x: Any) -> str:
    """``s0``..``s4`` for a proportion in fifths (``na`` when missing): the finding's cell colours."""
    if not finite(x):
        return "na"
    return f"s{min(len(SCALE) - 1, max(0, int(x * len(SCALE))))}"


def scale_legend(meaning: str) -> str:
    """The colour key: one swatch per fifth and one for "not run", with what darker means."""
    n = len(SCALE)
    items = "".join(f"<span class='key s{i}'>{100 * i // n}–{100 * (i + 1) // n}%</span>" for i in range(n))
    return (f"<div class='legend-scale'>{items}<span class='key na'>— not run</span>"
            f"<span class='muted'>{escape(meaning)}</span></div>")


_SCALE_CSS = "".join(f".s{i}{{background:{bg};color:{fg}}}" for i, (bg, fg) in enumerate(SCALE))

CSS = """
:root{--fg:#1f2933;--muted:#616e7c;--line:#e4e7eb;--bg:#fff;--soft:#f5f7fa;--accent:#0072B2;--warn:#b44d12;
  --bad:#c62828;--ok:#2e7d32}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
  color:var(--fg);background:var(--bg)}
main{max-width:1280px;margin:0 auto;padding:20px 28px 60px}
h1{font-size:24px;margin:0 0 10px}
h2{font-size:20px;margin:30px 0 10px;padding-bottom:6px;border-bottom:2px solid var(--line)}
h3{font-size:16px;margin:18px 0 8px}
nav{position:sticky;top:0;background:rgba(255,255,255,.95);border-bottom:1px solid var(--line);padding:8px 28px;
  z-index:5;display:flex;flex-wrap:wrap;gap:2px 18px}
nav a{color:var(--accent);text-decoration:none;font-weight:500}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:6px 20px;margin:0 0 8px;
  background:var(--soft);padding:12px 16px;border-radius:8px}
.facts dt{font-size:11px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
.facts dd{margin:0;font-weight:600;word-break:break-all}
.versions{color:var(--muted);font-size:13px;margin:4px 0}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--soft);padding:1px 4px;
  border-radius:3px;overflow-wrap:anywhere}
.muted{color:var(--muted)}
.note{color:var(--warn);font-size:13px}
.caption{max-width:78em;margin:0 0 8px}
table{border-collapse:collapse;width:100%;font-size:13px}
th{text-align:left;font-weight:600;color:var(--muted);border-bottom:2px solid var(--line);padding:6px 8px;
  white-space:nowrap}
td{border-bottom:1px solid var(--line);padding:5px 8px;vertical-align:top}
tbody tr:hover{background:var(--soft)}
.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
.strong{font-weight:700}
.sig{font-weight:700;color:var(--accent)}
.table-wrap{overflow-x:auto;max-width:100%}
figure.finding{margin:0}
table.finding{width:auto}
table.finding th{text-align:center;padding:3px 4px;white-space:normal;vertical-align:bottom}
table.finding th.defense{font-size:11px;font-weight:500}
table.finding th.row-head{text-align:left;min-width:130px;max-width:220px;font-weight:600;vertical-align:middle;
  color:var(--fg);position:sticky;left:0;background:#fff;z-index:1}
table.finding td.cell{text-align:center;padding:3px 4px;min-width:62px;border:2px solid #fff;
  font-variant-numeric:tabular-nums}
table.finding td.cell b{display:block;font-size:14px}
table.finding td.cell span{display:block;font-size:11px;opacity:.9;white-space:nowrap}
table.finding .gap{border-left:10px solid #fff}
@media (max-width:1100px){table.finding td.cell{min-width:52px;padding:2px 3px}table.finding td.cell b{font-size:13px}
  table.finding td.cell span{font-size:10px}table.finding th.row-head{min-width:110px}
  main{padding-left:20px;padding-right:20px}}
.na{background:repeating-linear-gradient(45deg,#f5f7fa,#f5f7fa 5px,#e9ecef 5px,#e9ecef 10px);color:var(--muted)}
.legend-scale{display:flex;flex-wrap:wrap;gap:4px 6px;align-items:center;font-size:12px;margin:8px 0}
.legend-scale .key{padding:1px 8px;border-radius:3px;font-variant-numeric:tabular-nums}
.legend-scale .muted{margin-left:8px}
details{margin:6px 0}
details>summary{cursor:pointer;color:var(--accent);font-weight:600}
details>summary>h2,details>summary>h3{display:inline;border:0;margin:0;padding:0}
section.folded{margin-top:30px;border-bottom:2px solid var(--line)}
.badge{display:inline-block;white-space:nowrap;font-size:11px;font-weight:600;padding:1px 7px;border-radius:10px;
  background:var(--soft);color:var(--muted);margin-right:4px}
.badge.organism{background:#fdecea;color:var(--bad)}
.badge.warn{background:#fff4e5;color:var(--warn)}
.badge.tone-bad{background:#fdecea;color:var(--bad)}
.badge.tone-good{background:#e8f5e9;color:var(--ok);font-weight:700}
.badge.tone-ok{background:#f1f8f1;color:var(--ok)}
.badge.tone-warn{background:#fff4e5;color:var(--warn)}
.badge.tone-signal{background:#ede7f6;color:#5e35b1}
.badge.kind-harmful{background:#fdecea;color:var(--bad)}
.badge.kind-benign{background:#e3f2fd;color:var(--accent)}
.chart-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,300px),1fr));gap:12px}
.chart-grid.scatters{grid-template-columns:repeat(auto-fill,minmax(min(100%,560px),1fr))}
.chart-card{margin:0;border:1px solid var(--line);border-radius:8px;padding:8px 10px;background:#fff;min-width:0}
.chart-card figcaption{font-size:12px;color:var(--muted);margin-bottom:4px}
svg.chart{display:block;font-size:11px;font-family:inherit;max-width:100%;height:auto}
svg .grid{stroke:#e9ecef;stroke-width:1}
svg .tick{fill:var(--muted)}
svg .bar-label,svg .legend{fill:var(--fg)}
svg .bar-value{fill:var(--fg);font-weight:600}
svg .whisker{stroke:#243b53;stroke-width:1.3;fill:none}
svg .chart-title{font-weight:600;fill:var(--fg);font-size:12px}
svg .axis-label{fill:var(--muted);font-size:12px}
svg .plot-bg{fill:#fbfcfd;stroke:var(--line)}
svg .na-strip{fill:#f1f3f5}
svg .errbar{stroke-width:1.4;fill:none}
svg .point{stroke:#fff;stroke-width:1.5}
.errors pre{margin:0;white-space:pre-wrap;word-break:break-word;font-size:12px}
.filters{display:flex;flex-wrap:wrap;gap:10px 14px;align-items:flex-end;background:var(--soft);padding:12px 14px;
  border-radius:8px}
.filters label{display:flex;flex-direction:column;font-size:12px;color:var(--muted);gap:3px}
.filters label.grow{flex:1;min-width:200px}
.filters label.toggle{flex-direction:row;align-items:center;gap:6px;color:var(--fg)}
select,input[type=search]{font:inherit;padding:4px 6px;border:1px solid #cbd2d9;border-radius:5px;background:#fff;
  max-width:100%}
.pager{display:flex;gap:12px;align-items:center;margin:12px 0}
button{font:inherit;font-size:12px;padding:3px 10px;border:1px solid #cbd2d9;border-radius:5px;background:#fff;
  cursor:pointer}
button:disabled{opacity:.45;cursor:default}
.sample{border:1px solid var(--line);border-left:4px solid var(--accent);border-radius:6px;padding:10px 14px;
  margin:0 0 10px}
.sample.harmful{border-left-color:var(--bad)}
.sample-meta{display:flex;flex-wrap:wrap;gap:4px 12px;font-size:12px;color:var(--muted);margin-bottom:6px}
.sample-meta .meta-item{overflow-wrap:anywhere}
.sample .label{font-size:11px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted);margin-top:6px}
.sample pre{white-space:pre-wrap;word-break:break-word;margin:2px 0;
  font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--soft);padding:6px 8px;
  border-radius:4px;max-height:320px;overflow:auto}
.hidden-response{font-style:italic;color:var(--muted);
  background:repeating-linear-gradient(45deg,#fafafa,#fafafa 8px,#f3f3f3 8px,#f3f3f3 16px);padding:6px 8px;
  border-radius:4px}
.verdicts{margin-top:6px}
.trace{margin-top:6px;font-size:12px}.trace-call{border-left:3px solid var(--soft);padding-left:8px;margin:4px 0}
.trace pre.sent{max-height:160px}
.images{display:flex;flex-wrap:wrap;gap:8px;margin:4px 0}
figure.thumb{margin:0;font-size:11px;max-width:170px}
figure.thumb img{display:block;max-width:160px;max-height:160px;border:1px solid var(--line);border-radius:4px;
  image-rendering:pixelated}
figure.thumb figcaption{overflow-wrap:anywhere}
""" + _SCALE_CSS
