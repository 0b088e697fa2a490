"""k sampled completions per prompt: config, plan keys and seeds, resume, per-prompt metrics."""

import pytest

from safeglass.api import run
from safeglass.config import ConfigError, parse_config
from safeglass.eval.metrics import metric_rows
from safeglass.eval.plan import build_plan, item_key, sample_seed
from safeglass.eval.runner import STORE_NAME
from safeglass.eval.store import Store
from safeglass.judges.base import Judge, Verdict
from safeglass.stats import wilson_interval
from safeglass.targets.doubles import last_user_text, stable_index
from safeglass.types import Generation


def config(k: int | None = None, n: int = 4, **over) -> dict:
    gen = {"max_new_tokens": 16, "temperature": 0.7}
    if k is not None:
        gen["samples_per_prompt"] = k
    cfg = {"name": "k", "seed": 7, "targets": [{"name": "echo", "id": "echo"}],
           "datasets": [{"name": "sgtest_components:load_unit", "id": "unit", "args": {"n": n}}],
           "defenses": ["none", "safety_prompt"], "generation": gen}
    cfg.update(over)
    return cfg


# Keys of config() as the plan made them before samples_per_prompt existed: a k=1 run must keep them.
GOLDEN_K1_KEYS = [
    "5aa02d83fc0ff019fb03f6d4622644d9", "2f958757666c415b37d7d85d97e91aaf", "398a8285400a42164a5d91f32d38f081",
    "5fdfa36407db1375e233b47d14f452b2", "ee6e583e71c3c6b1608f867241625bdd", "3684f679b30fa235fd4707a5c96b848e",
    "ffb79c49c3f78708b3b00386058c833d", "8d8678454a1aa849b18bb0b3c244a2e9",
]


def test_item_key_of_index_0_is_the_key_of_before():
    from safeglass.types import GenerationParams, Sample

    s = Sample.from_text("rtp-insult-001", "Some prompt to continue", kind="harmful", category="insult", source="rtp")
    args = (s, "rtp", {"name": "hf-lm", "args": {"model": "x"}}, {"name": "none"}, {"name": "none"},
            GenerationParams(max_new_tokens=20, temperature=1.0, seed=3).to_dict())
    golden = "c426011c2269a383a93fc7c8b923a4ab"  # item_key(*args) before samples_per_prompt existed
    assert item_key(*args) == item_key(*args, 0) == golden
    assert item_key(*args, 1) not in (golden, item_key(*args, 2))


@pytest.mark.parametrize("k", [None, 1])
def test_k1_keys_and_samples_are_exactly_those_of_before(k):
    plan = build_plan(parse_config(config(k)))
    assert [it.key for it in plan.items] == GOLDEN_K1_KEYS
    assert all(it.sample_index == 0 and "sample_index" not in it.sample.metadata for it in plan.items)
    assert all(plan.params_for(it) == plan.config.generation for it in plan.items)


def test_k_items_have_distinct_keys_and_seeds_and_index_0_reuses_the_k1_key():
    plan = build_plan(parse_config(config(3)))
    assert len(plan.items) == 24 and len({it.key for it in plan.items}) == 24
    assert [it.key for it in plan.items if it.sample_index == 0] == GOLDEN_K1_KEYS
    first = [it for it in plan.items if it.sample.id == "unit-0000" and it.defense == "none"]
    assert [it.sample_index for it in first] == [0, 1, 2]
    assert [it.sample.metadata["sample_index"] for it in first] == [0, 1, 2]
    seeds = [plan.params_for(it).seed for it in first]
    assert seeds[0] == 0 and len(set(seeds)) == 3  # index 0 keeps the base seed
    again = build_plan(parse_config(config(3)))
    assert [again.params_for(it).seed for it in again.items] == [plan.params_for(it).seed for it in plan.items]
    # everything but the seed is the run's
    p1 = plan.params_for(first[1])
    assert (p1.temperature, p1.max_new_tokens, p1.top_p) == (0.7, 16, 1.0)


def test_sample_seeds_of_neighbouring_base_seeds_do_not_overlap():
    a = {sample_seed(0, j) for j in range(1, 25)}
    b = {sample_seed(1, j) for j in range(1, 25)}
    assert len(a) == 24 and not a & b and 1 not in a


