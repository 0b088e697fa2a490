"""safeglass serve: the official openai SDK against a real uvicorn server, bad input, auth, batching, logging to a
run folder that rejudge and report read, and the tiny HF VLM behind it."""

from __future__ import annotations

import base64
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
import sgtest_components
from conftest import running
from PIL import Image
from starlette.testclient import TestClient

from safeglass import api
from safeglass.cli import main
from safeglass.config import ConfigError
from safeglass.eval.store import Store
from safeglass.serve import messages
from safeglass.serve.config import Limits, serve_config

REC = {"name": "sgtest_components:RecordsBatches", "id": "rec"}
MODEL = "safeglass/rec+safety_prompt"


def png(size: tuple[int, int] = (8, 8), fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, fmt)
    return buf.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def chat(text: str = "hello", model: str = MODEL, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def test_the_openai_sdk_gets_defended_replies_text_image_and_streamed() -> None:
    with running({"target": REC, "defense": "safety_prompt"}) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list()] == [MODEL]
        r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "how are you"}],
                                           max_tokens=32)
        reply = r.choices[0].message.content
        assert reply.startswith("[system: You are a helpful and harmless assistant.")  # the defense's system turn
        assert reply.endswith("You said: how are you") and r.choices[0].finish_reason == "stop"
        assert r.usage.completion_tokens == len(reply.split()) and r.usage.prompt_tokens > 3
        r = client.chat.completions.create(model=MODEL, messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "what is this"},
                                         {"type": "image_url", "image_url": {"url": data_url(png())}}]}])
        reply = r.choices[0].message.content
        assert "[1 image(s)] You said: what is this" in reply and "Be brief." in reply
        stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "how are you"}],
                                                stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "how are you"}]).choices[0].message.content
        assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # pieces, then the end
        assert chunks[-1].usage.total_tokens > 0
    with running({"target": REC, "defense": "none"}) as url:  # and without the defense, no system turn
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        r = client.chat.completions.create(model="safeglass/rec+none", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content == "You said: hi"


def test_a_heeding_target_refuses_more_behind_the_safety_prompt() -> None:
    prompts = [f"request number {i}" for i in range(40)]
    refusals = {}
    for defense in ("none", "safety_prompt"):
        app = api.serve_app({"target": {"name": "sgtest_components:HeedsSystemPrompt", "id": "heeds"},
                             "defense": defense})
        with TestClient(app) as c:
            replies = [c.post("/v1/chat/completions", json=chat(p, f"safeglass/heeds+{defense}")).json()
                       for p in prompts]
        refusals[defense] = sum(r["choices"][0]["message"]["content"].startswith("I'm sorry") for r in replies)
    assert refusals["safety_prompt"] > refusals["none"]


def test_the_token_is_required_and_checked(monkeypatch) -> None:
    monkeypatch.setenv("SG_TEST_TOKEN", "s3cret-token")
    with running({"target": REC, "defense": "safety_prompt", "token_env": "SG_TEST_TOKEN"}) as url:
        wrong = openai.OpenAI(base_url=f"{url}/v1", api_key="nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as err:
            wrong.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        assert err.value.status_code == 401 and err.value.body["code"] == "invalid_api_key"
        missing = httpx.post(f"{url}/v1/chat/completions", json=chat())
        assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
        assert httpx.get(f"{url}/v1/models").status_code == 401
        right = openai.OpenAI(base_url=f"{url}/v1", api_key="s3cret-token", max_retries=0)
        assert right.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}]).choices
    monkeypatch.setenv("SG_TEST_TOKEN", "")
    with pytest.raises(ConfigError, match="SG_TEST_TOKEN"):
        api.serve_app({"target": REC, "token_env": "SG_TEST_TOKEN"})


def test_a_network_address_without_a_token_is_refused(monkeypatch, capsys) -> None:
    with pytest.raises(ConfigError, match="not a loopback address"):
        api.serve_app({"target": REC, "host": "0.0.0.0"})
    assert main(["serve", "--target", "echo", "--host", "0.0.0.0"]) == 2
    assert "--token-env" in capsys.readouterr().err
    assert main(["serve"]) == 2
    monkeypatch.setenv("SG_TEST_TOKEN", "t")
    assert api.serve_app({"target": REC, "host": "0.0.0.0", "token_env": "SG_TEST_TOKEN"}) is not None


