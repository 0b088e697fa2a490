"""The finding a report opens with: attack success on harmful prompts per target x (attack, defense), over-refusal
on benign prompts beside it, one judge's view, coloured on one scale.

One judge, because judges disagree and a matrix mixing them would be unreadable; which one, and why, is said
in the caption, and every judge's numbers stay in the detailed tables. Refusal rate on harmful prompts is not
shown: with the same judge it is exactly 100 % minus attack success.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from safeglass.reporting.sections import Section, escape, finite, pct, scale_class, scale_legend, table_wrap

# The harmful-prompt measure the finding shows: attack success when a refusal judge measured it, else a harm
# judge's harmful-output rate (the same question asked of the reply's content).
HARMFUL_METRICS = ("attack_success", "harmful_rate")
BENIGN_METRIC = "over_refusal"
_NOUN = {"attack_success": "harmful prompts not refused", "harmful_rate": "harmful prompts answered harmfully",
         "over_refusal": "benign prompts refused"}


@dataclass(frozen=True)
class Choice:
    """Which measure and judges the finding (and the plots under it) show, with the reasons in words."""

    metric: str | None
    judge: str | None
    why: str = ""
    benign_judge: str | None = None
    benign_why: str = ""


def overall(summary: dict) -> list[dict]:
    """Rows over whole datasets (not per category)."""
    return [r for r in summary.get("rows") or [] if r.get("category") is None]


def _judges(summary: dict) -> list[dict]:
    """Judges in the run config's order (the order the author listed them), the rest after."""
    judges = [j for j in summary.get("judges") or [] if isinstance(j, dict)]
    listed = [(c.get("id") or c.get("name")) if isinstance(c, dict) else c
              for c in ((summary.get("run") or {}).get("config") or {}).get("judges") or []]
    rank = {str(n): i for i, n in enumerate(listed)}
    return sorted(judges, key=lambda j: rank.get(str(j.get("id") or j.get("name")), len(rank)))


def _recorded_primary(summary: dict) -> str | None:
    return summary.get("primary_judge") or (summary.get("run") or {}).get("primary_judge")


def _pick_judge(summary: dict, metric: str, prefer: str | None = None) -> tuple[str | None, str]:
    """The judge whose ``metric`` rows the finding shows, and why it was picked."""
    present = {r.get("judge") for r in overall(summary) if r.get("metric") == metric}
    candidates = [j for j in _judges(summary) if j.get("key") in present]
    candidates += [{"key": k} for k in sorted(present - {j.get("key") for j in candidates}, key=str)]
    if not candidates:
        return None, ""
    recorded = _recorded_primary(summary)
    for j in candidates:
        if recorded is not None and recorded in (j.get("key"), j.get("id"), j.get("name")):
            return j["key"], "recorded as the run's primary judge"
    if prefer in present:
        return prefer, "the same judge"
    if len(candidates) == 1:
        return candidates[0]["key"], "the only judge that measured it"
    # An uncalibrated judge's accuracy is unknown, so a calibrated one wins; among those, the most accurate.
    calibrated = [(j["calibration"]["accuracy"], -i, j) for i, j in enumerate(candidates)
                  if finite((j.get("calibration") or {}).get("accuracy"))]
    if calibrated:
        acc, _, best = max(calibrated, key=lambda t: t[:2])
        cal = best["calibration"]
        return best["key"], (f"the best-calibrated of the {len(candidates)} judges that measured it "
                             f"({pct(acc)} accuracy on {cal.get('dataset') or 'its gold set'})")
    return candidates[0]["key"], f"the first of the {len(candidates)} judges that measured it in the run's config"


def choose(summary: dict) -> Choice:
    """The finding's measure and judges: a recorded primary judge, else the best-calibrated, else the first."""
    present = {r.get("metric") for r in overall(summary)}
    metric = next((m for m in HARMFUL_METRICS if m in present), None)
    judge, why = _pick_judge(summary, metric) if metric else (None, "")
    benign, benign_why = _pick_judge(summary, BENIGN_METRIC, prefer=judge)
    return Choice(metric, judge, why, benign, benign_why)


def _first_seen(values: list[Any], first: Any = None) -> list[Any]:
    out = list(OrderedDict.fromkeys(values))
    return ([first] if first in out else []) + [v for v in out if v != first]


def _columns(rows: list[dict]) -> list[tuple[Any, Any]]:
    """(dataset, attack) groups in the order the run produced them, the unattacked one first per dataset."""
    out = []
    for d in _first_seen([r.get("dataset") for r in rows]):
        out += [(d, a) for a in _first_seen([r.get("attack") for r in rows if r.get("dataset") == d], "none")]
    return out


def _target_rows(summary: dict, rows: list[dict]) -> list[dict]:
    present = _first_seen([r.get("target") for r in rows])
    known = [t for t in summary.get("targets") or [] if t.get("name") in present]
    return known + [{"name": n} for n in present if n not in {t.get("name") for t in known}]


def _target_head(t: dict) -> str:
    badge = ' <span class="badge organism">model organism</span>' if t.get("organism") else ""
    return (f"<th class='row-head' scope='row' title='{escape(t.get('name'))}'>"
            f"{escape(t.get('label') or t.get('name'))}{badge}</th>")


def _cell(r: dict | None, where: str, metric: str, gap: bool) -> str:
    cls = " gap" if gap else ""
    if r is None:
        return f"<td class='cell na{cls}' title='{escape(where)}: not run'>—</td>"
    interval = (f"{100 * r['ci_low']:.1f}–{100 * r['ci_high']:.1f}"
                if finite(r.get("ci_low")) and finite(r.get("ci_high")) else "")
    tip = f"{where}: {r.get('k')}/{r.get('n')} {_NOUN.get(metric, metric)}"
    return (f"<td class='cell {scale_class(r.get('value'))}{cls}' title='{escape(tip)}'>"
            f"<b>{escape(pct(r.get('value')))}</b><span>{escape(interval)}</span></td>")


