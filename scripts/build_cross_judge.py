"""Build the cross-encoder judges' weights (fulfilment-ce, refusal-ce; docs/judges.md).

OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 .venv/bin/python scripts/build_cross_judge.py [--out DIR] [--seed 0]
    [--epochs 4] [--budget-min 20] [--work runs/cross_build] [--data v4|v5]
Runs data v4's pairs once through the packaged MiniLM's frozen lower layers (cached in WORK/lower_hidden.npz), trains
its top two layers and a 2-logit head on that cache with a checkpoint per epoch in WORK/checkpoint/ (a killed build
run again resumes there), and writes cross_encoder.safetensors + cross_card.json into
src/safeglass/judges/cross_weights/ by default.
"""

from __future__ import annotations

import argparse
import json

from safeglass.judges.proxy_files import cross_weights_dir
from safeglass.organisms.cross_judge_train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=None, help="default: the shipped folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--budget-min", type=float, default=20.0, help="no new epoch once it would pass this")
    ap.add_argument("--work", default="runs/cross_build", help="cache and checkpoints")
    ap.add_argument("--trained-layers", type=int, default=2, help="top layers fine-tuned (default 2, as shipped)")
    ap.add_argument("--max-tokens", type=int, default=256, help="input budget in tokens (default 256, as shipped)")
    ap.add_argument("--request-tokens", type=int, default=48, help="tokens of the request kept (default 48)")
    ap.add_argument("--tail-tokens", type=int, default=56, help="tokens of a long reply's end kept (default 56)")
    ap.add_argument("--data", choices=("v4", "v5"), default="v4",
                    help="fulfilment_train's data version (v4: the shipped fulfilment-ce; v5: fulfilment-ce-v5)")
    args = ap.parse_args()
    card = train(args.out or str(cross_weights_dir()), seed=args.seed, epochs=args.epochs, data=args.data,
                 trained_layers=args.trained_layers, max_tokens=args.max_tokens, request_tokens=args.request_tokens,
                 tail_tokens=args.tail_tokens,
                 budget_min=args.budget_min, work_dir=args.work, log=lambda m: print(m, flush=True))
    print(json.dumps({k: card[k] for k in ("heads", "epochs", "history", "float16_verdict_changes", "timing_min")},
                     indent=1))


if __name__ == "__main__":
    main()
