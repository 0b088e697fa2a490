"""One self-contained HTML report per run.

Everything is inline (CSS, SVG, one small script) so the file can be mailed, archived or opened
offline, and a Content-Security-Policy pinned to the script's hash blocks anything else from
running or loading, as a second line of defence behind escaping: model outputs are adversarial
text by construction (they are asked to produce ``<script>`` and worse).

Two rules keep the report safe to open:
* every string rendered into HTML or SVG goes through ``html.escape``;
* samples travel as a JSON blob in ``<script type="application/json">`` (with ``<``, ``>``, ``&``
  and U+2028/2029 escaped so the blob can neither close its element nor break a JS parser), and
  the browser script builds rows with ``textContent`` only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections import OrderedDict
from html import escape
from pathlib import Path
from typing import Any

from safeglass.machine import machine_line
from safeglass.reporting.charts import PALETTE, Bar, Point, bar_chart, scatter_plot
from safeglass.stats import format_p

METRIC_TITLES = {
    "attack_success": "Attack success rate",
    "refusal_rate": "Refusal rate",
    "over_refusal": "Over-refusal (benign prompts refused)",
    "toxicity_rate": "Toxicity rate",
    "harmful_rate": "Harmful-output rate",
}
# Report order: the headline metric first, then the things that trade off against it.
METRIC_ORDER = ["attack_success", "harmful_rate", "toxicity_rate", "refusal_rate", "over_refusal"]
GROUP_KEYS = ("target", "defense", "dataset", "attack", "judge")


def _e(text: object) -> str:
    return escape("" if text is None else str(text), quote=True)


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _pct(x: Any) -> str:
    return f"{100 * x:.1f}%" if _finite(x) else "n/a"


def _ci(lo: Any, hi: Any) -> str:
    return f"[{_pct(lo)}, {_pct(hi)}]" if _finite(lo) and _finite(hi) else "n/a"


def _pp(x: Any) -> str:
    return f"{100 * x:+.1f} pp" if _finite(x) else "n/a"


def _p(p: Any) -> str:
    return format_p(p) if _finite(p) else "n/a"


def json_for_script(data: Any) -> str:
    """JSON safe to place inside a ``<script>`` element (and valid JS, for older parsers)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    # Outside string literals JSON never contains these characters, so replacing them everywhere
    # only ever rewrites string contents into equivalent \\u escapes.
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


# --------------------------------------------------------------------------------------------
# sections


def _target_labels(summary: dict) -> dict[str, str]:
    return {t.get("name", ""): (t.get("label") or t.get("name", "")) for t in summary.get("targets") or []}


def _judge_names(summary: dict) -> dict[str, str]:
    return {j.get("key", ""): (j.get("name") or j.get("key", "")) for j in summary.get("judges") or []}


