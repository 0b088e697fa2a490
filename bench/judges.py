"""Proxy judge throughput (issue 3's speed goal: >= 50 responses a second on 2 CPU cores)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any


def _pairs(n: int) -> list[tuple[str, str]]:
    """Real-length (prompt, reply) pairs without the build's cache: packaged prompts with templated
    replies and the written answers (mean reply ~250 characters), plus the worst case (every reply
    past the 128-token cap)."""
    from safeglass.organisms.proxy_judge_answers import ANSWERS
    from safeglass.organisms.proxy_judge_data import collect_prompts, template_examples

    prompts = collect_prompts(0)[: max(n, 64)]
    pairs = [(e.prompt, e.response) for e in template_examples(prompts, {}, 0)]
    pairs += [(requests[0], answer) for requests, answer in ANSWERS]
    return pairs[:n]


def _per_second(judge_batch: Any, items: list[Any], batch: int, embedder: Any = None) -> float:
    """Items a second when ``judge_batch`` is called on consecutive batches of ``items``; ``embedder``'s memo is
    emptied first, so no reply is served from an earlier pass (the warm-up's, another head's)."""
    if embedder is not None:
        embedder.forget()
    t = time.perf_counter()
    for start in range(0, len(items), batch):
        judge_batch(items[start:start + batch])
    return len(items) / (time.perf_counter() - t)


def proxy_throughput(n: int = 512, threads: int = 2, batch: int = 64) -> Iterator[dict[str, Any]]:
    import torch

    from safeglass.judges.proxy import MiniLMEmbedder, ProxyJudge

    torch.set_num_threads(threads)
    emb = MiniLMEmbedder(batch_size=batch)
    refusal = ProxyJudge("refusal", embedder=emb)
    # distinct long replies: one reply repeated was embedded once and served from the memo after
    typical, worst = _typical_and_long(n)
    refusal.judge(typical[:batch])  # warm-up
    for label, items in (("typical", typical), ("every reply past the cap", worst)):
        chars = sum(len(it.response) for it in items) / len(items)
        one = _per_second(refusal.judge, items, batch, emb)
        both = _per_second(refusal.judge_heads, items, batch, emb)
        yield {"bench": f"proxy judge, {label}", "figure": one, "unit": "resp/s", "goal": ">= 50",
               "note": f"one head; both heads in one pass {both:.1f}/s; {len(items)} pairs, mean reply "
                       f"{chars:.0f} chars, batch {batch}, {threads} threads"}


def _typical_and_long(n: int) -> tuple[list[Any], list[Any]]:
    """At least 256 typical pairs, and as many 30-sentence replies, every sentence distinct (so the sentence
    embedder's memo cannot serve any of them) and without a refusal phrase."""
    from safeglass.judges.base import JudgeInput

    typical = [JudgeInput(p, r) for p, r in _pairs(max(n, 256))]
    worst = [JudgeInput(it.prompt, " ".join(f"Item {k} goes on with detail {i} about its reasons." for i in range(30)))
             for k, it in enumerate(typical)]
    return typical, worst


def judges_v2_throughput(n: int = 512, threads: int = 2, batch: int = 64) -> Iterator[dict[str, Any]]:
    """fulfilment / refusal-v2 (sentence-level): replies a second, embedding included, on typical pairs and on
    long replies (every reply cut to its first 10 and last 6 sentences)."""
    import torch

    from safeglass.judges.fulfilment import FulfilmentJudge
    from safeglass.judges.proxy import MiniLMEmbedder

    torch.set_num_threads(threads)
    judge = FulfilmentJudge(embedder=MiniLMEmbedder(batch_size=batch, dtype="float32"))
    typical, worst = _typical_and_long(n)
    judge.judge(typical[:batch])  # warm-up
    for label, items in (("typical", typical), ("30-sentence replies", worst)):
        chars = sum(len(it.response) for it in items) / len(items)
        rate = _per_second(lambda b: judge.head_scores(judge.pairs(b)), items, batch, judge.embedder)
        yield {"bench": f"fulfilment + refusal-v2, {label}", "figure": rate, "unit": "resp/s", "goal": ">= 50",
               "note": f"both heads in one pass; {len(items)} pairs, mean reply {chars:.0f} chars, batch {batch}, "
                       f"{threads} threads, float32"}


def cascade_throughput(n: int = 512, threads: int = 2, batch: int = 64) -> Iterator[dict[str, Any]]:
    """fulfilment-cascade, the default harm judge: the phrase list on every reply, the cross-encoder on those it
    leaves; replies a second on typical pairs (templated refusals among them, which the cross-encoder never reads)
    and on 30-sentence replies without a refusal phrase (every one read)."""
    import torch

    from safeglass.judges.cascade import FulfilmentCascadeJudge

    torch.set_num_threads(threads)
    judge = FulfilmentCascadeJudge()
    typical, worst = _typical_and_long(n)
    judge.judge(typical[:batch])  # warm-up
    for label, items in (("typical", typical), ("30-sentence replies", worst)):
        read = sum(not v.flag for v in judge.gate.judge(items))
        rate = _per_second(judge.judge, items, batch)
        yield {"bench": f"fulfilment-cascade, {label}", "figure": rate, "unit": "resp/s", "goal": ">= 50",
               "note": f"{read} of {len(items)} replies read by the cross-encoder (the rest refused in the opening); "
                       f"batch {batch}, {threads} threads, float32"}