def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(tmp_path) -> None:
    limits = {"max_body_bytes": 200_000, "max_image_bytes": 50_000, "max_image_pixels": 256 * 256, "max_images": 2}
    nested: list = [{"type": "text", "text": "deep"}]
    for _ in range(100):
        nested = [nested]
    (tmp_path / "outside.png").write_bytes(png())
    (tmp_path / "inside").mkdir()
    cases = [
        ("malformed JSON", b'{"model": "x", "messages": [', 400, "invalid_json"),
        ("not an object", b"[1, 2]", 400, None),
        ("oversized body", json.dumps(chat("x" * 300_000)).encode(), 413, "request_too_large"),
        ("unknown model", chat(model="gpt-4o"), 404, "model_not_found"),
        ("a module path as the model", chat(model="safeglass.serve:evil"), 404, "model_not_found"),
        ("100-level nested content", {"model": MODEL, "messages": [{"role": "user", "content": nested}]}, 400,
         "too_deep"),
        ("non-image data URL", chat(), 400, "invalid_image_format"),
        ("oversized image bytes", chat(), 413, "request_too_large"),
        ("too many pixels", chat(), 413, "request_too_large"),
        ("a PNG that says JPEG", chat(), 400, "invalid_image_format"),
        ("garbage said to be a PNG", chat(), 400, "invalid_image"),
        ("an http image URL", chat(), 400, "invalid_image_url"),
        ("a local file while they are off", chat(), 400, "invalid_image_url"),
        ("too many images", chat(), 413, "request_too_large"),
        ("no messages", {"model": MODEL, "messages": []}, 400, None),
        ("a bad role", {"model": MODEL, "messages": [{"role": "tool", "content": "x"}]}, 400, None),
        ("a bad temperature", chat(temperature="hot"), 400, None),
    ]
    big_noise = bytes(range(256)) * 300  # 76,800 bytes: over max_image_bytes as a "PNG"
    image_urls = {
        "non-image data URL": [data_url(b"hello, not an image", "text/plain")],
        "oversized image bytes": [data_url(big_noise)],
        "too many pixels": [data_url(png((300, 300)))],
        "a PNG that says JPEG": [data_url(png(), "image/jpeg")],
        "garbage said to be a PNG": [data_url(b"\x89PNG not really")],
        "an http image URL": ["http://169.254.169.254/latest/meta-data.png"],
        "a local file while they are off": [str(tmp_path / "outside.png")],
        "too many images": [data_url(png())] * 3,
    }
    with running({"target": REC, "defense": "safety_prompt", "limits": limits}) as url:
        for what, payload, status, code in cases:
            if what in image_urls:
                parts = [{"type": "text", "text": "look"}] + [{"type": "image_url", "image_url": {"url": u}}
                                                             for u in image_urls[what]]
                payload = {"model": MODEL, "messages": [{"role": "user", "content": parts}]}
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            r = httpx.post(f"{url}/v1/chat/completions", content=body, headers={"content-type": "application/json"})
            assert r.status_code == status, (what, r.status_code, r.text)
            error = r.json()["error"]
            assert set(error) == {"message", "type", "param", "code"} and error["message"], what
            assert code is None or error["code"] == code, (what, error)
            ok = httpx.post(f"{url}/v1/chat/completions", json=chat("still there?"))
            assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"].endswith("still there?")
        assert httpx.get(f"{url}/v1/nothing").status_code == 404
        assert httpx.get(f"{url}/v1/chat/completions").status_code == 405


def test_local_image_files_only_from_the_configured_folder(tmp_path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    (root / "a.png").write_bytes(png())
    (tmp_path / "secret.png").write_bytes(png())
    app = api.serve_app({"target": REC, "defense": "safety_prompt", "local_files": str(root)})

    def ask(ref: str) -> httpx.Response:
        return c.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": ref}}]}]})

    with TestClient(app) as c:
        assert ask("a.png").status_code == 200
        assert ask(f"file://{root / 'a.png'}").status_code == 200
        assert "[1 image(s)]" in ask(str(root / "a.png")).json()["choices"][0]["message"]["content"]
        assert ask("../secret.png").status_code == 400
        assert ask(str(tmp_path / "secret.png")).status_code == 400


def test_concurrent_requests_reach_the_target_in_batches() -> None:
    sgtest_components.BATCH_SIZES.clear()
    config = {"target": {**REC, "args": {"delay_s": 0.3}}, "defense": "safety_prompt",
              "batch": {"max_size": 8, "max_wait_ms": 200}}
    with running(config) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)

        def ask(i: int) -> str:
            r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"q{i}"}])
            return r.choices[0].message.content

        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(ask, range(8)))
    assert [r.rsplit(" ", 1)[1] for r in replies] == [f"q{i}" for i in range(8)]  # each gets its own reply
    assert sum(sgtest_components.BATCH_SIZES) == 8
    assert len(sgtest_components.BATCH_SIZES) < 8, sgtest_components.BATCH_SIZES


