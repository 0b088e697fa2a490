"""The ASGI app (Starlette): ``GET /v1/models`` and ``POST /v1/chat/completions`` in front of a defended target, and
the uvicorn server that runs it.

The defense answers a request whole (an output filter reads the finished reply before the client may see it), so
``stream: true`` sends the finished reply as SSE chunks in OpenAI's format, ending with ``data: [DONE]``.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from safeglass.config import ConfigError
from safeglass.serve import messages
from safeglass.serve.config import ServeConfig, check_address
from safeglass.serve.engine import Answer, Batcher, Served
from safeglass.serve.messages import ApiError

log = logging.getLogger("safeglass.serve")

STREAM_CHUNK_CHARS = 64  # the finished reply is streamed in pieces of about this many characters


def read_token(cfg: ServeConfig) -> str | None:
    """The bearer token from the environment variable the config names; it must be set and non-empty."""
    name = cfg.schema.token_env
    if name is None:
        return None
    token = os.environ.get(name, "")
    if not token.strip():
        raise ConfigError(f"{cfg.source}: token_env names {name!r}, which is unset or empty; set it to the token "
                          "clients must send as 'Authorization: Bearer <token>'")
    return token


def error_response(err: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
    return JSONResponse(err.body(), status_code=err.status, headers=headers)


class Server:
    """What the routes share: the config, the token, the served model and its batcher."""

    def __init__(self, cfg: ServeConfig, served: Served | None = None) -> None:
        self.cfg = cfg
        self.token = read_token(cfg)
        check_address(cfg, self.token)
        self.served = served or Served(cfg)
        self.batcher = Batcher(self.served.answer, cfg.schema.batch.max_size, cfg.schema.batch.max_wait_ms,
                               on_close=self.served.close)
        self.created = int(time.time())

    def authorize(self, request: Request) -> None:
        if self.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            raise ApiError(401, "a valid bearer token is required: 'Authorization: Bearer <token>'",
                           type="authentication_error", code="invalid_api_key")

    async def body(self, request: Request) -> dict[str, Any]:
        limit = self.cfg.schema.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise messages.too_large(f"a request body over {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise messages.too_large(f"a request body over {limit} bytes")
            chunks.append(chunk)
        try:
            body = json.loads(b"".join(chunks))
        except RecursionError:
            raise messages.bad("the request nests too deeply", code="too_deep") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise messages.bad(f"the body is not valid JSON: {exc}", code="invalid_json") from None
        if not isinstance(body, dict):
            raise messages.bad("the body must be a JSON object")
        messages.check_depth(body, self.cfg.schema.limits)
        return body

    def model_card(self) -> dict[str, Any]:
        return {"id": self.cfg.model_id, "object": "model", "created": self.created, "owned_by": "safeglass"}

    async def models(self, request: Request) -> Response:
        self.authorize(request)
        return JSONResponse({"object": "list", "data": [self.model_card()]})

    async def chat(self, request: Request) -> Response:
        self.authorize(request)
        body = await self.body(request)
        limits = self.cfg.schema.limits
        model = body.get("model")
        if model != self.cfg.model_id:
            raise ApiError(404, f"the model {model!r} does not exist here; this server serves {self.cfg.model_id!r}",
                           param="model", code="model_not_found")
        conv = messages.conversation(body.get("messages"), limits, self.cfg.schema.local_files)
        params = messages.params(body, limits)
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise messages.bad("stream must be true or false", "stream")
        options = body.get("stream_options") or {}
        try:
            answer = await self.batcher.submit(conv, params)
        except ApiError:
            raise
        except Exception as exc:
            raise ApiError(500, f"the model failed: {type(exc).__name__}", type="server_error",
                           code="generation_failed") from exc
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if stream:
            usage = isinstance(options, dict) and bool(options.get("include_usage"))
            return StreamingResponse(self._chunks(rid, created, answer, usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return JSONResponse({
            "id": rid, "object": "chat.completion", "created": created, "model": self.cfg.model_id,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.generation.text},
                         "logprobs": None, "finish_reason": _finish(answer)}],
            "usage": _usage(answer), "system_fingerprint": None})

    async def _chunks(self, rid: str, created: int, answer: Answer, usage: bool) -> AsyncIterator[str]:
        def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            chunk = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": self.cfg.model_id,
                     "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}
            return f"data: {json.dumps(chunk)}\n\n"

        text = answer.generation.text
        yield event({"role": "assistant", "content": ""})
        for i in range(0, len(text), STREAM_CHUNK_CHARS):
            yield event({"content": text[i:i + STREAM_CHUNK_CHARS]})
        yield event({}, _finish(answer))
        if usage:
            chunk = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": self.cfg.model_id,
                     "choices": [], "usage": _usage(answer)}
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"


def _finish(answer: Answer) -> str:
    return "length" if answer.generation.finish_reason == "length" else "stop"


def _usage(answer: Answer) -> dict[str, int]:
    prompt, completion = answer.usage
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def build_app(cfg: ServeConfig, served: Served | None = None) -> Starlette:
    """The ASGI app serving `cfg` (its target and defense built now, unless `served` is given)."""
    server = Server(cfg, served)

    def guarded(handler: Any) -> Any:
        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as err:
                return error_response(err)
            except Exception:  # a bug must still answer in OpenAI's error format, and the server goes on
                log.exception("%s %s failed", request.method, request.url.path)
                return error_response(ApiError(500, "the server failed on this request", type="server_error",
                                               code="internal_error"))
        return route

    async def not_found(request: Request, exc: HTTPException) -> Response:
        kind = "not_found" if exc.status_code == 404 else "method_not_allowed"
        return error_response(ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}",
                                       code=kind))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        server.batcher.close()

    app = Starlette(routes=[Route("/v1/models", guarded(server.models), methods=["GET"]),
                            Route("/v1/chat/completions", guarded(server.chat), methods=["POST"])],
                    exception_handlers={HTTPException: not_found}, lifespan=lifespan)
    app.state.server = server
    return app


def uvicorn_server(cfg: ServeConfig, app: Starlette | None = None, **kwargs: Any) -> Any:
    """A uvicorn Server for `cfg` (``.run()`` blocks; tests start it in a thread with port 0)."""
    import uvicorn

    app = app or build_app(cfg)
    config = uvicorn.Config(app, host=cfg.schema.host, port=cfg.schema.port, log_level="info",
                            limit_concurrency=kwargs.pop("limit_concurrency", 256), **kwargs)
    return uvicorn.Server(config)


@contextmanager
def in_thread(server: Any, start_timeout_s: float = 30.0) -> Iterator[str]:
    """Run a uvicorn Server (``safeglass.api.serve(..., run=False)``; port 0 picks a free port) in a daemon thread
    until the block ends; yields its base URL (``http://HOST:PORT``) once it listens. The tests and the load bench
    serve this way."""
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