def _header(summary: dict, title: str) -> str:
    run = summary.get("run") or {}
    facts = [("Run", run.get("name")), ("Created", run.get("created")), ("Config hash", run.get("config_hash")),
             ("Seed", run.get("seed")), ("Run directory", run.get("run_dir")),
             ("Generations", run.get("n_generations")), ("Errors", run.get("n_errors"))]
    dl = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v) if v is not None else '—'}</dd></div>" for k, v in facts)
    versions = run.get("versions") or {}
    vers = ", ".join(f"{_e(k)} {_e(v)}" for k, v in sorted(versions.items())) or "—"

    trows = []
    for t in summary.get("targets") or []:
        badge = ' <span class="badge organism">model organism</span>' if t.get("organism") else ""
        machine = machine_line(t["machine"]) if isinstance(t.get("machine"), dict) else "—"
        dtype = (t.get("config") or {}).get("dtype") or "—"
        trows.append(f"<tr><td>{_e(t.get('label') or t.get('name'))}{badge}</td><td><code>{_e(t.get('name'))}</code>"
                     f"</td><td><code>{_e(t.get('config_hash'))}</code></td><td>{_e(dtype)}</td>"
                     f"<td class='muted'>{_e(machine)}</td></tr>")
    targets = ("<table class='meta'><thead><tr><th>Target</th><th>Name</th><th>Config hash</th><th>dtype</th>"
               "<th>Generated on</th></tr></thead>"
               f"<tbody>{''.join(trows)}</tbody></table>") if trows else "<p class='muted'>No targets recorded.</p>"

    jrows = []
    for j in summary.get("judges") or []:
        cal = j.get("calibration")
        if cal:
            acc_ci = cal.get("accuracy_ci") or [None, None]
            cal_html = (f"{_pct(cal.get('accuracy'))} accuracy {_ci(acc_ci[0], acc_ci[1])}, "
                        f"F1 {_e(_num(cal.get('f1')))}, κ {_e(_num(cal.get('kappa')))}, n={_e(cal.get('n'))} "
                        f"on <code>{_e(cal.get('dataset'))}</code>")
        else:
            cal_html = '<span class="badge warn">not calibrated</span>'
        hashes = "<br>".join(f"{kind} <code>{_e(j[f])}</code>"
                             for f, kind in (("weights_hash", "weights"), ("prompt_hash", "prompt")) if j.get(f))
        jrows.append(f"<tr><td><code>{_e(j.get('key'))}</code></td><td>{_e(j.get('name'))} "
                     f"<span class='muted'>{_e(j.get('version'))}</span></td><td>{_e(j.get('measure'))}</td>"
                     f"<td>{hashes or '&mdash;'}</td>"
                     f"<td>{cal_html}</td></tr>")
    judges = ("<table class='meta'><thead><tr><th>Key</th><th>Judge</th><th>Measures</th>"
              "<th>Weights / prompt hash</th><th>Calibration</th></tr></thead>"
              f"<tbody>{''.join(jrows)}</tbody></table>") if jrows else "<p class='muted'>No judges recorded.</p>"
    return (f"<header><h1>{_e(title)}</h1><dl class='facts'>{dl}</dl>"
            f"<p class='versions'><strong>Versions:</strong> {vers}</p></header>"
            f"<section id='targets'><h2>Targets</h2>{targets}</section>"
            f"<section id='judges'><h2>Judges</h2>{judges}</section>")


def _delta_cells(vb: dict | None) -> tuple[str, str]:
    """(paired difference with its CI, p-value with the number of pairs) cells; dashes when there is none."""
    if not vb:
        return "<span class='muted'>—</span>", "<span class='muted'>—</span>"
    sig = _finite(vb.get("ci_low")) and _finite(vb.get("ci_high")) and (vb["ci_low"] > 0 or vb["ci_high"] < 0)
    delta = (f"<span class='{'sig' if sig else ''}'>{_e(_pp(vb.get('delta')))}</span> "
             f"<span class='muted'>[{_e(_pp(vb.get('ci_low')))}, {_e(_pp(vb.get('ci_high')))}]</span>")
    return delta, f"{_e(_p(vb.get('p_value')))} <span class='muted'>({_e(vb.get('n_pairs'))} pairs)</span>"


def _num(x: Any) -> str:
    return f"{x:.3f}" if _finite(x) else "n/a"


def _metrics_present(rows: list[dict]) -> list[str]:
    present = {r.get("metric") for r in rows}
    return [m for m in METRIC_ORDER if m in present] + sorted(m for m in present if m not in METRIC_ORDER and m)


