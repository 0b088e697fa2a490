"""Recording pooled neuron activations: batched equals one by one (padding excluded) for the tiny
llama and every tiny VLM family, and each span pools exactly the tokens it names."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from safeglass.neurons.recording import record
from safeglass.targets.tiny import tiny_target
from safeglass.types import ImageRef, Sample, Turn

VLM_FAMILIES = ["qwen2-vl", "qwen2.5-vl", "qwen3-vl", "internvl", "llava"]


def _image(h: int, w: int, seed: int) -> ImageRef:
    rng = np.random.default_rng(seed)
    return ImageRef(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))


IMAGES = [_image(60, 90, 0), _image(40, 40, 1)]
TEXT_ITEMS = [
    ((Turn("user", "hi"),), "ok"),
    ((Turn("system", "be brief"), Turn("user", "tell me a much longer story please")), "once upon a time, far away"),
    ((Turn("user", "and?"),), "the end of it"),
]
IMAGE_ITEMS = [
    ((Turn("user", "what is this?", (IMAGES[0],)),), "a cat"),
    ((Turn("user", "compare these two pictures, please", (IMAGES[0], IMAGES[1])),), "two different dogs"),
    ((Turn("user", "x", (IMAGES[1],)),), "no"),
]



@pytest.fixture(scope="module")
def llama():
    return tiny_target("llama", seed=0)


def _full_inputs(target, conv, response):
    """The single unpadded sequence a reference forward pass sees, and its prompt length."""
    if hasattr(target, "processor"):
        enc = target._process([target.prompt_text(conv)], target._images(conv))
    else:
        ids = target.tokenizer(target.prompt_text(conv), add_special_tokens=False)["input_ids"]
        enc = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
    n_prompt = enc["input_ids"].shape[1]
    resp = torch.tensor([target.tokenizer(response, add_special_tokens=False)["input_ids"]])
    enc["input_ids"] = torch.cat([enc["input_ids"], resp], 1)
    for key in ("attention_mask", "mm_token_type_ids"):
        if key in enc:
            enc[key] = torch.cat([enc[key], torch.full_like(resp, 1 if key == "attention_mask" else 0)], 1)
    return enc, n_prompt


def _site_inputs(target, enc):
    """Every LM site's full [T, width] input on one unpadded sequence, by a hook of our own."""
    seen = {}
    sites = target.neuron_sites()
    handles = [target.module(s.module_path).register_forward_pre_hook(
        lambda m, a, name=s.name: seen.__setitem__(name, a[0][0].detach().clone())) for s in sites]
    try:
        with torch.no_grad():
            target.model(**enc)
    finally:
        for h in handles:
            h.remove()
    return [seen[s.name] for s in sites]


@pytest.mark.parametrize("span", ["response", "prompt"])
@pytest.mark.parametrize("batch_size", [2, 3])
def test_llama_batched_equals_one_by_one(llama, span, batch_size):
    # batch 2 splits the items by length, not in their order: each row must still land at its own item
    batched = record(llama, TEXT_ITEMS, span=span, batch_size=batch_size, progress=False)
    single = record(llama, TEXT_ITEMS, span=span, batch_size=1, progress=False).values  # no padding at all
    assert batched.values.shape == (3, 256) and batched.values.dtype == np.float32
    np.testing.assert_allclose(batched.values, single, atol=2e-5, rtol=1e-5)
    assert [s.name for s in batched.layout] == ["lm.mlp.0", "lm.mlp.1"]
    assert [(s.offset, s.width) for s in batched.layout] == [(0, 128), (128, 128)]


@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_llama_spans_pool_exactly_their_tokens(llama, pooling):
    conv, response = TEXT_ITEMS[1]
    enc, n_prompt = _full_inputs(llama, conv, response)
    full = torch.cat(_site_inputs(llama, enc), dim=1).numpy()  # [T, 256]
    n = full.shape[0]
    ranges = {"prompt": slice(0, n_prompt), "response": slice(n_prompt, n), "all": slice(0, n)}
    for span, rows in ranges.items():
        # batched with shorter items, so this one is padded on the left in other batches' terms
        acts = record(llama, [TEXT_ITEMS[0], (conv, response)], span=span, pooling=pooling, batch_size=2,
                      progress=False)
        want = full[rows].max(0) if pooling == "max" else full[rows].mean(0)
        np.testing.assert_allclose(acts.values[1], want, atol=2e-5, rtol=1e-5)
        assert acts.n_tokens[1] == rows.stop - rows.start
    assert n - n_prompt == len(llama.tokenizer(response, add_special_tokens=False)["input_ids"])


def test_samples_and_errors_and_hooks_are_removed(llama):
    s = Sample.from_text("a", "hello", metadata={"response": "fine"})
    from_sample = record(llama, [s], span="response", progress=False).values
    from_pair = record(llama, [((Turn("user", "hello"),), "fine")], span="response", progress=False).values
    assert np.array_equal(from_sample, from_pair)
    with pytest.raises(ValueError, match="item 1: span 'response' selects no tokens"):
        record(llama, [TEXT_ITEMS[0], ((Turn("user", "q"),), None)], span="response", progress=False)
    with pytest.raises(ValueError, match="vision-language"):
        record(llama, TEXT_ITEMS, span="image", progress=False)
    with pytest.raises(ValueError, match="span must be"):
        record(llama, TEXT_ITEMS, span="middle", progress=False)
    with pytest.raises(TypeError, match="item 0"):
        record(llama, ["just text"], progress=False)
    mods = [llama.module(site.module_path) for site in llama.neuron_sites()]
    assert all(not m._forward_pre_hooks for m in mods)


@pytest.fixture(scope="module", params=VLM_FAMILIES)
def vlm(request):
    return tiny_target(request.param, seed=0)


def test_vlm_batched_equals_one_by_one_with_vision_sites(vlm):
    comps = ("language_model", "vision_tower", "projector")
    batched = record(vlm, IMAGE_ITEMS, span="image", components=comps, batch_size=3, progress=False)
    single = record(vlm, IMAGE_ITEMS, span="image", components=comps, batch_size=1, progress=False).values
    np.testing.assert_allclose(batched.values, single, atol=2e-5, rtol=1e-5)
    assert {s.component for s in batched.layout} == set(comps)
    assert not np.isnan(batched.values).any()
    # the item with two images has more image tokens than those with one
    assert batched.n_tokens[1] > batched.n_tokens[0] and batched.n_tokens[1] > batched.n_tokens[2]


def test_vlm_image_span_is_the_image_placeholder_tokens(vlm):
    conv, response = IMAGE_ITEMS[1]
    enc, n_prompt = _full_inputs(vlm, conv, response)
    full = torch.cat(_site_inputs(vlm, enc), dim=1).numpy()
    image_id = vlm.model.config.image_token_id
    is_image = (enc["input_ids"][0] == image_id).numpy()
    assert 0 < is_image.sum() < n_prompt
    acts = record(vlm, [IMAGE_ITEMS[2], (conv, response)], span="image", pooling="mean", batch_size=2,
                  progress=False)
    np.testing.assert_allclose(acts.values[1], full[is_image].mean(0), atol=2e-5, rtol=1e-5)
    resp = record(vlm, [(conv, response)], span="response", progress=False)
    np.testing.assert_allclose(resp.values[0], full[n_prompt:].max(0), atol=2e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="image"):
        record(vlm, [((Turn("user", "no picture"),), "ok")], span="image", progress=False)
