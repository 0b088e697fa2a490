"""A summary shaped like `make demo`'s (targets, defenses, judges, datasets, attacks and per-category rows),
so layout tests measure a report of the size people actually read without running the demo."""

from __future__ import annotations

import math
import random

HARMFUL = {"advbench": 8, "typo-harmful": 12}  # dataset -> number of categories
BENIGN = {"benign-lookalikes": 5}
TOXIC_ONLY = {"rtp-challenging": 7}
VL_ATTACKS = ("typographic", "typographic-mmsb")
TARGETS = [("safesmol-vl", "SafeSmol-VL", True), ("safesmol-vl-sgm", "SafeSmol-VL + sgm s1 glasses", True),
           ("smollm2", "SmolLM2-135M-Instruct", False)]
DEFENSES = ("none", "safety_prompt")
JUDGES = [("jigsaw-toxicity@5c87eb4572", "jigsaw-toxicity", "toxicity", None),
          ("keyword-refusal@70faa2f7b1", "keyword-refusal", "refusal", 0.669),
          ("proxy-harm@30bc89acc6", "proxy-harm", "harm", 0.673),
          ("proxy-refusal@36a45b8ea9", "proxy-refusal", "refusal", 0.911)]


def _interval(k: int, n: int) -> tuple[float, float]:
    # Wilson, written out here so the fixture does not depend on where the stats module lives.
    z, p = 1.959963984540054, k / n
    mid, half = (p + z * z / (2 * n)), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (mid - half) / (1 + z * z / n)), min(1.0, (mid + half) / (1 + z * z / n))


def _row(rng: random.Random, key: dict, metric: str, category: str | None, n: int) -> dict:
    k = rng.randint(0, n)
    lo, hi = _interval(k, n)
    vb = None
    if key["defense"] != "none":
        d = rng.uniform(-0.3, 0.1)
        vb = {"baseline": "none", "delta": d, "ci_low": d - 0.08, "ci_high": d + 0.08, "p_value": 0.01, "n_pairs": n}
    vna = None
    if key["attack"] != "none":
        d = rng.uniform(-0.1, 0.4)
        vna = {"delta": d, "ci_low": d - 0.08, "ci_high": d + 0.08, "p_value": 0.02, "n_pairs": n}
    return {**key, "metric": metric, "category": category, "n": n, "k": k, "value": k / n, "ci_low": lo,
            "ci_high": hi, "vs_baseline": vb, "vs_no_attack": vna}


def _metrics(measure: str, kind: str) -> list[str]:
    if measure == "refusal":
        return ["attack_success", "refusal_rate"] if kind == "harmful" else ["over_refusal"]
    if measure == "harm":
        return ["harmful_rate"] if kind == "harmful" else []
    return ["toxicity_rate"]


def demo_like_summary(seed: int = 0) -> dict:
    rng = random.Random(seed)
    rows = []
    datasets = [(d, c, "harmful") for d, c in HARMFUL.items()] + [(d, c, "benign") for d, c in BENIGN.items()]
    datasets += [(d, c, "toxic") for d, c in TOXIC_ONLY.items()]
    for tname, _, organism in TARGETS:
        for defense in DEFENSES:
            for dataset, n_cats, kind in datasets:
                attacks = ["none"]
                if kind == "harmful":
                    attacks.append("text-jailbreak")
                    if dataset == "typo-harmful" and organism:
                        attacks += VL_ATTACKS
                for attack in attacks:
                    for jkey, _, measure, _ in JUDGES:
                        if kind == "toxic" and measure != "toxicity":
                            continue
                        key = {"target": tname, "defense": defense, "dataset": dataset, "attack": attack,
                               "judge": jkey}
                        for metric in _metrics(measure, "benign" if kind == "benign" else "harmful"):
                            rows.append(_row(rng, key, metric, None, 50))
                            rows += [_row(rng, key, metric, f"{dataset}-cat-{i}", 6) for i in range(n_cats)]
    machine = {"amx": True, "cores": 2, "cpu": "Intel Xeon", "cpu_capability": "AVX512", "gpu": None,
               "native_bf16": True, "torch_threads": 2}
    targets = [{"name": n, "label": label, "organism": org, "config_hash": f"{i:016x}",
                "config": {"dtype": "bfloat16", "target": "hf-vlm" if org else "hf-lm"}, "machine": machine}
               for i, (n, label, org) in enumerate(TARGETS)]
    judges = [{"key": key, "id": jid, "name": jid, "version": "1", "measure": measure, "weights_hash": "w" * 16,
               "prompt_hash": "", "calibration": None if acc is None else {
                   "dataset": "pyrit-refusal", "accuracy": acc, "accuracy_ci": [acc - 0.05, acc + 0.04], "f1": acc,
                   "kappa": acc - 0.1, "n": 169}} for key, jid, measure, acc in JUDGES]
    config = {"judges": ["keyword-refusal", "proxy-refusal", "proxy-harm", "jigsaw-toxicity"]}
    return {"run": {"name": "demo", "created": "2026-12-03T15:09:45Z", "config_hash": "9cd43acfdae18095", "seed": 0,
                    "versions": {"safeglass": "0.1.0", "torch": "2.5"}, "run_dir": "runs/demo",
                    "n_generations": 3960, "n_errors": 0, "baseline_defense": "none", "config": config},
            "targets": targets, "judges": judges, "rows": rows, "errors": []}


def demo_like_samples(n: int = 12) -> list[dict]:
    out = []
    for i in range(n):
        kind = "harmful" if i % 2 else "benign"
        out.append({"key": f"k{i}", "sample_id": f"s{i:04d}", "dataset": "advbench", "kind": kind,
                    "category": "advbench-cat-0", "target": TARGETS[i % 3][0], "defense": "none", "attack": "none",
                    "prompt": f"prompt {i}", "response": f"response {i}", "images": [],
                    "verdicts": {"proxy-refusal@36a45b8ea9": {"flag": bool(i % 3), "score": 0.5, "label": "refusal",
                                                              "reason": ""}}})
    return out
