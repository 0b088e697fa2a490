"""Experiment 0 of SafeSmol-VL v2 (issue 33): a saved projector on another SafeSmol, measured by the recipe's
own held-out evaluation (VQA, reading, typographic rows), without training.

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 .venv/bin/python scripts/safesmol_vl_transfer.py \
        --projector safesmol-vl-v1 --out runs/vl2/exp0.json

`--projector` is a registered SafeSmol-VL, a build folder or a projector file; the language model is the
profile's (`full`: SafeSmol v2) unless `--safesmol` names a build folder.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--projector", required=True)
    ap.add_argument("--profile", default="full")
    ap.add_argument("--safesmol", help="a SafeSmol build folder (default: the profile's language_model)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    from safeglass.organisms import safesmol_vl

    t0, c0 = time.time(), time.process_time()
    res = safesmol_vl.measure_projector(a.projector, a.profile, a.seed, safesmol_path=a.safesmol, progress=print)
    res.update(wall_seconds=round(time.time() - t0, 1), cpu_seconds=round(time.process_time() - c0, 1),
               load_average=[round(x, 2) for x in os.getloadavg()], profile=a.profile, seed=a.seed,
               projector=a.projector)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    m = res["measured"]
    print(json.dumps({k: m[k] for k in ("vqa_accuracy", "reading_accuracy", "typographic_ratio_proxy",
                                        "typographic_ratio_keyword", "typographic_mmsb_ratio_proxy",
                                        "typographic_mmsb_ratio_keyword")}, indent=1))


if __name__ == "__main__":
    main()
