"""One self-contained HTML report per run.

The page reads top-down: the finding (attack success x over-refusal, one judge, coloured), then the plots,
then any capability's sections, then what the replies cost and the detailed tables, folded, the errors and the
sample browser.

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
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safeglass.reporting.charts import PALETTE, Bar, Point, bar_chart, scatter_plot
from safeglass.reporting.console import machines_text
from safeglass.reporting.costs import cost_section
from safeglass.reporting.finding import BENIGN_METRIC, Choice, choose, finding_section
from safeglass.reporting.judge_agreement import agreement_section
from safeglass.reporting.sections import (
    Section,
    ci,
    escape,
    finite,
    num,
    ordered,
    page,
    pct,
    pp,
    table_wrap,
    target_labels,
)
from safeglass.reporting.three_way import three_way_section
from safeglass.reporting.withhold import PLACEHOLDER, quotes, redact, withheld_replies
from safeglass.stats import format_p

METRIC_TITLES = {
    "attack_success": "Attack success rate",
    "refusal_rate": "Refusal rate",
    "over_refusal": "Over-refusal (benign prompts refused)",
    "toxicity_rate": "Toxicity rate",
    "harmful_rate": "Harmful-output rate",
    "toxic_prompt_rate": "Toxic prompts (≥ 1 toxic completion)",
    "harmful_prompt_rate": "Harmful prompts (≥ 1 harmful completion)",
}
# Report order: the headline metric first, then the things that trade off against it.
METRIC_ORDER = ["attack_success", "harmful_rate", "toxicity_rate", "refusal_rate", "over_refusal"]
GROUP_KEYS = ("target", "defense", "dataset", "attack", "judge")
_KEY = (*GROUP_KEYS, "category")


def _p(p: Any) -> str:
    return format_p(p) if finite(p) else "n/a"


def json_for_script(data: Any) -> str:
    """JSON safe to place inside a ``<script>`` element (and valid JS, for older parsers)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    # Outside string literals JSON never contains these characters, so replacing them everywhere
    # only ever rewrites string contents into equivalent \\u escapes.
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


# --------------------------------------------------------------------------------------------
# rows


def _judge_names(summary: dict) -> dict[str, str]:
    return {j.get("key", ""): (j.get("name") or j.get("key", "")) for j in summary.get("judges") or []}


def _without_complements(rows: list[dict]) -> list[dict]:
    """Rows minus refusal rates whose attack success (same judge, same prompts) is there: one is 1 - the other,
    and showing both doubles every table and chart for nothing."""
    asr = {tuple(r.get(k) for k in _KEY) for r in rows if r.get("metric") == "attack_success"}
    return [r for r in rows if not (r.get("metric") == "refusal_rate" and tuple(r.get(k) for k in _KEY) in asr)]


def _metrics_present(rows: list[dict]) -> list[str]:
    present = {r.get("metric") for r in rows}
    return [m for m in METRIC_ORDER if m in present] + sorted(m for m in present if m not in METRIC_ORDER and m)


def _sorted(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: tuple(str(r.get(k, "")) for k in GROUP_KEYS))


# --------------------------------------------------------------------------------------------
# header and the folded reference tables


def _header(summary: dict, title: str) -> str:
    run = summary.get("run") or {}
    facts = [("Run", run.get("name")), ("Created", run.get("created")), ("Config hash", run.get("config_hash")),
             ("Seed", run.get("seed")), ("Run directory", run.get("run_dir")),
             ("Generations", run.get("n_generations")), ("Errors", run.get("n_errors"))]
    dl = "".join(f"<div><dt>{escape(k)}</dt><dd>{escape(v) if v is not None else '—'}</dd></div>" for k, v in facts)
    versions = run.get("versions") or {}
    vers = ", ".join(f"{escape(k)} {escape(v)}" for k, v in sorted(versions.items())) or "—"
    return (f"<header><h1>{escape(title)}</h1><dl class='facts'>{dl}</dl>"
            f"<p class='versions'><strong>Versions:</strong> {vers}</p></header>")


def _fold(title: str, body: str, anchor: str = "") -> str:
    # Closed by default: reference material a reader opens on purpose, so it costs no page height.
    ident = f" id='{escape(anchor)}'" if anchor else ""
    return f"<details{ident}><summary><h3>{escape(title)}</h3></summary>{body}</details>"


