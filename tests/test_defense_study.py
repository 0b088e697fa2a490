"""`safeglass study defenses`: the study compiles to one run, its figures come from the stored replies, a re-run
generates nothing, the selector is fitted on one split and measured on the other, and the page renders."""

from __future__ import annotations

import json
import re

import pytest
from sgtest_scripts import load_script

from safeglass.config import ConfigError
from safeglass.study.defense_study import (
    ADAPTIVE_CLASS,
    compile_run,
    format_summary,
    pareto_front,
    parse_study_config,
    run_study,
)

HEEDS = "sgtest_components:HeedsSystemPrompt"
UNIT = "sgtest_components:load_unit"
PREFIX = "sgtest_components:PrefixRefusalJudge"
SIGNAL = {"name": "sgtest_components:WordSignal", "id": "template", "args": {"word": "Do not apologize"}}


def study_config(**changes):
    cfg = {"name": "unit-study", "seed": 0, "targets": [{"name": HEEDS, "id": "heeds"}],
           "datasets": [{"name": UNIT, "id": "unit", "args": {"n": 40}}],
           "configurations": ["none", "safety_prompt"],
           "attack_classes": {"direct": [{"attack": "none", "datasets": ["unit"]}],
                              "text-jailbreak": [{"attack": "text-jailbreak", "datasets": ["unit"]}]},
           "benign": ["unit"], "judge": {"name": PREFIX, "id": "prefix"},
           "selector": {"signals": [SIGNAL], "fit_share": 0.5}}
    cfg.update(changes)
    return cfg


def test_the_study_compiles_to_one_run_with_classes_scoped_to_their_datasets():
    study, raw, source = parse_study_config(study_config(adaptive_attack={
        "attack": {"name": "sgtest_components:CountingWhiteBox"}, "datasets": ["unit"],
        "through": ["none", "safety_prompt"]}))
    run, class_of = compile_run(study, raw)
    assert run["defenses"] == ["none", "safety_prompt"] and run["primary_judge"] == "prefix"
    assert run["attacks"][0] == {"name": "none", "id": "none", "datasets": ["unit"]}
    assert class_of == {("none", "unit"): "direct", ("text-jailbreak", "unit"): "text-jailbreak",
                        ("sgtest_components:CountingWhiteBox>safety_prompt", "unit"): ADAPTIVE_CLASS}
    adaptive = run["attacks"][-1]
    # through `none` is the plain attack, left out; through the safety prompt it is answered under that one only
    assert adaptive["defenses"] == ["safety_prompt"] and adaptive["args"]["through"] == "safety_prompt"


def test_a_study_config_names_the_file_and_field_of_each_problem():
    bad = study_config(benign=["nope"], baseline="sp")
    bad["attack_classes"]["text-jailbreak"][0]["datasets"] = ["unitt"]
    with pytest.raises(ConfigError) as err:
        parse_study_config(bad, "study.yaml")
    text = str(err.value)
    assert "study.yaml: field 'benign[0]': 'nope' is not one of the datasets' ids" in text
    assert "field 'attack_classes.text-jailbreak[0].datasets[0]': 'unitt'" in text and "did you mean 'unit'" in text
    assert "field 'baseline': 'sp' is not one of the configurations' ids" in text


def test_an_attack_scoped_to_a_defense_is_answered_under_it_alone():
    from safeglass.config import parse_config
    from safeglass.eval.plan import build_plan

    cfg = parse_config({"name": "scoped", "targets": [{"name": HEEDS, "id": "heeds"}],
                        "datasets": [{"name": UNIT, "id": "unit", "args": {"n": 4}}],
                        "defenses": ["none", "safety_prompt"],
                        "attacks": ["none", {"name": "text-jailbreak", "defenses": ["safety_prompt"]}]})
    plan = build_plan(cfg)
    pairs = {(it.defense, it.attack) for it in plan.items}
    assert pairs == {("none", "none"), ("safety_prompt", "none"), ("safety_prompt", "text-jailbreak")}
    with pytest.raises(ConfigError, match=re.escape("field 'attacks[1].defenses[0]': 'sp' is not one of")):
        parse_config({**cfg.raw, "attacks": ["none", {"name": "text-jailbreak", "defenses": ["sp"]}]})


