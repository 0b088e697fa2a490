"""What a defense costs: target calls, tokens and seconds a reply from each reply's trace, beside the baseline
defense's, in the summary, the report and the docs' table script."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from sgtest_scripts import load_script

from safeglass.api import run
from safeglass.eval.metrics import cost_rows, sample_cost
from safeglass.eval.runner import STORE_NAME
from safeglass.eval.store import Store

HARM_JUDGE = "sgtest_components:CountingHarmJudge"
DELAY_S = 0.01  # every call of the double sleeps this long, so a reply's seconds count its calls


@pytest.fixture(scope="module")
def costed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """none, rapguard (two target calls a reply: a rationale, then the answer) and output_filter (one call and one
    judge call) on 6 harmful and 6 benign prompts, judged, summarised and reported."""
    out = tmp_path_factory.mktemp("costs") / "r"
    run({"name": "costs", "seed": 0, "chunk_size": 4,
         "targets": [{"name": "sgtest_components:HeedsSystemPrompt", "id": "heeds", "args": {"delay_s": DELAY_S}}],
         "datasets": [{"name": "sgtest_components:load_unit", "id": "unit", "args": {"n": 12}}],
         "defenses": ["none", "rapguard", {"name": "output_filter", "args": {"judge": HARM_JUDGE}}],
         "judges": [{"name": "sgtest_components:PrefixRefusalJudge", "id": "prefix"}]},
        out=out, progress=False)
    return out


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


def test_a_defense_that_calls_the_model_twice_costs_two_calls_a_reply_and_its_traced_tokens(costed_run):
    costs = {(c["defense"], c["attack"]): c for c in _summary(costed_run)["costs"]}
    none, rap, filt = costs[("none", "none")], costs[("rapguard", "none")], costs[("output_filter", "none")]
    assert (none["n"], rap["n"], filt["n"]) == (12, 12, 12)
    assert (none["calls"], rap["calls"], filt["calls"]) == (1.0, 2.0, 1.0)
    assert (none["judge_calls"], rap["judge_calls"], filt["judge_calls"]) == (0.0, 0.0, 1.0)
    assert none["vs_baseline"] is None
    assert rap["vs_baseline"]["baseline"] == "none" and rap["vs_baseline"]["n_pairs"] == 12
    assert rap["vs_baseline"]["calls"] == 2.0
    with Store(costed_run / STORE_NAME) as s:
        gens = {g["defense"]: [] for g in s.generations()}
        for g in s.generations():
            gens[g["defense"]].append(g)
    traced = [sum(t["prompt_tokens"] + t["completion_tokens"] for t in json.loads(g["provenance"])["trace"])
              for g in gens["rapguard"]]
    own = [g["prompt_tokens"] + g["completion_tokens"] for g in gens["rapguard"]]
    assert rap["tokens"] == pytest.approx(sum(traced) / 12)
    assert sum(traced) > sum(own)  # the stored reply carries only the answer's tokens; the rationale's are in its trace
    assert rap["tokens"] == pytest.approx(rap["prompt_tokens"] + rap["completion_tokens"])
    plain = sum(g["prompt_tokens"] + g["completion_tokens"] for g in gens["none"])
    assert none["tokens"] == pytest.approx(plain / 12)
    assert rap["vs_baseline"]["tokens"] == pytest.approx(sum(traced) / plain)
    # seconds: each call sleeps DELAY_S, so two calls take about twice one
    assert none["seconds"] >= DELAY_S and rap["seconds"] >= 2 * DELAY_S
    assert rap["vs_baseline"]["seconds"] == pytest.approx(2.0, rel=0.4)
    # one attack: the row pooled over every attack is the same figures
    assert {k: v for k, v in costs[("rapguard", None)].items() if k != "attack"} == \
        {k: v for k, v in rap.items() if k != "attack"}


def test_the_report_shows_the_cost_folded_beside_the_baseline(costed_run):
    html = (costed_run / "report.html").read_text(encoding="utf-8")
    start = html.index("<section id='cost' class='folded'><details>")
    table = html[start:html.index("</section>", start)]
    assert "× none calls" in table and "×2.00" in table
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in table.split("<tr>")[2:]]
    # baseline first; one attack, so no row pooled over every attack (it would repeat that attack's)
    assert [r[1:3] for r in rows] == [["none", "none"], ["output_filter", "none"], ["rapguard", "none"]]
    assert [r[4] for r in rows] == ["1.00", "1.00", "2.00"] and [r[7] for r in rows] == ["0.00", "1.00", "0.00"]
    assert rows[2][8] == "×2.00" and rows[0][8:] == ["—"] * 3


def test_the_defenses_table_script_prints_rates_with_intervals_and_costs_beside_none(costed_run):
    summary = _summary(costed_run)
    text = load_script("defenses_table").table(summary, "prefix")
    lines = text.splitlines()
    assert lines[0] == ("| target | defense | attack success: unit | over-refusal: unit | target calls a sample | "
                        "tokens a sample | seconds a sample | × none (calls / tokens / seconds) |")
    body = {line.split(" | ")[1]: line.strip("| ").split(" | ") for line in lines[2:5]}
    assert list(body) == ["none", "rapguard", "output_filter"]  # baseline, then the config's order
    key = next(j["key"] for j in summary["judges"] if j["id"] == "prefix")
    asr = next(r for r in summary["rows"] if r["defense"] == "rapguard" and r["metric"] == "attack_success"
               and r["judge"] == key and r["category"] is None)
    assert body["rapguard"][2] == (f"{100 * asr['value']:.1f} % [{100 * asr['ci_low']:.1f}, "
                                   f"{100 * asr['ci_high']:.1f}]")
    assert body["none"][4] == "1.00" and body["rapguard"][4] == "2.00" and body["none"][7] == "—"
    assert body["rapguard"][7].startswith("×2.00 / ×")
    assert "Judge: prefix" in lines[-1]
    with pytest.raises(SystemExit, match="keyword-refusal.*its judges: prefix"):
        load_script("defenses_table").table(summary, "keyword-refusal")


def test_the_demo_table_script_reads_the_same_rows(costed_run, monkeypatch, capsys):
    demo = load_script("demo_table")
    monkeypatch.setattr(demo, "COLUMNS", (("unit", "unit", "none", "attack_success", "refusal"),))
    monkeypatch.setattr(sys, "argv", ["demo_table", str(costed_run / "summary.json"), "--judge", "prefix"])
    demo.main()
    lines = capsys.readouterr().out.splitlines()
    summary = _summary(costed_run)
    key = next(j["key"] for j in summary["judges"] if j["id"] == "prefix")
    want = {r["defense"]: f"{100 * r['value']:.1f} %" for r in summary["rows"]
            if r["metric"] == "attack_success" and r["judge"] == key and r["category"] is None}
    assert lines[:2] == ["| target | defense | unit |", "| --- | --- | --- |"]
    assert lines[2:] == [f"| heeds-system | {d} | {want[d]} |" for d in ("none", "output_filter", "rapguard")]


def test_a_reply_without_a_trace_is_one_call_and_a_defense_judge_adds_its_seconds():
    stored = {"prompt_tokens": 7, "completion_tokens": 5, "seconds": 0.5, "provenance": json.dumps({})}
    assert sample_cost(stored) == {"calls": 1.0, "prompt_tokens": 7.0, "completion_tokens": 5.0, "tokens": 12.0,
                                   "seconds": 0.5, "judge_calls": 0.0}
    trace = [{"role": "copy", "prompt_tokens": 3, "completion_tokens": 2, "seconds": 0.25}] * 3 + \
        [{"role": "vote judge", "judge": "keyword-refusal", "flag": True, "score": 1.0, "seconds": 0.125}] * 3
    voted = {**stored, "provenance": json.dumps({"trace": trace})}
    assert sample_cost(voted) == {"calls": 3.0, "prompt_tokens": 9.0, "completion_tokens": 6.0, "tokens": 15.0,
                                  "seconds": 1.125, "judge_calls": 3.0}


def _gen(defense: str, sid: str, tokens: int, attack: str = "none") -> dict:
    return {"target": "t", "defense": defense, "attack": attack, "dataset": "d", "sample_id": sid,
            "sample": json.dumps({"metadata": {}}), "prompt_tokens": tokens, "completion_tokens": 0, "seconds": 1.0,
            "provenance": "{}"}


def test_the_ratio_compares_the_replies_both_defenses_made_and_pools_attacks():
    gens = [_gen("none", s, 10) for s in "abcd"] + [_gen("none", "a", 40, "jb")]
    gens += [_gen("d2", "a", 30), _gen("d2", "b", 30), _gen("d2", "a", 40, "jb")]
    rows = {(r["defense"], r["attack"]): r for r in cost_rows(gens, baseline="none")}
    # d2 answered 2 of none's 4 prompts: its mean is over those 2, its ratio against none's on the same 2
    assert rows[("d2", "none")]["tokens"] == 30.0 and rows[("d2", "none")]["vs_baseline"]["tokens"] == 3.0
    assert rows[("d2", "none")]["vs_baseline"]["n_pairs"] == 2
    assert rows[("d2", "jb")]["vs_baseline"]["tokens"] == 1.0
    pooled = rows[("d2", None)]
    assert pooled["n"] == 3 and pooled["tokens"] == pytest.approx(100 / 3)
    assert pooled["vs_baseline"]["tokens"] == pytest.approx(100 / 60) and pooled["vs_baseline"]["n_pairs"] == 3
    assert rows[("none", None)]["n"] == 5 and rows[("none", None)]["vs_baseline"] is None


def test_the_cost_section_escapes_what_the_run_named():
    from safeglass.reporting.costs import cost_section

    evil = "<script>alert(1)</script>"
    row = {"target": evil, "defense": evil, "attack": "none", "n": 1, "calls": 1.0, "tokens": 3.0, "seconds": 0.1,
           "judge_calls": 0.0, "vs_baseline": {"baseline": "none", "n_pairs": 1, "calls": 1.0, "tokens": 0.5,
                                               "seconds": None}}
    section = cost_section({"run": {"baseline_defense": "none"}, "targets": [{"name": evil, "label": evil}],
                            "costs": [row]})
    assert section is not None and section.folded and "<script>" not in section.body
    assert "&lt;script&gt;" in section.body and "×0.50" in section.body and "n/a" in section.body
    assert cost_section({"rows": []}) is None  # a summary written before costs were counted