def _targets_table(summary: dict) -> str:
    trows = []
    for t in summary.get("targets") or []:
        badge = ' <span class="badge organism">model organism</span>' if t.get("organism") else ""
        machine = machines_text(t)
        dtype = (t.get("config") or {}).get("dtype") or "—"
        trows.append(f"<tr><td>{escape(t.get('label') or t.get('name'))}{badge}</td>"
                     f"<td><code>{escape(t.get('name'))}</code></td><td><code>{escape(t.get('config_hash'))}</code></td><td>{escape(dtype)}</td>"
                     f"<td class='muted'>{escape(machine)}</td></tr>")
    if not trows:
        return "<p class='muted'>No targets recorded.</p>"
    return table_wrap("<table class='meta' id='targets'><thead><tr><th>Target</th><th>Name</th><th>Config hash</th>"
                      "<th>dtype</th><th>Generated on</th></tr></thead>"
                      f"<tbody>{''.join(trows)}</tbody></table>")


def _calibration(cal: dict | None) -> str:
    if not cal:
        return '<span class="badge warn">not calibrated</span>'
    acc_ci = cal.get("accuracy_ci") or [None, None]
    return (f"{pct(cal.get('accuracy'))} accuracy {ci(acc_ci[0], acc_ci[1])}, "
            f"F1 {escape(num(cal.get('f1')))}, κ {escape(num(cal.get('kappa')))}, n={escape(cal.get('n'))} "
            f"on <code>{escape(cal.get('dataset'))}</code>")


def _judges_table(summary: dict) -> str:
    jrows = []
    for j in summary.get("judges") or []:
        hashes = "<br>".join(f"{kind} <code>{escape(j[f])}</code>"
                             for f, kind in (("weights_hash", "weights"), ("prompt_hash", "prompt")) if j.get(f))
        jrows.append(f"<tr><td><code>{escape(j.get('key'))}</code></td><td>{escape(j.get('name'))} "
                     f"<span class='muted'>{escape(j.get('version'))}</span></td><td>{escape(j.get('measure'))}</td>"
                     f"<td>{hashes or '&mdash;'}</td><td>{_calibration(j.get('calibration'))}</td></tr>")
    if not jrows:
        return "<p class='muted'>No judges recorded.</p>"
    return table_wrap("<table class='meta' id='judges'><thead><tr><th>Key</th><th>Judge</th><th>Measures</th>"
                      "<th>Weights / prompt hash</th><th>Calibration</th></tr></thead>"
                      f"<tbody>{''.join(jrows)}</tbody></table>")


def _delta_cells(vb: dict | None) -> tuple[str, str]:
    """(paired difference with its CI, p-value with the number of pairs) cells; dashes when there is none."""
    if not vb:
        return "<span class='muted'>—</span>", "<span class='muted'>—</span>"
    sig = finite(vb.get("ci_low")) and finite(vb.get("ci_high")) and (vb["ci_low"] > 0 or vb["ci_high"] < 0)
    delta = (f"<span class='{'sig' if sig else ''}'>{escape(pp(vb.get('delta')))}</span> "
             f"<span class='muted'>[{escape(pp(vb.get('ci_low')))}, {escape(pp(vb.get('ci_high')))}]</span>")
    return delta, f"{escape(_p(vb.get('p_value')))} <span class='muted'>({escape(vb.get('n_pairs'))} pairs)</span>"


