"""Core benchmarks: runner overhead against bare `model.generate`, and re-running a finished run."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BATCH = 8
NEW_TOKENS = 32


def runner_overhead(n: int = 32) -> Iterator[dict[str, Any]]:
    """Same model object, same prompts in the same batches: `safeglass run` generation (plan, store,
    provenance, chat template) against a bare loop of tokenizer + `model.generate` over the run's batches."""
    import torch

    from bench.rows import planned_batches
    from safeglass import api
    from safeglass.registry import registry
    from safeglass.targets.hf_lm import smollm2
    from safeglass.types import GenerationParams, user

    # dtype auto, as runs use it: bfloat16 emulated on an AVX2 CPU would slow the model ~2.5x and shrink the
    # runner's share of the time with it.
    target = smollm2(dtype="auto", batch_size=BATCH)
    registry("targets").add("bench-prebuilt", lambda: target, "the benchmark's already-loaded SmolLM2", replace=True)
    cfg = {"name": "bench", "targets": ["bench-prebuilt"],
           "datasets": [{"name": "advbench", "limit": n}], "defenses": ["none"], "judges": [],
           "generation": {"max_new_tokens": NEW_TOKENS}, "chunk_size": 32}
    # The bare loop takes the run's own batches (chunks of 32 ordered by prompt length, cut at 8), so both sides
    # pad and order alike and the ratio is the runner's cost alone.
    batches = [[it.sample.prompt for it in b] for b in planned_batches(cfg, BATCH)]
    tok, model = target.tokenizer, target.model
    target.generate([(user(batches[0][0]),)], GenerationParams(max_new_tokens=4))  # warm-up

    def bare() -> float:
        t0 = time.perf_counter()
        for part in batches:
            texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                             add_generation_prompt=True) for p in part]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=tok.pad_token_id)
            tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return time.perf_counter() - t0

    def through_runner() -> float:
        d = Path(tempfile.mkdtemp(prefix="sg-bench-"))
        t0 = time.perf_counter()
        api.run(cfg, out=d, judge=False, report=False, progress=False)
        dt = time.perf_counter() - t0
        shutil.rmtree(d)
        return dt

    # Interleave and keep the best of 3 each: the machine's other load hits both sides alike.
    bare_t, run_t = [], []
    for _ in range(3):
        bare_t.append(bare())
        run_t.append(through_runner())
    ratio = min(run_t) / min(bare_t)
    yield {"bench": "runner overhead (run / bare generate)", "figure": ratio, "unit": "x", "goal": "<= 1.10",
           "note": f"SmolLM2-135M {str(model.dtype).split('.')[-1]}, {n} AdvBench prompts in the run's batches of "
                   f"{BATCH}, {NEW_TOKENS} new tokens; best of 3: run {min(run_t):.1f} s, bare {min(bare_t):.1f} s"}


def rerun_finished(n: int = 32) -> Iterator[dict[str, Any]]:
    """A complete run (generate, judge, report) and then the same command again on the finished
    run directory: the second must find everything done without loading the model."""
    from safeglass import api

    d = Path(tempfile.mkdtemp(prefix="sg-bench-"))
    cfg = {"name": "bench-rerun", "targets": [{"name": "smollm2", "args": {"dtype": "bfloat16", "batch_size": BATCH}}],
           "datasets": [{"name": "advbench", "limit": n}, {"name": "benign-lookalikes", "limit": n}],
           "defenses": ["none"], "judges": ["keyword-refusal", "jigsaw-toxicity"],
           "generation": {"max_new_tokens": NEW_TOKENS}}
    t0 = time.perf_counter()
    api.run(cfg, out=d, progress=False)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = api.run(cfg, out=d, progress=False)
    second = time.perf_counter() - t0
    shutil.rmtree(d)
    yield {"bench": "re-run of a finished run / original", "figure": second / first, "unit": "x", "goal": "<= 0.05",
           "note": f"original {first:.1f} s (incl. model load), re-run {second:.2f} s, "
                   f"{res.done_before} of {res.planned} found done"}