def test_the_study_runs_resumes_and_reports(tmp_path):
    from safeglass.defenses.selector_rule import load_selector

    res = run_study(*parse_study_config(study_config()), tmp_path / "s", progress=False)
    data = res["data"]
    assert data["provenance"]["run"]["generated"] == 2 * (40 + 40)  # 2 configurations x (40 plain + 40 templated)
    rows = {(r["configuration"], r["attack_class"]): r for r in data["class_rows"] if r["category"] is None}
    # the double refuses 3 in 10 requests without a system prompt and 8 in 10 with one
    success = {k: r["attack_success"]["rate"] for k, r in rows.items()}
    assert success[("safety_prompt", "direct")] < success[("none", "direct")]
    assert rows[("none", "direct")]["attack_success"]["n"] == 20
    assert rows[("safety_prompt", "direct")]["vs_baseline"]["n_pairs"] == 20
    over = {r["configuration"]: r["over_refusal"] for r in data["over_refusal"]}
    assert over["safety_prompt"]["rate"] > over["none"]["rate"] and over["none"]["n"] == 20
    assert {w["attack_class"] for w in data["winners"]} == {"direct", "text-jailbreak"}
    assert all(w["configuration"] == "safety_prompt" for w in data["winners"])
    assert data["pareto_front"]["heeds"] == ["none", "safety_prompt"]  # each is better on one axis
    costs = {r["configuration"]: r for r in data["costs"]}
    assert costs["none"]["calls"] == costs["safety_prompt"]["calls"] == 1.0
    # the selector: fitted on one half, measured on the other, its file keyed by content and readable again
    sel = data["selector"]["heeds"]
    assert sel["n_fit"] + sel["n_eval"] == 60 and sel["n_fit"] > 0 and sel["n_eval"] > 0
    fitted = load_selector(sel["file"])
    assert fitted["rule"] == sel["rule"] and set(fitted["configurations"]) == {"none", "safety_prompt"}
    assert not set(fitted["fit"]["sample_ids"]) & set(fitted["fit"]["eval_sample_ids"])
    # every jailbreak-templated input (signal on) is harmful here: the rule sends them to the safety prompt
    assert sel["rule"]["cells"]["template=1"]["configuration"] == "safety_prompt"
    page = res["paths"]["html"].read_text(encoding="utf-8")
    for anchor in ("study-table", "study-pareto", "study-winners", "study-cost", "study-selector"):
        assert f"id='{anchor}'" in page
    assert "<svg class=\"chart scatter\"" in page and "adaptive selector" in page
    assert "success: text-jailbreak" in format_summary(data)
    # the Markdown tables the docs print (scripts/study_table.py): one row per configuration, the front starred,
    # and the selector beside every fixed configuration with its verdict
    table = load_script("study_table")
    lines = table.study_table(data).splitlines()
    assert len(lines) == 2 + 2 and "text-jailbreak: attack success" in lines[0]
    none_row = next(line for line in lines if "| none *" in line)
    assert f"({rows[('none', 'direct')]['attack_success']['k']}/20)" in none_row
    sel_lines = table.selector_table(data).splitlines()
    assert len(sel_lines) == 2 + 1 + 2 and "adaptive (selector)" in sel_lines[2]
    assert all(line.endswith(("| yes |", "| no |")) for line in sel_lines[3:])
    # a finished study re-run generates nothing and reads the signals from its cache
    again = run_study(*parse_study_config(study_config()), tmp_path / "s", progress=False)
    assert again["data"]["provenance"]["run"]["generated"] == 0
    assert json.loads((tmp_path / "s" / "study.json").read_text())["winners"] == data["winners"]


def test_the_pareto_front_keeps_what_nothing_beats_on_both_axes():
    assert pareto_front({"a": (0.1, 0.5), "b": (0.5, 0.1), "c": (0.5, 0.5), "d": (0.1, 0.5)}) == {"a", "b", "d"}


@pytest.mark.browser
def test_the_study_page_shows_its_plot_and_winners_in_a_browser(tmp_path):
    from conftest import require

    from safeglass.reporting.browser import find_chromium, open_page

    require(find_chromium() is not None, "headless Chromium",
            "run scripts/ensure-chromium.sh or set SAFEGLASS_CHROMIUM")
    config = study_config(name="unit <script>document.title='PWNED'</script>")
    res = run_study(*parse_study_config(config), tmp_path / "s", progress=False)
    box = ("(() => { const e = document.querySelector(SEL); if (!e) return null; const r = e.getBoundingClientRect();"
           " return [r.width, r.height, getComputedStyle(e).visibility]; })()")
    page = open_page(res["paths"]["html"], evaluate=[box.replace("SEL", "'#study-pareto svg.scatter'"),
                                                     box.replace("SEL", "'#study-winners table'"),
                                                     "document.querySelectorAll('#study-winners tbody tr').length",
                                                     "document.querySelectorAll('#study-pareto circle.point').length"])
    assert not page.errors and not page.external_requests and page.title != "PWNED"
    plot, winners, n_winners, n_points = page.values
    assert plot[0] > 200 and plot[1] > 200 and plot[2] == "visible"
    assert winners[0] > 100 and winners[1] > 20 and winners[2] == "visible"
    assert n_winners == 2 and n_points == 3  # two classes; none, safety_prompt and the selector