def _metric_table(metric: str, rows: list[dict], summary: dict, attacked: bool) -> str:
    labels, jnames = target_labels(summary), _judge_names(summary)
    body = []
    for r in _sorted(rows):
        delta, p = _delta_cells(r.get("vs_baseline"))
        lift, lift_p = _delta_cells(r.get("vs_no_attack"))
        tgt = r.get("target", "")
        body.append(
            f"<tr><td title='{escape(tgt)}'>{escape(labels.get(tgt, tgt))}</td><td>{escape(r.get('defense'))}</td>"
            f"<td>{escape(r.get('dataset'))}</td><td>{escape(r.get('attack'))}</td>"
            f"<td title='{escape(jnames.get(r.get('judge'), ''))}'>{escape(r.get('judge'))}</td>"
            f"<td class='num strong'>{escape(pct(r.get('value')))}</td>"
            f"<td class='num'>{escape(ci(r.get('ci_low'), r.get('ci_high')))}</td>"
            f"<td class='num'>{escape(r.get('k'))}/{escape(r.get('n'))}</td><td class='num'>{delta}</td>"
            f"<td class='num'>{p}</td>" + (f"<td class='num'>{lift}</td><td class='num'>{lift_p}</td>"
                                           if attacked else "") + "</tr>")
    return table_wrap(
        f"<table class='results' data-metric='{escape(metric)}'><thead><tr>"
        "<th>Target</th><th>Defense</th><th>Dataset</th><th>Attack</th><th>Judge</th><th class='num'>Value</th>"
        "<th class='num'>95% CI</th><th class='num'>k/n</th><th class='num'>Δ vs baseline</th>"
        "<th class='num'>p</th>" + ("<th class='num'>Δ vs no attack</th><th class='num'>p</th>" if attacked
                                    else "") + f"</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _details(summary: dict) -> Section:
    everything = [r for r in summary.get("rows") or [] if r.get("category") is None]
    overall = _without_complements(everything)
    parts = []
    if overall:
        attacked = any(r.get("vs_no_attack") for r in overall)
        note = ("Values are proportions with 95% Wilson intervals. Δ vs baseline is the paired difference against "
                "the undefended target (percentage points), with its CI and p-value.")
        if attacked:
            note += (" Δ vs no attack is the paired difference against the same prompts without the attack (same "
                     "target, defense and judge): the attack's lift.")
        if len(overall) < len(everything):
            note += " Refusal rate on harmful prompts is 100% minus attack success (same judge), so it is not repeated."
        parts.append(f"<p class='muted'>{note}</p>")
        for metric in _metrics_present(overall):
            mrows = [r for r in overall if r.get("metric") == metric]
            parts.append(_fold(f"{METRIC_TITLES.get(metric, metric)} ({len(mrows)} rows)",
                               _metric_table(metric, mrows, summary, attacked)))
    else:
        parts.append("<p class='muted'>No results.</p>")
    parts.append(_fold("Targets: config hash, dtype and the machine that generated", _targets_table(summary)))
    parts.append(_fold("Judges: identity and calibration", _judges_table(summary)))
    return Section("Detailed results", "".join(parts), anchor="details", nav="Details")


# --------------------------------------------------------------------------------------------
# plots


def _chart_cards(rows: list[dict], summary: dict, color: str, caption_keys: tuple[str, ...]) -> str:
    labels = target_labels(summary)
    groups: OrderedDict[tuple, list[dict]] = OrderedDict()
    for r in _sorted(rows):
        groups.setdefault(tuple(r.get(k) for k in GROUP_KEYS), []).append(r)
    cards = []
    for key, grows in groups.items():
        named = dict(zip(GROUP_KEYS, key, strict=True))
        named["target"] = labels.get(named["target"], named["target"])
        bars = [Bar(str(r.get("category")), r.get("value"), r.get("ci_low"), r.get("ci_high"), r.get("n"))
                for r in sorted(grows, key=lambda r: str(r.get("category")))]
        svg = bar_chart(bars, color=color, width=340, label_width=120, bar_height=14, gap=5)
        cards.append(f"<figure class='chart-card' data-metric='{escape(grows[0].get('metric'))}'><figcaption>"
                     f"{escape(' · '.join(str(named[k]) for k in caption_keys))}</figcaption>{svg}</figure>")
    return "<div class='chart-grid'>" + "".join(cards) + "</div>"


def _category_charts(summary: dict, choice: Choice) -> Section:
    rows = _without_complements([r for r in summary.get("rows") or [] if r.get("category") is not None])
    if not rows:
        return Section("Per-category results", "<p class='muted'>No per-category rows.</p>", anchor="categories",
                       nav="Categories")
    metrics = _metrics_present(rows)
    main = [r for r in rows if r.get("metric") == choice.metric and r.get("judge") == choice.judge]
    parts = []
    if main:
        parts.append(f"<p class='muted'>{escape(METRIC_TITLES.get(choice.metric or '', choice.metric))} per category, "
                     f"judged by {escape(_judge_names(summary).get(choice.judge, choice.judge))} as in the finding; "
                     "bars are 95% intervals.</p>")
        color = PALETTE[metrics.index(choice.metric) % len(PALETTE)]
        for ds, attack in OrderedDict.fromkeys((r.get("dataset"), r.get("attack")) for r in _sorted(main)):
            grows = [r for r in main if r.get("dataset") == ds and r.get("attack") == attack]
            parts.append(f"<h3>{escape(ds)} · {escape(attack)}</h3>"
                         + _chart_cards(grows, summary, color, ("target", "defense")))
    shown = {id(r) for r in main}
    rest = [r for r in rows if id(r) not in shown]
    if rest:
        inner = []
        for mi, metric in enumerate(metrics):
            mrows = [r for r in rest if r.get("metric") == metric]
            if mrows:
                inner.append(f"<h3>{escape(METRIC_TITLES.get(metric, metric))}</h3>"
                             + _chart_cards(mrows, summary, PALETTE[mi % len(PALETTE)], GROUP_KEYS))
        title = "Every other measure and judge, per category" if main else "Per-category charts"
        parts.append(f"<details><summary>{escape(title)} ({len({tuple(r.get(k) for k in GROUP_KEYS) for r in rest})} "
                     f"charts)</summary>{''.join(inner)}</details>")
    return Section("Per-category results", "".join(parts), anchor="categories", nav="Categories")


def _pick(rows: list[dict], **want: Any) -> dict | None:
    for r in rows:
        if all(r.get(k) == v for k, v in want.items()):
            return r
    return None


def _tradeoff_points(pairs: list[tuple], asr: list[dict], orf: list[dict], pk: tuple | None,
                     labels: dict[str, str]) -> list[Point]:
    points = []
    for tgt, defense in pairs:
        y_row = _pick(asr, target=tgt, defense=defense, dataset=pk[0], attack=pk[1]) if pk else None
        # Over-refusal comes from benign data, so prefer the unattacked row, then any.
        x_row = _pick(orf, target=tgt, defense=defense, attack="none") or _pick(orf, target=tgt, defense=defense)
        if pk and y_row is None and x_row is None:
            continue
        points.append(Point(f"{labels.get(tgt, tgt)} · {defense}",
                            x_row.get("value") if x_row else None, y_row.get("value") if y_row else None,
                            x_row.get("ci_low") if x_row else None, x_row.get("ci_high") if x_row else None,
                            y_row.get("ci_low") if y_row else None, y_row.get("ci_high") if y_row else None))
    return points


def _tradeoff(summary: dict, choice: Choice) -> Section:
    rows = [r for r in summary.get("rows") or [] if r.get("category") is None]
    labels = target_labels(summary)
    asr = [r for r in rows if r.get("metric") == choice.metric and r.get("judge") == choice.judge]
    orf = [r for r in rows if r.get("metric") == BENIGN_METRIC and r.get("judge") == choice.benign_judge]
    y_name = METRIC_TITLES.get(choice.metric or "attack_success", "Attack success").replace(" rate", "")
    head = ("<p class='muted'>One point per target × defense, with the finding's judges. Down and to the left is "
            "better: fewer successful attacks on harmful prompts, fewer refusals of benign ones. Bars are 95% "
            "intervals.</p>")
    title = "Attack success vs over-refusal"
    if not asr and not orf:
        return Section(title, head + "<p class='muted'>Neither attack success nor over-refusal was measured.</p>",
                       anchor="tradeoff", nav="Trade-off")
    notes = []
    if not orf:
        notes.append("Over-refusal is missing (no benign data was evaluated): the x axis is not available and "
                     "points sit in the n/a strip.")
    if not asr:
        notes.append("Attack success is missing (no harmful data was evaluated): the y axis is not available and "
                     "points sit in the n/a strip.")
    pairs = list(OrderedDict.fromkeys((r.get("target"), r.get("defense")) for r in asr + orf))
    # One plot per dataset x attack: mixing attacks in one plot would put several y values on the same
    # (target, defense) point.
    plot_keys: list = list(OrderedDict.fromkeys((r.get("dataset"), r.get("attack")) for r in asr)) or [None]
    figs = []
    for pk in plot_keys:
        points = _tradeoff_points(pairs, asr, orf, pk, labels)
        partial = [p.label for p in points if (p.x is None) != (p.y is None)]
        caption = f"{pk[0]} · attack {pk[1]}" if pk else "over-refusal only"
        note = ""
        if orf and asr and partial:
            note = f"<p class='note'>Missing one axis (drawn in the n/a strip): {escape(', '.join(partial))}</p>"
        svg = scatter_plot(points, x_label="Over-refusal on benign prompts", y_label=f"{y_name} on harmful",
                           size=240, legend_width=300)
        figs.append(f"<figure class='chart-card wide'><figcaption>{escape(caption)}</figcaption>{svg}{note}</figure>")
    note_html = "".join(f"<p class='note'>{escape(n)}</p>" for n in notes)
    return Section(title, head + note_html + "<div class='chart-grid scatters'>" + "".join(figs) + "</div>",
                   anchor="tradeoff", nav="Trade-off")


def _errors(summary: dict) -> Section:
    errors = summary.get("errors") or []
    n_err = (summary.get("run") or {}).get("n_errors")
    if not errors:
        extra = f" ({escape(n_err)} generation errors counted)" if n_err else ""
        return Section("Errors", f"<p class='muted'>No errors recorded{extra}.</p>", anchor="errors")
    items = "".join(f"<tr><td><code>{escape(x.get('where'))}</code></td>"
                    f"<td><pre>{escape(x.get('message'))}</pre></td></tr>" for x in errors)
    table = table_wrap("<table class='meta errors'><thead><tr><th>Where</th><th>Message</th></tr>"
                       f"</thead><tbody>{items}</tbody></table>")
    body = (f"<p class='note'><span class='badge warn'>{len(errors)}</span> errors were recorded: the figures above "
            "leave out what failed.</p>" + _fold("The messages", table))
    return Section("Errors", body, anchor="errors")


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
                 images: dict[str, str], image_dir: Path | None = None) -> list[dict]:
    """Only the fields the browser shows, so 10k samples stay a few MB rather than tens. A reply to a harmful
    prompt is left out of the file altogether unless ``show_harmful`` (a shared report must not carry it), and
    so are its outcome judges' reasons, which may quote it, and any other text of the sample that quotes one of
    its replies (``reporting/withhold.py``: a self-check defense sends the reply back to a model)."""
    out = []
    for s in samples:
        verdicts = s.get("verdicts") or {}
        kind = str(s.get("kind", ""))
        withheld = _withheld(s, show_harmful)
        replies = withheld_replies(s) if kind == "harmful" else []
        hidden = replies if withheld else []  # with show_harmful nothing is redacted: quoting texts are only marked
        paths = [str(i) for i in s.get("images") or []]
        out.append({
            "key": str(s.get("key", "")), "id": str(s.get("sample_id", "")), "dataset": str(s.get("dataset", "")),
            "kind": kind, "category": str(s.get("category", "") or ""),
            "target": labels.get(s.get("target"), str(s.get("target", ""))), "defense": str(s.get("defense", "")),
            "attack": str(s.get("attack", "")), "prompt": redact(str(s.get("prompt", "") or ""), hidden),
            "response": None if withheld else str(s.get("response", "") or ""),
            "images": [{"path": p, "thumb": p if p in images else None} for p in paths],
            "verdicts": {str(k): {"flag": bool(v.get("flag")), "score": v.get("score") if finite(v.get("score"))
                                  else None, "label": str(v.get("label", "") or ""),
                                  "tone": _verdict_tone(measures.get(str(k), ""), kind, bool(v.get("flag"))),
                                  "reason": "" if withheld and measures.get(str(k)) != "signal"
                                  else redact(str(v.get("reason", "") or ""), hidden)}
                         for k, v in verdicts.items() if isinstance(v, dict)},
            "trace": _trace_blob(s.get("trace") or [], withheld, replies, images, image_dir),
        })
    return out


