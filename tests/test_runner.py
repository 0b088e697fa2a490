"""The runner end to end on test doubles: plan, generate, resume, judge, metrics, outputs."""

import json
from pathlib import Path

import pytest

from safeglass.api import judge as api_judge
from safeglass.api import run
from safeglass.config import parse_config
from safeglass.eval.runner import STORE_NAME
from safeglass.eval.store import Store


def config(n: int = 40, **over) -> dict:
    cfg = {
        "name": "unit",
        "seed": 7,
        "targets": [{"name": "sgtest_components:HeedsSystemPrompt", "id": "heeds"}],
        "datasets": [{"name": "sgtest_components:load_unit", "id": "unit", "args": {"n": n}}],
        "defenses": ["none", "safety_prompt"],
        "judges": [{"name": "sgtest_components:PrefixRefusalJudge", "id": "prefix"}],
        "generation": {"max_new_tokens": 16},
        "chunk_size": 8,
    }
    cfg.update(over)
    return cfg


def test_dry_run_counts_calls_and_writes_nothing(tmp_path):
    res = run(config(), out=tmp_path / "r", dry_run=True, progress=False)
    assert res.planned == 80 and res.calls["generate"] == 80
    assert not (tmp_path / "r").exists()
    assert run(config(), out=tmp_path / "r", dry_run=True, limit=5, progress=False).planned == 10


def test_full_run_then_rerun_skips_everything(tmp_path):
    out = tmp_path / "r"
    run(config(), out=out, report=False, progress=False)
    with Store(out / STORE_NAME) as s:
        assert s.count() == 80 and s.count("judgments") == 80
        first = sorted((g["key"], g["response"]) for g in s.generations())
    res = run(config(), out=out, report=False, progress=False)
    assert res.done_before == 80 and res.generated == 0
    with Store(out / STORE_NAME) as s:
        assert sorted((g["key"], g["response"]) for g in s.generations()) == first
        assert s.count("judgments") == 80


def test_keys_ignore_chunk_and_batch_size_but_not_params(tmp_path):
    out = tmp_path / "r"
    run(config(), out=out, report=False, progress=False, judge=False)
    res = run(config(chunk_size=3), out=out, report=False, progress=False, judge=False)
    assert res.generated == 0
    res = run(config(generation={"max_new_tokens": 17}), out=out, report=False, progress=False, judge=False)
    assert res.generated == 80


def test_a_changed_config_summarises_and_judges_only_its_own_plan(tmp_path):
    """Rows of an earlier config stay in the store (going back to it regenerates nothing) but are neither
    judged nor counted by a run of the changed config."""
    from safeglass.eval.summary import build_summary

    out = tmp_path / "r"
    run(config(), out=out, report=False, progress=False)
    run(config(generation={"max_new_tokens": 17}), out=out, report=False, progress=False, judge=False)
    with Store(out / STORE_NAME) as s:
        assert s.count() == 160 and len(s.plan_keys()) == 80
    assert build_summary(out)[0]["run"]["n_generations"] == 80
    run(config(generation={"max_new_tokens": 17}, judges=[{"name": "sgtest_components:PrefixRefusalJudge",
                                                            "id": "prefix", "args": {"version": "2"}}]),
        out=out, report=False, progress=False)
    with Store(out / STORE_NAME) as s:
        assert s.count("judgments") == 80 + 80  # the first run's verdicts, and the new judge on 80 only
    assert run(config(), out=out, report=False, progress=False, judge=False).generated == 0
    assert build_summary(out)[0]["run"]["n_generations"] == 80


