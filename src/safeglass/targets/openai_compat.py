"""A black-box target behind an OpenAI-compatible ``/chat/completions`` endpoint.

Works with vLLM, SGLang, llama.cpp server and hosted APIs.  Standard library only (urllib and
threads) so that evaluating a served model needs no extra dependencies.

The API key is read from the environment at request time and is never stored on the object: a
target's ``config()`` goes into result keys and stores, and its ``repr`` and errors into logs.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

from safeglass.types import Conversation, Generation, GenerationParams, Turn

log = logging.getLogger("safeglass.targets")

# Statuses that say "try again later" rather than "your request is wrong".
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 60.0
MAX_RETRY_AFTER_S = 300.0
_MESSAGE_LIMIT = 500


class EndpointError(RuntimeError):
    """A request the endpoint refused or that kept failing; ``status`` is None for network errors."""

    def __init__(self, message: str, status: int | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts


class _Retryable(Exception):
    """Internal: one failed attempt worth retrying, with the server's hint on when (if any)."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class _Cancelled(Exception):
    """Internal: another request of the batch failed, so this one stops early."""


def turn_to_message(turn: Turn) -> dict[str, Any]:
    """One Turn as an OpenAI chat message: images first (as data URLs), then the text."""
    if not turn.images:
        return {"role": turn.role, "content": turn.text}
    parts: list[dict[str, Any]] = [
        {"type": "image_url", "image_url": {"url": img.data_url()}} for img in turn.images
    ]
    if turn.text:  # some servers reject an empty text part next to an image
        parts.append({"type": "text", "text": turn.text})
    return {"role": turn.role, "content": parts}


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:  # the HTTP-date form
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _server_message(body: bytes) -> str:
    """The human part of an error body: OpenAI style ``{"error": {"message"}}``, FastAPI ``detail``..."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:_MESSAGE_LIMIT]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            for k in ("message", "detail", "msg"):
                if err.get(k):
                    return str(err[k])[:_MESSAGE_LIMIT]
        elif isinstance(err, str):
            return err[:_MESSAGE_LIMIT]
        if data.get("detail"):
            return str(data["detail"])[:_MESSAGE_LIMIT]
    return text[:_MESSAGE_LIMIT]


class OpenAICompatTarget:
    """A model served behind an OpenAI-compatible chat completions endpoint.

    Requests of one ``generate`` call run on ``concurrency`` threads (a per-target semaphore also
    bounds concurrent ``generate`` calls together), retrying 429 / 5xx / network errors / timeouts
    with exponential backoff and jitter, honouring ``Retry-After``.  Other 4xx fail at once.

    Args:
        base_url: the API root, http:// or https://, e.g. http://localhost:8000/v1 (``/chat/completions`` is
            appended).
        model: the model name sent in each request.
        api_key_env: name of the environment variable holding the API key, read at request time and sent as a
            Bearer token; null sends no key.
        concurrency: requests in flight at once, at least 1.
        timeout_s: per-request timeout, in seconds.
        max_retries: retries of a request after a 408 / 409 / 425 / 429 / 5xx, a network error or a timeout.
        backoff_s: first retry delay, in seconds, doubled on each retry (up to 60 s) with jitter.
        name: the target's name in results and reports (default: ``model``).
        extra_body: extra JSON fields merged into each request body (overriding the defaults); part of the
            result key.
    """

    def __init__(self, base_url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY",
                 concurrency: int = 8, timeout_s: float = 60.0, max_retries: int = 5,
                 backoff_s: float = 1.0, name: str | None = None,
                 extra_body: dict[str, Any] | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, not {base_url!r}")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if max_retries < 0:
            raise ValueError("max_retries must not be negative")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = int(concurrency)
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.name = name or model
        self.extra_body = dict(extra_body or {})
        json.dumps(self.extra_body)  # fail now, not on the first request, if it cannot be sent
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._rng = random.Random()  # jitter only: it never changes outputs

    # -- identity -------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "model": self.model, "extra_body": self.extra_body}

    def __repr__(self) -> str:
        return f"OpenAICompatTarget(name={self.name!r}, base_url={self.base_url!r}, model={self.model!r})"

    def __getstate__(self) -> dict[str, Any]:  # locks cannot be pickled (e.g. shipping to workers)
        state = dict(self.__dict__)
        state.pop("_slots", None)
        state.pop("_rng", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._rng = random.Random()

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    # -- generation -----------------------------------------------------------------------------
    def payload(self, conv: Conversation, params: GenerationParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [turn_to_message(t) for t in conv],
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": params.seed,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        body.update(self.extra_body)
        return body

    def generate(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[Generation]:
        convs = list(conversations)
        if not convs:
            return []
        results: list[Generation | None] = [None] * len(convs)
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(convs)),
                                  thread_name_prefix="safeglass-openai")
        try:
            futures = {pool.submit(self._one, c, params, stop): i for i, c in enumerate(convs)}
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                # Stop the rest of the batch quickly: the runner records the chunk as failed anyway.
                stop.set()
                first = min(failed, key=lambda f: futures[f])
                raise first.exception()  # type: ignore[misc]
            for f, i in futures.items():
                results[i] = f.result()
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
        return results  # type: ignore[return-value]

    def _one(self, conv: Conversation, params: GenerationParams, stop: threading.Event) -> Generation:
        data = json.dumps(self.payload(conv, params)).encode("utf-8")
        last: _Retryable | None = None
        for attempt in range(self.max_retries + 1):
            if stop.is_set():
                raise _Cancelled()
            if attempt:
                delay = self._backoff(attempt, last)
                log.warning("%s: %s; retry %d/%d in %.2fs", self.name, last, attempt, self.max_retries, delay)
                if stop.wait(delay):
                    raise _Cancelled()
            try:
                with self._slots:
                    t0 = time.perf_counter()
                    raw = self._post(data)
                    seconds = time.perf_counter() - t0
            except _Retryable as exc:
                last = exc
                continue
            return self._parse(raw, seconds, attempt + 1)
        assert last is not None
        raise EndpointError(
            f"{self.url} (model {self.model!r}) failed after {self.max_retries + 1} attempt(s): {last}",
            status=last.status, attempts=self.max_retries + 1,
        )

    def _backoff(self, attempt: int, last: _Retryable | None) -> float:
        base = min(self.backoff_s * (2 ** (attempt - 1)), MAX_BACKOFF_S)
        # Full-range jitter in [base/2, base] spreads out clients that failed together.
        delay = base * (0.5 + 0.5 * self._rng.random())
        if last is not None and last.retry_after is not None:
            delay = max(delay, last.retry_after)
        return delay

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self._key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def _redact(self, text: str) -> str:
        # Some servers echo the key they rejected ("Incorrect API key provided: sk-...").
        key = self._key()
        return text.replace(key, "***") if key else text

    def _post(self, data: bytes) -> bytes:
        req = urllib.request.Request(self.url, data=data, headers=self._headers(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            try:
                body = exc.read()
            except Exception:  # a broken error body must not hide the status
                body = b""
            message = self._redact(_server_message(body)) or exc.reason
            if exc.code in RETRY_STATUSES or exc.code >= 500:
                raise _Retryable(f"HTTP {exc.code}: {message}", exc.code,
                                 _parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
                                 ) from None
            raise EndpointError(
                f"{self.url} (model {self.model!r}) returned HTTP {exc.code}: {message}", status=exc.code
            ) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise _Retryable(f"timed out after {self.timeout_s:g}s") from None
            raise _Retryable(f"connection error: {self._redact(str(exc.reason))}") from None
        except TimeoutError:
            raise _Retryable(f"timed out after {self.timeout_s:g}s") from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise _Retryable(f"connection error: {type(exc).__name__}: {self._redact(str(exc))}") from None

    def _parse(self, raw: bytes, seconds: float, attempts: int) -> Generation:
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            raise EndpointError(
                f"{self.url} (model {self.model!r}) sent a response that is not a chat completion: "
                f"{self._redact(raw[:_MESSAGE_LIMIT].decode('utf-8', errors='replace'))}"
            ) from None
        message = choice.get("message") or {}
        usage = data.get("usage") or {}
        return Generation(
            text=message.get("content") or "",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            seconds=seconds,
            finish_reason=choice.get("finish_reason") or "stop",
            extra={"attempts": attempts},
        )
