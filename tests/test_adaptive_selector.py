"""The adaptive selector (issue 31): a rule fitted per combination of cheap signals, saved by content, applied per
input by the ``adaptive`` defense with each choice explained in the trace."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import subprocess_env

from safeglass.api import run
from safeglass.defenses.adaptive import Adaptive
from safeglass.defenses.context import DefenseContext
from safeglass.defenses.selector_rule import SelectorError, choose, load_selector
from safeglass.eval.metrics import sample_cost
from safeglass.eval.plan import defense_key
from safeglass.eval.runner import STORE_NAME, build_component
from safeglass.eval.store import Store
from safeglass.registry import registry
from safeglass.study.selector import evaluate, fit_selector, save_selector, split_rows
from safeglass.types import GenerationParams, Sample

SIGNAL = "sgtest_components:WordSignalJudge"
OCR = [{"id": "ocr", "judge": SIGNAL, "args": {"word": "typed"}}]
CONFIGS = {"none": ["none"], "A": [{"name": "safety_prompt", "args": {"prompt": "SYSTEM-A"}}],
           "B": [{"name": "safety_prompt", "args": {"prompt": "SYSTEM-B"}}]}


def row(i: int, kind: str, ocr: bool, bad: dict[str, int], attack: str = "typo") -> dict:
    return {"sample_id": f"{kind}-{int(ocr)}-{i}", "kind": kind, "attack_class": attack, "signals": {"ocr": ocr},
            "bad": bad}


def synthetic() -> list[dict]:
    """With text in the image only A stops the attack (none and B fail); without it, none is as safe and refuses
    no benign request, while A and B over-refuse."""
    rows = []
    for i in range(6):
        rows.append(row(i, "harmful", True, {"none": 1, "A": 0, "B": 1}))
        rows.append(row(i, "benign", True, {"none": 0, "A": 0, "B": 0}))
        rows.append(row(i, "harmful", False, {"none": 0, "A": 0, "B": 0}, attack="text"))
        rows.append(row(i, "benign", False, {"none": 0, "A": 1, "B": 1}, attack="text"))
    return rows


def fitted(**kw) -> dict:
    return fit_selector(synthetic(), CONFIGS, OCR, target="tiny-llama", **kw)


def test_the_fitted_rule_picks_per_cell_falls_back_to_the_best_overall_and_breaks_ties_by_cost():
    sel = fitted()
    cells = sel["rule"]["cells"]
    assert cells["ocr=1"]["configuration"] == "A" and cells["ocr=0"]["configuration"] == "none"
    assert cells["ocr=1"] | {"runner_up": None} == {"configuration": "A", "harmful_bad": 0, "benign_bad": 0, "loss": 0,
                                                   "n_harmful": 6, "n_benign": 6, "runner_up": None}
    assert cells["ocr=1"]["runner_up"]["configuration"] == "none"  # ties with B at 6, listed first
    # over all rows: none fails 6, A 6, B 12; A and none tie, none listed first
    assert sel["rule"]["fallback"] == "none"
    assert fitted(costs={"none": 2.0, "A": 1.0})["rule"]["fallback"] == "A"  # the tie goes to the cheaper
    # without text, A and B tie at 6 over-refusals: the cheaper wins, whatever the order
    tie = fit_selector([r for r in synthetic() if not r["signals"]["ocr"]], {"A": CONFIGS["A"], "B": CONFIGS["B"]},
                       OCR, target="t", costs={"A": 3.0, "B": 1.0})
    assert tie["rule"]["cells"]["ocr=0"]["configuration"] == "B"
    # benign failures weighted to nothing: in the no-text cell every configuration is safe, so the one better over
    # all rows decides (A: none lets the 6 text attacks through)
    assert fitted(weight_benign=0.0)["rule"]["cells"]["ocr=0"]["configuration"] == "A"
    assert sel["fit"]["n"] == {"rows": 24, "harmful": 12, "benign": 12} and sel["target"] == "tiny-llama"


def test_choose_explains_its_pick_and_uses_the_fallback_for_a_cell_never_seen():
    sel = fitted()
    cid, why = choose(sel, {"ocr": True})
    assert cid == "A" and why["cell"] == "ocr=1" and not why["fallback"] and why["fitted"]["n_harmful"] == 6
    only_text = fit_selector([r for r in synthetic() if not r["signals"]["ocr"]], CONFIGS, OCR, target="t")
    cid, why = choose(only_text, {"ocr": True})
    assert cid == only_text["rule"]["fallback"] == "none" and why["fallback"] and "fitted" not in why
    with pytest.raises(KeyError, match="ocr"):
        choose(sel, {})


def test_the_split_is_disjoint_by_sample_stratified_and_recorded():
    rows = synthetic()
    fit, held = split_rows(rows, fit_share=0.5, seed=3)
    assert {r["sample_id"] for r in fit}.isdisjoint(r["sample_id"] for r in held) and len(fit) + len(held) == 24
    strata = {(r["kind"], r["attack_class"]) for r in rows}
    assert {(r["kind"], r["attack_class"]) for r in fit} == strata == {(r["kind"], r["attack_class"]) for r in held}
    assert split_rows(list(reversed(rows)), 0.5, 3)[0] == list(reversed(fit))  # row order does not matter
    assert split_rows(rows, 0.5, 4) != (fit, held)  # the seed does
    sel = fit_selector(fit, CONFIGS, OCR, target="t", eval_sample_ids=[r["sample_id"] for r in held])
    assert sel["fit"]["sample_ids"] == sorted(r["sample_id"] for r in fit)
    assert sel["fit"]["eval_sample_ids"] == sorted(r["sample_id"] for r in held)
    with pytest.raises(ValueError, match="also fitting"):
        fit_selector(fit, CONFIGS, OCR, target="t", eval_sample_ids=[fit[0]["sample_id"]])


def test_evaluate_compares_with_each_fixed_configuration_on_held_out_rows():
    rows = synthetic()
    fit, held = split_rows(rows, seed=0)
    sel = fit_selector(fit, CONFIGS, OCR, target="t", eval_sample_ids=[r["sample_id"] for r in held])
    res = evaluate(sel, held)
    assert res["overlap_with_fit"] == 0 and evaluate(sel, fit)["overlap_with_fit"] > 0
    assert res["selector"]["attack_success"]["rate"] == 0.0 and res["selector"]["over_refusal"]["rate"] == 0.0
    assert res["selector"]["attack_success"]["ci_low"] == 0.0 < res["selector"]["attack_success"]["ci_high"]
    assert res["fixed"]["none"]["attack_success"]["rate"] > 0 and res["fixed"]["A"]["over_refusal"]["rate"] > 0
    assert all(res["fixed"][c]["dominates"] for c in CONFIGS)
    assert res["fixed"]["none"]["paired"]["attack_success"]["delta"] < 0
    assert res["fixed"]["none"]["paired"]["over_refusal"]["delta"] == 0
    assert set(res["selector"]["per_attack_class"]) == {"typo", "text"}
    assert res["picks"]["B"] == 0 and abs(res["picks"]["A"] + res["picks"]["none"] - 1) < 1e-9
    assert not _self_dominates(sel, held)


def _self_dominates(sel: dict, rows: list[dict]) -> bool:
    """A selector that always picks A against fixed A: equal, so no domination."""
    always_a = {**sel, "rule": {"cells": {}, "fallback": "A"}}
    return evaluate(always_a, rows)["fixed"]["A"]["dominates"]


def test_a_saved_selector_round_trips_under_a_name_by_content(tmp_path):
    sel = fitted()
    path = save_selector(sel, tmp_path)
    assert path.name.startswith("selector-") and len(path.stem) == len("selector-") + 16
    assert load_selector(path) == sel
    assert save_selector(json.loads(path.read_text()), tmp_path / "again").name == path.name
    assert save_selector(fitted(weight_benign=2.0), tmp_path).name != path.name


@pytest.mark.parametrize(("edit", "field"), [
    (lambda s: s.pop("rule"), "'rule'"),
    (lambda s: s.update(format="other-tool"), "'format'"),
    (lambda s: s.update(version=9), "'version'"),
    (lambda s: s["rule"]["cells"]["ocr=1"].update(configuration="Z"), "'rule.cells.ocr=1.configuration'"),
    (lambda s: s["rule"].update(fallback="Z"), "'rule.fallback'"),
    (lambda s: s["rule"]["cells"].update({"harm=1": {"configuration": "A"}}), "'rule.cells.harm=1'"),
    (lambda s: s["signals"][0].pop("judge"), "'signals[0].judge'"),
    (lambda s: s["configurations"].update(A=[]), "'configurations.A'"),
])
def test_a_broken_selector_file_names_the_file_and_the_field(tmp_path, edit, field):
    sel = fitted()
    edit(sel)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(sel), encoding="utf-8")
    with pytest.raises(SelectorError, match=r"broken\.json: field " + re.escape(field)):
        load_selector(path)
    with pytest.raises(SelectorError, match="broken.json"):
        Adaptive(str(path))


def test_an_unknown_defense_in_a_configuration_names_the_file_and_configuration(tmp_path):
    sel = fitted()
    sel["configurations"]["B"] = ["no-such-defense"]
    path = tmp_path / "s.json"
    path.write_text(json.dumps(sel), encoding="utf-8")
    with pytest.raises(SelectorError, match=r"s\.json: field 'configurations\.B'.*no-such-defense"):
        Adaptive(str(path))


def test_the_key_follows_the_file_content_and_lists_the_signal_judges(tmp_path):
    path = save_selector(fitted(), tmp_path)
    key = defense_key(Adaptive(str(path)))
    assert key["selector_file"] == {"sha256": key["selector_file"]["sha256"]}  # by content, not path
    assert {"role": "signal ocr", "name": SIGNAL, "args": {"word": "typed"}} in key["uses"]
    moved = tmp_path / "elsewhere.json"
    moved.write_text(path.read_text())
    assert defense_key(Adaptive(str(moved))) == key
    moved.write_text(path.read_text().replace("SYSTEM-A", "SYSTEM-A2"))
    edited = defense_key(Adaptive(str(moved)))
    assert edited != key and edited["configurations"]["A"]["prompt"] == "SYSTEM-A2"


def _selector_file(tmp_path: Path, configurations: dict | None = None) -> str:
    return str(save_selector(fit_selector(synthetic(), configurations or CONFIGS, OCR, target="t"), tmp_path))


def _ready(target, tmp_path, configurations=None) -> tuple[Adaptive, DefenseContext]:
    d = Adaptive(_selector_file(tmp_path, configurations))
    ctx = DefenseContext(target, build_component)
    d.setup(ctx)
    return d, ctx


TEXTS = ["plain question one", "an image with typed words", "typed text again", "plain question two"]


def test_the_adaptive_defense_on_a_tiny_model_routes_each_sample_and_traces_why(tmp_path):
    target = registry("targets").build("tiny", family="llama")
    d, ctx = _ready(target, tmp_path)
    samples = [Sample.from_text(f"s{i}", t) for i, t in enumerate(TEXTS)]
    ctx.begin(samples)
    gens = d.generate(target, samples, GenerationParams(max_new_tokens=3))
    assert len(gens) == 4
    expected = ["none", "A", "A", "none"]  # the signal is on for "typed"
    for i, (s, g, trace) in enumerate(zip(samples, gens, ctx.traces, strict=True)):
        assert [t["role"] for t in trace] == ["signal ocr", "selector", "model"]
        assert trace[0]["flag"] == ("typed" in s.prompt)
        entry = trace[1]["selector"]
        assert entry["configuration"] == expected[i] == g.extra["selector"]["configuration"]
        assert entry["cell"] == f"ocr={int('typed' in s.prompt)}" and entry["fallback"] is False
        assert trace[1]["note"].startswith(expected[i] + ":")
        sent = trace[2]["sent"]
        assert sent[-1]["text"] == s.prompt  # this sample's own call, whatever group it went in
        assert (sent[0]["role"], sent[0]["text"]) == (("system", "SYSTEM-A") if expected[i] == "A"
                                                      else ("user", s.prompt))
        assert trace[2]["reply"] == g.text  # the outputs come back in input order


def test_a_fan_out_inside_a_chosen_configuration_traces_under_its_own_samples(tmp_path):
    target = registry("targets").build("echo")
    configs = {"none": ["none"], "A": ["safety_prompt", "sgtest_components:FanOut"], "B": ["none"]}
    d, ctx = _ready(target, tmp_path, configs)
    samples = [Sample.from_text(f"s{i}", t) for i, t in enumerate(TEXTS)]
    ctx.begin(samples)
    d.generate(target, samples, GenerationParams())
    for s, trace in zip(samples, ctx.traces, strict=True):
        calls = [t for t in trace if "sent" in t]
        if "typed" in s.prompt:
            assert [t["sent"][-1]["text"] for t in calls] == [s.prompt, s.prompt.upper()]
            assert all(t["sent"][0]["role"] == "system" for t in calls)
        else:
            assert [t["sent"][-1]["text"] for t in calls] == [s.prompt]


def test_a_run_stores_the_choice_and_counts_the_choice_as_no_model_call(tmp_path):
    path = _selector_file(tmp_path)
    cfg = {"name": "adaptive", "seed": 0, "chunk_size": 3,
           "targets": [{"name": "sgtest_components:HeedsSystemPrompt", "id": "heeds"}],
           "datasets": [{"name": "sgtest_components:load_unit", "id": "unit", "args": {"n": 4}}],
           "defenses": [{"name": "adaptive", "args": {"selector_file": path}}], "judges": []}
    run(cfg, out=tmp_path / "r", report=False, judge=False, progress=False)
    with Store(tmp_path / "r" / STORE_NAME) as s:
        rows = list(s.generations())
    assert len(rows) == 4
    for r in rows:
        prov = json.loads(r["provenance"])
        assert prov["extra"]["selector"]["configuration"] == "none"  # no "typed" in load_unit's prompts
        assert [t["role"] for t in prov["trace"]] == ["signal ocr", "selector", "model"]
        assert sample_cost(r)["calls"] == 1.0 and sample_cost(r)["judge_calls"] == 1.0


def test_adaptive_is_listed_with_its_option():
    assert registry("defenses").options("adaptive").names == ["selector_file"]
    out = subprocess.run([sys.executable, "-m", "safeglass", "list", "defenses"], env=subprocess_env(),
                         capture_output=True, text=True, check=True).stdout
    assert "adaptive" in out and "selector_file" in out
    docs = (Path(__file__).resolve().parents[1] / "docs" / "components.md").read_text(encoding="utf-8")
    assert "adaptive" in docs and "selector_file" in docs