def _summary_tables(summary: dict) -> str:
    rows = summary.get("rows") or []
    labels, jnames = _target_labels(summary), _judge_names(summary)
    overall = [r for r in rows if r.get("category") is None]
    if not overall:
        return "<section id='summary'><h2>Summary</h2><p class='muted'>No results.</p></section>"
    parts = ["<section id='summary'><h2>Summary</h2>",
             "<p class='muted'>Values are proportions with 95% Wilson intervals. Δ vs baseline is the paired "
             "difference against the undefended target (percentage points), with its CI and p-value.</p>"]
    attacked = any(r.get("vs_no_attack") for r in overall)
    if attacked:
        parts.append("<p class='muted'>Δ vs no attack is the paired difference against the same prompts without "
                     "the attack (same target, defense and judge): the attack's lift.</p>")
    for metric in _metrics_present(overall):
        mrows = sorted((r for r in overall if r.get("metric") == metric),
                       key=lambda r: tuple(str(r.get(k, "")) for k in GROUP_KEYS))
        body = []
        for r in mrows:
            delta, p = _delta_cells(r.get("vs_baseline"))
            lift, lift_p = _delta_cells(r.get("vs_no_attack"))
            tgt = r.get("target", "")
            body.append(
                f"<tr><td title='{_e(tgt)}'>{_e(labels.get(tgt, tgt))}</td><td>{_e(r.get('defense'))}</td>"
                f"<td>{_e(r.get('dataset'))}</td><td>{_e(r.get('attack'))}</td>"
                f"<td title='{_e(jnames.get(r.get('judge'), ''))}'>{_e(r.get('judge'))}</td>"
                f"<td class='num strong'>{_e(_pct(r.get('value')))}</td>"
                f"<td class='num'>{_e(_ci(r.get('ci_low'), r.get('ci_high')))}</td>"
                f"<td class='num'>{_e(r.get('k'))}/{_e(r.get('n'))}</td><td class='num'>{delta}</td>"
                f"<td class='num'>{p}</td>" + (f"<td class='num'>{lift}</td><td class='num'>{lift_p}</td>"
                                               if attacked else "") + "</tr>")
        parts.append(
            f"<h3>{_e(METRIC_TITLES.get(metric, metric))}</h3>"
            f"<div class='table-wrap'><table class='results' data-metric='{_e(metric)}'><thead><tr>"
            "<th>Target</th><th>Defense</th><th>Dataset</th><th>Attack</th><th>Judge</th><th class='num'>Value</th>"
            "<th class='num'>95% CI</th><th class='num'>k/n</th><th class='num'>Δ vs baseline</th>"
            "<th class='num'>p</th>" + ("<th class='num'>Δ vs no attack</th><th class='num'>p</th>" if attacked
                                        else "") + "</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")
    parts.append("</section>")
    return "".join(parts)


def _category_charts(summary: dict) -> str:
    rows = [r for r in summary.get("rows") or [] if r.get("category") is not None]
    if not rows:
        return ("<section id='categories'><h2>Per-category results</h2>"
                "<p class='muted'>No per-category rows.</p></section>")
    labels = _target_labels(summary)
    parts = ["<section id='categories'><h2>Per-category results</h2>"]
    for mi, metric in enumerate(_metrics_present(rows)):
        groups: OrderedDict[tuple, list[dict]] = OrderedDict()
        for r in sorted((r for r in rows if r.get("metric") == metric),
                        key=lambda r: tuple(str(r.get(k, "")) for k in GROUP_KEYS)):
            groups.setdefault(tuple(r.get(k) for k in GROUP_KEYS), []).append(r)
        parts.append(f"<h3>{_e(METRIC_TITLES.get(metric, metric))}</h3><div class='chart-grid'>")
        for key, grows in groups.items():
            tgt, defense, dataset, attack, judge = key
            bars = [Bar(str(r.get("category")), r.get("value"), r.get("ci_low"), r.get("ci_high"), r.get("n"))
                    for r in sorted(grows, key=lambda r: str(r.get("category")))]
            caption = f"{labels.get(tgt, tgt)} · {defense} · {dataset} · {attack} · {judge}"
            svg = bar_chart(bars, color=PALETTE[mi % len(PALETTE)], width=370, label_width=120)
            parts.append(f"<figure class='chart-card' data-metric='{_e(metric)}'>"
                         f"<figcaption>{_e(caption)}</figcaption>{svg}</figure>")
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


def _pick(rows: list[dict], **want: Any) -> dict | None:
    for r in rows:
        if all(r.get(k) == v for k, v in want.items()):
            return r
    return None


