"""llama.cpp's OpenAI-compatible server (`python -m llama_cpp.server` on the packaged SmolLM2 GGUF) as a real engine:
the `openai` target gets the in-process llama.cpp engine's replies from it, and `safeglass serve` with
configs/serve-llamacpp.yaml puts a defense in front of it for the official openai SDK."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
from pathlib import Path

import openai
import pytest
import yaml
from conftest import require
from PIL import Image

from safeglass import api
from safeglass.eval.store import Store
from safeglass.registry import registry
from safeglass.serve.app import in_thread
from safeglass.serve.config import serve_config
from safeglass.serve.upstream import llama_server
from safeglass.types import GenerationParams, Turn, user

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "serve-llamacpp.yaml"
MODEL = "safeglass/smollm2-llamacpp+sp+filter"
CONVS = [(user("Name three colours."),), (Turn("system", "Answer in one word."), Turn("user", "Capital of France?"))]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """The llama.cpp server on the packaged SmolLM2, on a free port, for the whole module; its base URL."""
    for module in ("llama_cpp", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings"):
        require(importlib.util.find_spec(module) is not None, module,
                "make install installs llama-cpp-python[server]")
    with llama_server(log=tmp_path_factory.mktemp("llama") / "server.log") as url:
        yield url


def upstream_target(url: str, **args):
    """The config's target entry pointed at the test's server."""
    entry = yaml.safe_load(CONFIG.read_text())["target"]
    return {**entry, "args": {**entry["args"], "base_url": url, **args}}


def test_the_openai_target_gets_the_llama_cpp_engines_replies_from_the_server(upstream) -> None:
    target = registry("targets").build("openai", **upstream_target(upstream)["args"])
    params = GenerationParams(max_new_tokens=16)
    served = target.generate(CONVS, params)
    assert all(g.text.strip() and 0 < g.completion_tokens <= 16 and g.prompt_tokens > 5 for g in served)
    # Greedy, but not bit-stable across request orders: llama.cpp keeps the previous prompt in its KV cache and
    # evaluates only the part that differs, so later tokens' floating point depends on what came before (a fresh
    # clone measured "1. Red: The most obvious colour" against "1. Red: This is the most obvious colour" for the same
    # request in reverse order). The opening words are the engine's argmax before any of that adds up.
    again = [g.text for g in target.generate(CONVS[::-1], params)][::-1]
    assert [opening(t) for t in again] == [opening(g.text) for g in served]
    # The same GGUF in process (the llama-cpp target): the server is that engine.
    local = registry("targets").build("smollm2-llama-cpp", threads=1)
    assert [opening(g.text) for g in local.generate(CONVS, params)] == [opening(g.text) for g in served]


def opening(text: str, words: int = 2) -> list[str]:
    return text.split()[:words]


def test_safeglass_serve_defends_the_llama_cpp_server_for_the_openai_sdk(upstream, tmp_path) -> None:
    server = api.serve(CONFIG, run=False, target=upstream_target(upstream), port=0, log_to=str(tmp_path / "served"))
    with in_thread(server) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list()] == [MODEL]
        ask = {"model": MODEL, "messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 24}
        reply = client.chat.completions.create(**ask).choices[0].message.content
        assert reply.strip()
        streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(**ask, stream=True)
                           if c.choices)
        assert streamed == reply
        buf = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buf, "PNG")
        picture = f"data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"
        with pytest.raises(openai.APIStatusError) as err:  # text-only upstream: max_images 0 refuses it here
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [
                {"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": picture}}]}])
        assert err.value.status_code == 413
    with Store(tmp_path / "served" / "store.sqlite") as store:
        rows = list(store.generations())
    assert len(rows) == 2 and {r["response"] for r in rows} == {reply}
    trace = json.loads(rows[0]["provenance"])["trace"]
    model_calls = [t for t in trace if t["role"] == "model"]
    judged = [t for t in trace if t.get("judge") == "proxy-harm-gated"]
    assert len(model_calls) == 1 and judged and not judged[0]["flag"]
    sent = model_calls[0]["sent"]
    assert sent[0]["role"] == "system" and "harmless" in sent[0]["text"]  # the safety prompt went upstream
    # ... and what llama.cpp answered to it is what the client got (the filter passed it)
    assert model_calls[0]["reply"] == reply
    direct = registry("targets").build("openai", **upstream_target(upstream)["args"])
    again = direct.generate([tuple(Turn(t["role"], t["text"]) for t in sent)], GenerationParams(max_new_tokens=24))
    assert again[0].text == reply


def test_the_llamacpp_config_parses() -> None:
    cfg = serve_config(CONFIG)
    assert cfg.model_id == MODEL and cfg.schema.log_to.endswith("runs/served-llamacpp")
    target = cfg.run.targets[0]
    assert target.name == "openai" and target.args["base_url"] == "http://127.0.0.1:8080/v1"
    assert cfg.schema.limits.max_images == 0 and cfg.run.defenses[0].name == "chain"
