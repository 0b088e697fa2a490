"""Build the fulfilment and refusal-v2 judges' weights (docs/judges.md).

HF_HUB_OFFLINE=1 .venv/bin/python scripts/build_fulfilment_judge.py [--out DIR] [--seed 0]
Writes fulfilment_heads.safetensors + fulfilment_card.json into src/safeglass/judges/fulfilment_weights/ by default.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safeglass.judges.fulfilment import weights_dir
from safeglass.organisms.fulfilment_train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(weights_dir()))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-safesmol", type=int, default=200)
    ap.add_argument("--cache", default="runs/fulfilment_build/embeddings.npz",
                    help="embeddings kept between builds ('' for none)")
    args = ap.parse_args()
    card = train(args.out, seed=args.seed, n_safesmol=args.n_safesmol, cache=Path(args.cache) if args.cache else None)
    print(json.dumps({k: card[k] for k in ("heads", "sentence_scorers", "n_examples", "timing_s")}, indent=1))


if __name__ == "__main__":
    main()
