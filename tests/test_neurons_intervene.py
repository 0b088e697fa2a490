"""Wearing glasses: hooks and folded weights give the same logits and greedy generations on the
tiny llama and tiny VLMs, undo restores the weights bit for bit, alpha = 1 changes nothing, and
targets built with ``glasses=`` fold them at load time and name them by content hash."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from safeglass.neurons.expertise import Expertise
from safeglass.neurons.glasses import Glasses
from safeglass.neurons.intervene import fold, wear
from safeglass.neurons.recording import layout_of
from safeglass.targets.tiny import tiny_target
from safeglass.types import GenerationParams, ImageRef, Turn

FAMILIES = ["llama", "qwen2-vl", "qwen2.5-vl", "qwen3-vl", "internvl", "llava"]
IMAGE = ImageRef(Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)))
PARAMS = GenerationParams(max_new_tokens=10)



def _convs(family: str) -> list[tuple[Turn, ...]]:
    images = () if family == "llama" else (IMAGE,)
    return [(Turn("user", "describe the weather", images),), (Turn("user", "hi"),)]


def _random_expertise(target, seed: int = 0) -> Expertise:
    layout = layout_of(target.neuron_sites())
    rng = np.random.default_rng(seed)
    return Expertise(rng.uniform(0.2, 1.0, layout[-1].stop), layout, {"target": target.config()})


def _logits(target, convs) -> torch.Tensor:
    with torch.no_grad():
        return target.model(**target._encode(convs)).logits.float()


def _weights(target) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in target.model.named_parameters()}


@pytest.fixture(scope="module", params=FAMILIES)
def target(request):
    return tiny_target(request.param, seed=0)


def test_hooks_and_fold_agree_and_undo_is_exact(target):
    family = target.config()["tiny"]
    convs = _convs(family)
    glasses = Glasses.sgm(_random_expertise(target), strength=1.5, curve="sqrt")  # fractional and zero alphas
    assert 0 < glasses.n_dampened and any((a == 0).any() for a in glasses.alphas.values())
    before_w = _weights(target)
    plain = _logits(target, convs)
    plain_gen = [g.text for g in target.generate(convs, PARAMS)]
    with wear(target, glasses):
        hooked = _logits(target, convs)
        hooked_gen = [g.text for g in target.generate(convs, PARAMS)]
    assert not (hooked - plain).abs().max() < 1e-4  # the glasses do change the model
    handle = fold(target, glasses)
    try:
        folded = _logits(target, convs)
        folded_gen = [g.text for g in target.generate(convs, PARAMS)]
    finally:
        handle.undo()
    torch.testing.assert_close(folded, hooked, atol=1e-5, rtol=1e-5)
    assert folded_gen == hooked_gen
    after_w = _weights(target)
    assert all(torch.equal(before_w[n], after_w[n]) for n in before_w)
    assert torch.equal(_logits(target, convs), plain)  # hooks gone too
    assert [g.text for g in target.generate(convs, PARAMS)] == plain_gen


def test_identity_glasses_change_nothing(target):
    convs = _convs(target.config()["tiny"])
    exp = _random_expertise(target)
    ones = Glasses.det0(exp, k=0)
    plain = _logits(target, convs)
    with wear(target, ones):
        assert torch.equal(_logits(target, convs), plain)
    before = _weights(target)
    with fold(target, ones) as handle:
        assert not handle.saved  # no column to change, nothing copied
        assert all(torch.equal(before[n], p) for n, p in target.model.named_parameters())


def test_sites_must_resolve_and_fit():
    t = tiny_target("llama")
    exp = _random_expertise(t)
    g = Glasses.aura(exp)
    site = g.sites[1]
    wrong_width = Glasses({**g.alphas, site.name: np.ones(site.width - 1)},
                          (g.sites[0], site.__class__(**{**site.to_dict(), "width": site.width - 1})), "x")
    with pytest.raises(ValueError, match="site lm.mlp.1: .* takes 128 inputs, the glasses have 127"):
        with wear(t, wrong_width):
            pass
    with pytest.raises(ValueError, match="site lm.mlp.1"):
        fold(t, wrong_width)
    moved = Glasses(g.alphas, (g.sites[0], site.__class__(**{**site.to_dict(), "module_path": "model.nope"})), "x")
    with pytest.raises(ValueError, match="site lm.mlp.1: module 'model.nope' does not exist"):
        fold(t, moved)
    mods = [t.module(s.module_path) for s in g.sites]
    assert all(not m._forward_pre_hooks for m in mods)  # the failed wear left no hook behind
    with pytest.raises(RuntimeError, match="boom"):
        with wear(t, g):
            assert all(len(m._forward_pre_hooks) == 1 for m in mods)
            raise RuntimeError("boom")
    assert all(not m._forward_pre_hooks for m in mods)


def test_glasses_modifier_folds_at_load_and_names_them_by_content(tmp_path):
    from safeglass.neurons.glasses_modifier import GlassesModifier

    plain = tiny_target("llama", seed=0)
    g = Glasses.sgm(_random_expertise(plain), strength=0.8)
    g.save(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    modifier = GlassesModifier(str(tmp_path / "a"))
    worn = modifier.apply(tiny_target("llama", seed=0))
    assert modifier.glasses.hash == g.hash and modifier.key() == f"sha:{g.hash}"
    assert worn.applied_modifiers == (modifier,) and not getattr(plain, "applied_modifiers", ())
    # another path with the same content: the same key; other content: another one
    assert GlassesModifier(str(tmp_path / "b")).key() == modifier.key()
    Glasses.sgm(_random_expertise(plain), strength=0.5).save(tmp_path / "c")
    assert GlassesModifier(str(tmp_path / "c")).key() != modifier.key()
    convs = _convs("llama")
    with wear(plain, g):
        torch.testing.assert_close(_logits(worn, convs), _logits(plain, convs), atol=1e-5, rtol=1e-5)
    # and on a saved model folder (HFCausalLM's own loader)
    plain.model.save_pretrained(tmp_path / "model")
    plain.tokenizer.save_pretrained(tmp_path / "model")
    from safeglass.targets.hf_lm import HFCausalLM

    loaded = GlassesModifier(str(tmp_path / "a")).apply(HFCausalLM(str(tmp_path / "model"), dtype="float32"))
    assert "weights" in loaded.config()
    torch.testing.assert_close(_logits(loaded, convs), _logits(worn, convs), atol=1e-5, rtol=1e-5)