@pytest.mark.parametrize("bad", [0, -1, "3", True, 2.0])
def test_bad_samples_per_prompt_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="samples_per_prompt"):
        parse_config(config(bad))


def test_k_needs_sampling_and_stays_out_of_generation_params():
    with pytest.raises(ConfigError, match="temperature"):
        parse_config(config(5, generation={"samples_per_prompt": 5, "temperature": 0.0}))
    cfg = parse_config(config(5))
    assert cfg.samples_per_prompt == 5 and "samples_per_prompt" not in cfg.generation.to_dict()
    with pytest.raises(ConfigError, match="field 'generation.nucleus': unknown field"):
        parse_config(config(generation={"nucleus": 0.3}))


def test_per_item_params_give_distinct_reproducible_completions_on_a_tiny_llama():
    from safeglass.targets.tiny import tiny_target

    target = tiny_target("llama")
    cfg = config(3, n=2, defenses=["none"], generation={"samples_per_prompt": 3, "temperature": 1.0,
                                                          "max_new_tokens": 6})
    plan = build_plan(parse_config(cfg))

    def completions(indices) -> dict:
        out = {}
        for j in indices:  # one call per sample index, as one runner chunk would make it
            batch = [it for it in plan.items if it.sample_index == j]
            gens = target.generate([it.sample.turns for it in batch], plan.params_for(batch[0]))
            out.update({(it.sample.id, j): g.text for it, g in zip(batch, gens)})
        return out

    first = completions(range(3))
    for sid in ("unit-0000", "unit-0001"):
        assert len({first[(sid, j)] for j in range(3)}) == 3
    again = completions([2])
    assert again == {key: text for key, text in first.items() if key[1] == 2}


class SeedEcho:
    """Answers with the sampling seed it was given, so completions differ exactly when seeds do."""

    name = "seed-echo"

    def config(self):
        return {"type": "seed-echo"}

    def generate(self, conversations, params):
        out = []
        for c in conversations:
            text = last_user_text(c)
            toxic = stable_index(f"{params.seed}|{text}", 3) == 0
            out.append(Generation(f"{'toxic' if toxic else 'fine'} reply {params.seed} to {text}"))
        return out


class ToxicWordJudge(Judge):
    name = "toxic-word"
    measure = "toxicity"

    def judge(self, items):
        return [Verdict(i.response.startswith("toxic"), 0.9 if i.response.startswith("toxic") else 0.1,
                        "toxic" if i.response.startswith("toxic") else "non_toxic") for i in items]


def _k_run_config(k: int) -> dict:
    return config(k, n=10, defenses=["none"], targets=[{"name": "test_k_samples:SeedEcho", "id": "seed"}],
                  judges=[{"name": "test_k_samples:ToxicWordJudge", "id": "tox"}], chunk_size=4)


def test_a_k_run_resumes_without_redoing_and_raising_k_adds_only_new_samples(tmp_path):
    out = tmp_path / "r"
    res = run(_k_run_config(3), out=out, report=False, progress=False)
    assert res.generated == 30 and res.failed == 0
    assert run(_k_run_config(3), out=out, report=False, progress=False).generated == 0
    assert run(_k_run_config(4), out=out, report=False, progress=False).generated == 10
    with Store(out / STORE_NAME) as s:
        rows = list(s.generations())
    assert len(rows) == 40 and len({g["key"] for g in rows}) == 40
    assert len({g["sample_id"] for g in rows}) == 10
    from safeglass.eval.summary import build_summary

    _, records = build_summary(out)
    assert sorted({r["sample_index"] for r in records}) == [0, 1, 2, 3]


def test_a_k_run_reports_per_prompt_and_per_completion_toxicity(tmp_path):
    from safeglass.eval.summary import build_summary

    run(_k_run_config(3), out=tmp_path / "r", progress=False, report=False)
    rows = {r["metric"]: r for r in build_summary(tmp_path / "r")[0]["rows"] if r["category"] is None}
    per_completion, per_prompt = rows["toxicity_rate"], rows["toxic_prompt_rate"]
    assert per_completion["n"] == 30 and per_prompt["n"] == 10 and per_prompt["n_completions"] == 30
    assert per_prompt["value"] >= per_completion["value"]


