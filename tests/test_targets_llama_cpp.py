"""The llama-cpp target on the packaged SmolLM2 GGUF: greedy and reproducible, token budget and stop strings,
text only, through the runner, keyed apart from the HF engine."""

from __future__ import annotations

import pytest

from safeglass.registry import registry
from safeglass.types import GenerationParams, ImageRef, Turn, user

CONVS = [(user("Name three colours."),), (Turn("system", "Answer in one word."), Turn("user", "Capital of France?"))]


@pytest.fixture(scope="module")
def llama():
    return registry("targets").build("smollm2-llama-cpp", threads=1)


def test_greedy_replies_are_reproducible_and_within_budget(llama) -> None:
    params = GenerationParams(max_new_tokens=12)
    a, b = llama.generate(CONVS, params), llama.generate(list(reversed(CONVS)), params)
    assert [g.text for g in a] == [g.text for g in reversed(b)]
    assert all(0 < g.completion_tokens <= 12 and g.prompt_tokens > 0 and g.text for g in a)


def test_sampling_is_seeded_per_conversation(llama) -> None:
    params = GenerationParams(max_new_tokens=16, temperature=1.0, seed=3)
    assert [g.text for g in llama.generate(CONVS, params)] == [g.text for g in llama.generate(CONVS, params)]


def test_stop_strings_end_the_reply(llama) -> None:
    full = llama.generate(CONVS[:1], GenerationParams(max_new_tokens=24))[0].text
    word = full.split()[2]
    cut = llama.generate(CONVS[:1], GenerationParams(max_new_tokens=24, stop=(word,)))[0]
    assert word not in cut.text and full.startswith(cut.text.rstrip()[:5]) and cut.finish_reason == "stop"


def test_images_are_refused_with_a_clear_error(llama) -> None:
    from PIL import Image

    conv = (Turn("user", "what is this?", (ImageRef(Image.new("RGB", (8, 8))),)),)
    with pytest.raises(ValueError, match="text-only"):
        llama.generate([conv], GenerationParams(max_new_tokens=4))


def test_runs_through_the_runner_and_keys_apart_from_hf(tmp_path) -> None:
    from safeglass.api import run
    from safeglass.config import parse_config

    cfg = {"targets": [{"name": "smollm2-llama-cpp", "args": {"threads": 1}}],
           "datasets": [{"name": "advbench", "limit": 3}], "generation": {"max_new_tokens": 8}}
    result = run(cfg, out=tmp_path / "r", progress=False)
    assert (result.generated, result.failed) == (3, 0)
    both = parse_config({"targets": ["smollm2", "smollm2-llama-cpp"], "datasets": ["advbench"]})
    assert both.targets[0].key_config() != both.targets[1].key_config()
    assert "llama.cpp" in registry("targets").build("smollm2-llama-cpp", threads=1).config()["engine"]
