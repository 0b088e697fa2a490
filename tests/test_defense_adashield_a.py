"""AdaShield-A: a defender's candidate is kept only when the judge flips the answer to a refusal and pooled only when
it holds on alpha of its scenario's held-out requests; the pool is built once per content key (and a killed build
resumes); the gate is the same for an attacked and a benign input and the trace says whether it fired and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sgtest_components as sg
from PIL import Image

from safeglass.api import run
from safeglass.artifacts import CHECKPOINTS, ArtifactBuildError, artifact_dir, is_built
from safeglass.defenses.adaptive_shield import (
    POOL,
    STATE,
    TRAINING_TRACE,
    AdaptiveShield,
    Scenario,
    parse_candidate,
    write_pool,
)
from safeglass.defenses.context import DefenseContext, Uses
from safeglass.defenses.inspection_prompt import shielded
from safeglass.defenses.retrieval import Index, Key, thumbnail
from safeglass.eval.runner import ARTIFACT_DIR, STORE_NAME, build_component
from safeglass.eval.store import Store
from safeglass.options import UnknownOptionError
from safeglass.types import GenerationParams, ImageRef, Sample

WORKS = "Check the image first. SHIELD-OK"  # a candidate under which the phrase refuser refuses
FAILS = "Please be nice."  # one under which it still answers
DEFENDER = "test-defender"  # resolved to the test's defender object by the context's build function


@pytest.fixture(autouse=True)
def _reset_counters():
    sg.ScriptedDefender.asked.clear()
    sg.PhraseRefuser.sent.clear()


def requests(name: str, n: int, start: int = 0, stubborn: int = 0) -> list[Sample]:
    """Harmful placeholder requests of one scenario; the first `stubborn` are ones no prompt stops."""
    return [Sample.from_text(f"{name}-{i}", f"placeholder {name} request {i}" + (" stubborn" if i - start < stubborn
                                                                               else ""), category=name)
            for i in range(start, start + n)]


def scenario(name: str, train: int, held: int, stubborn_held: int = 0) -> Scenario:
    return Scenario(name, requests(name, train), requests(name, held, start=train, stubborn=stubborn_held))


def context(target: Any, defender: Any = None, root: Path | None = None) -> DefenseContext:
    def build(uses: Uses) -> Any:
        return defender if uses.kind == "targets" and uses.name == DEFENDER else build_component(uses)

    return DefenseContext(target, build, artifacts=root)


def trained(tmp_path: Path, scenarios: list[Scenario], script: dict[str, list[str]], *, target: Any = None,
            defender: Any = None, **options: Any) -> tuple[AdaptiveShield, dict[str, Any]]:
    """A defense set up on `scenarios` (the training split, as given) with a scripted defender: (defense, pool)."""
    d = AdaptiveShield(defender=DEFENDER, **options)
    d.scenarios = lambda: (scenarios, {})  # type: ignore[method-assign]
    d.setup(context(target or sg.PhraseRefuser(stubborn="stubborn"), defender or sg.ScriptedDefender(script),
                    tmp_path / "artifacts"))
    assert d.pool_dir is not None
    return d, json.loads((d.pool_dir / POOL).read_text(encoding="utf-8"))


# --- training ------------------------------------------------------------------------------------------------------


def test_a_candidate_is_kept_only_when_the_judge_flips_the_answer_to_a_refusal(tmp_path):
    scenarios = [scenario("alpha", 2, 2), scenario("beta", 1, 2)]
    # alpha: the first attempt's prompt leaves the answer an answer, the second makes it a refusal;
    # beta: no attempt ever makes it refuse
    d, pool = trained(tmp_path, scenarios, {"alpha": [FAILS, json.dumps({"improvement": "x", "prompt": WORKS})],
                                            "beta": [FAILS]})
    assert [(e["sample"], e["prompt"], e["source"], e["attempt"]) for e in pool["entries"]] == [
        ("alpha-0", WORKS, "refined", 2), ("alpha-1", WORKS, "refined", 2)]
    log = {r["sample"]: r for r in pool["training"]}
    assert log["alpha-0"]["defender_attempts"] == 2  # stopped at the first refusal
    assert log["beta-0"]["defender_attempts"] == 4 and log["beta-0"]["candidate"] is None  # iterations, then nothing
    # the defender was asked 2 + 2 + 4 times; alpha's first attempt and every beta attempt kept nothing
    assert sg.ScriptedDefender.asked.count("alpha") == 4 and sg.ScriptedDefender.asked.count("beta") == 4
    assert pool["calls"] == {"defender": 8, "trainer": 3 + (3 + 3 + 1 + 1) + 2}  # initial, attempts, alpha's held-out
    # every training sub-call is written with the pool, under the request it was made for
    written = json.loads((d.pool_dir / TRAINING_TRACE).read_text(encoding="utf-8"))
    trace = {t["sample"]: [c["role"] for c in t["calls"]] for t in written}
    assert trace["alpha-0"] == ["trainer", "judge"] + ["defender", "trainer", "judge"] * 2
    assert trace["alpha-2"] == ["trainer", "judge"] and trace["beta-1"] == []  # held out; beta had no candidate


def test_a_request_the_initial_prompt_already_stops_keeps_it_without_asking_the_defender(tmp_path):
    _, pool = trained(tmp_path, [scenario("alpha", 2, 2)], {"alpha": [FAILS]}, initial_prompt=WORKS)
    assert sg.ScriptedDefender.asked == []
    assert [(e["prompt"], e["source"], e["attempt"]) for e in pool["entries"]] == [(WORKS, "initial", 0)] * 2
    # the same prompt in the same scenario is validated once: 2 held-out answers, not 4
    assert pool["calls"]["trainer"] == 2 + 2


def test_a_candidate_is_pooled_only_if_it_holds_on_alpha_of_its_held_out_requests(tmp_path):
    # alpha: 1 of 5 held-out requests is stubborn (4/5 = 0.8 refused); beta: 2 of 5 (0.6)
    scenarios = [scenario("alpha", 1, 5, stubborn_held=1), scenario("beta", 1, 5, stubborn_held=2)]
    script = {"alpha": [WORKS], "beta": [WORKS]}
    _, pool = trained(tmp_path / "a", scenarios, script)  # alpha 0.8 by default
    assert [e["scenario"] for e in pool["entries"]] == ["alpha"]
    assert pool["entries"][0]["held_out"] == {"refused": 4, "n": 5}
    assert [(e["scenario"], e["held_out"]) for e in pool["rejected"]] == [("beta", {"refused": 3, "n": 5})]
    _, stricter = trained(tmp_path / "b", scenarios, script, alpha=0.9)
    assert stricter["entries"] == [] and len(stricter["rejected"]) == 2
    _, looser = trained(tmp_path / "c", scenarios, script, alpha=0.6)
    assert [e["scenario"] for e in looser["entries"]] == ["alpha", "beta"]


def test_the_pool_is_built_once_per_content_key_and_read_back(tmp_path):
    scenarios = [scenario("alpha", 2, 2)]
    script = {"alpha": [FAILS, WORKS]}
    first, _ = trained(tmp_path, scenarios, script)
    asked = len(sg.ScriptedDefender.asked)
    assert asked == 4
    again, _ = trained(tmp_path, scenarios, script, beta=0.2)  # a new process: beta acts at inference only
    assert again.pool_dir == first.pool_dir and len(sg.ScriptedDefender.asked) == asked
    # the folder is the content key's: the defended target, the defender, the judge, the data, every training option
    key = first.pool_key(context(sg.PhraseRefuser(stubborn="stubborn")), scenarios)
    assert first.pool_dir == artifact_dir("adashield-a-pool", key, tmp_path / "artifacts") and is_built(first.pool_dir)
    assert key["target"] == {"config": {"type": "phrase-refuser", "phrase": "SHIELD-OK", "stubborn": "stubborn"}}
    assert key["defender"] == {"name": DEFENDER, "args": {}} and key["judge"]["name"] == "keyword-refusal"
    other, _ = trained(tmp_path, scenarios, script, seed=1)
    other_data, _ = trained(tmp_path, [scenario("alpha", 2, 3)], script)
    other_target, _ = trained(tmp_path, scenarios, script, target=sg.PhraseRefuser(stubborn="other"))
    assert len({first.pool_dir, other.pool_dir, other_data.pool_dir, other_target.pool_dir}) == 4


def test_a_killed_build_resumes_from_its_last_step_and_reaches_the_same_pool(tmp_path):
    scenarios = [scenario("alpha", 2, 2), scenario("beta", 1, 2)]
    script = {"alpha": [FAILS, FAILS, WORKS], "beta": [FAILS, WORKS]}
    _, whole = trained(tmp_path / "whole", scenarios, script)
    uninterrupted = list(sg.ScriptedDefender.asked)
    sg.ScriptedDefender.asked.clear()
    d = AdaptiveShield(defender=DEFENDER)
    d.scenarios = lambda: (scenarios, {})  # type: ignore[method-assign]
    root = tmp_path / "killed"
    with pytest.raises(ArtifactBuildError, match="the defender went away"):  # the second attempt's call fails
        d.setup(context(sg.PhraseRefuser(stubborn="stubborn"), sg.ScriptedDefender(script, fail_on=2), root))
    state = json.loads(next(root.rglob(f"{CHECKPOINTS}/{STATE}")).read_text())
    assert state["initial"] is not None and len(state["attempts"]) == 1
    before = list(sg.ScriptedDefender.asked)
    sg.ScriptedDefender.asked.clear()
    d.setup(context(sg.PhraseRefuser(stubborn="stubborn"), sg.ScriptedDefender(script), root))
    # the resumed build asked only from the second attempt on: together, what one uninterrupted build asks
    assert sorted(before + sg.ScriptedDefender.asked) == sorted(uninterrupted)
    assert json.loads((d.pool_dir / POOL).read_text()) == whole
    assert not (d.pool_dir / CHECKPOINTS).exists()


def test_a_defender_reply_is_read_as_json_or_taken_whole():
    assert parse_candidate('Here: {"improvement": "x", "prompt": "Look first."} done') == ("Look first.", True)
    assert parse_candidate('{"improvement": "cut short", "prompt": "Look at the \\"image\\" fir') == \
        ('Look at the "image" fir', True)
    assert parse_candidate("  Just look first.  ") == ("Just look first.", False)
    assert parse_candidate('{"prompt": ""}') == ('{"prompt": ""}', False)
    assert parse_candidate("   ")[0] == ""


# --- inference: the gate -------------------------------------------------------------------------------------------


def picture(colour: tuple[int, int, int], across: bool = True) -> ImageRef:
    """A plain picture with a white band across it (or down it): the layout a thumbnail sees."""
    img = Image.new("RGB", (32, 32), colour)
    img.paste((255, 255, 255), (0, 10, 32, 20) if across else (10, 0, 20, 32))
    return ImageRef(img)


def pool_file(tmp_path: Path, image: ImageRef | None = None) -> str:
    path = tmp_path / "pool.json"
    entries = [{"scenario": "alpha", "prompt": WORKS, "sample": "alpha-0",
                "key": {"text": "placeholder alpha request about widgets",
                        "image": thumbnail(image) if image is not None else None}},
               {"scenario": "beta", "prompt": "Mind the gadgets. SHIELD-OK", "sample": "beta-0",
                "key": {"text": "placeholder beta request about gadgets", "image": None}}]
    write_pool(path, entries)
    return str(path)


def test_the_gate_treats_an_attacked_and_a_benign_input_alike_and_says_why(tmp_path):
    image = picture((200, 30, 30))
    d = AdaptiveShield(pool_file=pool_file(tmp_path, image), beta=0.5)
    target = sg.PhraseRefuser()
    text = "placeholder alpha request about widgets today"
    attacked = Sample.from_text("a", text, images=(image,), kind="harmful", category="alpha",
                                metadata={"attack": {"name": "typographic"}, "objective": "x"})
    benign = Sample.from_text("b", text, images=(image,), kind="benign", category="gardening")
    far = Sample.from_text("c", "what is the weather", kind="harmful")
    ctx = context(target)
    d.setup(ctx)
    samples = [attacked, benign, far]
    ctx.begin(samples)
    gens = d.generate(target, samples, GenerationParams())
    decisions = [g.extra["adashield_a"] for g in gens]
    assert decisions[0] == decisions[1]  # the same request and image: the same similarity, the same gate
    assert decisions[0]["fired"] and decisions[0]["scenario"] == "alpha" and decisions[0]["compared"] == "text+image"
    assert decisions[0]["similarity"] > 0.5 and "> beta 0.5" in decisions[0]["why"]
    assert not decisions[2]["fired"] and decisions[2]["similarity"] == 0.0 and "left unchanged" in decisions[2]["why"]
    assert [g.text for g in gens] == [sg.SHIELD_REFUSAL, sg.SHIELD_REFUSAL, "Sure, here is an answer to: what is the "
                                      "weather"]
    # the model saw request + prompt + request where the gate fired, the request alone where it did not
    assert sg.PhraseRefuser.sent == [shielded(attacked.turns, WORKS)[-1].text] * 2 + [far.prompt]
    for trace, decision in zip(ctx.traces, decisions, strict=True):
        gate = trace[0]
        assert gate["role"] == "gate" and gate["fired"] == decision["fired"] and gate["note"] == decision["why"]
        assert gate["similarity"] == decision["similarity"] and trace[1]["role"] == "model"
    # the report shows the gate's reason beside its role
    from safeglass.reporting.html import _trace_blob

    assert _trace_blob(ctx.traces[0], withheld=True)[0]["note"] == decisions[0]["why"]


def test_the_threshold_and_the_image_decide_and_a_benign_input_gets_no_other_gate(tmp_path):
    image = picture((200, 30, 30))
    path = pool_file(tmp_path, image)
    text = "placeholder alpha request about widgets today"
    same = AdaptiveShield(pool_file=path).decide(Sample.from_text("s", text, images=(image,)).turns)
    other_image = AdaptiveShield(pool_file=path).decide(
        Sample.from_text("s", text, images=(picture((20, 20, 200), across=False),)).turns)
    no_image = AdaptiveShield(pool_file=path).decide(Sample.from_text("s", text).turns)
    assert same["similarity"] > no_image["similarity"] > other_image["similarity"]  # the image counts where present
    assert no_image["compared"] == "text"
    sim = same["similarity"]
    for beta, fired in ((sim - 0.001, True), (sim + 0.001, False)):
        assert AdaptiveShield(pool_file=path, beta=beta).decide(
            Sample.from_text("s", text, images=(image,)).turns)["fired"] is fired
    # the kind of a sample never enters: prepare (what an adaptive attack optimises through) sees the same gate
    d = AdaptiveShield(pool_file=path, beta=0.5)
    harmful = Sample.from_text("h", text, images=(image,), kind="harmful")
    benign = Sample.from_text("h", text, images=(image,), kind="benign")
    assert d.prepare(harmful.turns, harmful) == d.prepare(benign.turns, benign) == shielded(harmful.turns, WORKS)


def test_an_empty_pool_never_fires_and_says_so(tmp_path):
    path = tmp_path / "empty.json"
    write_pool(path, [])
    decision = AdaptiveShield(pool_file=str(path)).decide(Sample.from_text("s", "anything").turns)
    assert decision["fired"] is False and "pool is empty" in decision["why"]


def test_lexical_similarity_matches_shared_content_words_not_stop_words():
    index = Index([Key("how to grow tomatoes in a garden"), Key("how to repair a bicycle chain")])
    sims = index.similarities("how do I grow tomatoes")
    assert sims[0] > 0.5 and sims[1] == 0.0  # "how to" is no evidence
    assert index.nearest("repairing a bicycle chain")[0] == 1
    assert Index([]).nearest("anything") is None


def test_pool_file_skips_training(tmp_path):
    defender = sg.ScriptedDefender({"alpha": [WORKS]})
    target = sg.PhraseRefuser()
    d = AdaptiveShield(defender=DEFENDER, pool_file=pool_file(tmp_path))
    d.scenarios = lambda: pytest.fail("a pool file needs no training data")  # type: ignore[method-assign]
    ctx = context(target, defender, tmp_path / "artifacts")
    d.setup(ctx)
    assert sg.ScriptedDefender.asked == [] and sg.PhraseRefuser.sent == [] and ctx.cache == {}  # nothing built
    assert d.pool_dir is None and not (tmp_path / "artifacts").exists() and len(d.pool.entries) == 2
    # the file enters the result key by its content
    edited = tmp_path / "edited"
    edited.mkdir()
    write_pool(edited / "pool.json", d.pool.entries[:1])
    assert AdaptiveShield(pool_file=str(edited / "pool.json")).config() != d.config()
    with pytest.raises(RuntimeError, match="pool_file"):  # without a pool there is nothing to apply
        AdaptiveShield().prepare(Sample.from_text("s", "x").turns)


def test_options_are_checked(tmp_path):
    for bad in ({"iterations": -1}, {"per_scenario": 0}, {"held_out": 0}, {"alpha": 1.5}, {"initial_prompt": " "},
                {"pool_file": str(tmp_path / "missing.json")}, {"train_attack": "pgd"}):
        with pytest.raises(ValueError, match="adashield-a"):
            AdaptiveShield(**bad)
    with pytest.raises(UnknownOptionError):
        AdaptiveShield(train={"name": "advbench", "args": {"splt": "x"}})
    bad = tmp_path / "bad.json"
    bad.write_text('{"entries": [{"prompt": "x"}]}')
    with pytest.raises(ValueError, match=r"entries\[0\] needs"):
        AdaptiveShield(pool_file=str(bad)).decide(Sample.from_text("s", "x").turns)
    cfg = {"name": "a", "targets": ["echo"], "datasets": [{"name": "advbench", "limit": 1}], "judges": [],
           "defenses": [{"name": "adashield-a", "args": {"judge": "proxy-harm"}}]}
    with pytest.raises(UnknownOptionError, match="proxy-harm measures harm; it needs one that measures refusal"):
        run(cfg, out=tmp_path / "r", dry_run=True, progress=False)


# --- in a run ------------------------------------------------------------------------------------------------------


def run_config(n: int) -> dict[str, Any]:
    defender = {"name": "sgtest_components:ScriptedDefender",
                "args": {"script": {"alpha": [FAILS, WORKS], "beta": [WORKS]}}}
    return {"name": "ada", "seed": 0, "chunk_size": 4,
            "targets": [{"name": "sgtest_components:PhraseRefuser", "id": "refuser"}],
            "datasets": [{"name": "sgtest_components:load_scenarios", "id": "s", "args": {"per": n}}],
            "defenses": [{"name": "adashield-a", "args": {
                "defender": defender, "train": {"name": "sgtest_components:load_scenarios", "args": {"per": 5}},
                "per_scenario": 1, "held_out": 3, "beta": 0.3}}],
            "judges": ["keyword-refusal"]}


def test_a_run_trains_the_pool_once_into_its_artifacts_and_a_resume_reads_it(tmp_path):
    out = tmp_path / "run"
    assert run(run_config(2), out=out, dry_run=True, progress=False).generated == 0
    assert sg.ScriptedDefender.asked == [] and not (out / ARTIFACT_DIR).exists()  # a dry run trains nothing
    run(run_config(2), out=out, report=False, progress=False)
    asked = len(sg.ScriptedDefender.asked)
    assert asked == 3  # alpha: two attempts, beta: one
    pools = list((out / ARTIFACT_DIR / "adashield-a-pool").glob("*/pool.json"))
    assert len(pools) == 1
    with Store(out / STORE_NAME) as store:
        rows = list(store.generations())
    assert len(rows) == 5
    for row in rows:
        prov = json.loads(row["provenance"])
        gate = prov["trace"][0]
        assert gate["role"] == "gate" and gate["fired"] == prov["extra"]["adashield_a"]["fired"]
        assert {"similarity", "beta", "scenario", "note"} <= set(gate)
        # the scenarios' requests are near their training requests, the benign one (other words) is not
        assert gate["fired"] == (row["sample_id"] != "benign-0") == (row["response"] == sg.SHIELD_REFUSAL)
    # more samples: the run resumes, sets the defense up again and reads the pool instead of training it again
    run(run_config(3), out=out, report=False, progress=False)
    assert len(sg.ScriptedDefender.asked) == asked
    with Store(out / STORE_NAME) as store:
        assert len(list(store.generations())) == 7