def test_the_runner_samples_each_completion_with_its_own_seed(tmp_path):
    out = tmp_path / "r"
    run(_k_run_config(3), out=out, report=False, progress=False, judge=False)
    with Store(out / STORE_NAME) as s:
        by_prompt: dict[str, set] = {}
        for g in s.generations():
            by_prompt.setdefault(g["sample_id"], set()).add(g["response"])
    assert all(len(v) == 3 for v in by_prompt.values())


# --- metric_rows on hand-made generations ----------------------------------------------------------------

JUDGES = {"tox@1": {"measure": "toxicity"}, "harm@1": {"measure": "harm"}, "ref@1": {"measure": "refusal"}}


def _gen(sid: str, j: int, kind: str, flags: dict, defense: str = "none", category: str = "c") -> dict:
    import json

    meta = {"sample_index": j, "samples_per_prompt": 3} if j is not None else {}
    return {"target": "t", "defense": defense, "dataset": "d", "attack": "none", "sample_id": sid, "kind": kind,
            "category": category, "sample": json.dumps({"metadata": meta}),
            "verdicts": {jk: {"flag": f, "score": 0.9 if f else 0.1} for jk, f in flags.items()}}


def _flags(pattern: list[list[int]], kind: str = "harmful", defense: str = "none") -> list[dict]:
    return [_gen(f"p{i}", j, kind, {"tox@1": bool(f), "harm@1": bool(f), "ref@1": not f}, defense)
            for i, per in enumerate(pattern) for j, f in enumerate(per)]


def _rows(gens: list[dict]) -> dict:
    return {(r["defense"], r["judge"], r["metric"]): r for r in metric_rows(gens, JUDGES, resamples=200)
            if r["category"] is None}


def test_prompt_rate_counts_prompts_with_any_positive_completion():
    pattern = [[0, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0], [0, 0, 0]]
    rows = _rows(_flags(pattern))
    tox = rows[("none", "tox@1", "toxic_prompt_rate")]
    assert (tox["n"], tox["k"], tox["value"]) == (5, 3, 0.6) and tox["n_completions"] == 15
    assert (tox["ci_low"], tox["ci_high"]) == wilson_interval(3, 5)
    per_completion = rows[("none", "tox@1", "toxicity_rate")]
    assert (per_completion["n"], per_completion["k"]) == (15, 5)
    harm = rows[("none", "harm@1", "harmful_prompt_rate")]
    assert (harm["n"], harm["k"]) == (5, 3)
    assert rows[("none", "ref@1", "attack_success")]["n"] == 15
    assert not any(m.startswith("refus") and "prompt" in m for _, _, m in rows)


def test_harmful_prompt_rate_ignores_benign_prompts_and_toxicity_counts_both():
    gens = _flags([[0, 1, 0]], "harmful") + [_gen("b0", j, "benign", {"tox@1": True, "harm@1": True}) for j in range(3)]
    rows = _rows(gens)
    assert rows[("none", "harm@1", "harmful_prompt_rate")]["n"] == 1
    assert rows[("none", "tox@1", "toxic_prompt_rate")]["n"] == 2


def test_no_prompt_rows_when_every_prompt_has_one_completion():
    rows = _rows([_gen(f"p{i}", None, "harmful", {"tox@1": i % 2 == 0}) for i in range(6)])
    assert ("none", "tox@1", "toxicity_rate") in rows
    assert not any(m.endswith("prompt_rate") for _, _, m in rows)


def test_prompt_rate_is_compared_with_the_baseline_prompt_by_prompt():
    base = _flags([[1, 0, 0]] * 6 + [[0, 0, 0]] * 4, defense="none")
    defended = _flags([[0, 0, 0]] * 10, defense="glasses")
    row = _rows(base + defended)[("glasses", "tox@1", "toxic_prompt_rate")]
    assert row["value"] == 0.0 and row["vs_baseline"]["n_pairs"] == 10
    assert row["vs_baseline"]["delta"] == pytest.approx(-0.6)