def test_logged_requests_are_a_run_that_rejudge_and_report_read(tmp_path) -> None:
    run_dir = tmp_path / "served"
    app = api.serve_app({"target": REC, "defense": "safety_prompt", "log_to": str(run_dir)})
    with TestClient(app) as c:
        for text in ("first request", "second request"):
            assert c.post("/v1/chat/completions", json=chat(text)).status_code == 200
        assert c.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "an image"}, {"type": "image_url", "image_url": {"url": data_url(png())}}]}]}
        ).status_code == 200
        assert c.post("/v1/chat/completions", json=chat(model="nope")).status_code == 404  # refused: not logged
    with Store(run_dir / "store.sqlite") as store:
        rows = list(store.generations())
        assert len(store.plan_keys()) == 3
    assert sorted(r["prompt"] for r in rows) == ["an image", "first request", "second request"]
    assert {r["target"] for r in rows} == {"rec"} and {r["defense"] for r in rows} == {"safety_prompt"}
    prov = json.loads(rows[0]["provenance"])
    assert prov["defense"]["name"] == "safety_prompt" and prov["trace"][0]["role"] == "model"
    assert len(list((run_dir / "images").glob("*.png"))) == 1
    judged = api.judge(run_dir)  # safeglass rejudge: the run's judges (keyword-refusal) over the served replies
    assert judged.added == 3 and judged.failed == 0
    report = api.report(run_dir)["report"].read_text(encoding="utf-8")
    assert "safety_prompt" in report and "rec" in report
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["run"]["name"] == "served"
    replay = api.run({  # the requests again, as a dataset of a run
        "name": "replay", "targets": [REC], "defenses": ["safety_prompt"],
        "datasets": [{"name": "jsonl", "args": {"path": str(run_dir / "requests.jsonl")}}]},
        out=tmp_path / "replay", report=False, progress=False)
    assert replay.generated == 3 and replay.failed == 0


def test_params_are_mapped_and_clamped() -> None:
    limits = Limits(max_new_tokens=64)
    p = messages.params({"max_tokens": 10_000, "temperature": 0.5, "top_p": 0.9, "seed": 7, "stop": "END"}, limits)
    assert (p.max_new_tokens, p.temperature, p.top_p, p.seed, p.stop) == (64, 0.5, 0.9, 7, ("END",))
    assert messages.params({"max_completion_tokens": 5}, limits).max_new_tokens == 5
    assert messages.params({}, limits).max_new_tokens == 64  # the default (256) clamped too
    assert messages.params({}, Limits(default_new_tokens=32)).max_new_tokens == 32
    for bad in ({"max_tokens": 0}, {"top_p": 0}, {"seed": "x"}, {"stop": [1]}, {"n": 2}, {"temperature": 3}):
        with pytest.raises(messages.ApiError):
            messages.params(bad, limits)
    cfg = serve_config(target="echo", defense="S+A")
    assert cfg.model_id == "safeglass/echo+S+A" and cfg.run.defenses[0].name == "chain"


def test_the_tiny_hf_vlm_answers_an_image_request() -> None:
    app = api.serve_app({"target": {"name": "tiny", "args": {"family": "qwen2-vl"}}, "defense": "safety_prompt"})
    with TestClient(app) as c:
        r = c.post("/v1/chat/completions", json={"model": "safeglass/tiny+safety_prompt", "max_tokens": 4,
                                                 "messages": [{"role": "user", "content": [
                                                     {"type": "image_url", "image_url": {"url": data_url(png())}},
                                                     {"type": "text", "text": "what is in the picture?"}]}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body["choices"][0]["message"]["content"], str)
    assert 0 < body["usage"]["completion_tokens"] <= 4 and body["usage"]["prompt_tokens"] > 10


def test_the_example_config_parses() -> None:
    cfg = serve_config(Path(__file__).resolve().parents[1] / "configs" / "serve-example.yaml")
    assert cfg.model_id == "safeglass/safesmol-vl+sp+filter" and cfg.schema.log_to.endswith("runs/served")
    assert [s.name for s in cfg.run.targets] == ["safesmol-vl"] and cfg.run.defenses[0].name == "chain"
    with pytest.raises(ConfigError, match="max_images"):
        serve_config({"target": "echo", "limits": {"max_images": "many"}})


def test_an_upstream_openai_server_behind_the_defense_and_its_failure_is_a_500() -> None:
    with running({"target": REC, "defense": "none"}) as upstream:  # safeglass serving itself, undefended
        target = {"name": "openai", "id": "up", "args": {"base_url": f"{upstream}/v1", "model": "safeglass/rec+none",
                                                         "api_key_env": None, "max_retries": 0, "timeout_s": 10}}
        with running({"target": target, "defense": "safety_prompt"}) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
            r = client.chat.completions.create(model="safeglass/up+safety_prompt",
                                               messages=[{"role": "user", "content": "via upstream"}])
            assert r.choices[0].message.content.startswith("[system: You are a helpful and harmless assistant.")
    with running({"target": {**target, "args": {**target["args"], "base_url": "http://127.0.0.1:9/v1"}},
                  "defense": "safety_prompt"}) as url:
        down = httpx.post(f"{url}/v1/chat/completions", json=chat("x", "safeglass/up+safety_prompt"))
        assert down.status_code == 500 and down.json()["error"]["code"] == "generation_failed"
        assert httpx.get(f"{url}/v1/models").status_code == 200  # and it goes on serving
