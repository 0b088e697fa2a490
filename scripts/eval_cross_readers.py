"""The project's own figures behind docs/judges.md's cascade and cross-encoder tries (never PyRIT's sets).

HF_HUB_OFFLINE=1 .venv/bin/python scripts/eval_cross_readers.py gate
    Data v4's validation split behind the phrase gate: each reader's cascade (fulfilment-ce, fulfilment v2, v4, the
    mean of ce and v2 / v4 at the threshold picked on the split), each cascade beside its reader alone, and the
    threshold the cross-encoder would get if picked on the replies the gate lets through.
HF_HUB_OFFLINE=1 .venv/bin/python scripts/eval_cross_readers.py compare DIR [--data v4|v5]
    A cross-encoder built into DIR (scripts/build_cross_judge.py --out DIR) beside the shipped one: accuracy,
    balanced accuracy, recall and specificity on the data's validation split, by origin, on data v5's framed
    examples, and on the held-out texts of tests/test_judges_v2_models.py and tests/test_judges_v4_models.py.
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the held-out texts live with their tests

from safeglass.judges.base import JudgeInput  # noqa: E402
from safeglass.organisms.fulfilment_train import build_examples, pick_threshold  # noqa: E402


def _rates(flags: np.ndarray, y: np.ndarray) -> dict[str, float]:
    recall, spec = float(flags[y == 1].mean()), float((~flags[y == 0]).mean())
    return {"accuracy": round(float((flags == y).mean()), 3), "balanced": round((recall + spec) / 2, 3),
            "recall": round(recall, 3), "specificity": round(spec, 3)}


def _validation(data: str) -> tuple[list, list[JudgeInput]]:
    ex = [e for e in build_examples(0, data=data) if e.split == "val"]
    return ex, [JudgeInput(e.prompt, e.response) for e in ex]


def gate() -> dict:
    from safeglass.judges.cascade import RefusalCascadeJudge
    from safeglass.judges.cross_encoder import FulfilmentCEJudge
    from safeglass.judges.fulfilment import FulfilmentJudge, FulfilmentV4Judge, RefusalV4Judge
    from safeglass.judges.keyword import KeywordRefusalJudge

    ex, items = _validation("v4")
    y = np.array([e.fulfilment for e in ex])
    passed = ~np.array([v.flag for v in KeywordRefusalJudge().judge(items)])
    ce, v2 = FulfilmentCEJudge(), FulfilmentJudge()
    v4 = FulfilmentV4Judge(embedder=v2.embedder)
    p = {"fulfilment-ce": ce.scores(items), "fulfilment": v2.scores(items), "fulfilment-v4": v4.scores(items)}
    thr = {"fulfilment-ce": ce.threshold, "fulfilment": v2.threshold, "fulfilment-v4": v4.threshold}
    for a, b in (("fulfilment-ce", "fulfilment"), ("fulfilment-ce", "fulfilment-v4")):
        p[f"mean({a}, {b})"] = (p[a] + p[b]) / 2
        thr[f"mean({a}, {b})"] = pick_threshold(y, p[f"mean({a}, {b})"])
    out = {"n": len(ex), "gate_passes": int(passed.sum()), "readers": {}}
    for name, s in p.items():
        out["readers"][name] = {"threshold": thr[name], "cascade": _rates((s >= thr[name]) & passed, y),
                                "alone": _rates(s >= thr[name], y)}
    out["fulfilment-ce threshold picked on what the gate passes"] = pick_threshold(y[passed],
                                                                                 p["fulfilment-ce"][passed])
    known = [i for i, e in enumerate(ex) if e.refusal is not None]
    yr = np.array([ex[i].refusal for i in known])
    sub = [items[i] for i in known]
    out[f"refusal (n {len(known)})"] = {
        "refusal-cascade": _rates(np.array([v.flag for v in RefusalCascadeJudge().judge(sub)]), yr),
        "refusal-v4": _rates(np.array([v.flag for v in RefusalV4Judge(embedder=v2.embedder).judge(sub)]), yr)}
    return out


def _heldout() -> dict[str, tuple[str, str, int]]:
    import test_judges_v4_models as v4
    from test_judges_cascade import NOTE_THEN_ANSWER
    from test_judges_v2_models import DEFLECTS, DISCLAIMER_THEN_ANSWER, FULFILS, LATE_REFUSAL, REFUSES, REQUEST

    return {"answer": (REQUEST, FULFILS, 1), "deflection": (REQUEST, DEFLECTS, 0),
            "late refusal": (REQUEST, LATE_REFUSAL, 0),
            "disclaimer with 'I can't', then the answer": (REQUEST, DISCLAIMER_THEN_ANSWER, 1),
            "note, then the answer": (REQUEST, NOTE_THEN_ANSWER, 1), "refusal": (REQUEST, REFUSES, 0),
            "the answer under a poem request": ("Write a short poem about the sea.", FULFILS, 0),
            "long answer": (v4.REQUEST, v4.LONG_ANSWER, 1), "long deflection": (v4.REQUEST, v4.LONG_DEFLECTION, 0),
            "long late refusal": (v4.REQUEST, v4.LONG_LATE_REFUSAL, 0),
            "related question's answer": (v4.REQUEST, v4.RELATED_ANSWER, 0),
            "garden deflection": (v4.GARDEN_REQUEST, v4.GARDEN_DEFLECTION, 0),
            "garden late refusal": (v4.GARDEN_REQUEST, v4.GARDEN_LATE_REFUSAL, 0),
            "long answer under the garden request": (v4.GARDEN_REQUEST, v4.LONG_ANSWER, 0)}


def compare(folder: str, data: str) -> dict:
    from safeglass.judges.cross_encoder import FulfilmentCEJudge

    judges = {"shipped": FulfilmentCEJudge()}
    judges[folder] = FulfilmentCEJudge(weights=folder, embedder=judges["shipped"].embedder)
    ex, items = _validation(data)
    y = np.array([e.fulfilment for e in ex])
    framed = np.array(["framed" in e.origin for e in ex])
    texts = _heldout()
    held = [JudgeInput(q, r) for q, r, _ in texts.values()]
    out = {}
    for name, j in judges.items():
        flags = np.array([v.flag for v in j.judge(items)])
        by = defaultdict(list)
        for e, f in zip(ex, flags):
            by[e.origin].append(int(f == e.fulfilment))
        res = {"threshold": j.threshold, f"data {data} validation": _rates(flags, y),
               "by origin": {k: f"{np.mean(v):.2f} of {len(v)}" for k, v in sorted(by.items())},
               "held-out (p, right?)": {k: [round(float(s), 3), bool((s >= j.threshold) == bool(want))]
                                        for (k, (_, _, want)), s in zip(texts.items(), j.scores(held))}}
        if framed.any():
            res["framed examples"] = _rates(flags[framed], y[framed])
        out[name] = res
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    sub.add_parser("gate")
    c = sub.add_parser("compare")
    c.add_argument("folder")
    c.add_argument("--data", choices=("v4", "v5"), default="v4")
    args = ap.parse_args()
    res = gate() if args.what == "gate" else compare(args.folder, args.data)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
