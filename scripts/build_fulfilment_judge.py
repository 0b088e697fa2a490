"""Build the fulfilment and refusal-v2 judges' weights (docs/judges.md).

HF_HUB_OFFLINE=1 .venv/bin/python scripts/build_fulfilment_judge.py [--out DIR] [--seed 0] [--data v2|v3|v4]
Writes fulfilment_heads.safetensors + fulfilment_card.json into src/safeglass/judges/fulfilment_weights/ (data v2,
the fulfilment / refusal-v2 / three-way judges), fulfilment_weights_v3/ (data v3, the -v3 judges) or
fulfilment_weights_v4/ (data v4, the -v4 judges) by default.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safeglass.judges.fulfilment import weights_dir
from safeglass.judges.proxy_files import fulfilment_v3_weights_dir, fulfilment_v4_weights_dir
from safeglass.organisms.fulfilment_train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", choices=("v2", "v3", "v4"), default="v2")
    ap.add_argument("--out", help="default: the data version's shipped folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-safesmol", type=int, default=200)
    ap.add_argument("--cache", default="runs/fulfilment_build/embeddings.npz",
                    help="embeddings kept between builds ('' for none)")
    args = ap.parse_args()
    shipped = {"v2": weights_dir, "v3": fulfilment_v3_weights_dir, "v4": fulfilment_v4_weights_dir}
    out = args.out or str(shipped[args.data]())
    card = train(out, seed=args.seed, n_safesmol=args.n_safesmol, cache=Path(args.cache) if args.cache else None,
                 data=args.data)
    print(json.dumps({k: card[k] for k in ("heads", "sentence_scorers", "n_examples", "timing_s")}, indent=1))


if __name__ == "__main__":
    main()
