import math
import random

import pytest

from safeglass.stats import paired_bootstrap, wilson_interval


def test_wilson_matches_known_values():
    # Reference values from the closed form (e.g. statsmodels proportion_confint method="wilson").
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4901625, abs=1e-6)
    assert hi == pytest.approx(0.9433178, abs=1e-6)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(0, 50)
    assert lo == 0.0 and 0.05 < hi < 0.08


def test_wilson_coverage_is_near_nominal():
    rng = random.Random(1)
    p, n, hits = 0.3, 60, 0
    for _ in range(2000):
        k = sum(rng.random() < p for _ in range(n))
        lo, hi = wilson_interval(k, n)
        hits += lo <= p <= hi
    assert 0.93 <= hits / 2000 <= 0.97


def test_paired_bootstrap_detects_a_real_difference_and_not_a_null_one():
    rng = random.Random(0)
    base = [int(rng.random() < 0.6) for _ in range(200)]
    better = [0 if (b and rng.random() < 0.7) else b for b in base]  # refuses 70 % of the successes
    res = paired_bootstrap(better, base, seed=0)
    assert res["delta"] < -0.3 and res["ci_high"] < 0 and res["p_value"] < 0.01
    same = paired_bootstrap(base, base, seed=0)
    assert same["delta"] == 0 and same["p_value"] == 1.0
    noise = paired_bootstrap([int(rng.random() < 0.5) for _ in range(200)],
                             [int(rng.random() < 0.5) for _ in range(200)], seed=0)
    assert noise["ci_low"] <= 0 <= noise["ci_high"] or abs(noise["delta"]) > 0.05


def test_paired_bootstrap_is_seeded_and_checks_lengths():
    a, b = [1, 0, 1, 1, 0] * 10, [0, 0, 1, 0, 0] * 10
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)
    with pytest.raises(ValueError):
        paired_bootstrap([1], [1, 0])
    assert math.isclose(paired_bootstrap(a, b)["delta"], 0.4)


def test_attacked_rows_carry_the_paired_lift_over_no_attack():
    import json as _json

    from safeglass.eval.metrics import metric_rows

    def gen(attack, i, refused):
        return {"target": "t", "defense": "none", "dataset": "d", "attack": attack, "sample_id": f"s{i}",
                "kind": "harmful", "category": "c", "sample": _json.dumps({"metadata": {}}),
                "verdicts": {"kw": {"flag": refused}}}

    # 40 prompts: refused 30 times without the attack, 6 times with it (the same prompts)
    gens = [gen("none", i, i < 30) for i in range(40)] + [gen("typographic", i, i < 6) for i in range(40)]
    rows = metric_rows(gens, {"kw": {"measure": "refusal"}}, seed=0, resamples=500)
    by = {(r["attack"], r["metric"]): r for r in rows if r["category"] is None}
    lift = by[("typographic", "attack_success")]["vs_no_attack"]
    assert lift["attack"] == "none" and lift["n_pairs"] == 40
    assert abs(lift["delta"] - 0.6) < 1e-9 and lift["ci_low"] > 0.3
    assert "vs_no_attack" not in by[("none", "attack_success")]


def test_p_values_never_print_as_zero() -> None:
    from safeglass.stats import format_p

    assert format_p(0.0004) == "< 0.001"
    assert format_p(0.004) == "0.004"  # once printed "0.00" beside cells that said "< 0.001"
    assert format_p(0.0449) == "0.04"
    assert format_p(0.5) == "0.50" and format_p(None) == "n/a" and format_p(float("nan")) == "n/a"
