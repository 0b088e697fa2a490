"""The attack stage: once per (sample, attack config[, target]), stored before defenses, reused on resume;
access checked at plan time; the gradient-attack base on a tiny VLM."""

from __future__ import annotations

import json

import pytest
import sgtest_components as comps

from safeglass.api import run
from safeglass.config import ConfigError, parse_config
from safeglass.eval.plan import build_plan
from safeglass.eval.runner import STORE_NAME
from safeglass.eval.store import Store

HEEDS = "sgtest_components:HeedsSystemPrompt"


def config(attack, defenses=("none", "safety_prompt"), targets=("a", "b"), n=8):
    return {"name": "atk", "seed": 0, "chunk_size": 4,
            "targets": [{"name": HEEDS, "id": t, "args": {"name": f"heeds-{t}"}} for t in targets],
            "datasets": [{"name": "sgtest_components:load_unit", "id": "unit", "args": {"n": n}}],
            "defenses": list(defenses), "attacks": [attack],
            "judges": [{"name": "sgtest_components:PrefixRefusalJudge", "id": "prefix"}]}


def test_a_black_box_attack_runs_once_per_sample_for_all_targets_defenses_and_resumes(tmp_path):
    comps.CountingCaps.calls.clear()
    attack = {"name": "sgtest_components:CountingCaps", "id": "caps"}
    res = run(config(attack), out=tmp_path / "r", report=False, progress=False)
    assert res.generated == 8 * 2 * 2
    assert sorted(comps.CountingCaps.calls) == sorted(f"unit-{i:04d}" for i in range(8))  # once each
    with Store(tmp_path / "r" / STORE_NAME) as s:
        assert s.count("attacked") == 8
        rows = list(s.generations())
    assert all(r["prompt"] == r["prompt"].upper() for r in rows)
    # a resume with one more defense attacks nothing again: the new defense reads the stored samples
    comps.CountingCaps.calls.clear()
    more = run(config(attack, defenses=("none", "safety_prompt", {"name": "safety_prompt", "id": "sp2",
                                                                 "args": {"prompt": "Be careful."}})),
               out=tmp_path / "r", report=False, progress=False)
    assert more.generated == 8 * 2 and comps.CountingCaps.calls == []


def test_a_failing_attack_is_recorded_and_retried_without_losing_the_rest(tmp_path):
    bad = {"name": "sgtest_components:CountingCaps", "id": "caps", "args": {"fail_on": "unit-0003"}}
    res = run(config(bad, targets=("a",), defenses=("none",)), out=tmp_path / "r", report=False, progress=False)
    # chunk_size 4: the batch holding unit-0003 fails (4 samples), the other batch goes through
    assert res.generated == 4 and res.failed == 4
    with Store(tmp_path / "r" / STORE_NAME) as s:
        assert {e["stage"] for e in s.errors()} == {"attack"}
    good = {"name": "sgtest_components:CountingCaps", "id": "caps"}
    again = run(config(good, targets=("a",), defenses=("none",)), out=tmp_path / "r", report=False, progress=False)
    assert again.generated == 4 and again.failed == 0


def test_white_box_attacks_run_per_target_and_are_refused_for_black_box_targets(tmp_path):
    comps.CountingWhiteBox.targets.clear()
    attack = {"name": "sgtest_components:CountingWhiteBox", "id": "wb"}
    run(config(attack, defenses=("none", "safety_prompt"), n=4), out=tmp_path / "r", report=False, progress=False)
    assert sorted(comps.CountingWhiteBox.targets) == ["heeds-a"] * 4 + ["heeds-b"] * 4  # per target, not per defense
    raw = config(attack, n=2)
    raw["targets"] = [{"name": "openai", "id": "api", "args": {"base_url": "http://127.0.0.1:9", "model": "m"}}]
    with pytest.raises(ConfigError, match=r"white-box .* target api \(openai\) is black-box"):
        build_plan(parse_config(raw))
    raw["attacks"] = [{**attack, "targets": ["elsewhere"]}]
    raw["targets"].append({"name": HEEDS, "id": "elsewhere"})
    build_plan(parse_config(raw))  # restricted to a target it can see into: fine


def test_frozen_restores_weights_and_mode_and_pgd_keeps_the_best_image():
    import torch

    from safeglass.attacks.gradient import PGDAttack, frozen, images_tensor
    from safeglass.registry import registry
    from safeglass.types import Sample

    target = registry("targets").build("tiny", family="llava")
    model = target.model
    model.train()
    list(model.parameters())[0].requires_grad_(False)
    before = [p.requires_grad for p in model.parameters()]
    with frozen(model):
        assert not any(p.requires_grad for p in model.parameters()) and not model.training
    assert [p.requires_grad for p in model.parameters()] == before and model.training
    model.eval()

    attack = PGDAttack(target_text="Sure", epsilon=8 / 255, step_size=2 / 255, steps=6, blank_size=32)
    sample = Sample.from_text("s", "describe this")
    (out,) = attack.apply_batch([sample], target)
    losses = out.metadata["attack_losses"]
    assert out.metadata["attack_loss"] == min(losses) and len(losses) == 6
    assert out.metadata["attack_linf"] <= 8 / 255 + 1e-6
    x = images_tensor(out, target)
    assert torch.equal(x, (x * 255).round() / 255)  # on the 8-bit grid the stored PNG has
    with torch.no_grad():  # the image kept is the one that scored the best loss
        again = float(-target.loglikelihood(out.turns, "Sure", pixel_values=x))
    assert again == pytest.approx(out.metadata["attack_loss"], abs=1e-3)
    with pytest.raises(ValueError, match="no image to perturb"):
        PGDAttack(steps=1).apply_batch([sample], target)


def test_pgd_in_a_run_is_stored_once_per_target(tmp_path):
    raw = {"name": "pgd", "targets": [{"name": "tiny", "id": "v", "args": {"family": "llava"}}],
           "datasets": [{"name": "sgtest_components:load_pictures", "id": "pics", "args": {"n": 2}}],
           "defenses": ["none", "safety_prompt"],
           "attacks": [{"name": "pgd", "args": {"steps": 2, "blank_size": 16, "target_text": "Sure"}}],
           "generation": {"max_new_tokens": 2}, "judges": ["keyword-refusal"]}
    run(raw, out=tmp_path / "r", report=False, progress=False)
    with Store(tmp_path / "r" / STORE_NAME) as s:
        assert s.count("attacked") == 2 and s.count() == 4
        records = [json.loads(r["sample"]) for r in s.generations()]
    assert all(r["metadata"]["attack_steps"] == 2 for r in records)
    assert all(img["ref"].endswith(".png") for r in records for t in r["turns"] for img in t["images"])