def _saved_paths(turn: dict, image_dir: Path | None) -> list[str]:
    """Where the images a defense made for this sent turn were stored with the run (by content hash)."""
    if image_dir is None:
        return []
    return [str(image_dir / f"{h}.png") for h in turn.get("saved") or [] if isinstance(h, str)]


def _trace_blob(trace: list, withheld: bool, replies: list[str] | None = None, images: dict[str, str] | None = None,
                image_dir: Path | None = None) -> list[dict]:
    """A defense's sub-calls as the browser shows them: role, what was sent (with thumbnails of the images the
    defense made), tokens, seconds, a judge's verdict. A reply to a harmful prompt is left out of the file as the
    response is, and so is a sent text that quotes one (marked ``quotes``, so the page can fold it with the
    response when the file does carry it)."""
    replies, images = replies or [], images or {}
    out = []
    for t in trace:
        if not isinstance(t, dict):
            continue
        entry: dict[str, Any] = {"role": str(t.get("role", "")), "seconds": t.get("seconds") if finite(t.get("seconds"))
                                 else None}
        if "sent" in t:
            entry["sent"] = []
            for turn in t.get("sent") or []:
                if not isinstance(turn, dict):
                    continue
                text = str(turn.get("text", ""))
                row: dict[str, Any] = {"role": str(turn.get("role", "")), "text": text,
                                       "images": len(turn.get("images") or [])}
                if quotes(text, replies):
                    row.update(text=PLACEHOLDER if withheld else text, quotes=True)
                thumbs = [p for p in _saved_paths(turn, image_dir) if p in images]
                if thumbs:
                    row["thumbs"] = thumbs
                entry["sent"].append(row)
            entry["reply"] = None if withheld else str(t.get("reply", "") or "")
            entry["tokens"] = [t.get("prompt_tokens"), t.get("completion_tokens")]
        if "judge" in t:
            entry.update(judge=str(t["judge"]), flag=bool(t.get("flag")),
                         score=t.get("score") if finite(t.get("score")) else None)
        if isinstance(t.get("note"), str):
            entry["note"] = t["note"]  # a step's own account of what it decided (a gate that fired, and why)
        out.append(entry)
    return out


