"""Print the held-out test texts' probabilities under the v2, v3 and v4 sentence judges (docs/judges.md, "Data v4")
and, once its weights are built, the cross-encoder (fulfilment-ce, refusal-ce; "Cross-encoder").

HF_HUB_OFFLINE=1 .venv/bin/python scripts/heldout_judges_v4.py
The texts are tests/test_judges_v4_models.py's (requests and replies written for the tests, none in any training
data); this prints the numbers its strict xfails record, for every data version side by side.
"""

from __future__ import annotations

import sys
from pathlib import Path

from safeglass.judges.base import JudgeInput
from safeglass.judges.cross_encoder import FulfilmentCEJudge, RefusalCEJudge
from safeglass.judges.fulfilment import (
    FulfilmentJudge,
    FulfilmentV3Judge,
    FulfilmentV4Judge,
    ThreeWayJudge,
    ThreeWayV3Judge,
    ThreeWayV4Judge,
)
from safeglass.judges.proxy_files import CROSS_CARD_FILE, cross_weights_dir


def _cases() -> list[tuple[str, str, str]]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import test_judges_v4_models as t

    return [("long answer", t.REQUEST, t.LONG_ANSWER), ("long answer, other request", t.GARDEN_REQUEST, t.LONG_ANSWER),
            ("v3 test's long deflection", t.GARDEN_REQUEST, t.GARDEN_DEFLECTION),
            ("v3 test's long late refusal", t.GARDEN_REQUEST, t.GARDEN_LATE_REFUSAL),
            ("new long deflection", t.REQUEST, t.LONG_DEFLECTION),
            ("new long late refusal", t.REQUEST, t.LONG_LATE_REFUSAL),
            ("related question's answer", t.REQUEST, t.RELATED_ANSWER)]


def main() -> None:
    cases = _cases()
    items = [JudgeInput(p, r) for _, p, r in cases]
    shared = FulfilmentJudge().embedder
    versions = (("v2", FulfilmentJudge, ThreeWayJudge), ("v3", FulfilmentV3Judge, ThreeWayV3Judge),
                ("v4", FulfilmentV4Judge, ThreeWayV4Judge))
    for name, fulfil_cls, three_cls in versions:
        judge = fulfil_cls(embedder=shared)
        scores = judge.head_scores(judge.pairs(items))
        labels = [v.label for v in three_cls(embedder=shared).judge(items)]
        th = judge.model.thresholds
        print(f"{name}: thresholds fulfilment {th['fulfilment']:.2f}, refusal {th['refusal']:.2f}")
        for (case, _, _), pf, pr, label in zip(cases, scores["fulfilment"], scores["refusal"], labels):
            print(f"  {case:30s} fulfilment p {pf:.3f}  refusal p {pr:.3f}  three-way {label}")
    if (cross_weights_dir() / CROSS_CARD_FILE).is_file():
        ce = FulfilmentCEJudge(embedder=shared)
        scores = ce.head_scores(items)
        print(f"ce: thresholds fulfilment {ce.threshold:.2f}, refusal {RefusalCEJudge(embedder=shared).threshold:.2f}")
        for (case, _, _), pf, pr in zip(cases, scores["fulfilment"], scores["refusal"]):
            print(f"  {case:30s} fulfilment p {pf:.3f}  refusal p {pr:.3f}")


if __name__ == "__main__":
    main()
