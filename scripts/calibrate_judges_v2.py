"""Calibrate the judges v2 on PyRIT's human labels in one process (one embedding pass shared by all of them).

HF_HUB_OFFLINE=1 .venv/bin/python scripts/calibrate_judges_v2.py [--out src/safeglass/judges/calibration_results]
Each result equals `safeglass judges calibrate --judge NAME --labels pyrit:SET` (same judge identity, same labels,
bootstrap seed 0, 2000 resamples); this script only saves re-embedding the same replies for every judge.
PyRIT's sets are a held-out yardstick: nothing here feeds back into training or thresholds.
"""

from __future__ import annotations

import argparse

from safeglass import api
from safeglass.judges.calibration import format_table
from safeglass.judges.fulfilment import FulfilmentJudge, RefusalV2Judge, ThreeWayJudge

RUNS = (("fulfilment", "pyrit:objective"), ("refusal-v2", "pyrit:refusal"), ("refusal-v2", "pyrit:objective"),
        ("three-way", "pyrit:refusal"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", help="calibration store folder (default $SAFEGLASS_HOME/calibration)")
    args = ap.parse_args()
    judges = {"fulfilment": FulfilmentJudge(), "refusal-v2": RefusalV2Judge(), "three-way": ThreeWayJudge()}
    for name, labels in RUNS:
        for r in api.calibrate(judges[name], labels, store_dir=args.out):
            print(format_table(r))
            print(f"judged in {r['timing_s']['judge']:.2f} s; saved to {r.get('saved_to')}\n", flush=True)


if __name__ == "__main__":
    main()