def _sample_browser(samples: list[dict], summary: dict, show_harmful: bool) -> tuple[str, str, str]:
    """The browser's static shell (a section body), its samples' JSON blob and the thumbnails' blob; rows are built
    client-side."""
    from safeglass.eval.runner import IMAGE_DIR
    from safeglass.reporting.thumbnails import MAX_IMAGES, thumbnails

    run_dir = (summary.get("run") or {}).get("run_dir")
    image_dir = Path(run_dir) / IMAGE_DIR if run_dir else None
    # The samples' images first: past the thumbnail limit, a defense's copies are the ones listed by count only.
    all_paths = [str(i) for s in samples for i in s.get("images") or []]
    all_paths += [p for s in samples for t in s.get("trace") or [] if isinstance(t, dict)
                  for turn in t.get("sent") or [] if isinstance(turn, dict) for p in _saved_paths(turn, image_dir)]
    images = thumbnails(all_paths)
    blob = json_for_script(_sample_blob(samples, target_labels(summary), _judge_measures(summary), show_harmful,
                                        images, image_dir))
    n_withheld = sum(_withheld(s, show_harmful) for s in samples)
    if n_withheld:
        note = (f"<p class='muted' id='sg-withheld'>The {n_withheld} responses to harmful prompts are not in this "
                "file, nor any text that quotes one (a defense sending a reply back to a model): their counts and "
                f"verdicts are. <code>safeglass report {escape(run_dir or 'RUN_DIR')} --show-harmful</code> writes a "
                "report that includes them (behind a click).</p>")
    else:
        note = ("<p class='muted'>Written with --show-harmful: responses to harmful prompts are in this file and "
                "shown; untick <em>show all harmful outputs</em> to fold them.</p>") if show_harmful else ""
    n_paths = len(set(all_paths))
    if n_paths > len(images):
        note += (f"<p class='muted'>{n_paths - len(images)} of {n_paths} images are listed by path only (unreadable, "
                 f"or beyond the first {MAX_IMAGES}).</p>")
    toggle = ("<label class='toggle'><input id='f-showall' type='checkbox' checked> show all harmful outputs</label>"
              if show_harmful else "<input id='f-showall' type='checkbox' hidden disabled>")
    shell = (
        "<p class='muted'>Matching the filters: <span id='sg-count'></span></p>"
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
        "<noscript><p class='note'>The sample browser needs JavaScript; samples are in samples.jsonl.</p></noscript>")
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
    if (s.trace && s.trace.length) c.appendChild(traceBox(s));
    return c;
  }
  // What the defense actually did: each call to the model, a helper or a judge, in order.
  function traceBox(s) {
    var d = el("details", "trace");
    d.appendChild(el("summary", null, "Defense calls (" + s.trace.length + ")"));
    s.trace.forEach(function (t) {
      var row = el("div", "trace-call");
      var head = t.role + (t.judge ? " · " + t.judge : "");
      if (t.seconds !== null && t.seconds !== undefined) head += " · " + t.seconds.toFixed(2) + " s";
      if (t.tokens && t.tokens[0] !== null && t.tokens[0] !== undefined) {
        head += " · " + t.tokens[0] + " + " + t.tokens[1] + " tokens";
      }
      if (t.judge) {
        head += " · " + (t.flag ? "flagged" : "not flagged");
        if (t.score !== null) head += " (" + t.score.toFixed(2) + ")";
      }
      if (t.note) head += " · " + t.note;
      row.appendChild(el("div", "label", head));
      (t.sent || []).forEach(function (turn) {
        var images = turn.images ? "  [" + turn.images + " image(s)]" : "";
        if (turn.quotes && hidden(s)) {
          row.appendChild(el("div", "response hidden-response",
                             turn.role + ": hidden, as the response is (it quotes a reply)" + images));
        } else {
          row.appendChild(el("pre", "sent", turn.role + ": " + turn.text + images));
        }
        // Images the defense made (perturbed copies and the like), as it sent them.
        if (turn.thumbs && turn.thumbs.length) {
          var ims = el("div", "images");
          turn.thumbs.forEach(function (p) {
            if (!thumbs[p]) return;
            var fig = el("figure", "thumb");
            var img = document.createElement("img");
            img.src = thumbs[p];
            img.alt = "image the defense sent";
            fig.appendChild(img);
            fig.title = p;
            ims.appendChild(fig);
          });
          row.appendChild(ims);
        }
      });
      if (t.sent) {
        if (t.reply === null || hidden(s)) {
          row.appendChild(el("div", "response hidden-response", "reply hidden, as the response is"));
        } else {
          row.appendChild(el("pre", "response", t.reply));
        }
      }
      d.appendChild(row);
    });
    return d;
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


def render_report(summary: dict, samples: list[dict], show_harmful: bool = False,
                  title: str = "safeglass report", sections: Sequence[Section] = ()) -> str:
    """Render one self-contained HTML document for a run (see module docstring for the safety rules).

    ``sections`` are a capability's own parts (``safeglass.reporting.sections.Section``); they go after the
    finding and the plots, before the detailed tables, sorted by their ``order``.
    """
    choice = choose(summary)
    browser, blob, images = _sample_browser(samples, summary, show_harmful)
    cost = cost_section(summary)
    extra = [s for s in (agreement_section(summary), three_way_section(summary)) if s is not None]
    parts = [finding_section(summary, choice), _tradeoff(summary, choice), _category_charts(summary, choice),
             *ordered(sections), *([cost] if cost else []), *extra, _details(summary),
             _errors(summary),
             Section("Samples", browser, anchor="samples")]
    ids = [s.id for s in parts]
    if len(set(ids)) < len(ids):
        # Two sections with one id would send a nav link to the wrong place; say so rather than guess.
        raise ValueError(f"report sections need distinct anchors: {sorted({i for i in ids if ids.count(i) > 1})}")
    # Pin the one script we ship by hash: injected inline scripts, event handlers and any network
    # load are refused by the browser even if escaping were ever to slip.
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode("ascii")
    csp = (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; img-src data:; "
           "base-uri 'none'; form-action 'none'")
    data = (f"<script type='application/json' id='sg-samples'>{blob}</script>"
            f"<script type='application/json' id='sg-images'>{images}</script><script>{_SCRIPT}</script>")
    return page(title, parts, header=_header(summary, title), csp=csp, after_main=data)


def write_report(run_dir: str | Path, summary: dict, samples: list[dict], show_harmful: bool = False,
                 sections: Sequence[Section] = ()) -> Path:
    """Write ``report.html`` into ``run_dir`` and return its path."""
    path = Path(run_dir) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    name = (summary.get("run") or {}).get("name")
    title = f"safeglass report: {name}" if name else "safeglass report"
    path.write_text(render_report(summary, samples, show_harmful=show_harmful, title=title, sections=sections),
                    encoding="utf-8")
    return path
