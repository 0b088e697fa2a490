"""Defenses with a context: judges and helpers built at generation time, their identity in the key, chains,
the Sample in view, and every sub-call traced."""

from __future__ import annotations

import json

import pytest
import sgtest_components as comps

from safeglass.api import run
from safeglass.config import ConfigError, parse_config
from safeglass.defenses.base import SafetyPrompt
from safeglass.defenses.chain import Chain
from safeglass.defenses.context import DefenseContext, Stage
from safeglass.eval.plan import build_plan, defense_key
from safeglass.eval.runner import STORE_NAME, build_component
from safeglass.eval.store import Store
from safeglass.options import UnknownOptionError
from safeglass.registry import registry
from safeglass.types import GenerationParams, Sample

JUDGE = "sgtest_components:CountingHarmJudge"


def config(defenses, n=12, targets=None):
    return {"name": "ctx", "seed": 1, "chunk_size": 4,
            "targets": targets or [{"name": "sgtest_components:HeedsSystemPrompt", "id": "heeds"}],
            "datasets": [{"name": "sgtest_components:load_unit", "id": "unit", "args": {"n": n}}],
            "defenses": defenses, "judges": [{"name": "sgtest_components:PrefixRefusalJudge", "id": "prefix"}]}


def _rows(out):
    with Store(out / STORE_NAME) as s:
        return list(s.generations())


def test_output_filter_judges_at_generation_time_only_and_traces_each_call(tmp_path):
    comps.BUILT.clear()
    cfg = config([{"name": "output_filter", "args": {"judge": {"name": JUDGE, "args": {"version": "1"}}}}],
                 targets=[{"name": "sgtest_components:HeedsSystemPrompt", "id": "a"},
                          {"name": "sgtest_components:HeedsSystemPrompt", "id": "b"}])
    run(cfg, out=tmp_path / "r", dry_run=True, progress=False)
    assert comps.BUILT == []  # a dry run builds no judge
    run(cfg, out=tmp_path / "r", report=False, judge=False, progress=False)
    assert comps.BUILT == ["judge:1"]  # one build, shared by both targets
    rows = _rows(tmp_path / "r")
    withheld = [r for r in rows if r["finish_reason"] == "filtered"]
    assert withheld and all(r["response"] == "I'm sorry, but I can't help with that." for r in withheld)
    assert not any(r["response"].startswith("Sure") for r in rows)
    for r in rows:
        trace = json.loads(r["provenance"])["trace"]
        assert [t["role"] for t in trace] == ["model", "output judge"]
        assert trace[0]["sent"][-1]["text"] == r["prompt"] and trace[1]["judge"] == JUDGE
        assert trace[1]["flag"] == (r["finish_reason"] == "filtered")


def test_the_judge_a_defense_uses_enters_its_key_and_plain_defenses_keep_theirs():
    def keys(defense):
        return {it.key for it in build_plan(parse_config(config([defense]))).items}

    v1 = keys({"name": "output_filter", "args": {"judge": {"name": JUDGE, "args": {"version": "1"}}}})
    v2 = keys({"name": "output_filter", "args": {"judge": {"name": JUDGE, "args": {"version": "2"}}}})
    assert v1.isdisjoint(v2)
    assert defense_key(SafetyPrompt()) == SafetyPrompt().config()  # nothing used: the key made before contexts
    assert defense_key(registry("defenses").build("output_filter", judge=JUDGE))["uses"] == [
        {"role": "output judge", "name": JUDGE, "args": {}}]


def test_a_chain_of_one_is_its_step_and_longer_chains_nest_in_order():
    one = Chain(["safety_prompt"])
    assert one.config() == SafetyPrompt().config()
    outer, inner = SafetyPrompt("OUTER"), SafetyPrompt("INNER")
    chain = Chain([{"name": "safety_prompt", "args": {"prompt": "OUTER"}},
                   {"name": "safety_prompt", "args": {"prompt": "INNER"}}])
    assert chain.config() == {"name": "chain", "steps": [outer.config(), inner.config()]}
    echo = registry("targets").build("echo")
    seen = []
    echo.generate = lambda convs, params, _g=echo.generate: seen.extend(convs) or _g(convs, params)
    chain.generate(echo, [Sample.from_text("s1", "hello")], GenerationParams())
    assert seen[0][0].role == "system" and seen[0][0].text == "INNER\n\nOUTER"  # the inner step is nearer the model