def _tradeoff(summary: dict) -> str:
    rows = [r for r in summary.get("rows") or [] if r.get("category") is None]
    labels = _target_labels(summary)
    asr = [r for r in rows if r.get("metric") == "attack_success"]
    orf = [r for r in rows if r.get("metric") == "over_refusal"]
    head = ("<section id='tradeoff'><h2>Attack success vs over-refusal</h2>"
            "<p class='muted'>One point per target × defense. Down and to the left is better: fewer successful "
            "attacks on harmful prompts, fewer refusals of benign ones. Bars are 95% intervals.</p>")
    if not asr and not orf:
        return head + "<p class='muted'>Neither attack success nor over-refusal was measured.</p></section>"
    notes = []
    if not orf:
        notes.append("Over-refusal is missing (no benign data was evaluated): the x axis is not available and "
                     "points sit in the n/a strip.")
    if not asr:
        notes.append("Attack success is missing (no harmful data was evaluated): the y axis is not available and "
                     "points sit in the n/a strip.")
    pairs = list(OrderedDict.fromkeys((r.get("target"), r.get("defense")) for r in asr + orf))
    # One plot per attack (and judge / dataset, if several): mixing attacks in one plot would put
    # several y values on the same (target, defense) point.
    plot_keys = list(OrderedDict.fromkeys((r.get("attack"), r.get("judge"), r.get("dataset")) for r in asr)) or [None]
    figs = []
    for pk in plot_keys:
        points = []
        for tgt, defense in pairs:
            y_row = _pick(asr, target=tgt, defense=defense, attack=pk[0], judge=pk[1], dataset=pk[2]) if pk else None
            # Over-refusal comes from benign data and usually a different (refusal) judge, so prefer
            # the unattacked row, then any.
            x_row = (_pick(orf, target=tgt, defense=defense, attack="none") or _pick(orf, target=tgt, defense=defense))
            if pk and y_row is None and x_row is None:
                continue
            points.append(Point(f"{labels.get(tgt, tgt)} · {defense}",
                                x_row.get("value") if x_row else None, y_row.get("value") if y_row else None,
                                x_row.get("ci_low") if x_row else None, x_row.get("ci_high") if x_row else None,
                                y_row.get("ci_low") if y_row else None, y_row.get("ci_high") if y_row else None))
        partial = [p.label for p in points if (p.x is None) != (p.y is None)]
        caption = f"attack {pk[0]} · judge {pk[1]} · dataset {pk[2]}" if pk else "over-refusal only"
        note = ""
        if orf and asr and partial:
            note = f"<p class='note'>Missing one axis (drawn in the n/a strip): {_e(', '.join(partial))}</p>"
        svg = scatter_plot(points, x_label="Over-refusal on benign prompts", y_label="Attack success on harmful")
        figs.append(f"<figure class='chart-card wide'><figcaption>{_e(caption)}</figcaption>{svg}{note}</figure>")
    note_html = "".join(f"<p class='note'>{_e(n)}</p>" for n in notes)
    return head + note_html + "<div class='chart-grid scatters'>" + "".join(figs) + "</div></section>"


def _errors(summary: dict) -> str:
    errors = summary.get("errors") or []
    n_err = (summary.get("run") or {}).get("n_errors")
    if not errors:
        extra = f" ({_e(n_err)} generation errors counted)" if n_err else ""
        return f"<section id='errors'><h2>Errors</h2><p class='muted'>No errors recorded{extra}.</p></section>"
    items = "".join(f"<tr><td><code>{_e(x.get('where'))}</code></td><td><pre>{_e(x.get('message'))}</pre></td></tr>"
                    for x in errors)
    return (f"<section id='errors'><h2>Errors <span class='badge warn'>{len(errors)}</span></h2>"
            "<div class='table-wrap'><table class='meta errors'><thead><tr><th>Where</th><th>Message</th></tr>"
            f"</thead><tbody>{items}</tbody></table></div></section>")


def _judge_measures(summary: dict) -> dict[str, str]:
    return {j.get("key", ""): str(j.get("measure") or "") for j in summary.get("judges") or []}


def _verdict_tone(measure: str, kind: str, flag: bool) -> str:
    """How a verdict chip is coloured: a refused harmful prompt is the good outcome, not an alarm; a refused
    benign one is over-refusal (a warning); harm and toxicity flags are the bad outcome; input signals are facts."""
    if measure == "refusal":
        if kind == "harmful":
            return "good" if flag else "bad"
        return "warn" if flag else "ok"
    if measure == "signal":
        return "signal" if flag else "ok"
    return "bad" if flag else "ok"


def _withheld(sample: dict, show_harmful: bool) -> bool:
    return sample.get("kind") == "harmful" and not show_harmful


