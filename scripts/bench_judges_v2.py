"""Throughput of the judges v2 (fulfilment + refusal-v2, one pass) beside the proxy judge, the cross-encoder
(fulfilment-ce + refusal-ce, one pass) and the cascade (fulfilment-cascade: the phrase list, then the cross-encoder on
what it leaves), in one process.

HF_HUB_OFFLINE=1 PYTHONPATH=src:. .venv/bin/python scripts/bench_judges_v2.py [N] [--ce] [--cascade]
Typical pairs are bench.judges' (packaged prompts, templated replies, written answers); long ones are 64 replies of
30 distinct sentences. Prints replies a second; on a shared machine, measure both judges in the same run.
"""

import json
import sys
import time

import torch

from bench.judges import _pairs
from safeglass.judges.base import JudgeInput
from safeglass.judges.cascade import FulfilmentCascadeJudge
from safeglass.judges.cross_encoder import FulfilmentCEJudge
from safeglass.judges.fulfilment import FulfilmentJudge
from safeglass.judges.proxy import MiniLMEmbedder, ProxyJudge

torch.set_num_threads(2)
args = [a for a in sys.argv[1:] if not a.startswith("--")]
n = int(args[0]) if args else 256
typical = [JudgeInput(p, r) for p, r in _pairs(n)]
worst = [JudgeInput(it.prompt, " ".join(f"Item {k} goes on with detail {i} about its reasons." for i in range(30)))
         for k, it in enumerate(typical[:64])]
out = {}
extra = [x for x in ("ce", "cascade") if f"--{x}" in sys.argv]
for name in ("fulfilment", "proxy", *extra):
    emb = MiniLMEmbedder(batch_size=64, dtype="float32")
    j = {"fulfilment": FulfilmentJudge, "ce": FulfilmentCEJudge,
         "cascade": lambda embedder: FulfilmentCascadeJudge()}.get(name, lambda embedder: ProxyJudge(
        "refusal", embedder=embedder))(embedder=emb)
    j.judge(typical[:8])
    for label, items in (("typical", typical), ("long", worst)):
        t = time.perf_counter()
        for s in range(0, len(items), 64):
            if name == "fulfilment":
                j.head_scores(j.pairs(items[s:s + 64]))
            elif name == "ce":
                j.head_scores(items[s:s + 64])
            elif name == "cascade":
                j.judge(items[s:s + 64])
            else:
                j.judge_heads(items[s:s + 64])
        out[f"{name} {label}"] = round(len(items) / (time.perf_counter() - t), 1)
        print(name, label, out[f"{name} {label}"], len(items), flush=True)
print(json.dumps(out))
