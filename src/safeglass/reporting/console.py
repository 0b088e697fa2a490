"""The end of a run on the console: the report's finding as a text table, and the dtype and machine each target
generated on, so that the figures a run was made for are on screen without opening the report.

The table reads the same rows and the same judge as the report's finding (:mod:`safeglass.reporting.finding`),
one line per target, defense, dataset and attack, since a matrix as wide as the report's does not fit a terminal.
"""

from __future__ import annotations

from typing import Any

from safeglass.machine import distinct_machines, machine_line
from safeglass.reporting.finding import BENIGN_METRIC, choose, overall
from safeglass.reporting.sections import finite, pct, target_labels

_TITLE = {"attack_success": "attack success", "harmful_rate": "harmful outputs"}


def finding_table(summary: dict[str, Any]) -> str:
    """The finding: attack success (or harmful outputs) on harmful prompts and over-refusal on benign ones, with
    95% intervals and k/n, per target x defense x dataset x attack, under the judge the report's finding uses."""
    c = choose(summary)
    rows = overall(summary)
    harm = {_where(r): r for r in rows if r.get("metric") == c.metric and r.get("judge") == c.judge}
    benign = {_where(r): r for r in rows if r.get("metric") == BENIGN_METRIC and r.get("judge") == c.benign_judge}
    if not harm and not benign:
        return "finding: neither attack success nor over-refusal was measured (the report's tables have what was)"
    labels = target_labels(summary)
    wheres = list(dict.fromkeys([*harm, *benign]))
    # grouped by target, then dataset, attack and defense, each in the order the run produced them
    order = [{v: i for i, v in enumerate(dict.fromkeys(w[k] for w in wheres))} for k in range(4)]
    wheres.sort(key=lambda w: (order[0][w[0]], order[2][w[2]], order[3][w[3]], order[1][w[1]]))
    head = ["target", "defense", "dataset", "attack", _TITLE.get(c.metric or "", "harmful prompts"), "over-refusal"]
    body = [[str(labels.get(t, t)), str(f), str(d), str(a), _cell(harm.get(w)), _cell(benign.get(w))]
            for w in wheres for t, f, d, a in [w]]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(x.ljust(n) for x, n in zip(line, widths)).rstrip() for line in [head, *body]]
    judged = _judge_name(summary, c.judge or c.benign_judge)
    if c.benign_judge and c.judge and c.benign_judge != c.judge:
        judged += f" (over-refusal: {_judge_name(summary, c.benign_judge)})"
    return "\n".join([f"finding, judged by {judged}; lower is better, 95% intervals and k/n:", *lines])


def machines_text(target: dict[str, Any]) -> str:
    """The machine(s) a target's replies were made on, one line; "N machines: ..." when a resumed run moved."""
    machines = target.get("machines")
    if machines is None:  # a summary written before replies kept their machine
        machines = distinct_machines([target.get("machine")])
    if not machines:
        return "—"
    if len(machines) == 1:
        return machine_line(machines[0])
    return f"{len(machines)} machines: " + "; ".join(machine_line(m) for m in machines)


def machine_lines(summary: dict[str, Any]) -> list[str]:
    """Per target: the dtype its replies were made in and the machine(s) they were made on."""
    out = []
    for t in summary.get("targets") or []:
        dtype = (t.get("config") or {}).get("dtype") or "not recorded"
        machines = machines_text(t)
        where = "machine not recorded" if machines == "—" else f"generated on {machines}"
        out.append(f"{t.get('label') or t.get('name')}: dtype {dtype}, {where}")
    return out


def digest(summary: dict[str, Any]) -> str:
    """What the console shows at the end of a run: the finding table, then the dtype and machine lines."""
    return "\n".join([finding_table(summary), "", *machine_lines(summary)])


def _where(row: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    return row.get("target"), row.get("defense"), row.get("dataset"), row.get("attack")


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "—"
    interval = (f" ({100 * row['ci_low']:.1f}–{100 * row['ci_high']:.1f})"
                if finite(row.get("ci_low")) and finite(row.get("ci_high")) else "")
    return f"{pct(row.get('value'))}{interval} {row.get('k')}/{row.get('n')}"


def _judge_name(summary: dict[str, Any], key: str | None) -> str:
    j = next((j for j in summary.get("judges") or [] if j.get("key") == key), {})
    return str(j.get("id") or j.get("name") or key)