def _sample_blob(samples: list[dict], labels: dict[str, str], measures: dict[str, str], show_harmful: bool,
                 images: dict[str, str]) -> list[dict]:
    """Only the fields the browser shows, so 10k samples stay a few MB rather than tens. A reply to a harmful
    prompt is left out of the file altogether unless ``show_harmful`` (a shared report must not carry it), and
    so are its outcome judges' reasons, which may quote it."""
    out = []
    for s in samples:
        verdicts = s.get("verdicts") or {}
        kind = str(s.get("kind", ""))
        withheld = _withheld(s, show_harmful)
        paths = [str(i) for i in s.get("images") or []]
        out.append({
            "key": str(s.get("key", "")), "id": str(s.get("sample_id", "")), "dataset": str(s.get("dataset", "")),
            "kind": kind, "category": str(s.get("category", "") or ""),
            "target": labels.get(s.get("target"), str(s.get("target", ""))), "defense": str(s.get("defense", "")),
            "attack": str(s.get("attack", "")), "prompt": str(s.get("prompt", "") or ""),
            "response": None if withheld else str(s.get("response", "") or ""),
            "images": [{"path": p, "thumb": p if p in images else None} for p in paths],
            "verdicts": {str(k): {"flag": bool(v.get("flag")), "score": v.get("score") if _finite(v.get("score"))
                                  else None, "label": str(v.get("label", "") or ""),
                                  "tone": _verdict_tone(measures.get(str(k), ""), kind, bool(v.get("flag"))),
                                  "reason": "" if withheld and measures.get(str(k)) != "signal"
                                  else str(v.get("reason", "") or "")}
                         for k, v in verdicts.items() if isinstance(v, dict)},
        })
    return out


def _sample_browser(samples: list[dict], summary: dict, show_harmful: bool) -> tuple[str, str, str]:
    """The browser's static shell, its samples' JSON blob and the thumbnails' blob; rows are built client-side."""
    from safeglass.reporting.thumbnails import MAX_IMAGES, thumbnails

    images = thumbnails([str(i) for s in samples for i in s.get("images") or []])
    blob = json_for_script(_sample_blob(samples, _target_labels(summary), _judge_measures(summary), show_harmful,
                                        images))
    n_withheld = sum(_withheld(s, show_harmful) for s in samples)
    run_dir = (summary.get("run") or {}).get("run_dir") or "RUN_DIR"
    if n_withheld:
        note = (f"<p class='muted' id='sg-withheld'>The {n_withheld} responses to harmful prompts are not in this "
                "file: their counts and verdicts are. <code>safeglass report "
                f"{_e(run_dir)} --show-harmful</code> writes a report that includes them (behind a click).</p>")
    else:
        note = ("<p class='muted'>Written with --show-harmful: responses to harmful prompts are in this file and "
                "shown; untick <em>show all harmful outputs</em> to fold them.</p>") if show_harmful else ""
    n_paths = len({str(i) for s in samples for i in s.get("images") or []})
    if n_paths > len(images):
        note += (f"<p class='muted'>{n_paths - len(images)} of {n_paths} images are listed by path only (unreadable, "
                 f"or beyond the first {MAX_IMAGES}).</p>")
    toggle = ("<label class='toggle'><input id='f-showall' type='checkbox' checked> show all harmful outputs</label>"
              if show_harmful else "<input id='f-showall' type='checkbox' hidden disabled>")
    shell = (
        "<section id='samples'><h2>Samples <span class='muted' id='sg-count'></span></h2>"
        f"{note}"
        "<div class='filters'>"
        "<label>Dataset <select id='f-dataset'><option value=''>all</option></select></label>"
        "<label>Target <select id='f-target'><option value=''>all</option></select></label>"
        "<label>Defense <select id='f-defense'><option value=''>all</option></select></label>"
        "<label>Kind <select id='f-kind'><option value=''>all</option></select></label>"
        "<label>Flag <select id='f-flag'><option value=''>all</option><option value='any:1'>flagged by any judge"
        "</option><option value='any:0'>flagged by no judge</option></select></label>"
        "<label class='grow'>Search <input id='f-q' type='search' placeholder='prompt, response, id, category'>"
        "</label>"
        f"{toggle}"
        "</div>"
        "<div class='pager'><button type='button' id='p-prev'>‹ prev</button><span id='p-info'></span>"
        "<button type='button' id='p-next'>next ›</button></div>"
        "<div id='sg-rows'></div>"
        "<noscript><p class='note'>The sample browser needs JavaScript; samples are in samples.jsonl.</p></noscript>"
        "</section>")
    return shell, blob, json_for_script(images)


