"""The study engine: grids, blocks as resumable runs, rows re-owned by the current plan, paired comparisons."""

from __future__ import annotations

import pytest

from safeglass.config import ConfigError
from safeglass.study.engine import compare, expand_axes, prompt_rates, run_block

HEEDS = "sgtest_components:HeedsSystemPrompt"


def test_expand_axes():
    assert expand_axes({"s": [1, 2], "c": "x"}, "m") == [{"s": 1, "c": "x"}, {"s": 2, "c": "x"}]
    one = lambda k, v: k == "layers" and not all(isinstance(x, list) for x in v)  # noqa: E731
    assert expand_axes({"layers": [0, 1]}, "m", one) == [{"layers": [0, 1]}]
    assert expand_axes({"layers": [[0], [1]]}, "m", one) == [{"layers": [0]}, {"layers": [1]}]
    with pytest.raises(ConfigError, match=r"field 'm.s' is an empty list"):
        expand_axes({"s": []}, "m")


def block_config(defenses=("none", "safety_prompt"), target_id="heeds"):
    return {"name": "study-unit", "seed": 3, "targets": [{"name": HEEDS, "id": target_id}],
            "datasets": [{"name": "sgtest_components:load_unit", "id": "unit", "args": {"n": 60}}],
            "defenses": list(defenses), "judges": [{"name": "sgtest_components:PrefixRefusalJudge", "id": "prefix"}]}


def test_a_block_runs_resumes_and_compares_a_variant_with_its_base(tmp_path):
    first = run_block("b", block_config(), tmp_path / "b", source="study.yaml", progress=False)
    assert first.result.generated == 120 and first.provenance()["n_prompts"] == 60
    key = first.judges["prefix"]["key"]
    rates = prompt_rates(first.gens, key, kinds=("harmful",))
    base, sp = rates[("heeds", "none")], rates[("heeds", "safety_prompt")]
    assert base["n"] == sp["n"] == 30 and sp["rate"] > base["rate"]  # the double heeds a safety prompt
    cmp = compare(rates, ("heeds", "safety_prompt"), ("heeds", "none"), seed=0)
    assert cmp["delta"] == pytest.approx(sp["rate"] - base["rate"]) and cmp["ci_low"] <= cmp["delta"] <= cmp["ci_high"]
    assert compare(rates, ("heeds", "none"), ("heeds", "none")) is None
    # the same block under a renamed target id: nothing is generated again, and the rows follow the new id
    again = run_block("b", block_config(target_id="renamed"), tmp_path / "b", source="study.yaml", progress=False)
    assert again.result.generated == 0 and {g["target"] for g in again.gens} == {"renamed"}


def test_a_comparison_section_reads_like_the_report(tmp_path):
    from safeglass.reporting.html import render_report
    from safeglass.study.engine import comparison_rows, comparison_section

    block = run_block("b", block_config(), tmp_path / "b", source="study.yaml", progress=False)
    rates = prompt_rates(block.gens, block.judges["prefix"]["key"], kinds=("harmful",))
    rows = comparison_rows(rates, ("heeds", "none"), "refusal <script>")
    assert rows[0]["is_base"] and rows[0]["vs_base"] is None and rows[1]["vs_base"]["n_pairs"] == 30
    section = comparison_section("Defenses vs none", rows, base_label="none", anchor="study")
    assert "refusal &lt;script&gt;" in section.body and "<script>" not in section.body
    assert "base" in section.body and " pp [" in section.body
    from safeglass.eval.summary import build_summary

    summary, samples = build_summary(tmp_path / "b")
    assert "<section id='study'><h2>Defenses vs none</h2>" in render_report(summary, samples, sections=[section])
