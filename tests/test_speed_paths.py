"""The CPU speed paths: dtype auto (and its result keys), the contiguous output projection, the converted-GGUF
cache, and proxy judges sharing one embedding pass."""

from __future__ import annotations

import pytest
import torch

from safeglass import machine
from safeglass.config import parse_config
from safeglass.machine import resolve_dtype


def test_auto_is_bfloat16_only_where_it_is_native(monkeypatch) -> None:
    monkeypatch.setattr(machine, "native_bf16", lambda: True)
    assert resolve_dtype("auto") == "bfloat16" and resolve_dtype(None) == "bfloat16"
    monkeypatch.setattr(machine, "native_bf16", lambda: False)
    assert resolve_dtype("auto") == "float32"
    assert resolve_dtype("auto", "cuda:0") == "bfloat16"
    assert resolve_dtype("bfloat16") == "bfloat16" and resolve_dtype("bf16") == "bfloat16"
    with pytest.raises(ValueError, match="unknown dtype 'int3'"):
        resolve_dtype("int3")


def test_a_cpu_held_to_avx2_is_not_native(monkeypatch) -> None:
    machine._cpu_flags.cache_clear()
    monkeypatch.setattr(machine, "_cpu_flags", lambda: frozenset({"avx2", "avx512_bf16", "amx_bf16"}))
    assert machine.native_bf16()
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert not machine.native_bf16()


def test_result_keys_carry_the_resolved_dtype(monkeypatch) -> None:
    def keys() -> dict[str, dict]:
        cfg = parse_config({"targets": ["smollm2", {"name": "smollm2", "id": "f", "args": {"dtype": "float32"}},
                                        {"name": "hf-lm", "id": "a", "args": {"model": "m", "dtype": "auto"}},
                                        "tiny", "echo"], "datasets": ["advbench"]})
        return {t.id: t.key_config()["args"] for t in cfg.targets}

    monkeypatch.setattr(machine, "native_bf16", lambda: True)
    native = keys()
    assert native["smollm2"] == {"dtype": "bfloat16"} and native["a"]["dtype"] == "bfloat16"
    monkeypatch.setattr(machine, "native_bf16", lambda: False)
    emulated = keys()
    # float32 with no dtype named keys as runs did when float32 was the default
    assert emulated["smollm2"] == {} and emulated["a"]["dtype"] == "float32"
    assert native["f"] == emulated["f"] == {"dtype": "float32"}
    assert native["tiny"] == emulated["tiny"] == {} and native["echo"] == {}


def test_the_output_projection_gets_a_contiguous_input_and_outputs_do_not_change() -> None:
    from test_targets_vlm import MIXED as MIXED_CONVERSATIONS

    from safeglass.targets.hf_common import _contiguous_first_input
    from safeglass.targets.tiny import tiny_target
    from safeglass.types import GenerationParams

    x = torch.randn(4, 7, 16)[:, -1:, :]
    assert not x.is_contiguous() and _contiguous_first_input(None, (x,))[0].is_contiguous()
    assert _contiguous_first_input(None, (x.contiguous(),)) is None  # nothing to do: no copy
    target = tiny_target("llava", dtype="bfloat16")
    head = target.model.get_output_embeddings()
    assert head._safeglass_contiguous and len(head._forward_pre_hooks) == 1
    params = GenerationParams(max_new_tokens=6)
    with_hook = [g.text for g in target.generate(MIXED_CONVERSATIONS, params)]
    head._forward_pre_hooks.clear()
    assert [g.text for g in target.generate(MIXED_CONVERSATIONS, params)] == with_hook


def test_proxy_judges_share_one_embedder_and_embed_each_reply_once() -> None:
    from safeglass.judges.base import JudgeInput
    from safeglass.judges.proxy import ProxyHarmJudge, ProxyRefusalJudge

    refusal, harm = ProxyRefusalJudge(), ProxyHarmJudge()
    assert refusal.embedder is harm.embedder
    items = [JudgeInput(f"placeholder request {i}", f"placeholder reply number {i}, unique {id(refusal)}")
             for i in range(20)]
    before = refusal.embedder.embedded
    first = refusal.scores(items)
    after_refusal = refusal.embedder.embedded
    assert after_refusal - before == 40  # 20 prompts + 20 replies
    harm.scores(items)
    again = refusal.scores(items)
    assert refusal.embedder.embedded == after_refusal  # the harm head and the rerun came from the memo
    assert (again == first).all()
    refusal.embedder.forget()  # what the benchmarks do before a timed pass: nothing served from the memo
    assert (refusal.scores(items) == first).all() and refusal.embedder.embedded == after_refusal + 40


@pytest.mark.slow
def test_converted_gguf_has_the_same_weights_and_tokens() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from safeglass.targets.hf_lm import dequantized_gguf, smollm2_path

    gguf = smollm2_path()
    folder = dequantized_gguf(gguf)
    assert (folder / "model.safetensors").is_file() and dequantized_gguf(gguf) == folder  # made once
    direct = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    cached = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, use_safetensors=True)
    a, b = direct.state_dict(), cached.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    tok_direct = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tok_cached = AutoTokenizer.from_pretrained(str(folder))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name three colours."}]
    text = tok_direct.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == tok_cached.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert tok_direct(text)["input_ids"] == tok_cached(text)["input_ids"]


def test_runs_record_the_machine_and_dtype_per_target(tmp_path) -> None:
    import json

    from safeglass.api import run

    cfg = {"targets": [{"name": "tiny", "args": {"dtype": "bfloat16"}}], "datasets": [{"name": "advbench", "limit": 2}],
           "generation": {"max_new_tokens": 2}}
    result = run(cfg, out=tmp_path / "r", progress=False)
    summary = json.loads(result.outputs["summary"].read_text())
    target = summary["targets"][0]
    assert target["machine"]["cpu_capability"] and target["machine"]["cores"] >= 1
    assert target["config"]["dtype"] == "bfloat16"
    html = result.outputs["report"].read_text()
    assert "Generated on" in html and target["machine"]["cpu_capability"] in html


def test_finding_experts_again_reuses_them_without_loading_the_model(tmp_path, monkeypatch) -> None:
    from safeglass.neurons.find import find, parse_find_config

    raw = {"name": "tiny-find", "target": {"name": "tiny", "args": {"family": "llama"}},
           "toxic": [{"dataset": "toxigen-200", "kind": "harmful", "limit": 6}],
           "non_toxic": [{"dataset": "toxigen-200", "kind": "benign", "limit": 6}]}
    first = find(parse_find_config(raw), tmp_path / "e", progress=False)
    assert "reused" not in first
    from safeglass.registry import registry

    monkeypatch.setattr(type(registry("targets")), "build", lambda *a, **k: pytest.fail("the model was loaded"))
    again = find(parse_find_config(raw), tmp_path / "e", progress=False)
    assert again["reused"] and again["summary_data"]["glasses"]["hash"] == first["summary_data"]["glasses"]["hash"]
    monkeypatch.undo()
    changed = find(parse_find_config({**raw, "seed": 1}), tmp_path / "e", progress=False)  # another config: found again
    assert "reused" not in changed