# The browser script. Data only ever reaches the DOM through textContent / Option(text): never
# innerHTML, so a response containing markup stays text.
_SCRIPT = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("sg-samples").textContent);
  var thumbs = JSON.parse(document.getElementById("sg-images").textContent);
  var PAGE = 50, page = 0, shown = new Set(), current = [];
  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined && text !== null) n.textContent = String(text);
    return n;
  }
  function fill(id, field) {
    var seen = {}, vals = [];
    data.forEach(function (s) { if (!seen[s[field]]) { seen[s[field]] = 1; vals.push(s[field]); } });
    vals.sort().forEach(function (v) { $(id).appendChild(new Option(v, v)); });
  }
  fill("f-dataset", "dataset"); fill("f-target", "target"); fill("f-defense", "defense"); fill("f-kind", "kind");
  var judges = {};
  data.forEach(function (s) { Object.keys(s.verdicts).forEach(function (j) { judges[j] = 1; }); });
  Object.keys(judges).sort().forEach(function (j) {
    $("f-flag").appendChild(new Option("flagged by " + j, "j1:" + j));
    $("f-flag").appendChild(new Option("not flagged by " + j, "j0:" + j));
  });
  data.forEach(function (s) {
    s._flag = Object.keys(s.verdicts).some(function (j) { return s.verdicts[j].flag; });
    s._text = (s.prompt + "\n" + (s.response || "") + "\n" + s.id + "\n" + s.category).toLowerCase();
  });
  function matches(s, f) {
    if (f.dataset && s.dataset !== f.dataset) return false;
    if (f.target && s.target !== f.target) return false;
    if (f.defense && s.defense !== f.defense) return false;
    if (f.kind && s.kind !== f.kind) return false;
    if (f.flag === "any:1" && !s._flag) return false;
    if (f.flag === "any:0" && s._flag) return false;
    if (f.flag.slice(0, 3) === "j1:" || f.flag.slice(0, 3) === "j0:") {
      var v = s.verdicts[f.flag.slice(3)];
      if (!v || v.flag !== (f.flag[1] === "1")) return false;
    }
    if (f.q && s._text.indexOf(f.q) < 0) return false;
    return true;
  }
  function filters() {
    return {dataset: $("f-dataset").value, target: $("f-target").value, defense: $("f-defense").value,
            kind: $("f-kind").value, flag: $("f-flag").value, q: $("f-q").value.trim().toLowerCase()};
  }
  function hidden(s) { return s.kind === "harmful" && !$("f-showall").checked && !shown.has(s.key); }
  function card(s) {
    var c = el("article", "sample " + (s.kind === "harmful" ? "harmful" : "benign"));
    c.setAttribute("data-key", s.key);
    var meta = el("div", "sample-meta");
    meta.appendChild(el("span", "badge kind-" + (s.kind === "harmful" ? "harmful" : "benign"), s.kind));
    [s.id, s.dataset, s.category, s.target, s.defense, s.attack].forEach(function (t) {
      meta.appendChild(el("span", "meta-item", t));
    });
    c.appendChild(meta);
    c.appendChild(el("div", "label", "Prompt"));
    c.appendChild(el("pre", "prompt", s.prompt));
    if (s.images.length) {
      var ims = el("div", "images");
      s.images.forEach(function (im) {
        var fig = el("figure", "thumb");
        if (im.thumb && thumbs[im.thumb]) {
          var img = document.createElement("img");
          img.src = thumbs[im.thumb];
          img.alt = "image the model saw";
          fig.appendChild(img);
        }
        fig.appendChild(el("figcaption", "muted", im.path.split("/").pop()));
        fig.title = im.path;
        ims.appendChild(fig);
      });
      c.appendChild(ims);
    }
    var head = el("div", "label", "Response ");
    c.appendChild(head);
    if (s.response === null) {
      c.appendChild(el("div", "response hidden-response",
                       "Withheld: a response to a harmful prompt is not in this file (see the note above)."));
    } else if (hidden(s)) {
      var b = el("button", "show-btn", "show");
      b.type = "button";
      b.addEventListener("click", function () { shown.add(s.key); render(); });
      head.appendChild(b);
      // The text is not in the DOM at all until asked for, not merely styled invisible.
      c.appendChild(el("div", "response hidden-response", "Hidden: response to a harmful prompt."));
    } else {
      if (s.kind === "harmful" && shown.has(s.key) && !$("f-showall").checked) {
        var h = el("button", "show-btn", "hide");
        h.type = "button";
        h.addEventListener("click", function () { shown.delete(s.key); render(); });
        head.appendChild(h);
      }
      c.appendChild(el("pre", "response", s.response));
    }
    var vs = el("div", "verdicts");
    Object.keys(s.verdicts).sort().forEach(function (j) {
      var v = s.verdicts[j];
      var t = j + ": " + (v.label || (v.flag ? "flagged" : "ok"));
      if (v.score !== null) t += " (" + v.score.toFixed(2) + ")";
      var b = el("span", "badge tone-" + v.tone, t);
      if (v.reason) b.title = v.reason;
      vs.appendChild(b);
    });
    c.appendChild(vs);
    return c;
  }
  function render() {
    var pages = Math.max(1, Math.ceil(current.length / PAGE));
    page = Math.min(page, pages - 1);
    var box = $("sg-rows");
    box.replaceChildren();
    var frag = document.createDocumentFragment();
    current.slice(page * PAGE, (page + 1) * PAGE).forEach(function (s) { frag.appendChild(card(s)); });
    box.appendChild(frag);
    if (!current.length) box.appendChild(el("p", "muted", "No samples match."));
    $("p-info").textContent = "page " + (page + 1) + " of " + pages;
    $("sg-count").textContent = "(" + current.length + " of " + data.length + ")";
    $("p-prev").disabled = page === 0;
    $("p-next").disabled = page >= pages - 1;
  }
  function refilter() {
    var f = filters();
    current = data.filter(function (s) { return matches(s, f); });
    page = 0;
    render();
  }
  ["f-dataset", "f-target", "f-defense", "f-kind", "f-flag"].forEach(function (id) {
    $(id).addEventListener("change", refilter);
  });
  var timer = null;
  $("f-q").addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(refilter, 150); });
  $("f-showall").addEventListener("change", render);
  $("p-prev").addEventListener("click", function () { page -= 1; render(); });
  $("p-next").addEventListener("click", function () { page += 1; render(); });
  refilter();
})();
"""

_CSS = """
:root{--fg:#1f2933;--muted:#616e7c;--line:#e4e7eb;--bg:#fff;--soft:#f5f7fa;--accent:#0072B2;--warn:#b44d12;
  --bad:#c62828;--ok:#2e7d32}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
  color:var(--fg);background:var(--bg)}
