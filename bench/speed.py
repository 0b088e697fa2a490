"""Where generation time goes on this machine, for each demo target, against a roofline and llama.cpp.

For SmolLM2 and SafeSmol-VL with the demo's settings (dtype auto, its batch sizes, 48 new tokens, greedy):
tokens a second through `safeglass run` and through a bare `model.generate` loop on the same batches; the
roofline (this machine's measured matmul throughput in the target's dtype, over the model's FLOPs a token);
and the shares of the run spent in image preprocessing and tokenising, prefill, decoding, padding (the padded
share of prefill tokens) and outside the model (runner, store, Python: the run's time less the bare loop's on the
same batches, signed). Then llama.cpp on SmolLM2 with the same prompts and token budget against HF at batch 1 (like
for like) and HF batched, and the proxy judges inside a run in replies a second.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

NEW_TOKENS = 48
DEMO = {"smollm2": 64, "safesmol-vl": 32}  # batch sizes of configs/demo.yaml


def matmul_gflops(dtype: Any, rows: int = 256, k: int = 576, n: int = 1536, reps: int = 100) -> float:
    import torch

    a, b = torch.randn(rows, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(5):
        a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * rows * k * n * reps / (time.perf_counter() - t0) / 1e9


def flops_per_token(model: Any) -> float:
    """2 x the weights a token passes through: every linear layer, the output projection included (a tied
    embedding counts once, as the projection), embeddings looked up for free."""
    import torch

    n = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    return 2.0 * n


def _conversations(name: str, n: int) -> list[Any]:
    from safeglass.data.packaged import load_advbench

    convs = [s.turns for s in load_advbench(limit=n).samples]
    if name == "safesmol-vl":  # half of the demo's VLM prompts carry an image: the typographic attack
        from safeglass.attacks.typographic import TypographicAttack, load_typo_harmful

        attack = TypographicAttack()
        typo = [attack.apply(s, None).turns for s in load_typo_harmful().samples]
        convs = convs[: n // 2] + typo[: n - n // 2]
    return convs


def generation_profile(n: int = 64) -> Iterator[dict[str, Any]]:
    import torch

    from bench.rows import outside_model, planned_batches
    from safeglass import api
    from safeglass.data.dataset import Dataset
    from safeglass.eval.store import Store
    from safeglass.registry import registry
    from safeglass.targets.hf_common import run_generate
    from safeglass.types import GenerationParams, Sample

    params = GenerationParams(max_new_tokens=NEW_TOKENS)
    for name, batch in DEMO.items():
        target = registry("targets").build(name, batch_size=batch)
        convs = _conversations(name, max(n, batch))
        model = target.model
        registry("targets").add("bench-prebuilt", lambda t=target: t, "the benchmark's loaded target", replace=True)
        samples = [Sample(id=f"c{i}", turns=tuple(c), kind="harmful", category="bench", source="bench")
                   for i, c in enumerate(convs)]
        registry("datasets").add("bench-conversations", lambda limit=None, s=samples: Dataset("bench", s, {"n": n}),
                                 "the benchmark's conversations", replace=True)
        cfg = {"name": "bench-speed", "targets": ["bench-prebuilt"], "judges": [],
               "datasets": ["bench-conversations"], "generation": {"max_new_tokens": NEW_TOKENS},
               "chunk_size": batch}
        # The bare loop runs the batches the run will make (the plan's chunks, prompts ordered by length), so the
        # difference between the two is the runner's and not a different padding or order.
        batches = [[it.sample.turns for it in b] for b in planned_batches(cfg, target.batch_size)]
        target.generate(convs[:2], GenerationParams(max_new_tokens=2))  # warm-up
        encode = prefill = generate = 0.0
        real = padded = tokens = 0
        for part in batches:
            t0 = time.perf_counter()
            enc = target._encode(part)
            encode += time.perf_counter() - t0
            mask = enc["attention_mask"]
            real, padded = real + int(mask.sum()), padded + mask.numel()
            with torch.no_grad():
                t0 = time.perf_counter()
                model(**enc, logits_to_keep=1)
                prefill += time.perf_counter() - t0
            t0 = time.perf_counter()
            gens = run_generate(model, target.tokenizer, enc, part, params)
            generate += time.perf_counter() - t0
            tokens += sum(g.completion_tokens for g in gens)
        bare = encode + generate

        d = Path(tempfile.mkdtemp(prefix="sg-bench-speed-"))
        store_s = [0.0]
        original = Store.add_generations

        def timed(self: Any, rows: Any, _orig: Any = original, store_s: list[float] = store_s) -> Any:
            t0 = time.perf_counter()
            try:
                return _orig(self, rows)
            finally:
                store_s[0] += time.perf_counter() - t0

        Store.add_generations = timed  # type: ignore[method-assign]
        try:
            t0 = time.perf_counter()
            api.run(cfg, out=d, judge=False, report=False, progress=False)
            run_s = time.perf_counter() - t0
            with Store(d / "store.sqlite") as st:
                run_tokens = sum(g["completion_tokens"] or 0 for g in st.generations())
        finally:
            Store.add_generations = original  # type: ignore[method-assign]
            shutil.rmtree(d, ignore_errors=True)
        dtype = next(model.parameters()).dtype
        flops = flops_per_token(model)
        roof = matmul_gflops(dtype) * 1e9 / flops
        tps_run, tps_bare = run_tokens / run_s, tokens / bare
        decode = max(0.0, generate - prefill)  # generate re-does the prefill it was timed apart from
        outside = outside_model(run_s, bare)
        shares = {"preprocess+tokenise": encode, "prefill": prefill, "decode": decode}
        share_txt = ", ".join(f"{k} {100 * v / run_s:.0f} %" for k, v in shares.items())
        share_txt += (f", outside the model (runner, store, Python; run - bare loop on the same batches) "
                      f"{outside['seconds']:+.2f} s = {100 * outside['share']:+.1f} %")
        if outside["note"]:
            share_txt += f" ({outside['note']})"
        yield {"bench": f"generation {name}: run tokens/s / roofline", "figure": tps_run / roof, "unit": "x",
               "goal": ">= 0.50", "note": f"{str(dtype).split('.')[-1]}, batch {batch}, {len(convs)} prompts x "
                                           f"{NEW_TOKENS} new tokens: run {tps_run:.0f} tok/s, bare generate "
                                           f"{tps_bare:.0f} tok/s, roofline {roof:.0f} tok/s "
                                           f"({flops / 1e6:.0f} MFLOP a token); time: {share_txt}; "
                                           f"padding {100 * (1 - real / padded):.0f} % of prefill tokens; store "
                                           f"{store_s[0]:.2f} s; tokens run {run_tokens}, bare {tokens}",
               "outside_model_s": outside["seconds"], "outside_model_share": outside["share"]}
        if name == "smollm2":
            yield from _llama_cpp(target, convs, tps_bare)
        del target, model
    yield from _judges_in_run(n)


LIKE_PROMPTS = 32  # prompts for the one-sequence-at-a-time pair: each side decodes them one by one


def _tokens_per_s(target: Any, convs: list[Any]) -> float:
    from safeglass.types import GenerationParams

    t0 = time.perf_counter()
    gens = target.generate(convs, GenerationParams(max_new_tokens=NEW_TOKENS))
    return sum(g.completion_tokens for g in gens) / (time.perf_counter() - t0)


def _llama_cpp(target: Any, convs: list[Any], hf_batched_tps: float) -> Iterator[dict[str, Any]]:
    """llama-cpp-python decodes one sequence at a time, so the like-for-like figure is HF at batch 1 on the same
    prompts, both through their target's ``generate``; the goal is that row's. HF batched against it is a second
    row, labelled with both batch sizes: it says what batching buys, not which engine is faster."""
    from safeglass.registry import registry
    from safeglass.types import GenerationParams

    like = convs[:LIKE_PROMPTS]
    llama = registry("targets").build("smollm2-llama-cpp")
    llama.generate(like[:1], GenerationParams(max_new_tokens=2))  # warm-up
    llama_tps = _tokens_per_s(llama, like)
    batched = target.batch_size
    target.batch_size = 1
    try:
        hf1_tps = _tokens_per_s(target, like)
    finally:
        target.batch_size = batched
    dtype = str(next(target.model.parameters()).dtype).split(".")[-1]
    yield {"bench": "SmolLM2 tokens/s: HF batch 1 / llama.cpp batch 1", "figure": hf1_tps / llama_tps, "unit": "x",
           "goal": ">= 0.83", "note": f"HF {hf1_tps:.1f} tok/s ({dtype}), llama.cpp {llama_tps:.1f} tok/s (Q4_1 file, "
                                      f"{llama.n_threads} threads); both one sequence at a time through their "
                                      f"target's generate, the same {len(like)} prompts x {NEW_TOKENS} new tokens"}
    yield {"bench": f"SmolLM2 tokens/s: HF batch {batched} / llama.cpp batch 1", "figure": hf_batched_tps / llama_tps,
           "unit": "x", "goal": "- (batch differs)",
           "note": f"HF {hf_batched_tps:.0f} tok/s batched (the bare loop above), llama.cpp {llama_tps:.1f} tok/s one "
                   "sequence at a time, which is all llama-cpp-python does: what batching buys, not an engine race"}


def _judges_in_run(n: int) -> Iterator[dict[str, Any]]:
    """Both proxy heads through the runner's judging on stored replies (as a run judges them)."""
    from bench.rows import per_reply
    from safeglass import api
    from safeglass.eval import runner
    from safeglass.judges import proxy

    d = Path(tempfile.mkdtemp(prefix="sg-bench-judge-"))
    m = max(n, 256)
    cfg = {"name": "bench-judge", "targets": [{"name": "echo"}],  # distinct replies: no memo hits across them
           "datasets": [{"name": "advbench", "limit": 260}, {"name": "benign-lookalikes", "limit": 186},
                        {"name": "strongreject", "limit": max(0, m - 446)}], "judges": []}
    api.run(cfg, out=d, judge=False, report=False, progress=False)
    proxy._SHARED.clear()  # a fresh embedder, as a new run has
    from safeglass.config import parse_config

    specs = parse_config({**cfg, "judges": ["proxy-refusal", "proxy-harm"]}).judges
    t0 = time.perf_counter()
    res = runner.judge(d, specs, progress=False)
    dt = time.perf_counter() - t0
    shutil.rmtree(d, ignore_errors=True)
    rate = per_reply(res.added, dt, len(specs))
    # The goal (issue 3) counts replies judged, so the figure is replies a second with every head done; a
    # judgment is one head's verdict on one reply.
    yield {"bench": f"proxy judges in a run, {len(specs)} heads", "figure": rate["replies_per_s"],
           "unit": "replies/s", "goal": ">= 50",
           "note": f"{rate['judgments_per_s']:.0f} judgments/s = {rate['replies_per_s']:.1f} replies/s x "
                   f"{len(specs)} heads; {int(rate['replies'])} replies in {dt:.1f} s incl. loading, one shared "
                   "embedding pass"}