def workers_split(n: int = 32) -> Iterator[dict[str, Any]]:
    """The same generations by one process and by two local workers (`safeglass run --workers 2`), from scratch,
    model load included: on a CPU, workers split the cores (cores // workers threads each), so two can at best
    match one; they pay off with GPUs, remote endpoints or many cores. Also counts replies that differ."""
    import subprocess
    import sys

    import yaml

    from safeglass.eval.scale import threads_per_worker
    from safeglass.eval.store import Store
    from safeglass.machine import cpu_cores

    prompts = max(n, 32) * 2
    d = Path(tempfile.mkdtemp(prefix="sg-bench-workers-"))
    cfg = d / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"name": "bench-workers", "targets": [{"name": "smollm2", "args": {
        "dtype": "float32", "batch_size": BATCH}}], "datasets": [{"name": "advbench", "limit": prompts}],
        "judges": [], "generation": {"max_new_tokens": NEW_TOKENS}, "chunk_size": 16}))
    times, replies = {}, {}
    for workers in (1, 2):
        out = d / f"w{workers}"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "safeglass", "run", str(cfg), "--out", str(out), "--workers",
                        str(workers), "--no-progress", "--no-report", "--no-judge"], check=True,
                       stdout=subprocess.DEVNULL)
        times[workers] = time.perf_counter() - t0
        with Store(out / "store.sqlite") as st:
            replies[workers] = {g["key"]: g["response"] for g in st.generations()}
    differ = sum(replies[1][k] != replies[2].get(k) for k in replies[1])
    shutil.rmtree(d)
    yield {"bench": "2 local workers / 1 process (time)", "figure": times[2] / times[1], "unit": "x",
           "goal": "<= 1.10", "note": f"SmolLM2-135M fp32, {prompts} AdvBench prompts x {NEW_TOKENS} tokens, "
                                      f"{cpu_cores()} cores, {threads_per_worker(2)} threads a worker; 1 process "
                                      f"{times[1]:.0f} s, 2 workers {times[2]:.0f} s (model load included); "
                                      f"{differ} of {len(replies[1])} replies differ"}


def _speed(n: int = 64) -> Iterator[dict[str, Any]]:
    from bench.speed import generation_profile

    yield from generation_profile(n=max(n, 64))


def _shapeworld(n: int = 32) -> Iterator[dict[str, Any]]:
    from bench.shapeworld import shapeworld_speed

    yield from shapeworld_speed(n=n)


def _neurons_auroc(n: int = 0) -> Iterator[dict[str, Any]]:
    from bench.neurons import expertise_speed

    yield from expertise_speed(n=n)


def _neurons_glasses(n: int = 16) -> Iterator[dict[str, Any]]:
    from bench.neurons import glasses_overhead

    yield from glasses_overhead(n=n)


def _sgm_curve(n: int = 20) -> Iterator[dict[str, Any]]:
    from bench.neurons import sgm_curve

    yield from sgm_curve(n=max(n, 8))


def _sgm_vl(n: int = 40) -> Iterator[dict[str, Any]]:
    from bench.neurons import sgm_vl

    yield from sgm_vl(n=max(n, 8))


def _proxy_judge(n: int = 512) -> Iterator[dict[str, Any]]:
    from bench.judges import proxy_throughput

    yield from proxy_throughput(n=max(n, 512))


def _judges_v2(n: int = 512) -> Iterator[dict[str, Any]]:
    from bench.judges import judges_v2_throughput

    yield from judges_v2_throughput(n=max(n, 512))


def _judges_cascade(n: int = 512) -> Iterator[dict[str, Any]]:
    from bench.judges import cascade_throughput

    yield from cascade_throughput(n=max(n, 512))


def _smoothvlm(n: int = 2) -> Iterator[dict[str, Any]]:
    from bench.smoothvlm import smoothvlm_batching

    yield from smoothvlm_batching(n=min(n, 2))  # 16 copies: two full batches, a few minutes on 2 cores


def _clip_classify(n: int = 32) -> Iterator[dict[str, Any]]:
    from bench.clip import classification_throughput

    yield from classification_throughput(n=n)


def _clip_typo(n: int = 32) -> Iterator[dict[str, Any]]:
    from bench.clip import typographic_rendering

    yield from typographic_rendering(n=n)


def _serve_load(n: int = 200) -> Iterator[dict[str, Any]]:
    from bench.serve import serve_load

    yield from serve_load(n=max(n, 200))  # issue 18's load: 200 requests, 8 concurrent


def _serve_gateway(n: int = 32) -> Iterator[dict[str, Any]]:
    from bench.serve import gateway_overhead

    yield from gateway_overhead(n=max(n, 32))


BENCHES: dict[str, Callable[..., Iterator[dict[str, Any]]]] = {
    "runner": runner_overhead,
    "rerun": rerun_finished,
    "workers": workers_split,
    "speed": _speed,
    "shapeworld": _shapeworld,
    "neurons-auroc": _neurons_auroc,
    "neurons-glasses": _neurons_glasses,
    "proxy-judge": _proxy_judge,
    "judges-v2": _judges_v2,
    "judges-cascade": _judges_cascade,
    "sgm-curve": _sgm_curve,
    "sgm-vl": _sgm_vl,
    "smoothvlm": _smoothvlm,
    "clip-classify": _clip_classify,
    "clip-typo": _clip_typo,
    "serve-load": _serve_load,
    "serve-gateway": _serve_gateway,
}
