"""Calibrate the cascade judges on PyRIT's human labels, with the declared ablation beside them.

HF_HUB_OFFLINE=1 .venv/bin/python scripts/calibrate_cascades.py [--out src/safeglass/judges/calibration_results]

The candidates were fixed before this was first run (safeglass.judges.cascade, committed first): fulfilment-cascade
(phrase gate AND fulfilment-ce) on objective achieved, refusal-cascade (phrase gate OR refusal-v4) on refusal and on
objective achieved. The ablation swaps in the sentence-feature v2 readers (phrase gate AND fulfilment; phrase gate
OR refusal-v2) and is reported, not a candidate. Each registered cascade's result equals `safeglass judges calibrate
--judge NAME --labels pyrit:SET` (bootstrap seed 0, 2000 resamples). PyRIT's sets are a held-out yardstick: nothing
here feeds back into any judge.
"""

from __future__ import annotations

import argparse

from safeglass import api
from safeglass.judges.calibration import format_result
from safeglass.judges.cascade import CascadeJudge, FulfilmentCascadeJudge, RefusalCascadeJudge
from safeglass.judges.fulfilment import FulfilmentJudge, RefusalV2Judge


class KeywordAndFulfilment(CascadeJudge):
    """Ablation: the phrase gate AND fulfilment (v2)."""

    name, mode = "ablation:keyword-and-fulfilment", "and"


class KeywordOrRefusalV2(CascadeJudge):
    """Ablation: the phrase gate OR refusal-v2."""

    name, mode = "ablation:keyword-or-refusal-v2", "or"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", help="calibration store folder (default $SAFEGLASS_HOME/calibration)")
    args = ap.parse_args()
    refusal = RefusalCascadeJudge()
    runs = [(FulfilmentCascadeJudge(), "pyrit:objective"), (refusal, "pyrit:refusal"), (refusal, "pyrit:objective"),
            (KeywordAndFulfilment(FulfilmentJudge()), "pyrit:objective"),
            (KeywordOrRefusalV2(RefusalV2Judge()), "pyrit:refusal")]
    for judge, labels in runs:
        for r in api.calibrate(judge, labels, store_dir=args.out):
            print(format_result(r), flush=True)


if __name__ == "__main__":
    main()