def test_a_manual_merge_takes_the_plan_of_the_newest_shards(tmp_path):
    from safeglass.eval.plan import build_plan
    from safeglass.eval.runner import generate, merge_shards
    from safeglass.eval.summary import build_summary

    out = tmp_path / "r"
    run(config(), out=out, report=False, progress=False, judge=False)  # single process: plan A in the main store
    changed = parse_config(config(generation={"max_new_tokens": 17}))
    for rank in (0, 1):
        generate(changed, out, rank=rank, world=2, progress=False)
    merge_shards(out)
    with Store(out / STORE_NAME) as s:
        assert s.count() == 160
        assert s.plan_keys() == {it.key for it in build_plan(changed).items}
    assert build_summary(out)[0]["run"]["n_generations"] == 80


def test_rejudging_a_new_judge_version_does_not_regenerate(tmp_path):
    out = tmp_path / "r"
    run(config(), out=out, report=False, progress=False)
    raw = parse_config(config()).raw
    with Store(out / STORE_NAME) as s:
        stored = s.get_meta("config")
    assert {k: v for k, v in stored.items() if k != "base_dir"} == raw and Path(stored["base_dir"]).is_absolute()
    judged = api_judge(out, ["sgtest_components:PrefixRefusalJudge"], progress=False)
    assert (judged.added, judged.failed) == (0, 0)  # same identity: nothing to do
    # A changed judge (new version -> new identity key) scores everything again.
    cfg = config(judges=[{"name": "sgtest_components:PrefixRefusalJudge", "id": "prefix", "args": {"version": "2"}}])
    run(cfg, out=out, report=False, progress=False)
    with Store(out / STORE_NAME) as s:
        assert s.count("judgments") == 160 and s.count() == 80


def test_metrics_and_outputs(tmp_path):
    out = tmp_path / "r"
    paths = run(config(n=200), out=out, progress=False).outputs
    summary = json.loads(paths["summary"].read_text())
    rows = {(r["defense"], r["metric"]): r for r in summary["rows"] if r["category"] is None}
    asr_none, asr_sp = rows[("none", "attack_success")], rows[("safety_prompt", "attack_success")]
    assert asr_none["n"] == 100 and rows[("none", "over_refusal")]["n"] == 100
    # HeedsSystemPrompt refuses ~30 % without and ~80 % with a system prompt.
    assert 0.55 < asr_none["value"] < 0.85 and 0.05 < asr_sp["value"] < 0.35
    assert asr_sp["vs_baseline"]["delta"] < 0 and asr_sp["vs_baseline"]["ci_high"] < 0
    assert asr_sp["vs_baseline"]["n_pairs"] == 100 and asr_none["vs_baseline"] is None
    assert asr_none["ci_low"] < asr_none["value"] < asr_none["ci_high"]
    cats = [r for r in summary["rows"] if r["category"] and r["metric"] == "attack_success" and r["defense"] == "none"]
    assert sorted(r["category"] for r in cats) == ["cat0", "cat1", "cat2"]
    assert sum(r["n"] for r in cats) == 100
    run_meta = summary["run"]
    assert run_meta["seed"] == 7 and run_meta["config_hash"] and "transformers" in run_meta["versions"]
    judge = summary["judges"][0]
    assert judge["name"] == "prefix-refusal" and judge["key"].startswith("prefix-refusal@")
    lines = paths["samples"].read_text().splitlines()
    assert len(lines) == 400 and all("verdicts" in json.loads(x) for x in lines[:3])
    assert paths["report"].exists()
    with Store(out / STORE_NAME) as s:
        prov = json.loads(next(s.generations())["provenance"])
    assert {"target", "defense", "attack", "params", "dataset", "config_hash", "seed"} <= set(prov)


class Boom:
    """A target that fails on prompts containing '13' (to test that failures are recorded, not fatal)."""

    def __new__(cls):
        from safeglass.targets.doubles import EchoTarget

        class _T(EchoTarget):
            def generate(self, conversations, params):
                if any("13" in c[-1].text for c in conversations):
                    raise RuntimeError("simulated backend failure")
                return super().generate(conversations, params)

        return _T()


