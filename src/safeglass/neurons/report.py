"""neurons.html: one self-contained page for a `neurons eval` curve.

Same rules as the run report (safeglass.reporting.html): everything inline, no script at all, a
Content-Security-Policy that refuses any script or network load, and every string that reaches HTML
or SVG escaped (target names, dataset names and parameters come from configs we do not control).
Built only from the public section interface (safeglass.reporting.sections), so ``curve_sections`` can
also go into a run report: ``render_report(summary, samples, sections=curve_sections(curve))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeglass.reporting.charts import PALETTE, Bar, bar_chart
from safeglass.reporting.sections import CSP_NO_SCRIPT, Section, ci, escape, finite, page, pct, table_wrap

# SGM parameters at these values are not worth a word in a legend
SGM_DEFAULTS = {"curve": "linear", "layers": "None", "min_auroc": "0.5", "post_fusion_only": "True"}
EXTRA_CSS = "table.results td code{white-space:nowrap}svg .curve-line{opacity:.8}"
CSP = CSP_NO_SCRIPT


@dataclass
class CurvePoint:
    label: str
    x: float            # relative perplexity change (0.05 = +5 %)
    y: float            # rate in [0, 1]
    y_low: float | None = None
    y_high: float | None = None


@dataclass
class Series:
    label: str
    points: list[CurvePoint]


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, n - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def curve_plot(series: list[Series], *, x_label: str, y_label: str, width: int = 560, height: int = 360,
               legend_width: int = 260) -> str:
    """Toxicity (y, a proportion with CI whiskers) against perplexity change (x, percent) as an inline
    ``<svg>``: one polyline per series (an SGM strength sweep), single points for one-off methods."""
    pts = [p for s in series for p in s.points if finite(p.x) and finite(p.y)]
    left, top, bottom, right = 56, 14, 44, 16
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [p.x for p in pts] + [0.0]
    ys = [p.y_high if finite(p.y_high) else p.y for p in pts] + [0.0]
    xt = _nice_ticks(min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 0.01)
    yt = _nice_ticks(0.0, min(1.0, max(ys)) if max(ys) > 0 else 0.1)
    x_lo, x_hi, y_lo, y_hi = xt[0], xt[-1], yt[0], yt[-1]

    def px(v: float) -> float:
        return left + (v - x_lo) / (x_hi - x_lo) * plot_w

    def py(v: float) -> float:
        return top + (1 - (v - y_lo) / (y_hi - y_lo)) * plot_h

    total_w = width + legend_width
    out = [f'<svg class="chart curve" width="{total_w}" height="{height}" viewBox="0 0 {total_w} {height}" '
           f'role="img" aria-label="{escape(y_label)} against {escape(x_label)}">',
           f'<rect class="plot-bg" x="{left}" y="{top}" width="{plot_w}" height="{plot_h}"/>']
    for t in xt:
        out.append(f'<line class="grid" x1="{px(t):.1f}" y1="{top}" x2="{px(t):.1f}" y2="{top + plot_h}"/>'
                   f'<text class="tick" x="{px(t):.1f}" y="{top + plot_h + 14}" text-anchor="middle">'
                   f'{escape(f"{100 * t:+g}%")}</text>')
    for t in yt:
        out.append(f'<line class="grid" x1="{left}" y1="{py(t):.1f}" x2="{left + plot_w}" y2="{py(t):.1f}"/>'
                   f'<text class="tick" x="{left - 4}" y="{py(t) + 4:.1f}" text-anchor="end">{escape(f"{100 * t:g}%")}'
                   '</text>')
    out.append(f'<text class="axis-label" x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle">'
               f'{escape(x_label)}</text>'
               f'<text class="axis-label" transform="translate(14 {top + plot_h / 2}) rotate(-90)" '
               f'text-anchor="middle">{escape(y_label)}</text>')
    for i, s in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        good = [p for p in s.points if finite(p.x) and finite(p.y)]
        if len(good) > 1:
            d = " ".join(f"{'M' if j == 0 else 'L'}{px(p.x):.1f} {py(p.y):.1f}" for j, p in enumerate(good))
            out.append(f'<path class="curve-line" d="{d}" stroke="{color}" fill="none" stroke-width="1.6"/>')
        for p in good:
            cx, cy = px(p.x), py(p.y)
            if finite(p.y_low) and finite(p.y_high):
                a, b = py(p.y_low), py(p.y_high)
                out.append(f'<path class="errbar" stroke="{color}" d="M{cx:.1f} {a:.1f}V{b:.1f}'
                           f'M{cx - 4:.1f} {a:.1f}H{cx + 4:.1f}M{cx - 4:.1f} {b:.1f}H{cx + 4:.1f}"/>')
            tip = (f"{p.label}: {pct(p.y)} {ci(p.y_low, p.y_high)}, perplexity {100 * p.x:+.1f}%")
            out.append(f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{color}" '
                       f'data-label="{escape(p.label)}"><title>{escape(tip)}</title></circle>')
        ly, lx = top + 10 + i * 20, width + 8
        text = s.label if len(s.label) <= 34 else s.label[:33] + "…"
        out.append(f'<circle cx="{lx}" cy="{ly}" r="5" fill="{color}"/><text class="legend" x="{lx + 10}" '
                   f'y="{ly + 4}"><title>{escape(s.label)}</title>{escape(text)}</text>')
    if not pts:
        out.append(f'<text class="tick" x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle">'
                   'no points with both a rate and a perplexity</text>')
    out.append("</svg>")
    return "".join(out)


# --- sections ------------------------------------------------------------------------------------------

def _headline(row: dict[str, Any], block: str) -> dict[str, Any] | None:
    b = row.get(block)
    if not b or not b.get("headline"):
        return None
    return (b.get("judges") or {}).get(b["headline"])


def _header(curve: dict[str, Any]) -> str:
    prov = curve.get("provenance") or {}
    exp = curve.get("expertise") or {}
    badge = ' <span class="badge organism">model organism</span>' if curve.get("organism") else ""
    facts = [("Model", curve.get("model")), ("Config", prov.get("config_source")), ("Created", curve.get("created")),
             ("Expertise hash", exp.get("hash")), ("Seed", prov.get("seed")),
             ("Limit", prov.get("limit") if prov.get("limit") is not None else "none"),
             ("Variants", len(curve.get("variants") or [])), ("Errors", len(curve.get("errors") or []))]
    dl = "".join(f"<div><dt>{escape(k)}</dt><dd>{escape(v) if v is not None else '—'}</dd></div>" for k, v in facts)
    versions = ", ".join(f"{escape(k)} {escape(v)}" for k, v in sorted((prov.get("versions") or {}).items())) or "—"
    target = prov.get("target") or {}
    warn = ""
    if exp.get("target_matches") is False:
        warn = (f"<p class='note'>The expertise was found on target <code>{escape(exp.get('found_on'))}</code>, "
                f"not on the evaluated <code>{escape(target)}</code>.</p>")
    who = f"model organism {curve.get('model')}" if curve.get("organism") else curve.get("model")
    return (f"<header><h1>Neuron-level detoxification: {escape(who)}{badge}</h1>"
            f"<dl class='facts'>{dl}</dl>"
            f"<p class='versions'><strong>Target:</strong> <code>{escape(target.get('name'))}</code> args "
            f"<code>{escape(target.get('args'))}</code> · config hash <code>{escape(_cfg_hash(prov))}</code></p>"
            f"<p class='versions'><strong>Versions:</strong> {versions}</p>{warn}</header>")


def _cfg_hash(prov: dict[str, Any]) -> str:
    from safeglass.hashing import content_hash

    cfg = prov.get("target_config")
    return content_hash(cfg) if cfg else "—"


def _experts(curve: dict[str, Any]) -> Section:
    exp = curve.get("expertise") or {}
    s = exp.get("summary") or {}
    sites = s.get("per_site") or []
    bars = [Bar(str(x.get("site")), x["experts"] / x["neurons"] if x.get("neurons") else 0.0, n=x.get("neurons"))
            for x in sites]
    rows = "".join(f"<tr><td><code>{escape(x.get('site'))}</code></td><td>{escape(x.get('component'))}</td>"
                   f"<td class='num'>{escape(x.get('layer'))}</td><td class='num'>{escape(x.get('neurons'))}</td>"
                   f"<td class='num'>{escape(x.get('experts'))}</td><td class='num'>{escape(x.get('above_0.7'))}</td>"
                   f"<td class='num'>{escape(_num(x.get('max_auroc')))}</td></tr>" for x in sites)
    data = exp.get("data") or []
    srcs = "".join(f"<li>{escape(d.get('role'))}: <code>{escape(d.get('dataset') or d.get('jsonl'))}</code> "
                   f"{escape(d.get('n'))} items ({escape(d.get('n_toxic'))} toxic)</li>"
                   for d in data if isinstance(d, dict))
    body = (f"<p class='muted'>{escape(s.get('experts'))} of {escape(s.get('neurons'))} neurons have AUROC &gt; 0.5 "
            f"for toxic vs non-toxic items (span {escape(exp.get('span'))}, pooling {escape(exp.get('pooling'))}). "
            "Bars: share of a site's neurons that are experts.</p>"
            + (f"<ul class='muted'>{srcs}</ul>" if srcs else "")
            + f"<div class='chart-card'>{bar_chart(bars, color=PALETTE[0], width=620, label_width=140)}</div>"
            + table_wrap("<table class='meta'><thead><tr><th>Site</th><th>Component</th>"
                         "<th class='num'>Layer</th><th class='num'>Neurons</th><th class='num'>AUROC &gt; 0.5</th>"
                         "<th class='num'>&gt; 0.7</th><th class='num'>Max AUROC</th></tr></thead>"
                         f"<tbody>{rows}</tbody></table>"))
    return Section("Experts per layer", body, anchor="experts", nav="Experts")


def _histogram(curve: dict[str, Any]) -> Section:
    h = ((curve.get("expertise") or {}).get("summary") or {}).get("histogram") or {}
    edges, counts = h.get("edges") or [], h.get("counts") or []
    total = sum(counts) or 1
    bars = [Bar(f"{edges[i]:.2f}–{edges[i + 1]:.2f}", c / total, n=c) for i, c in enumerate(counts)
            if i + 1 < len(edges)]
    body = ("<p class='muted'>Share of all neurons per AUROC bin; glasses dampen only neurons above 0.5 (never "
            "amplify those below).</p>"
            f"<div class='chart-card'>{bar_chart(bars, color=PALETTE[2], width=620, label_width=110)}</div>")
    return Section("AUROC histogram", body, anchor="auroc", nav="AUROC")


def _curve(curve: dict[str, Any]) -> Section:
    rows = curve.get("rows") or []
    block = "toxicity" if any(_headline(r, "toxicity") for r in rows) else "harm"
    y_label = "Prompts with ≥ 1 toxic completion" if block == "toxicity" else "Harmful rate (prompts)"
    groups: dict[tuple, list[tuple[float, CurvePoint]]] = {}
    for r in rows:
        h = _headline(r, block)
        x = r.get("perplexity_change")
        if r["variant"] == "base":
            x = 0.0 if h else None
        if h is None or not finite(x) or not finite(h.get("rate")):
            continue
        params = dict(r.get("params") or {})
        strength = params.pop("strength", None)
        method = r.get("method")
        if method == "none":
            key: tuple = ("base", r["defense"])
        elif method == "sgm":
            key = ("sgm", r["defense"], tuple(sorted((k, str(v)) for k, v in params.items())))
        else:
            key = (r["variant"], r["defense"])
        pt = CurvePoint(f"{r['variant']} · {r['defense']}", float(x), h["rate"], h.get("ci_low"), h.get("ci_high"))
        groups.setdefault(key, []).append((float(strength) if finite(strength) else 0.0, pt))
    series = []
    for key, pts in groups.items():
        pts.sort(key=lambda t: t[0])
        if key[0] == "sgm":
            extra = ", ".join(f"{k}={v}" for k, v in key[2] if SGM_DEFAULTS.get(k, v + "?") != v)
            label = f"SGM strength {pts[0][0]:g}–{pts[-1][0]:g}" + (f" ({extra})" if extra else "") + f" · {key[1]}"
        else:
            label = f"{key[0]} · {key[1]}"
        series.append(Series(label, [p for _, p in pts]))
    if not series:
        return Section("Strength curve", "<p class='muted'>The curve needs a toxicity (or harm) block and "
                       "fluency: neither pair was measured.</p>", anchor="curve", nav="Curve")
    svg = curve_plot(series, x_label="Perplexity change vs base (neutral text)", y_label=y_label)
    body = ("<p class='muted'>Each point is one pair of glasses (the base model at 0 %); down is less toxic, left "
            f"is more fluent. Whiskers are 95% Wilson intervals.</p><div class='chart-card'>{svg}</div>")
    return Section("Strength curve", body, anchor="curve", nav="Curve")


def _num(x: Any, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if finite(x) else "n/a"


def _delta(vs: dict[str, Any] | None) -> str:
    if not vs:
        return "<span class='muted'>—</span>"
    return (f"{100 * vs['delta']:+.1f} pp <span class='muted'>[{100 * vs['ci_low']:+.1f}, "
            f"{100 * vs['ci_high']:+.1f}]</span>")


def _rate_cells(entry: dict[str, Any] | None, completions: bool) -> str:
    e = entry or {}
    cells = (f"<td class='num strong'>{escape(pct(e.get('rate')))}</td>"
             f"<td class='num'>{escape(ci(e.get('ci_low'), e.get('ci_high')) if entry else 'n/a')}</td>"
             f"<td class='num'>{escape(e.get('k', '—'))}/{escape(e.get('n', '—'))}</td>")
    if completions:
        cells += f"<td class='num'>{escape(pct(e.get('completion_rate')))}</td>"
    red = e.get("reduction_factor")
    return cells + (f"<td class='num'>{_delta(e.get('vs_base'))}</td>"
                    f"<td class='num'>{escape(f'{red:.2f}x' if finite(red) else 'n/a')}</td>")


def _table(curve: dict[str, Any]) -> Section:
    rows = curve.get("rows") or []
    blocks = (curve.get("provenance") or {}).get("blocks") or {}
    has = {b: b in blocks for b in ("toxicity", "harm", "utility")}
    has["fluency"] = any(r.get("fluency") for r in rows)
    harm_judge = next((r["harm"]["headline"] for r in rows if r.get("harm")), None)
    head = "<th>Variant</th><th>Defense</th><th class='num'>Dampened</th><th>Glasses hash</th>"
    rate_head = ("<th class='num'>95% CI</th><th class='num'>k/n</th>{extra}<th class='num'>Δ vs base</th>"
                 "<th class='num'>Reduction</th>")
    if has["toxicity"]:
        head += "<th class='num'>Toxic prompts</th>" + rate_head.format(
            extra="<th class='num'>Per completion</th>")
    if has["harm"]:
        head += f"<th class='num' title='{escape(harm_judge)}'>Harmful prompts</th>" + rate_head.format(extra="")
    if has["fluency"]:
        head += "<th class='num'>Perplexity</th><th class='num'>Δ ppl</th>"
    if has["utility"]:
        head += "<th class='num'>Utility</th><th class='num'>95% CI</th><th class='num'>Δ utility</th>"
    body = []
    for r in rows:
        same = f" <span class='muted'>(= {escape(r['same_as'])})</span>" if r.get("same_as") else ""
        cells = (f"<td><code>{escape(r['variant'])}</code>{same}</td><td>{escape(r['defense'])}</td>"
                 f"<td class='num'>{escape(r.get('n_dampened'))}</td>"
                 f"<td><code>{escape(r.get('glasses_hash') or '—')}</code></td>")
        if has["toxicity"]:
            cells += _rate_cells(_headline(r, "toxicity"), True)
        if has["harm"]:
            cells += _rate_cells(_headline(r, "harm"), False)
        if has["fluency"]:
            fl = r.get("fluency") or {}
            dppl = f"{100 * fl['relative']:+.2f}%" if finite(fl.get("relative")) else "n/a"
            cells += f"<td class='num'>{escape(_num(fl.get('perplexity'), 2))}</td><td class='num'>{escape(dppl)}</td>"
        if has["utility"]:
            u = r.get("utility") or {}
            dacc = f"{u['delta_points']:+.1f} pp" if finite(u.get("delta_points")) else "n/a"
            cells += (f"<td class='num strong'>{escape(pct(u.get('accuracy')))}</td>"
                      f"<td class='num'>{escape(ci(u.get('ci_low'), u.get('ci_high')) if u else 'n/a')}</td>"
                      f"<td class='num'>{escape(dacc)}</td>")
        body.append(f"<tr>{cells}</tr>")
    notes = []
    if has["toxicity"]:
        notes.append("Toxic prompts: share of prompts with at least one of their k completions flagged, with its "
                     "95% Wilson interval, beside the share of completions flagged.")
    if has["harm"]:
        notes.append(f"Harmful prompts: the same over the harm block's prompts, judged by {escape(harm_judge)}.")
    notes.append("Δ vs base: paired bootstrap (percentage points, 95% interval) against the base model without "
                 "defense; reduction = base rate / variant rate.")
    if has["fluency"]:
        notes.append("Perplexity of neutral text, change relative to the base.")
    if has["utility"]:
        notes.append("Utility: accuracy of greedy answers, change in percentage points.")
    table = f"<table class='results'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return Section("Before / after", f"<p class='muted'>{' '.join(notes)}</p>{table_wrap(table)}", anchor="table")


def _provenance(curve: dict[str, Any]) -> Section:
    prov = curve.get("provenance") or {}
    blocks = prov.get("blocks") or {}
    runs = prov.get("runs") or {}
    rows = []
    for name, b in blocks.items():
        run = runs.get(name) or {}
        judges = "<br>".join(f"{escape(j.get('name'))} <span class='muted'>v{escape(j.get('version'))}</span> "
                             f"<code>{escape(j.get('key'))}</code>" for j in run.get("judges") or [] if j) or "—"
        gen = b.get("generation") or {}
        rows.append(f"<tr><td>{escape(name)}</td><td><code>{escape(b.get('dataset'))}</code> <span class='muted'>"
                    f"{escape(b.get('args') or '')}</span></td><td class='num'>{escape(run.get('n_prompts'))}</td>"
                    f"<td class='num'>{escape(b.get('samples_per_prompt'))}</td>"
                    f"<td>{escape(gen.get('max_new_tokens'))} tokens, T={escape(gen.get('temperature'))}, "
                    f"top-p {escape(gen.get('top_p'))}</td><td>{judges}</td>"
                    f"<td class='num'>{escape(run.get('generated'))} new / {escape(run.get('planned'))}</td>"
                    f"<td><code>{escape(run.get('dir'))}</code></td></tr>")
    fl = prov.get("fluency")
    fluency = ""
    if fl:
        files = ", ".join(f"{escape(k)} <code>{escape(v)}</code>"
                          for k, v in ((fl.get("provenance") or {}).get("files") or {}).items())
        fluency = (f"<p class='muted'>Fluency: {escape(fl.get('n_texts'))} neutral sentences from "
                   f"{escape((fl.get('provenance') or {}).get('package'))} "
                   f"{escape((fl.get('provenance') or {}).get('version'))} ({files}), texts hash "
                   f"<code>{escape(fl.get('texts_hash'))}</code>.</p>")
    errors = curve.get("errors") or []
    err = ""
    if errors:
        items = "".join(f"<tr><td>{escape(e.get('block'))}</td><td><code>{escape(e.get('stage'))}</code></td>"
                        f"<td><pre>{escape(e.get('message'))}</pre></td></tr>" for e in errors)
        err = (f"<h3>Errors <span class='badge warn'>{len(errors)}</span></h3><p class='note'>Rerun the same "
               "command to retry failed generations.</p>"
               + table_wrap(f"<table class='meta errors'><tbody>{items}</tbody></table>"))
    table = ("<table class='meta'><thead><tr><th>Block</th><th>Dataset</th><th class='num'>Prompts</th>"
             "<th class='num'>k</th><th>Generation</th><th>Judges</th><th class='num'>Generated</th><th>Run</th>"
             f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return Section("Data, judges and runs", table_wrap(table) + fluency + err, anchor="provenance", nav="Provenance")


def curve_sections(curve: dict[str, Any]) -> list[Section]:
    """The curve's sections (experts, AUROC, curve, before / after, provenance), for any report page."""
    return [_experts(curve), _histogram(curve), _curve(curve), _table(curve), _provenance(curve)]


def render_html(curve: dict[str, Any]) -> str:
    title = f"safeglass neurons eval: {curve.get('model')}"
    return page(title, curve_sections(curve), header=_header(curve), csp=CSP, extra_css=EXTRA_CSS)


def write_html(path: str | Path, curve: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(curve), encoding="utf-8")
    return path
