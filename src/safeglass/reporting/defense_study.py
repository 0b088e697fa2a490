"""The defense study's page (``study.html``): the table of attack success per attack class beside over-refusal, a
Pareto plot per target, the winners per attack class, the cost table, the white-box cells and the adaptive selector
beside the fixed configurations, from the study's ``study.json`` (``study/defense_study.py``).

Lower is better on every rate shown; each has its 95 % Wilson interval and its n.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safeglass.reporting.charts import Point, scatter_plot
from safeglass.reporting.costs import ratio
from safeglass.reporting.sections import Section, ci, escape, num, page, pct, pp, scale_class, scale_legend, table_wrap

ADAPTIVE_CLASS = "white-box (adaptive)"  # the study's name for the attack optimised through each configuration


def _cell(r: dict[str, Any] | None, extra: str = "") -> str:
    if not r or r.get("rate") is None:
        return "<td class='na'>—</td>"
    return (f"<td class='{scale_class(r['rate'])}'>{escape(pct(r['rate']))} {escape(ci(r['ci_low'], r['ci_high']))}"
            f" <span class='muted'>{escape(r['k'])}/{escape(r['n'])}</span>{extra}</td>")


def _table(head: list[str], rows: list[str]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    return table_wrap(f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _labels(data: dict[str, Any]) -> dict[str, str]:
    return {t["id"]: t["label"] + (" (model organism)" if t.get("organism") else "") for t in data["targets"]}


def _delta(vb: dict[str, Any] | None) -> str:
    if not vb:
        return ""
    interval = ci(vb.get("ci_low"), vb.get("ci_high"))
    return f"<br><span class='muted'>vs base {escape(pp(vb.get('delta')))} {escape(interval)}</span>"


def headline_section(data: dict[str, Any]) -> Section:
    labels = _labels(data)
    classes = [c for c in data["attack_classes"]]
    cells = {(r["target"], r["configuration"], r["attack_class"]): r for r in data["class_rows"]
             if r["category"] is None}
    over = {(r["target"], r["configuration"]): r for r in data["over_refusal"]}
    rows = []
    for t in [x["id"] for x in data["targets"]]:
        for c in data["configurations"]:
            if not any((t, c, k) in cells for k in classes) and (t, c) not in over:
                continue
            tds = "".join(_cell((cells.get((t, c, k)) or {}).get("attack_success"),
                                _delta((cells.get((t, c, k)) or {}).get("vs_baseline"))) for k in classes)
            o = over.get((t, c)) or {}
            rows.append(f"<tr><td>{escape(labels.get(t, t))}</td><td>{escape(c)}</td>{tds}"
                        f"{_cell(o.get('over_refusal'), _delta(o.get('vs_baseline')))}</tr>")
    head = ["target", "configuration", *[f"attack success: {k}" for k in classes], "over-refusal (benign)"]
    judge = data.get("judge") or {}
    body = (f"<p>Judge: <b>{escape(judge.get('id') or judge.get('name'))}</b> for every figure. Attack success is the "
            "share of attacked harmful requests not refused; over-refusal the share of benign requests refused. Lower "
            f"is better on both; the baseline configuration is <b>{escape(data['baseline'])}</b>.</p>"
            + scale_legend("darker: higher rate (worse)") + _table(head, rows))
    return Section("Attack success by attack class, and over-refusal", body, anchor="study-table")


def pareto_section(data: dict[str, Any]) -> Section:
    labels = _labels(data)
    pooled = {(r["target"], r["configuration"]): r for r in data["pooled_success"]}
    over = {(r["target"], r["configuration"]): r["over_refusal"] for r in data["over_refusal"]}
    parts = []
    for t in [x["id"] for x in data["targets"]]:
        sel = (data.get("selector") or {}).get(t)
        points = []
        if sel:  # the selector is measured on its evaluation split: so are the fixed points beside it
            ev = sel["evaluation"]
            for c, r in ev["fixed"].items():
                points.append(_point(c, r))
            points.append(_point("adaptive selector", ev["selector"]))
            note = (f"evaluation split ({escape(sel['n_eval'])} inputs; the selector was fitted on the other "
                    f"{escape(sel['n_fit'])})")
        else:
            for c in data["configurations"]:
                if (t, c) in pooled and (t, c) in over:
                    p, o = pooled[(t, c)], over[(t, c)]
                    points.append(Point(c, o["rate"], p["rate"], o["ci_low"], o["ci_high"], p["ci_low"], p["ci_high"]))
            note = "every input"
        if not points:
            continue
        front = ", ".join(data.get("pareto_front", {}).get(t) or []) or "—"
        parts.append(f"<h3>{escape(labels.get(t, t))}</h3><p class='muted'>{note}. On the front (no configuration "
                     f"is lower on both): {escape(front)}.</p>"
                     + scatter_plot(points, x_label="over-refusal on benign requests (lower is better)",
                                    y_label="attack success, classes pooled (lower is better)",
                                    title=f"{labels.get(t, t)}: attack success against over-refusal"))
    body = ("<p>Each point is a configuration, with 95 % intervals on both axes; the best corner is bottom left. "
            "Attack success pools every attack class but the adaptive attack.</p>" + "".join(parts))
    return Section("Pareto: attack success against over-refusal", body, anchor="study-pareto")


def _point(label: str, r: dict[str, Any]) -> Point:
    a, o = r["attack_success"], r["over_refusal"]
    return Point(label, o["rate"], a["rate"], o["ci_low"], o["ci_high"], a["ci_low"], a["ci_high"])


def winners_section(data: dict[str, Any]) -> Section:
    labels = _labels(data)
    rows = []
    for w in data["winners"]:
        ru = w.get("runner_up_attack_success") or {}
        sure = "yes" if w["clear"] else "no (intervals overlap)"
        rows.append(f"<tr><td>{escape(labels.get(w['target'], w['target']))}</td><td>{escape(w['attack_class'])}</td>"
                    f"<td><b>{escape(w['configuration'])}</b></td>{_cell(w['attack_success'])}{_cell(w['over_refusal'])}"
                    f"<td>{escape(w.get('runner_up') or '—')} {escape(pct(ru.get('rate')))}</td><td>{sure}</td></tr>")
    head = ["target", "attack class", "winner (lowest attack success)", "its attack success", "its over-refusal",
            "runner-up", "separated by the intervals"]
    return Section("Which configuration wins on which attack class", _table(head, rows), anchor="study-winners")


def cost_section(data: dict[str, Any]) -> Section:
    labels = _labels(data)
    rows = []
    for r in data["costs"]:
        vb = r.get("vs_baseline") or {}
        rows.append(f"<tr><td>{escape(labels.get(r['target'], r['target']))}</td><td>{escape(r['configuration'])}</td>"
                    f"<td>{escape(num(r['calls'], 2))}</td><td>{escape(num(r['tokens'], 0))}</td>"
                    f"<td>{escape(num(r['seconds'], 3))}</td><td>{escape(num(r.get('judge_calls', 0), 2))}</td>"
                    f"<td>{' / '.join(escape(ratio(vb.get(f))) for f in ('calls', 'tokens', 'seconds')) if vb else '—'}"
                    "</td></tr>")
    head = ["target", "configuration", "target calls a reply", "tokens a reply", "seconds a reply", "judge calls",
            f"× {data['baseline']} (calls / tokens / seconds)"]
    return Section("Cost of a reply", _table(head, rows), anchor="study-cost")


def white_box_section(data: dict[str, Any]) -> Section | None:
    labels = _labels(data)
    wb_classes = set(data.get("white_box_classes") or [])
    rows = []
    for r in data["class_rows"]:
        if r["category"] is not None or (r["attack_class"] not in wb_classes and r["attack_class"] != ADAPTIVE_CLASS):
            continue
        how = ("optimised through this configuration" if r["attack_class"] == ADAPTIVE_CLASS
               else "made undefended, replayed against this configuration")
        rows.append(f"<tr><td>{escape(labels.get(r['target'], r['target']))}</td><td>{escape(r['configuration'])}</td>"
                    f"<td>{escape(r['attack_class'])}</td><td>{escape(how)}</td>"
                    f"{_cell(r['attack_success'], _delta(r.get('vs_baseline')))}</tr>")
    if not rows:
        return None
    head = ["target", "configuration", "attack class", "images", "attack success"]
    return Section("White-box attacks against the configurations", _table(head, rows), anchor="study-white-box")


def selector_section(data: dict[str, Any]) -> Section | None:
    sel = data.get("selector") or {}
    if not sel:
        return None
    labels = _labels(data)
    parts = []
    for t, s in sel.items():
        ev = s["evaluation"]
        rows = []
        for c, r in ev["fixed"].items():
            verdict = "dominated by the selector" if r.get("dominates") else "not dominated"
            rows.append(f"<tr><td>{escape(c)}</td>{_cell(r['attack_success'])}{_cell(r['over_refusal'])}"
                        f"<td>{escape(verdict)}</td></tr>")
        r = ev["selector"]
        picks = ", ".join(f"{escape(c)} {escape(pct(v))}" for c, v in (ev.get("picks") or {}).items())
        rows.append(f"<tr><td><b>adaptive selector</b></td>{_cell(r['attack_success'])}{_cell(r['over_refusal'])}"
                    f"<td>picks: {picks}</td></tr>")
        cells = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v if isinstance(v, str) else v.get('configuration'))}"
                        "</td></tr>" for k, v in (s["rule"].get("cells") or {}).items())
        parts.append(f"<h3>{escape(labels.get(t, t))}</h3><p class='muted'>Fitted on {escape(s['n_fit'])} inputs, "
                     f"measured on {escape(s['n_eval'])} others; file {escape(Path(s['file']).name)}; fallback "
                     f"{escape(s['rule'].get('fallback'))}.</p>"
                     + _table(["configuration", "attack success", "over-refusal", "selector against it"], rows)
                     + "<details><summary>the rule (signal cell -> configuration)</summary>"
                     + _table(["cell", "configuration"], [cells]) + "</details>")
    body = ("<p>Per input, the selector reads cheap signals (text in the image, prompt injection, NSFW image, a "
            "request harm score) and picks the configuration that did best on inputs with those signals in the fit "
            "split. Its replies on the evaluation split are the chosen configurations' replies there.</p>"
            + "".join(parts))
    return Section("The adaptive selector beside the fixed configurations", body, anchor="study-selector")


def category_section(data: dict[str, Any]) -> Section:
    labels = _labels(data)
    rows = [f"<tr><td>{escape(labels.get(r['target'], r['target']))}</td><td>{escape(r['configuration'])}</td>"
            f"<td>{escape(r['attack_class'])}</td><td>{escape(r['category'])}</td>{_cell(r['attack_success'])}"
            f"{_cell(r.get('harmless'))}</tr>" for r in data["class_rows"] if r["category"] is not None]
    head = ["target", "configuration", "attack class", "category", "attack success", "harmless rate"]
    return Section("By category", _table(head, rows), anchor="study-categories", folded=True)


def provenance_section(data: dict[str, Any]) -> Section:
    prov = data.get("provenance") or {}
    versions = ", ".join(f"{k} {v}" for k, v in sorted((prov.get("versions") or {}).items()))
    run = prov.get("run") or {}
    body = (f"<p>Config {escape(data.get('source'))} (hash {escape(prov.get('config_hash'))}), seed "
            f"{escape(prov.get('seed'))}; run folder {escape(run.get('dir'))}: {escape(run.get('planned'))} replies "
            f"planned, {escape(run.get('generated'))} generated this time, {escape(run.get('failed'))} failed.</p>"
            f"<p class='muted'>{escape(versions)}</p>")
    return Section("Provenance", body, anchor="study-provenance", folded=True)


def study_sections(data: dict[str, Any]) -> list[Section]:
    sections = [headline_section(data), pareto_section(data), winners_section(data), cost_section(data)]
    sections += [s for s in (white_box_section(data), selector_section(data)) if s is not None]
    return [*sections, category_section(data), provenance_section(data)]


def write_study_html(path: str | Path, data: dict[str, Any]) -> Path:
    path = Path(path)
    header = (f"<h1>Defense study: {escape(data['name'])}</h1><p class='muted'>{escape(data['created'])}; targets: "
              f"{escape(', '.join(_labels(data).values()))}</p>")
    html = page(f"Defense study: {data['name']}", study_sections(data), header=header)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