def test_a_failing_chunk_is_recorded_and_the_rest_completes(tmp_path, monkeypatch):
    import sys

    monkeypatch.setattr(sys.modules[__name__], "Boom", Boom, raising=False)
    cfg = config(targets=[{"name": "test_runner:Boom", "id": "boom"}], defenses=["none"])
    res = run(cfg, out=tmp_path / "r", report=False, progress=False)
    assert res.failed == 8 and res.generated == 32  # one chunk of 8 holds sample 13
    with Store(tmp_path / "r" / STORE_NAME) as s:
        assert len(s.errors()) == 8 and "simulated backend failure" in s.errors()[0]["message"]


@pytest.mark.parametrize("bad", [{"targets": []}, {"defenses": "none"}])
def test_bad_configs_fail_before_any_work(tmp_path, bad):
    from safeglass.config import ConfigError

    with pytest.raises(ConfigError):
        run(config(**bad), out=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_in_memory_images_are_saved_and_reach_judges(tmp_path):
    cfg = config(datasets=[{"name": "sgtest_components:load_pictures", "id": "pics"}], defenses=["none"],
                 judges=[{"name": "sgtest_components:SeesImagesJudge", "id": "sees"}])
    out = tmp_path / "r"
    run(cfg, out=out, report=False, progress=False)
    assert len(list((out / "images").glob("*.png"))) == 3
    with Store(out / STORE_NAME) as s:
        flags = {g["sample_id"]: None for g in s.generations()}
        keys = {g["key"]: g["sample_id"] for g in s.generations()}
        for j in s.judgments():
            flags[keys[j["key"]]] = bool(j["flag"])
    assert flags == {f"pic-{i}": i % 2 == 0 for i in range(6)}


@pytest.mark.parametrize("family", ["qwen2.5-vl", "llava"])
def test_a_tiny_vlm_runs_through_the_runner_with_images(tmp_path, family):
    cfg = config(targets=[{"name": "tiny", "id": family, "args": {"family": family, "batch_size": 3}}],
                 datasets=[{"name": "shapeworld-vqa", "args": {"n": 6, "typographic": True}}],
                 defenses=["none", "safety_prompt"], judges=["keyword-refusal"], generation={"max_new_tokens": 4})
    out = tmp_path / "r"
    res = run(cfg, out=out, progress=False)
    assert res.generated == 12 and res.failed == 0
    with Store(out / STORE_NAME) as s:
        rows = list(s.generations())
        assert all(g["prompt_tokens"] > 20 and json.loads(g["sample"])["turns"][0]["images"] for g in rows)
        assert json.loads(rows[0]["provenance"])["target"]["args"]["family"] == family
    assert (out / "images").exists() and res.outputs["report"].exists()


class FlakyJudge:
    """Fails on every call while a marker file exists (to test that judge errors are shown until fixed)."""

    def __new__(cls, marker: str):
        import os

        from safeglass.judges.base import Judge, Verdict

        class _J(Judge):
            name = "flaky"
            measure = "refusal"

            def judge(self, items):
                if os.path.exists(marker):
                    raise RuntimeError("judge backend down")
                return [Verdict(False, 0.0, "compliance") for _ in items]

        return _J()


def test_judge_errors_are_reported_until_a_resumed_run_fixes_them(tmp_path, monkeypatch):
    import sys

    monkeypatch.setattr(sys.modules[__name__], "FlakyJudge", FlakyJudge, raising=False)
    marker = tmp_path / "down"
    marker.write_text("x")
    cfg = config(n=10, defenses=["none"],
                 judges=[{"name": "test_runner:FlakyJudge", "id": "flaky", "args": {"marker": str(marker)}}])
    out = run(cfg, out=tmp_path / "r", progress=False).outputs
    errors = json.loads(out["summary"].read_text())["errors"]
    assert len(errors) == 10 and all("judge backend down" in e["message"] for e in errors)
    marker.unlink()
    out = run(cfg, out=tmp_path / "r", progress=False).outputs
    assert json.loads(out["summary"].read_text())["errors"] == []


def test_attacked_samples_are_judged_against_the_original_request(tmp_path):
    cfg = config(datasets=[{"name": "sgtest_components:load_topics", "id": "topics"}], defenses=["none"],
                 attacks=["none", "typographic"], judges=[{"name": "sgtest_components:PromptSeenJudge", "id": "seen"}])
    out = tmp_path / "r"
    run(cfg, out=out, report=False, progress=False)
    with Store(out / STORE_NAME) as s:
        gens = {g["key"]: g for g in s.generations()}
        seen = {(gens[j["key"]]["attack"], gens[j["key"]]["sample_id"]): (gens[j["key"]]["prompt"], j["reason"])
                for j in s.judgments()}
    assert len(seen) == 6
    for i, word in enumerate(("weapons", "poison", "the weather")):
        original = f"placeholder question {i} about {word}"
        assert seen[("none", f"topic-{i}")] == (original, original)
        model_saw, judge_saw = seen[("typographic", f"topic-{i}")]
        assert judge_saw == original
        assert (model_saw == original) == (word == "the weather")  # no key word: left as it is
    assert len(list((out / "images").glob("*.png"))) == 2


def test_target_labels_name_the_glasses_a_target_wears():
    from types import SimpleNamespace

    from safeglass.eval.runner import target_label
    from safeglass.neurons.glasses_modifier import GlassesModifier

    plain = SimpleNamespace(name="SafeSmol-VL")
    modifier = GlassesModifier("unused")
    modifier.glasses = SimpleNamespace(method="sgm", params={"strength": 1.0})
    worn = SimpleNamespace(name="SafeSmol-VL", applied_modifiers=(modifier,))
    assert target_label(plain, "x") == "SafeSmol-VL"
    assert target_label(worn, "x") == "SafeSmol-VL + sgm s1 glasses"
    assert target_label(SimpleNamespace(name=None), "fallback") == "fallback"


def test_primary_judge_picks_the_finding_and_is_checked(tmp_path):
    from safeglass.config import ConfigError

    two = [{"name": "sgtest_components:PrefixRefusalJudge", "id": "prefix"}, {"name": "keyword-refusal", "id": "kw"}]
    out = tmp_path / "r"
    res = run(config(judges=two, primary_judge="kw"), out=out, progress=False)
    summary = json.loads(res.outputs["summary"].read_text())
    kw_key = next(j["key"] for j in summary["judges"] if j["id"] == "kw")
    assert summary["run"]["primary_judge"] == kw_key
    html = res.outputs["report"].read_text()
    from html import unescape

    assert "recorded as the run's primary judge" in unescape(html)
    assert parse_config(config(judges=two, primary_judge="kw")).hash == parse_config(config(judges=two)).hash
    with pytest.raises(ConfigError, match="primary_judge"):
        parse_config(config(judges=two, primary_judge="nope"))


def test_save_png_survives_writers_of_the_same_picture_at_once(tmp_path) -> None:
    # workers attacking one sample for two targets write the same image together; a shared temporary name let one
    # writer rename the other's file away (FileNotFoundError, a crashed worker)
    import threading

    from PIL import Image

    from safeglass.eval.runner import save_png
    from safeglass.types import ImageRef

    for round_ in range(20):
        d = tmp_path / f"images-{round_}"
        img = ImageRef(Image.new("RGB", (64, 64), (round_, 40, 90)))
        barrier, errors, paths = threading.Barrier(8), [], []

        def write(img=img, d=d, barrier=barrier, errors=errors, paths=paths) -> None:
            barrier.wait()
            try:
                paths.append(save_png(img, d))
            except OSError as e:
                errors.append(e)

        threads = [threading.Thread(target=write) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and len(set(paths)) == 1
        assert sorted(p.name for p in d.iterdir()) == [f"{img.content_hash()}.png"]  # no temporary left behind
        assert Image.open(paths[0]).size == (64, 64)
