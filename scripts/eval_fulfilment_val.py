"""Compare judges-v2 heads of different data versions on the project's own validation split (never PyRIT's sets).

HF_HUB_OFFLINE=1 .venv/bin/python scripts/eval_fulfilment_val.py [--data v3|v4] [FOLDER ...]
Default folders: the shipped v2 heads (fulfilment_weights), the v3 heads (fulfilment_weights_v3) and, when built, the
v4 heads (fulfilment_weights_v4). Prints each
head's accuracy, balanced accuracy and accuracy by origin at the card's threshold, as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safeglass.judges.fulfilment import weights_dir
from safeglass.judges.proxy_files import fulfilment_v3_weights_dir, fulfilment_v4_weights_dir
from safeglass.organisms.fulfilment_train import evaluate_heads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("folders", nargs="*")
    ap.add_argument("--data", choices=("v2", "v3", "v4"), default="v3")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", choices=("train", "val"), default="val")
    ap.add_argument("--cache", default="runs/fulfilment_build/embeddings.npz")
    args = ap.parse_args()
    folders = args.folders or [str(d) for d in (weights_dir(), fulfilment_v3_weights_dir(), fulfilment_v4_weights_dir())
                               if d.is_dir()]
    for folder in folders:
        res = evaluate_heads(folder, seed=args.seed, data=args.data, split=args.split,
                             cache=Path(args.cache) if args.cache else None)
        print(json.dumps(res, indent=1), flush=True)


if __name__ == "__main__":
    main()
