"""The bench rows' arithmetic and batches, without a model: a row must measure what its name says."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))  # bench/ lives at the repository root, beside src/

from bench.rows import machine_tag, outside_model, per_reply, planned_batches  # noqa: E402

EPYC = {"cpu": "AMD EPYC", "cpu_capability": "AVX2", "native_bf16": False, "amx": False, "cores": 2,
        "torch_threads": 2, "gpu": None}


def test_outside_model_is_signed_not_clamped():
    slower = outside_model(run_s=11.0, bare_s=10.0)
    assert slower["seconds"] == pytest.approx(1.0)
    assert slower["share"] == pytest.approx(1 / 11)
    assert slower["note"] == ""
    faster = outside_model(run_s=9.5, bare_s=10.0)
    assert faster["seconds"] == pytest.approx(-0.5)  # kept negative: a clamp would print a clean 0 %
    assert faster["share"] == pytest.approx(-0.5 / 9.5)
    assert "negative" in faster["note"]


def test_judges_rate_in_both_units():
    rate = per_reply(judgments=512, seconds=4.0, heads=2)
    assert rate["judgments_per_s"] == pytest.approx(128.0)
    assert rate["replies_per_s"] == pytest.approx(64.0)  # the goal's unit: every head done on a reply
    assert rate["replies"] == 256
    assert per_reply(100, 2.0, 1)["replies_per_s"] == pytest.approx(50.0)
    with pytest.raises(ValueError):
        per_reply(10, 1.0, 0)


def test_machine_tag_names_cpu_and_isa_and_says_when_emulated():
    assert machine_tag(EPYC, env={}) == "AMD EPYC, AVX2"
    xeon = {**EPYC, "cpu": "Intel Xeon", "cpu_capability": "AVX512", "native_bf16": True, "amx": True}
    assert machine_tag(xeon, env={}) == "Intel Xeon, AVX512 + native bf16 (AMX)"
    held = machine_tag({**xeon, "cpu_capability": "AVX2", "native_bf16": False},
                       env={"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert held.startswith("Intel Xeon, AVX2, emulated:")
    assert "ATEN_CPU_CAPABILITY=avx2" in held


def test_planned_batches_are_the_runs_chunks_cut_at_the_batch_size():
    from safeglass.config import parse_config
    from safeglass.eval.plan import build_plan, chunk_items

    cfg = {"name": "b", "targets": ["echo"], "datasets": [{"name": "advbench", "limit": 20}], "judges": [],
           "chunk_size": 8}
    batches = planned_batches(cfg, batch_size=3)
    assert [len(b) for b in batches] == [3, 3, 2, 3, 3, 2, 3, 1]
    chunks = chunk_items(build_plan(parse_config(cfg)).items, 8)
    assert [it.key for b in batches for it in b] == [it.key for c in chunks for it in c]
    lengths = [len(it.sample.prompt) for it in batches[0] + batches[1] + batches[2]]
    assert lengths == sorted(lengths)  # within a chunk, by prompt length, as the runner hands them over


def test_latency_summary_takes_nearest_rank_percentiles_and_counts_every_request():
    from bench.rows import latency_summary

    lat = [float(i) for i in range(1, 101)]  # 1 .. 100 s
    s = latency_summary(lat[::-1], wall_s=50.0, errors=2)
    assert (s["p50"], s["p95"], s["p99"]) == (50.0, 95.0, 99.0)  # values a request waited, in any input order
    assert s["requests"] == 100 and s["per_s"] == pytest.approx(2.0) and s["errors"] == 2
    few = latency_summary([0.3, 0.1, 0.2], wall_s=1.0, errors=0)
    assert (few["p50"], few["p95"], few["p99"]) == (0.2, 0.3, 0.3)
    with pytest.raises(ValueError):
        latency_summary([], wall_s=1.0, errors=0)


def test_every_name_a_bench_module_imports_from_safeglass_or_bench_exists():
    """Bench rows import lazily inside their functions, where neither ruff nor an import of the module sees a name
    that moved; a broken row then only shows in a `make bench` run (neurons-glasses imported a helper that had left
    bench.core). Every `from X import name` in bench/, lazy ones included, must resolve."""
    import ast
    import importlib

    root = Path(__file__).parents[1] / "bench"
    missing = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("bench", "safeglass"):
                module = importlib.import_module(node.module)
                missing += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                            if not hasattr(module, a.name) and not _is_module(f"{node.module}.{a.name}")]
    assert not missing


def _is_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, AttributeError):  # the parent is a module, not a package: a name in it, not a submodule
        return False
