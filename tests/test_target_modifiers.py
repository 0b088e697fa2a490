"""Target modifiers: targets[].modifiers applied in order; glasses moved there with their old result keys."""

from __future__ import annotations

import json

import pytest

from safeglass.config import ConfigError, parse_config
from safeglass.eval.plan import build_plan
from safeglass.eval.runner import build_target, target_label
from safeglass.hashing import content_hash
from safeglass.options import UnknownOptionError
from safeglass.types import GenerationParams, Turn


def _glasses_dir(tmp_path, h="0123456789abcdef"):
    d = tmp_path / "g"
    d.mkdir()
    (d / "glasses.json").write_text(json.dumps({"hash": h}))
    return d


def _targets(*targets):
    return parse_config({"targets": list(targets), "datasets": ["benign-lookalikes"]}).targets


def test_legacy_glasses_arg_and_modifier_keep_the_key_made_before_modifiers(tmp_path):
    g = _glasses_dir(tmp_path)
    legacy, new = _targets({"name": "tiny", "id": "a", "args": {"family": "llama", "glasses": str(g)}},
                           {"name": "tiny", "id": "b", "args": {"family": "llama"},
                            "modifiers": [{"name": "glasses", "args": {"path": str(g / "glasses.json")}}]})
    assert legacy.args == {"family": "llama"} and legacy.modifiers[0].args == {"path": str(g)}
    assert legacy.key_config() == new.key_config()
    # computed by the code before modifiers existed (targets[].args.glasses), for this glasses.json
    assert content_hash(legacy.key_config()) == "7132f0fba6ad7b9b"


def test_other_modifiers_enter_the_key_in_order(tmp_path):
    a = {"name": "sgtest_components:SuffixModifier", "id": "a", "args": {"suffix": "A"}}
    b = {"name": "sgtest_components:SuffixModifier", "id": "b", "args": {"suffix": "B"}}
    ab, ba, bare = _targets({"name": "echo", "id": "ab", "modifiers": [a, b]},
                            {"name": "echo", "id": "ba", "modifiers": [b, a]}, {"name": "echo", "id": "bare"})
    assert ab.key_config()["modifiers"] == [{"name": a["name"], "key": {"suffix": "A"}},
                                            {"name": b["name"], "key": {"suffix": "B"}}]
    assert len({content_hash(t.key_config()) for t in (ab, ba, bare)}) == 3
    assert "modifiers" not in bare.key_config()  # unmodified targets keep their keys


def test_modifiers_apply_in_order_and_label_the_target():
    (spec,) = _targets({"name": "echo", "modifiers": [
        {"name": "sgtest_components:SuffixModifier", "id": "x", "args": {"suffix": "-x"}},
        {"name": "sgtest_components:SuffixModifier", "id": "y", "args": {"suffix": "-y"}}]})
    target = build_target(spec)
    (gen,) = target.generate([(Turn("user", "hi"),)], GenerationParams())
    assert gen.text.endswith("-x-y")
    assert target_label(target, "echo") == "echo + suffix '-x' + suffix '-y'"


def test_a_key_arg_modifier_after_another_is_refused(tmp_path):
    g = _glasses_dir(tmp_path)
    with pytest.raises(ConfigError, match="must come first"):
        _targets({"name": "tiny", "modifiers": [{"name": "sgtest_components:SuffixModifier"},
                                                {"name": "glasses", "args": {"path": str(g)}}]})
    with pytest.raises(ConfigError, match="once"):
        _targets({"name": "tiny", "args": {"glasses": str(g)},
                  "modifiers": [{"name": "glasses", "id": "g2", "args": {"path": str(g)}}]})


def test_unknown_modifier_option_is_named_at_plan_time(tmp_path):
    cfg = parse_config({"targets": [{"name": "echo", "modifiers": [{"name": "glasses", "args": {"pth": "x"}}]}],
                        "datasets": [{"name": "benign-lookalikes", "limit": 1}]}, source="cfg.yaml")
    with pytest.raises(UnknownOptionError, match=r"cfg.yaml: targets\[0\] \(echo\) modifiers\[0\] \(glasses\): "
                                                 r"unknown option 'pth' \(did you mean 'path'\?\)"):
        build_plan(cfg)


def test_glasses_missing_json_is_a_config_error(tmp_path):
    (spec,) = _targets({"name": "tiny", "args": {"glasses": str(tmp_path / "nowhere")}})
    with pytest.raises(ConfigError, match="cannot read the content hash"):
        spec.key_config()


def test_glasses_modifier_folds_and_is_recorded(tmp_path):
    import numpy as np

    from safeglass.eval.runner import _safe_config
    from safeglass.neurons.expertise import Expertise
    from safeglass.neurons.glasses import Glasses
    from safeglass.neurons.recording import layout_of
    from safeglass.registry import registry

    layout = layout_of(registry("targets").build("tiny", family="llama").neuron_sites())
    exp = Expertise(np.linspace(0.2, 0.95, layout[-1].stop), layout)
    glasses = Glasses.sgm(exp, strength=0.5)
    glasses.save(tmp_path / "g")
    (spec,) = _targets({"name": "tiny", "args": {"family": "llama", "glasses": str(tmp_path / "g")}})
    worn = build_target(spec)
    assert target_label(worn, "tiny").endswith("+ sgm s0.5 glasses")
    assert _safe_config(worn)["modifiers"] == [{"name": "glasses", "hash": glasses.hash}]
    assert spec.key_config()["args"]["glasses"] == f"sha:{glasses.hash}"


def test_a_modifier_that_trains_trains_once_for_workers_and_resumes(tmp_path):
    from safeglass.artifacts import read_manifest
    from safeglass.eval.runner import ARTIFACT_DIR, generate, merge_shards
    from safeglass.eval.store import Store

    calls = tmp_path / "calls.log"

    def config(n):
        return parse_config({
            "targets": [{"name": "echo", "modifiers": [{"name": "sgtest_components:TrainedSuffixModifier",
                                                        "args": {"word": "hello", "calls": str(calls)}}]}],
            "datasets": [{"name": "sgtest_components:load_unit", "args": {"n": n}}], "chunk_size": 2})

    run = tmp_path / "run"
    shards = [generate(config(12), run, rank=r, world=2, progress=False) for r in (0, 1)]
    assert all(s.generated for s in shards)  # both workers loaded the target
    assert calls.read_text().splitlines() == ["hello"]  # and one trained it
    merge_shards(run)
    resumed = generate(config(16), run, progress=False)  # the resume has new work, so it loads the target again
    assert resumed.done_before == 12 and resumed.generated == 4
    assert calls.read_text().splitlines() == ["hello"]
    (folder,) = [p for p in (run / ARTIFACT_DIR / "modifiers").iterdir() if p.is_dir()]
    suffix = (folder / "suffix.txt").read_text()
    assert read_manifest(folder)["key_payload"] == {"modifier": "trained-suffix", "key": {"word": "hello"},
                                                    "target": {"name": "echo", "args": {}}}
    with Store(run / "store.sqlite") as s:
        replies = [g["response"] for g in s.generations()]
    assert len(replies) == 16 and all(r.endswith(suffix) for r in replies)
