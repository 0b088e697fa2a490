"""OpenAICompatTarget against a real local HTTP server that fakes /chat/completions."""

from __future__ import annotations

import json
import logging
import pickle
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from safeglass.targets.openai_compat import EndpointError, OpenAICompatTarget
from safeglass.types import GenerationParams, ImageRef, Target, Turn

SECRET = "sk-test-SECRET-0123456789"
FAKE_PNG = b"\x89PNG\r\n\x1a\n" + b"not really an image"

# A behaviour gets (server, request number, parsed body, headers) and returns
# (status, extra headers, response body, seconds to sleep before answering).
Behaviour = Callable[["FakeServer", int, dict[str, Any], dict[str, str]],
                     tuple[int, dict[str, str], Any, float]]


def ok_echo(server: FakeServer, n: int, body: dict[str, Any], headers: dict[str, str]):
    content = body["messages"][-1]["content"]
    text = content if isinstance(content, str) else content[-1]["text"]
    return 200, {}, completion(f"re: {text}"), 0.0


def completion(text: str, usage: dict[str, int] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": "x", "object": "chat.completion",
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                        "finish_reason": "stop"}]}
    if usage is not None:
        out["usage"] = usage
    return out


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler still sleeping past the client's timeout must not hang teardown

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.behaviour: Behaviour = ok_echo
        self.lock = threading.Lock()
        self.requests: list[tuple[dict[str, Any], dict[str, str]]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        headers = {k.lower(): v for k, v in self.headers.items()}
        with srv.lock:
            n = len(srv.requests)
            srv.requests.append((body, headers))
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        done = False
        try:
            if self.path != "/v1/chat/completions":
                status, extra, payload, sleep = 404, {}, {"error": {"message": "no route"}}, 0.0
            else:
                status, extra, payload, sleep = srv.behaviour(srv, n, body, headers)
            if sleep:
                time.sleep(sleep)
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            # Leave "in flight" before the client can see the answer: otherwise, on a loaded machine, the
            # client's next request is counted before this thread reaches its decrement.
            done = True
            with srv.lock:
                srv.in_flight -= 1
            self.send_response(status)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)
        finally:
            if not done:
                with srv.lock:
                    srv.in_flight -= 1


@pytest.fixture
def server() -> Iterator[FakeServer]:
    srv = FakeServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def make(server: FakeServer, **kw: Any) -> OpenAICompatTarget:
    kw.setdefault("api_key_env", "SG_TEST_KEY")
    kw.setdefault("backoff_s", 0.001)
    kw.setdefault("timeout_s", 5.0)
    return OpenAICompatTarget(server.base_url, "test-model", **kw)


def conv(text: str, *images: ImageRef) -> tuple[Turn, ...]:
    return (Turn("user", text, tuple(images)),)


