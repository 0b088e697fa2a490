"""`safeglass serve` under load, over loopback: latency percentiles, errors and throughput for concurrent clients,
batched against one request a generate call, and the gateway's own cost in front of llama.cpp's server.

Rows print figures beside goals (issue 18): errors 0; batching >= 2x the throughput of one request at a time; serve
with no defense in front of llama.cpp's server <= 1.10x the time of the same requests sent to llama.cpp directly.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

CONCURRENCY = 8
NEW_TOKENS = 16


def prompts(n: int) -> list[str]:
    """n AdvBench prompts (cycled when n is larger than the set)."""
    from safeglass.data.packaged import load_advbench

    texts = [s.prompt for s in load_advbench().samples]
    return [texts[i % len(texts)] for i in range(n)]


def fire(base_url: str, model: str, texts: Sequence[str], concurrency: int = CONCURRENCY,
         max_tokens: int = NEW_TOKENS, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST one chat completion per text from ``concurrency`` client threads; each request's latency (failed ones
    too), the errors (a non-200 answer or no answer) and the wall time of the lot."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []

    def one(text: str) -> None:
        body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
                "temperature": 0, **(extra or {})}
        t0 = time.perf_counter()
        try:
            r = client.post(f"{base_url}/chat/completions", json=body)
            if r.status_code != 200 or not r.json()["choices"][0]["message"]["content"]:
                errors.append(f"{r.status_code}: {r.text[:200]}")
        except httpx.HTTPError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        latencies.append(time.perf_counter() - t0)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(timeout=600, limits=limits) as client, ThreadPoolExecutor(concurrency) as pool:
        t0 = time.perf_counter()
        list(pool.map(one, texts))
        wall = time.perf_counter() - t0
    return {"latencies": latencies, "errors": errors, "wall_s": wall}


def _served(config: dict[str, Any]) -> Any:
    from safeglass import api

    return api.serve({"host": "127.0.0.1", **config, "port": 0}, run=False)


def serve_load(n: int = 200) -> Iterator[dict[str, Any]]:
    """n requests from 8 concurrent clients through `safeglass serve` in front of SmolLM2 (in process, batches of
    up to 8) behind the safety prompt: errors, latency p50 / p95 / p99 and requests a second; then the same requests
    with one request a generate call (``batch.max_size`` 1): the throughput ratio is what batching buys."""
    from bench.rows import latency_summary
    from safeglass.serve.app import in_thread

    texts = prompts(n)
    target = {"name": "smollm2", "id": "smollm2", "args": {"dtype": "float32", "batch_size": CONCURRENCY}}
    model = "safeglass/smollm2+safety_prompt"
    runs = {}
    for label, size in (("batched", CONCURRENCY), ("one at a time", 1)):
        with in_thread(_served({"target": target, "defense": "safety_prompt",
                                "batch": {"max_size": size, "max_wait_ms": 20}})) as url:
            fire(f"{url}/v1", model, texts[:CONCURRENCY])  # warm-up: first calls, allocator, template
            done = fire(f"{url}/v1", model, texts)
        runs[label] = latency_summary(done["latencies"], done["wall_s"], len(done["errors"]))
        if done["errors"]:
            print(f"  {label}: first error: {done['errors'][0]}", flush=True)
    b, one = runs["batched"], runs["one at a time"]
    what = (f"SmolLM2-135M fp32 behind safety_prompt, {n} AdvBench requests, {CONCURRENCY} concurrent clients, "
            f"{NEW_TOKENS} new tokens")
    yield {"bench": "serve load: errors", "figure": float(b["errors"] + one["errors"]), "unit": "requests",
           "goal": "0", "note": f"{what}; batched {b['errors']}, one at a time {one['errors']}"}
    for q in ("p50", "p95", "p99"):
        yield {"bench": f"serve load: latency {q} (batched)", "figure": b[q], "unit": "s", "goal": "-",
               "note": f"{what}; one at a time {one[q]:.2f} s"}
    yield {"bench": "serve load: requests/s (batched)", "figure": b["per_s"], "unit": "req/s", "goal": "-",
           "note": f"{what}; one at a time {one['per_s']:.2f} req/s"}
    yield {"bench": "serve batched / one at a time (req/s)", "figure": b["per_s"] / one["per_s"], "unit": "x",
           "goal": ">= 2", "note": f"{what}; batch.max_size {CONCURRENCY} against 1"}


def gateway_overhead(n: int = 32, rounds: int = 3) -> Iterator[dict[str, Any]]:
    """The same n requests (8 concurrent clients) sent to llama.cpp's server directly and through `safeglass serve`
    with no defense in front of it (the `openai` target, configs/serve-llamacpp.yaml's settings), interleaved,
    best of ``rounds`` each: the ratio of wall times is the gateway's cost (parsing, limits, batching, the hop)."""
    import yaml

    from bench.rows import latency_summary
    from safeglass.serve.app import in_thread
    from safeglass.serve.upstream import llama_server

    texts = prompts(n)
    entry = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "serve-llamacpp.yaml").read_text())
    extra = entry["target"]["args"]["extra_body"]  # the same sampling settings both ways
    with llama_server(threads=2) as upstream:
        target = {**entry["target"], "args": {**entry["target"]["args"], "base_url": upstream}}
        with in_thread(_served({"target": target, "defense": "none", "batch": {"max_size": CONCURRENCY,
                                                                                 "max_wait_ms": 10}})) as url:
            gateway = f"{url}/v1"
            model = "safeglass/smollm2-llamacpp+none"
            fire(upstream, "smollm2", texts[:CONCURRENCY], extra=extra)  # warm-up both
            fire(gateway, model, texts[:CONCURRENCY])
            direct_runs, served_runs = [], []
            for _ in range(rounds):
                direct_runs.append(fire(upstream, "smollm2", texts, extra=extra))
                served_runs.append(fire(gateway, model, texts))
    direct = min(direct_runs, key=lambda r: r["wall_s"])
    served = min(served_runs, key=lambda r: r["wall_s"])
    errors = sum(len(r["errors"]) for r in direct_runs + served_runs)
    d = latency_summary(direct["latencies"], direct["wall_s"], len(direct["errors"]))
    s = latency_summary(served["latencies"], served["wall_s"], len(served["errors"]))
    yield {"bench": "serve(none) / llama.cpp direct (time)", "figure": served["wall_s"] / direct["wall_s"],
           "unit": "x", "goal": "<= 1.10",
           "note": f"SmolLM2 Q4_1 on llama.cpp's server (2 threads), {n} AdvBench requests, {CONCURRENCY} concurrent "
                   f"clients, {NEW_TOKENS} new tokens, best of {rounds}: direct {direct['wall_s']:.1f} s "
                   f"(p50 {d['p50']:.2f} s), through serve {served['wall_s']:.1f} s (p50 {s['p50']:.2f} s); "
                   f"{errors} errors"}