def _block(rows: list[dict], defenses: list[Any]) -> tuple[list[tuple], dict]:
    cols = [(d, a, f) for d, a in _columns(rows) for f in defenses]
    index = {(r.get("target"), r.get("defense"), r.get("dataset"), r.get("attack")): r for r in rows}
    return cols, index


def _breakable(text: object) -> str:
    # Escaped first, then break opportunities after separators, so long names wrap instead of widening
    # every column of the matrix ("safety_prompt" would otherwise set the width of a cell holding "0.0%").
    out = escape(text)
    for sep in ("_", "-", "/"):
        out = out.replace(sep, sep + "<wbr>")
    return out


def _attack_name(attack: Any) -> str:
    return "no attack" if attack == "none" else str(attack)


def _heads(title: str, cols: list[tuple], n_def: int, gap: bool) -> tuple[str, str, str]:
    g = " gap" if gap else ""
    top = f"<th colspan='{len(cols)}' class='measure{g}'>{escape(title)}</th>" if cols else ""
    mid = "".join(f"<th colspan='{n_def}' class='group{g if i == 0 else ''}'>{_breakable(d)} · "
                  f"{_breakable(_attack_name(a))}</th>" for i, (d, a, _) in enumerate(cols[::n_def]))
    low = "".join(f"<th class='defense{g if i == 0 else ''}'>{_breakable(f)}</th>"
                  for i, (_, _, f) in enumerate(cols))
    return top, mid, low


def _defenses(summary: dict, rows: list[dict]) -> list[Any]:
    baseline = (summary.get("run") or {}).get("baseline_defense") or "none"
    return _first_seen([r.get("defense") for r in rows], baseline)


def _judge_label(summary: dict, key: str | None) -> str:
    j = next((j for j in summary.get("judges") or [] if j.get("key") == key), {})
    name = j.get("name") or key
    return f"{name} v{j['version']}" if j.get("version") else str(name)


def _caption(summary: dict, c: Choice) -> str:
    what = {"attack_success": "<strong>Attack success</strong>: the share of harmful prompts whose reply the "
                              "judge did not find a refusal.",
            "harmful_rate": "<strong>Harmful-output rate</strong> (no refusal judge measured attack success): "
                            "the share of harmful prompts whose reply the judge found harmful."}.get(c.metric or "", "")
    parts = [what]
    if c.benign_judge:
        parts.append("<strong>Over-refusal</strong>: the share of benign prompts it found refused.")
    parts.append("Lighter is better in both. Each cell: the rate and its 95% Wilson interval (hover for k/n).")
    if c.judge:
        parts.append(f"Judged by <strong>{escape(_judge_label(summary, c.judge))}</strong>, {escape(c.why)}.")
    if c.benign_judge and c.benign_judge != c.judge:
        parts.append(f"Over-refusal judged by <strong>{escape(_judge_label(summary, c.benign_judge))}</strong>, "
                     f"{escape(c.benign_why)}.")
    parts.append("Every judge's figures, with paired differences and p-values, are in the detailed tables.")
    return f"<figcaption class='caption'>{' '.join(parts)}</figcaption>"


def finding_section(summary: dict, choice: Choice | None = None) -> Section:
    """The report's opening section: the matrix, its legend and a caption naming the judge."""
    c = choice or choose(summary)
    rows = overall(summary)
    harm = [r for r in rows if r.get("metric") == c.metric and r.get("judge") == c.judge]
    benign = [r for r in rows if r.get("metric") == BENIGN_METRIC and r.get("judge") == c.benign_judge]
    if not harm and not benign:
        body = ("<p class='muted'>Neither attack success nor over-refusal was measured: the detailed tables below "
                "have what was.</p>")
        return Section("Finding", body, anchor="finding")
    defenses = _defenses(summary, harm + benign)
    hcols, hidx = _block(harm, defenses)
    bcols, bidx = _block(benign, defenses)
    title = {"attack_success": "Attack success on harmful prompts",
             "harmful_rate": "Harmful outputs on harmful prompts"}.get(c.metric or "", "")
    h_top, h_mid, h_low = _heads(title, hcols, len(defenses), False)
    b_top, b_mid, b_low = _heads("Over-refusal on benign prompts", bcols, len(defenses), bool(hcols))
    body_rows = []
    for t in _target_rows(summary, harm + benign):
        name, label = t.get("name"), t.get("label") or t.get("name")
        cells = [_cell(hidx.get((name, f, d, a)), f"{label} · {f} · {d} · {a}", c.metric or "", False)
                 for d, a, f in hcols]
        cells += [_cell(bidx.get((name, f, d, a)), f"{label} · {f} · {d} · {a}", BENIGN_METRIC, bool(hcols) and i == 0)
                  for i, (d, a, f) in enumerate(bcols)]
        body_rows.append(f"<tr>{_target_head(t)}{''.join(cells)}</tr>")
    table = (f"<table class='finding'><thead><tr><th rowspan='3' class='row-head'>Target</th>{h_top}{b_top}</tr>"
             f"<tr>{h_mid}{b_mid}</tr><tr>{h_low}{b_low}</tr></thead><tbody>{''.join(body_rows)}</tbody></table>")
    legend = scale_legend("darker is worse: more attacks get through, more benign prompts are refused")
    body = f"<figure class='finding' id='finding-matrix'>{_caption(summary, c)}{legend}{table_wrap(table)}</figure>"
    return Section("Finding", body, anchor="finding")