def test_request_body_params_images_and_auth(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SG_TEST_KEY", SECRET)
    server.behaviour = lambda s, n, b, h: (200, {}, completion(
        "fine", {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}), 0.0)
    target = make(server, extra_body={"top_k": 20})
    assert isinstance(target, Target)
    img = ImageRef(FAKE_PNG)
    conversation = (
        Turn("system", "be careful"),
        Turn("user", "look at this", (img, img)),
        Turn("assistant", "I see it"),
        Turn("user", "and now?"),
    )
    params = GenerationParams(max_new_tokens=17, temperature=0.7, top_p=0.9, seed=42, stop=("END",))
    [gen] = target.generate([conversation], params)

    assert gen.text == "fine"
    assert (gen.prompt_tokens, gen.completion_tokens) == (11, 3)
    assert gen.seconds > 0
    assert gen.finish_reason == "stop"

    [(body, headers)] = server.requests
    assert headers["authorization"] == f"Bearer {SECRET}"
    assert headers["content-type"] == "application/json"
    assert body["model"] == "test-model"
    assert body["max_tokens"] == 17
    assert body["temperature"] == 0.7
    assert body["top_p"] == 0.9
    assert body["seed"] == 42
    assert body["stop"] == ["END"]
    assert body["top_k"] == 20
    msgs = body["messages"]
    assert msgs[0] == {"role": "system", "content": "be careful"}
    assert msgs[2] == {"role": "assistant", "content": "I see it"}
    assert msgs[3] == {"role": "user", "content": "and now?"}
    parts = msgs[1]["content"]
    assert msgs[1]["role"] == "user"
    assert [p["type"] for p in parts] == ["image_url", "image_url", "text"]  # images before text
    assert parts[0]["image_url"]["url"] == img.data_url()
    assert parts[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert parts[2]["text"] == "look at this"


def test_no_key_no_auth_header_and_missing_usage(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SG_TEST_KEY", raising=False)
    [gen] = make(server).generate([conv("hi")], GenerationParams())
    assert gen.text == "re: hi"
    assert (gen.prompt_tokens, gen.completion_tokens) == (0, 0)
    body, headers = server.requests[0]
    assert "authorization" not in headers
    assert "stop" not in body  # empty stop list is not sent


def test_key_read_at_request_time(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SG_TEST_KEY", raising=False)
    target = make(server)
    monkeypatch.setenv("SG_TEST_KEY", "sk-later")
    target.generate([conv("hi")], GenerationParams())
    assert server.requests[0][1]["authorization"] == "Bearer sk-later"


def test_order_preserved_and_concurrency_limited(server: FakeServer) -> None:
    def slow_first(s: FakeServer, n: int, body: dict[str, Any], headers: dict[str, str]):
        text = body["messages"][-1]["content"]
        i = int(text.split()[-1])
        # Earlier prompts answer later, so completion order is roughly the reverse of input order.
        return 200, {}, completion(f"answer {i}"), 0.01 * (20 - i) / 2 + 0.02

    server.behaviour = slow_first
    target = make(server, concurrency=3)
    gens = target.generate([conv(f"prompt {i}") for i in range(20)], GenerationParams())
    assert [g.text for g in gens] == [f"answer {i}" for i in range(20)]
    assert len(server.requests) == 20
    assert server.max_in_flight <= 3
    assert server.max_in_flight >= 2  # and it does run requests in parallel


def test_concurrency_limit_holds_across_parallel_generate_calls(server: FakeServer) -> None:
    server.behaviour = lambda s, n, b, h: (200, {}, completion("ok"), 0.03)
    target = make(server, concurrency=2)
    threads = [threading.Thread(target=target.generate, args=([conv(f"p{j}{i}") for i in range(4)],
                                                               GenerationParams()))
               for j in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(server.requests) == 12
    assert server.max_in_flight <= 2


def test_retries_500_and_429_then_success(server: FakeServer, caplog: pytest.LogCaptureFixture,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SG_TEST_KEY", SECRET)

    def flaky(s: FakeServer, n: int, body: dict[str, Any], headers: dict[str, str]):
        if n == 0:
            return 500, {}, {"error": {"message": "engine hiccup"}}, 0.0
        if n == 1:
            return 429, {"Retry-After": "0.3"}, {"error": {"message": "slow down"}}, 0.0
        if n == 2:
            return 503, {}, b"<html>bad gateway</html>", 0.0
        return ok_echo(s, n, body, headers)

    server.behaviour = flaky
    target = make(server, max_retries=5)
    t0 = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="safeglass.targets"):
        [gen] = target.generate([conv("hello")], GenerationParams())
    assert time.perf_counter() - t0 >= 0.3  # Retry-After honoured though backoff_s is tiny
    assert gen.text == "re: hello"
    assert gen.extra["attempts"] == 4
    assert len(server.requests) == 4
    assert "HTTP 500" in caplog.text and "HTTP 429" in caplog.text
    assert SECRET not in caplog.text


def test_retries_exhausted_raise(server: FakeServer) -> None:
    server.behaviour = lambda s, n, b, h: (502, {}, {"error": {"message": "upstream down"}}, 0.0)
    with pytest.raises(EndpointError) as info:
        make(server, max_retries=2).generate([conv("x")], GenerationParams())
    assert len(server.requests) == 3
    assert info.value.status == 502
    assert "3 attempt" in str(info.value) and "upstream down" in str(info.value)


def test_400_is_not_retried_and_error_is_clear(server: FakeServer) -> None:
    server.behaviour = lambda s, n, b, h: (
        400, {}, {"error": {"message": "max_tokens is too large for this model", "type": "invalid"}}, 0.0)
    with pytest.raises(EndpointError) as info:
        make(server).generate([conv("x")], GenerationParams())
    assert len(server.requests) == 1
    msg = str(info.value)
    assert info.value.status == 400
    assert "HTTP 400" in msg and "max_tokens is too large" in msg and "test-model" in msg


def test_one_failure_fails_the_batch_without_sending_everything(server: FakeServer) -> None:
    def bad_third(s: FakeServer, n: int, body: dict[str, Any], headers: dict[str, str]):
        if body["messages"][-1]["content"] == "p2":
            return 422, {}, {"detail": "unprocessable"}, 0.0
        return 200, {}, completion("ok"), 0.05

    server.behaviour = bad_third
    with pytest.raises(EndpointError, match="HTTP 422: unprocessable"):
        make(server, concurrency=2).generate([conv(f"p{i}") for i in range(40)], GenerationParams())
    assert len(server.requests) < 40


def test_timeout_is_retried_then_errors(server: FakeServer) -> None:
    server.behaviour = lambda s, n, b, h: (200, {}, completion("too late"), 1.0)
    t0 = time.perf_counter()
    with pytest.raises(EndpointError, match="timed out") as info:
        make(server, timeout_s=0.2, max_retries=1).generate([conv("x")], GenerationParams())
    assert time.perf_counter() - t0 < 1.5
    assert len(server.requests) == 2
    assert info.value.attempts == 2


def test_connection_refused_is_retried_then_errors() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = OpenAICompatTarget(f"http://127.0.0.1:{port}/v1", "m", max_retries=2, backoff_s=0.001)
    with pytest.raises(EndpointError, match="3 attempt.*connection error"):
        target.generate([conv("x")], GenerationParams())


def test_key_never_leaks(server: FakeServer, monkeypatch: pytest.MonkeyPatch,
                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("SG_TEST_KEY", SECRET)
    target = make(server, max_retries=1)
    assert SECRET not in json.dumps(target.config())
    assert SECRET not in repr(target)
    assert SECRET not in str(vars(target))
    assert SECRET not in str(pickle.loads(pickle.dumps(target)).__dict__)

    # A server that echoes the rejected key, as some hosted APIs do.
    def echo_key(s: FakeServer, n: int, body: dict[str, Any], headers: dict[str, str]):
        key = headers["authorization"].removeprefix("Bearer ")
        status = 503 if n == 0 else 401
        return status, {}, {"error": {"message": f"Incorrect API key provided: {key}"}}, 0.0

    server.behaviour = echo_key
    with caplog.at_level(logging.DEBUG), pytest.raises(EndpointError) as info:
        target.generate([conv("x")], GenerationParams())
    assert info.value.status == 401
    assert "Incorrect API key provided" in str(info.value)
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    assert SECRET not in caplog.text
    assert "503" in caplog.text  # the retry was logged, redacted


def test_config_is_identity_only(server: FakeServer) -> None:
    a = make(server, concurrency=1, timeout_s=3, max_retries=0, extra_body={"top_k": 5})
    b = make(server, concurrency=16, timeout_s=99, max_retries=9, extra_body={"top_k": 5})
    assert a.config() == b.config() == {"base_url": server.base_url, "model": "test-model",
                                        "extra_body": {"top_k": 5}}
    json.dumps(a.config())
    assert make(server).name == "test-model"
    assert make(server, name="nice").name == "nice"


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        OpenAICompatTarget("127.0.0.1:8000", "m")
    with pytest.raises(ValueError):
        OpenAICompatTarget("http://127.0.0.1:8000", "m", concurrency=0)
    with pytest.raises(TypeError):
        OpenAICompatTarget("http://127.0.0.1:8000", "m", extra_body={"x": object()})


def test_empty_batch_sends_nothing(server: FakeServer) -> None:
    assert make(server).generate([], GenerationParams()) == []
    assert server.requests == []
