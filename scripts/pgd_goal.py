"""Did a targeted gradient attack reach its target string? Issue 30's goal table, from a run's store.

    .venv/bin/python scripts/pgd_goal.py runs/pgd-safesmol-vl [--goal 0.8]

One row per target, defense and attack that aimed at a target string (pgd / apgd with ``objective: target``, or a
transfer of their images): how many greedy replies start with the target text (``scorers/target.py: reached``,
the rule of the ``target-reached`` scorer) with a Wilson interval, the step budget and the steps used (early stop),
the attack's minutes (its optimisation, summed over the samples, from each attacked sample's ``attack_seconds``:
once per sample and target, however many defenses reuse it) and the machine the replies were generated on.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from safeglass.eval.runner import STORE_NAME
from safeglass.eval.store import Store
from safeglass.machine import distinct_machines, machine_line
from safeglass.scorers.target import reached
from safeglass.stats import wilson_interval


def goal_rows(run_dir: Path) -> list[dict[str, Any]]:
    cells: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(lambda: {"hits": 0, "n": 0, "machines": []})
    seconds: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)  # (target, attack) -> sample -> seconds
    steps: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    budgets: dict[str, dict[str, Any]] = {}
    with Store(run_dir / STORE_NAME) as store:
        for g in store.generations(store.plan_keys()):
            meta = json.loads(g["sample"]).get("metadata") or {}
            wanted = meta.get("attack_target_text")
            if not isinstance(wanted, str) or not wanted.strip():
                continue
            cell = cells[(g["target"], g["defense"], g["attack"])]
            cell["hits"] += reached(g["response"], wanted)
            cell["n"] += 1
            prov = json.loads(g["provenance"])
            cell["machines"].append(prov.get("machine"))
            attack = prov.get("attack") or {}
            budgets[g["attack"]] = {k: attack.get(k) for k in ("name", "epsilon", "step_size", "steps", "early_stop",
                                                               "norm", "patch") if attack.get(k) is not None}
            if "through" in attack:
                budgets[g["attack"]]["through"] = attack["through"].get("name")
            if "attack_seconds" in meta:
                seconds[(g["target"], g["attack"])][g["sample_id"]] = float(meta["attack_seconds"])
                steps[(g["target"], g["attack"])][g["sample_id"]] = int(meta.get("attack_steps", 0))
    rows = []
    for (target, defense, attack), cell in sorted(cells.items()):
        lo, hi = wilson_interval(cell["hits"], cell["n"])
        used = list(steps[(target, attack)].values())
        rows.append({"target": target, "defense": defense, "attack": attack, "reached": cell["hits"], "n": cell["n"],
                     "share": cell["hits"] / cell["n"], "ci": (lo, hi), "budget": budgets.get(attack, {}),
                     "steps_used_mean": sum(used) / len(used) if used else None,
                     "attack_minutes": sum(seconds[(target, attack)].values()) / 60,
                     "machines": distinct_machines(cell["machines"])})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--goal", type=float, default=0.8, help="the share of prompts that must reach the target")
    args = ap.parse_args(argv)
    rows = goal_rows(args.run_dir)
    if not rows:
        raise SystemExit(f"{args.run_dir}: no reply to a sample attacked toward a target string")
    print("| target | defense | attack | reached [95 % CI] | goal | budget | steps used (mean) | attack minutes | "
          "machine |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        lo, hi = r["ci"]
        budget = ", ".join(f"{k} {v}" for k, v in r["budget"].items())
        used = "" if r["steps_used_mean"] is None else f"{r['steps_used_mean']:.1f}"
        machines = "; ".join(machine_line(m) for m in r["machines"]) or "not recorded"
        print(f"| {r['target']} | {r['defense']} | {r['attack']} | {r['reached']}/{r['n']} = {100 * r['share']:.1f} % "
              f"[{100 * lo:.1f}, {100 * hi:.1f}] | {'met' if r['share'] >= args.goal else 'not met'} | {budget} | "
              f"{used} | {r['attack_minutes']:.1f} | {machines} |")


if __name__ == "__main__":
    main()