main{max-width:1280px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:26px;margin:0 0 12px}
h2{font-size:20px;margin:36px 0 10px;padding-bottom:6px;border-bottom:2px solid var(--line)}
h3{font-size:16px;margin:22px 0 8px}
nav{position:sticky;top:0;background:rgba(255,255,255,.95);border-bottom:1px solid var(--line);padding:8px 28px;
  z-index:5}
nav a{color:var(--accent);text-decoration:none;margin-right:18px;font-weight:500}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:8px 20px;margin:0 0 10px;
  background:var(--soft);padding:14px 16px;border-radius:8px}
.facts dt{font-size:11px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
.facts dd{margin:0;font-weight:600;word-break:break-all}
.versions{color:var(--muted);font-size:13px}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--soft);padding:1px 4px;
  border-radius:3px;overflow-wrap:anywhere}
.muted{color:var(--muted)}
.note{color:var(--warn);font-size:13px}
table{border-collapse:collapse;width:100%;font-size:13px}
th{text-align:left;font-weight:600;color:var(--muted);border-bottom:2px solid var(--line);padding:6px 8px;
  white-space:nowrap}
td{border-bottom:1px solid var(--line);padding:5px 8px;vertical-align:top}
tbody tr:hover{background:var(--soft)}
.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
.strong{font-weight:700}
.sig{font-weight:700;color:var(--accent)}
.table-wrap{overflow-x:auto}
.badge{display:inline-block;font-size:11px;font-weight:600;padding:1px 7px;border-radius:10px;
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
.chart-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(396px,1fr));gap:16px}
.chart-grid.scatters{display:flex;flex-wrap:wrap}
.chart-card{margin:0;border:1px solid var(--line);border-radius:8px;padding:10px 12px;background:#fff}
.chart-card figcaption{font-size:12px;color:var(--muted);margin-bottom:6px}
svg.chart{display:block;font-size:11px;font-family:inherit}
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
select,input[type=search]{font:inherit;padding:4px 6px;border:1px solid #cbd2d9;border-radius:5px;background:#fff}
.pager{display:flex;gap:12px;align-items:center;margin:12px 0}
button{font:inherit;font-size:12px;padding:3px 10px;border:1px solid #cbd2d9;border-radius:5px;background:#fff;
  cursor:pointer}
button:disabled{opacity:.45;cursor:default}
.sample{border:1px solid var(--line);border-left:4px solid var(--accent);border-radius:6px;padding:10px 14px;
  margin:0 0 10px}
.sample.harmful{border-left-color:var(--bad)}
.sample-meta{display:flex;flex-wrap:wrap;gap:4px 12px;font-size:12px;color:var(--muted);margin-bottom:6px}
.sample .label{font-size:11px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted);margin-top:6px}
.sample pre{white-space:pre-wrap;word-break:break-word;margin:2px 0;
  font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--soft);padding:6px 8px;
  border-radius:4px;max-height:320px;overflow:auto}
