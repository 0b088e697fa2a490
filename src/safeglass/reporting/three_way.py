"""The report's "Three ways to answer" section: a three-way judge's classes per row (XSTest / OR-Bench), read
from the summary's ``three_way`` (``safeglass.eval.three_way``)."""

from __future__ import annotations

from typing import Any

from safeglass.reporting.sections import Section, escape, judge_labels, pct, table_wrap, target_labels

TITLES = {"full_compliance": "Full compliance", "partial_refusal": "Partial refusal", "full_refusal": "Full refusal"}


def three_way_section(summary: dict[str, Any]) -> Section | None:
    """None when no judge of the run gives the three classes."""
    rows = summary.get("three_way") or []
    if not rows:
        return None
    names, labels = judge_labels(summary), target_labels(summary)
    head = "".join(f"<th class='num'>{escape(t)}</th>" for t in TITLES.values())
    body = []
    for r in sorted(rows, key=lambda r: (r["judge"], r["dataset"], r["target"], r["defense"], r["attack"])):
        cells = "".join(f"<td class='num'>{escape(pct(r['counts'][k] / r['n'] if r['n'] else None))} "
                        f"<span class='muted'>{escape(r['counts'][k])}</span></td>" for k in TITLES)
        body.append(f"<tr><td>{escape(names.get(r['judge'], r['judge']))}</td>"
                    f"<td>{escape(labels.get(r['target'], r['target']))}</td><td>{escape(r['dataset'])}</td>"
                    f"<td>{escape(r['defense'])}</td><td>{escape(r['attack'])}</td>"
                    f"<td class='num'>{escape(r['n'])}</td>{cells}</tr>")
    caption = ("<p class='caption muted'>Each reply in one of three classes, as XSTest and OR-Bench score "
               "over-refusal: <b>full compliance</b> (answers), <b>partial refusal</b> (answers part, or answers "
               "after a refusal), <b>full refusal</b> (declines, deflects, goes off topic). On benign look-alikes, "
               "the partial and full refusals together are the over-refusal; the split says how much of it still "
               "helped.</p>")
    table = table_wrap("<table class='results three-way'><thead><tr><th>Judge</th><th>Target</th><th>Dataset</th>"
                       f"<th>Defense</th><th>Attack</th><th class='num'>Replies</th>{head}</tr></thead>"
                       f"<tbody>{''.join(body)}</tbody></table>")
    return Section("Three ways to answer", caption + table, anchor="three-way", nav="Three-way")
