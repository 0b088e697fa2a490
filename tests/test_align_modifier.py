"""The `unlearn` target modifier: keyed by content, trained once through the artifact store, folded into the
target so that runs evaluate the unlearned model."""

from __future__ import annotations

import json

import pytest

from safeglass.align.modifier import UnlearnModifier

ARGS = {"method": "ga", "steps": 4, "lr": 1e-2, "examples": 4, "forget_n": 8, "max_prompt_chars": 50,
        "step_examples": 4}


def test_the_key_moves_with_every_option_and_the_ranking_file(tmp_path):
    base = UnlearnModifier(**ARGS).key()
    assert UnlearnModifier(**ARGS).key() == base
    assert UnlearnModifier(**{**ARGS, "steps": 5}).key() != base
    assert UnlearnModifier(**{**ARGS, "method": "npo"}).key() != base
    r = tmp_path / "forgetting.json"
    r.write_text(json.dumps({"result": {"ranking_easy_to_hard": ["a", "b"]}}))
    k1 = UnlearnModifier(**ARGS, subset="easy", ranking=str(r)).key()
    r.write_text(json.dumps({"result": {"ranking_easy_to_hard": ["b", "a"]}}))
    assert UnlearnModifier(**ARGS, subset="easy", ranking=str(r)).key() != k1
    with pytest.raises(ValueError, match="ranking"):
        UnlearnModifier(**ARGS, subset="easy").train(None, tmp_path)


def test_trained_once_and_applied_it_lowers_the_refusal_likelihood(tmp_path):
    from safeglass.align.data import build_data
    from safeglass.align.measure import refusal_loss
    from safeglass.registry import registry
    from safeglass.targets.modifiers import applied_labels, build_trained
    from safeglass.targets.tiny import tiny_target

    assert registry("modifiers").get("unlearn") is UnlearnModifier
    target = tiny_target("llama")
    spec = {"forget_n": 8, "retain_n": 2, "heldout_n": 2, "lookalikes_n": 0, "fluency_n": 0, "max_prompt_chars": 50,
            "answer_tokens": 4}
    forget = build_data(target.model, target.tokenizer, spec, 0, say=lambda s: None).forget
    before = sum(refusal_loss(target.model, target.tokenizer, forget))
    mod = UnlearnModifier(**ARGS)
    folder = build_trained(mod, target, {"target": "tiny"}, root=tmp_path)
    assert (folder / "adapter_model.safetensors").is_file()
    assert sum(refusal_loss(target.model, target.tokenizer, forget)) == pytest.approx(before)  # training copied
    mod.apply(target)
    after = sum(refusal_loss(target.model, target.tokenizer, forget))
    assert after > before + 0.1
    assert applied_labels(target) == ["unlearn ga random 4x4"]
    again = UnlearnModifier(**ARGS)
    again.train = None  # a second build with the same key must not train
    assert build_trained(again, tiny_target("llama"), {"target": "tiny"}, root=tmp_path) == folder