.hidden-response{font-style:italic;color:var(--muted);
  background:repeating-linear-gradient(45deg,#fafafa,#fafafa 8px,#f3f3f3 8px,#f3f3f3 16px);padding:6px 8px;
  border-radius:4px}
.verdicts{margin-top:6px}
.images{display:flex;flex-wrap:wrap;gap:8px;margin:4px 0}
figure.thumb{margin:0;font-size:11px;max-width:170px}
figure.thumb img{display:block;max-width:160px;max-height:160px;border:1px solid var(--line);border-radius:4px;
  image-rendering:pixelated}
figure.thumb figcaption{overflow-wrap:anywhere}
"""


def render_report(summary: dict, samples: list[dict], show_harmful: bool = False,
                  title: str = "safeglass report") -> str:
    """Render one self-contained HTML document for a run (see module docstring for the safety rules)."""
    browser, blob, images = _sample_browser(samples, summary, show_harmful)
    body = "".join([
        "<nav><a href='#summary'>Summary</a><a href='#categories'>Categories</a><a href='#tradeoff'>Trade-off</a>"
        "<a href='#errors'>Errors</a><a href='#samples'>Samples</a></nav><main>",
        _header(summary, title), _summary_tables(summary), _category_charts(summary), _tradeoff(summary),
        _errors(summary), browser, "</main>"])
    # Pin the one script we ship by hash: injected inline scripts, event handlers and any network
    # load are refused by the browser even if escaping were ever to slip.
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode("ascii")
    csp = (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; img-src data:; "
           "base-uri 'none'; form-action 'none'")
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{csp}\">"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<meta name='referrer' content='no-referrer'><title>{_e(title)}</title><style>{_CSS}</style></head>"
            f"<body>{body}<script type='application/json' id='sg-samples'>{blob}</script>"
            f"<script type='application/json' id='sg-images'>{images}</script>"
            f"<script>{_SCRIPT}</script></body></html>\n")


def write_report(run_dir: str | Path, summary: dict, samples: list[dict], show_harmful: bool = False) -> Path:
    """Write ``report.html`` into ``run_dir`` and return its path."""
    path = Path(run_dir) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    name = (summary.get("run") or {}).get("name")
    title = f"safeglass report: {name}" if name else "safeglass report"
    path.write_text(render_report(summary, samples, show_harmful=show_harmful, title=title), encoding="utf-8")
    return path
