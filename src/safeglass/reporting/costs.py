"""What the replies cost: the summary's ``costs`` (target calls, tokens and seconds a reply, per target, defense and
attack, beside the baseline defense) as a folded report section.

A defense that halves attack success by answering every prompt eight times is not the same finding as one that
adds a sentence to the prompt; the cost sits in the report so the two are never read apart.
"""

from __future__ import annotations

from typing import Any

from safeglass.reporting.sections import Section, escape, finite, num, table_wrap, target_labels

ALL_ATTACKS = "all attacks"  # the label of a row pooled over every attack (``attack`` None in the summary)


def ratio(x: Any) -> str:
    """A cost ratio against the baseline as ``×2.00``; ``n/a`` when there is none (a baseline that cost nothing)."""
    return f"×{x:.2f}" if finite(x) else "n/a"


def ordered_costs(summary: dict, with_pooled: bool = False) -> list[dict]:
    """The summary's cost rows, by target, then the baseline defense first, then defense and attack. A row pooled
    over every attack is kept only with ``with_pooled`` or where the defense ran under more than one attack on that
    target (else it repeats the one attack's row)."""
    rows = [r for r in summary.get("costs") or [] if isinstance(r, dict)]
    baseline = (summary.get("run") or {}).get("baseline_defense", "none")
    attacks: dict[tuple[Any, Any], int] = {}
    for r in rows:
        if r.get("attack") is not None:
            attacks[(r.get("target"), r.get("defense"))] = attacks.get((r.get("target"), r.get("defense")), 0) + 1
    kept = [r for r in rows if r.get("attack") is not None or with_pooled
            or attacks.get((r.get("target"), r.get("defense")), 0) > 1]
    return sorted(kept, key=lambda r: (str(r.get("target")), r.get("defense") != baseline, str(r.get("defense")),
                                       r.get("attack") is None, str(r.get("attack"))))


def cost_section(summary: dict) -> Section | None:
    """The folded "Cost" section; None for a summary without costs (written before they were counted)."""
    rows = ordered_costs(summary)
    if not rows:
        return None
    baseline = str((summary.get("run") or {}).get("baseline_defense", "none"))
    labels = target_labels(summary)
    body = []
    for r in rows:
        vb = r.get("vs_baseline") or {}
        attack = ALL_ATTACKS if r.get("attack") is None else r.get("attack")
        cells = [num(r.get("calls"), 2), num(r.get("tokens"), 1), num(r.get("seconds"), 3),
                 num(r.get("judge_calls"), 2)]
        cells += [ratio(vb.get(f)) if vb else "—" for f in ("calls", "tokens", "seconds")]
        tgt = r.get("target")
        body.append(f"<tr><td title='{escape(tgt)}'>{escape(labels.get(tgt, tgt))}</td><td>{escape(r.get('defense'))}"
                    f"</td><td>{escape(attack)}</td><td class='num'>{escape(r.get('n'))}</td>"
                    + "".join(f"<td class='num'>{escape(c)}</td>" for c in cells) + "</tr>")
    b = escape(baseline)
    caption = (
        "<p class='caption muted'>Mean cost of one reply. <b>Target calls</b>: conversations the defended model "
        "answered for it (each perturbed copy of a SmoothVLM vote is one, however they were batched); <b>tokens</b>: "
        "prompt and completion tokens summed over those calls; <b>seconds</b>: their wall time, a batch's shared "
        "among its conversations, plus the defense's own judge calls; <b>judge calls</b>: the defense's own (an "
        "output filter's, a vote's), not the run's outcome judges. "
        f"<b>× {b}</b>: this defense's total over the {b} defense's on the same replies (same target, attack, "
        f"dataset and prompt). <i>{escape(ALL_ATTACKS)}</i> pools the attacks a defense ran under.</p>")
    table = table_wrap(
        "<table class='results costs'><thead><tr><th>Target</th><th>Defense</th><th>Attack</th>"
        "<th class='num'>Replies</th><th class='num'>Target calls</th><th class='num'>Tokens</th>"
        "<th class='num'>Seconds</th><th class='num'>Judge calls</th>"
        f"<th class='num'>× {b} calls</th><th class='num'>× {b} tokens</th><th class='num'>× {b} seconds</th>"
        f"</tr></thead><tbody>{''.join(body)}</tbody></table>")
    return Section("Cost a reply", caption + table, anchor="cost", folded=True, nav="Cost")