def test_chain_shorthand_in_a_run_config_and_its_errors():
    cfg = parse_config(config([{"id": "sp+filter", "chain": ["safety_prompt", {"name": "output_filter",
                                                                                "args": {"judge": JUDGE}}]}]))
    assert cfg.defenses[0].name == "chain" and cfg.defenses[0].id == "sp+filter"
    with pytest.raises(ConfigError, match="needs an 'id'"):
        parse_config(config([{"chain": ["safety_prompt"]}]))
    with pytest.raises(ValueError, match="nested chain"):
        Chain([{"name": "chain", "args": {"steps": ["none"]}}])


def test_a_fan_out_inside_a_chain_traces_under_the_right_samples(tmp_path):
    comps.FanOut.seen.clear()
    cfg = config([{"id": "sp+fan", "chain": ["safety_prompt", "sgtest_components:FanOut"]}], n=6)
    run(cfg, out=tmp_path / "r", report=False, judge=False, progress=False)
    rows = _rows(tmp_path / "r")
    assert sorted(comps.FanOut.seen) == sorted((r["sample_id"], r["kind"]) for r in rows)  # it saw the Samples
    for r in rows:
        trace = json.loads(r["provenance"])["trace"]
        assert [t["role"] for t in trace] == ["copy", "copy"]
        texts = [t["sent"][-1]["text"] for t in trace]
        assert texts == [r["prompt"], r["prompt"].upper()]  # both copies of this sample, none of another's
        assert trace[0]["sent"][0]["role"] == "system"  # what the chain actually sent: the safety prompt too


def test_output_filter_refuses_a_refusal_judge_at_setup():
    f = registry("defenses").build("output_filter", judge="sgtest_components:PrefixRefusalJudge")
    ctx = DefenseContext(registry("targets").build("echo"), build_component)
    with pytest.raises(ValueError, match="measures 'refusal'"):
        f.setup(ctx)


def test_a_stage_works_outside_a_run():
    stage = Stage(SafetyPrompt("P"), registry("targets").build("echo"))
    (g,) = stage.generate([Sample.from_text("x", "hi").turns], GenerationParams())
    assert "hi" in g.text


def test_a_proxy_judge_a_defense_uses_is_keyed_by_its_weights(tmp_path):
    import shutil

    from safeglass.judges.proxy_files import weights_dir

    def key(weights=None):
        args = {} if weights is None else {"weights": str(weights)}
        return defense_key(registry("defenses").build("output_filter", judge={"name": "proxy-harm", "args": args}))

    shipped = key()["uses"][0]["args"]["weights"]
    copy = tmp_path / "heads"
    shutil.copytree(weights_dir(), copy)
    assert key(copy)["uses"][0]["args"]["weights"] == shipped  # same files elsewhere: same key
    card = copy / "proxy_card.json"
    card.write_text(card.read_text() + " ")
    assert key(copy)["uses"][0]["args"]["weights"] != shipped  # a changed head: another key


def test_a_used_judge_is_checked_at_plan_time_with_its_options_and_measure(tmp_path):
    typo = config([{"name": "output_filter", "args": {"judge": {"name": "proxy-harm", "args": {"threshhold": 0.5}}}}])
    with pytest.raises(UnknownOptionError, match=r"defenses\[0\] \(output_filter\).*'threshhold'.*'threshold'"):
        run(typo, out=tmp_path / "a", dry_run=True, progress=False)
    refusal = config([{"name": "output_filter", "args": {"judge": "keyword-refusal"}}])
    with pytest.raises(UnknownOptionError, match="keyword-refusal measures refusal; it needs one that measures harm"):
        run(refusal, out=tmp_path / "b", dry_run=True, progress=False)
    unknown = config([{"name": "output_filter", "args": {"judge": "proxy-harms"}}])
    with pytest.raises(UnknownOptionError, match="Did you mean: proxy-harm"):
        run(unknown, out=tmp_path / "c", dry_run=True, progress=False)


def test_a_set_up_that_fails_is_recorded_like_a_failed_generation_and_the_rest_goes_on(tmp_path):
    # a user's judge carries no catalog tags, so its measure is found wrong only when it is built
    cfg = config(["none", {"name": "output_filter", "args": {"judge": "sgtest_components:PrefixRefusalJudge"}}], n=8)
    result = run(cfg, out=tmp_path / "r", report=False, judge=False, progress=False)
    rows = _rows(tmp_path / "r")
    assert {r["defense"] for r in rows} == {"none"} and len(rows) == 8
    with Store(tmp_path / "r" / STORE_NAME) as s:
        errors = s.errors()
    assert len(errors) == 8 and all(e["stage"] == "setup" and "measures 'refusal'" in e["message"] for e in errors)
    assert result.failed == 8
