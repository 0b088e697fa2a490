"""The report's "Judges compared" section: where two judges of one measure disagree, row by row.

Read from the summary's ``agreement`` (``safeglass.eval.agreement.summary_agreement``): a figure on a flagged row
(kappa below 0.6, or agreement below 0.9) depends on which judge read the replies, and the reader should know it
before quoting it. ``safeglass judges agree RUN --judges A B`` prints the same numbers.
"""

from __future__ import annotations

from typing import Any

from safeglass.reporting.sections import Section, escape, judge_labels, num, pct, table_wrap, target_labels


def agreement_section(summary: dict[str, Any]) -> Section | None:
    """None when no two judges of one measure read the same replies (nothing to compare)."""
    comparisons = summary.get("agreement") or []
    if not comparisons:
        return None
    labels, names = target_labels(summary), judge_labels(summary)
    parts = ["<p class='caption muted'>Two judges of one measure, reply by reply: the share of replies they agree "
             "on and Cohen's κ, per row. A row is flagged when κ is below 0.6 or agreement below 0.9 (κ only where "
             "neither judge gives one answer on more than 90 % of the row): there the figure depends on the judge. "
             "Rates are each judge's flag rate (refusal, harm or toxicity).</p>"]
    for c in comparisons:
        a, b = names.get(c["judge_a"], c["judge_a"]), names.get(c["judge_b"], c["judge_b"])
        flagged = [r for r in c["rows"] if r.get("flagged")]
        kappa = "n/a" if c.get("kappa") is None else num(c["kappa"], 2)
        line = (f"<b>{escape(a)}</b> vs <b>{escape(b)}</b> ({escape(c.get('measure'))}): agreement "
                f"{escape(pct(c.get('agreement')))}, κ {escape(kappa)} over {escape(c.get('n'))} replies; "
                f"<span class='badge{' warn' if flagged else ''}'>{len(flagged)} of {len(c['rows'])}</span> "
                "rows flagged")
        body = []
        for r in sorted(c["rows"], key=lambda r: (not r.get("flagged"), r["target"], r["dataset"], r["attack"])):
            k = "n/a" if r.get("kappa") is None else num(r["kappa"], 2)
            mark = "<span class='badge warn'>judges disagree</span>" if r.get("flagged") else ""
            body.append(f"<tr><td>{escape(labels.get(r['target'], r['target']))}</td><td>{escape(r['dataset'])}</td>"
                        f"<td>{escape(r['defense'])}</td><td>{escape(r['attack'])}</td>"
                        f"<td class='num'>{escape(r['n'])}</td><td class='num'>{escape(pct(r['rate_a']))}</td>"
                        f"<td class='num'>{escape(pct(r['rate_b']))}</td>"
                        f"<td class='num'>{escape(pct(r['agreement']))}</td><td class='num'>{escape(k)}</td>"
                        f"<td>{mark}</td></tr>")
        # the line stays visible, the rows open on purpose (flagged ones first)
        parts.append(f"<details><summary>{line}</summary>" + table_wrap(
            "<table class='results agreement'><thead><tr><th>Target</th><th>Dataset</th><th>Defense</th>"
            f"<th>Attack</th><th class='num'>Replies</th><th class='num'>{escape(a)}</th>"
            f"<th class='num'>{escape(b)}</th><th class='num'>Agree</th><th class='num'>κ</th><th></th></tr>"
            f"</thead><tbody>{''.join(body)}</tbody></table>") + "</details>")
    return Section("Judges compared", "".join(parts), anchor="agreement", nav="Judges")
