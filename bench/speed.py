"""Where generation time goes on this machine, for each demo target, against a roofline and llama.cpp.

For SmolLM2 and SafeSmol-VL with the demo's settings (dtype auto, its batch sizes, 48 new tokens, greedy):
tokens a second through `safeglass run` and through a bare `model.generate` loop on the same batches; the
roofline (this machine's measured matmul throughput in the target's dtype, over the model's FLOPs a token);
and the shares of the run spent in image preprocessing and tokenising, prefill, decoding, padding (the padded
share of prefill tokens) and outside the model (runner, store, Python). Then llama.cpp on SmolLM2 with the same
prompts and token budget, and the proxy judges inside a run.
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

    from safeglass import api
    from safeglass.eval.store import Store
    from safeglass.machine import machine_line
    from safeglass.registry import registry
    from safeglass.targets.hf_common import run_generate
    from safeglass.types import GenerationParams

    params = GenerationParams(max_new_tokens=NEW_TOKENS)
    hf_tps: dict[str, float] = {}
    for name, batch in DEMO.items():
        target = registry("targets").build(name, batch_size=batch)
        convs = _conversations(name, max(n, batch))
        model = target.model
        target.generate(convs[:2], GenerationParams(max_new_tokens=2))  # warm-up
        encode = prefill = generate = 0.0
        real = padded = tokens = 0
        for i in range(0, len(convs), batch):
            part = convs[i:i + batch]
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

        registry("targets").add("bench-prebuilt", lambda t=target: t, "the benchmark's loaded target", replace=True)
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
            from safeglass.data.dataset import Dataset
            from safeglass.types import Sample

            samples = [Sample(id=f"c{i}", turns=tuple(c), kind="harmful", category="bench", source="bench")
                       for i, c in enumerate(convs)]
            registry("datasets").add("bench-conversations", lambda limit=None, s=samples: Dataset("bench", s, {"n": n}),
                                     "the benchmark's conversations", replace=True)
            cfg = {"name": "bench-speed", "targets": ["bench-prebuilt"], "judges": [],
                   "datasets": ["bench-conversations"], "generation": {"max_new_tokens": NEW_TOKENS},
                   "chunk_size": batch}
            t0 = time.perf_counter()
            api.run(cfg, out=d, judge=False, report=False, progress=False)
            run_s = time.perf_counter() - t0
        finally:
            Store.add_generations = original  # type: ignore[method-assign]
            shutil.rmtree(d, ignore_errors=True)
        dtype = next(model.parameters()).dtype
        flops = flops_per_token(model)
        roof = matmul_gflops(dtype) * 1e9 / flops
        tps_run, tps_bare = tokens / run_s, tokens / bare
        hf_tps[name] = tps_run
        decode = max(0.0, generate - prefill)
        shares = {"preprocess+tokenise": encode, "prefill": prefill, "decode": decode,
                  "outside the model (runner, store, Python)": max(0.0, run_s - bare)}
        share_txt = ", ".join(f"{k} {100 * v / run_s:.0f} %" for k, v in shares.items())
        yield {"bench": f"generation {name}: run tokens/s / roofline", "figure": tps_run / roof, "unit": "x",
               "goal": ">= 0.50", "note": f"{str(dtype).split('.')[-1]}, batch {batch}, {len(convs)} prompts x "
                                           f"{NEW_TOKENS} new tokens: run {tps_run:.0f} tok/s, bare generate "
                                           f"{tps_bare:.0f} tok/s, roofline {roof:.0f} tok/s "
                                           f"({flops / 1e6:.0f} MFLOP a token); time: {share_txt}; "
                                           f"padding {100 * (1 - real / padded):.0f} % of prefill tokens; store "
                                           f"{store_s[0]:.2f} s; {machine_line()}"}
        if name == "smollm2":
            yield from _llama_cpp(convs, tps_run)
        del target, model
    yield from _judges_in_run(n)


def _llama_cpp(convs: list[Any], hf_tps: float) -> Iterator[dict[str, Any]]:
    from safeglass.registry import registry
    from safeglass.types import GenerationParams

    llama = registry("targets").build("smollm2-llama-cpp")
    llama.generate(convs[:1], GenerationParams(max_new_tokens=2))
    t0 = time.perf_counter()
    gens = llama.generate(convs, GenerationParams(max_new_tokens=NEW_TOKENS))
    dt = time.perf_counter() - t0
    tps = sum(g.completion_tokens for g in gens) / dt
    yield {"bench": "SmolLM2: HF run / llama.cpp (tokens/s)", "figure": hf_tps / tps, "unit": "x",
           "goal": ">= 0.83", "note": f"llama.cpp {tps:.0f} tok/s on the Q4_1 file, {llama.n_threads} threads, one "
                                      f"sequence at a time; HF run {hf_tps:.0f} tok/s batched"}


def _judges_in_run(n: int) -> Iterator[dict[str, Any]]:
    """Both proxy heads through the runner's judging on stored replies (as a run judges them)."""
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
    per = res.added / 2
    yield {"bench": "proxy judges inside a run (replies/s each)", "figure": res.added / dt, "unit": "/s",
           "goal": ">= 50", "note": f"{int(per)} replies x 2 heads in {dt:.1f} s incl. loading, one shared embedding "
                                    f"pass ({per / dt:.0f} replies/s for both heads together)"}
