"""Calibrate the judges v2 on PyRIT's human labels in one process (one embedding pass shared by all of them).

HF_HUB_OFFLINE=1 .venv/bin/python scripts/calibrate_judges_v2.py [--data v2|v3|v4]
    [--out src/safeglass/judges/calibration_results]
Each result equals `safeglass judges calibrate --judge NAME --labels pyrit:SET` (same judge identity, same labels,
bootstrap seed 0, 2000 resamples); this script only saves re-embedding the same replies for every judge.
PyRIT's sets are a held-out yardstick: nothing here feeds back into training or thresholds.
"""

from __future__ import annotations

import argparse

from safeglass import api
from safeglass.judges import fulfilment as f
from safeglass.judges.calibration import format_result

# (fulfilment, refusal, three-way) judges of each data version; each calibrated as v2's are
JUDGES = {"v2": (f.FulfilmentJudge, f.RefusalV2Judge, f.ThreeWayJudge),
          "v3": (f.FulfilmentV3Judge, f.RefusalV3Judge, f.ThreeWayV3Judge),
          "v4": (f.FulfilmentV4Judge, f.RefusalV4Judge, f.ThreeWayV4Judge)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", help="calibration store folder (default $SAFEGLASS_HOME/calibration)")
    ap.add_argument("--data", choices=sorted(JUDGES), default="v2", help="which data version's judges (default v2)")
    args = ap.parse_args()
    fulfil, refusal, three = (cls() for cls in JUDGES[args.data])
    runs = ((fulfil, "pyrit:objective"), (refusal, "pyrit:refusal"), (refusal, "pyrit:objective"),
            (three, "pyrit:refusal"))
    for judge, labels in runs:
        for r in api.calibrate(judge, labels, store_dir=args.out):
            print(format_result(r), flush=True)


if __name__ == "__main__":
    main()
