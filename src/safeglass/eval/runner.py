"""The resumable runner: generate what the store lacks, then judge what is not yet judged.

Work is committed one chunk at a time; a run killed at any moment and started again finds the
finished keys in the store (and in any worker shards) and does only the rest.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from safeglass.config import ComponentSpec, RunConfig
from safeglass.defenses.context import DefenseContext, Uses
from safeglass.eval.attack_stage import attack_items
from safeglass.eval.plan import Plan, WorkItem, build_plan, component_key
from safeglass.eval.provenance import library_versions, seed_everything
from safeglass.eval.store import GenerationRow, Store
from safeglass.judges.base import Judge, JudgeInput
from safeglass.machine import machine_info
from safeglass.paths import write_atomic
from safeglass.registry import registry
from safeglass.targets.modifiers import applied_labels, build_trained
from safeglass.types import ImageRef

log = logging.getLogger("safeglass.run")

STORE_NAME = "store.sqlite"
SHARD_DIR = "shards"
IMAGE_DIR = "images"
ARTIFACT_DIR = "artifacts"  # what the run's modifiers trained: shared by its workers and its resumes


def run_store(run_dir: str | Path) -> Path:
    """The store of a finished run in ``run_dir``, looked for before anything opens it (opening creates one, and an
    empty store in a wrong folder would later pass for a run); a defense study's folder is pointed at its run."""
    path = Path(run_dir) / STORE_NAME
    if not path.is_file():
        nested = Path(run_dir) / "run" / STORE_NAME
        hint = f"; a defense study's run is {nested.parent}" if nested.is_file() else ""
        raise FileNotFoundError(f"{run_dir}: no run found here (no {STORE_NAME}; is this a safeglass run "
                                f"directory?){hint}")
    return path


@dataclass
class RunResult:
    run_dir: Path
    planned: int
    done_before: int
    generated: int = 0
    failed: int = 0
    judged: int = 0
    dry_run: bool = False
    calls: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    outputs: dict[str, Path] = field(default_factory=dict)  # summary, samples, report when written
    judge_failed: int = 0  # judgments that raised (recorded as errors; a rerun retries them)
    plan: Plan | None = field(default=None, repr=False)  # the plan this run ran


@dataclass
class JudgeResult:
    added: int = 0
    failed: int = 0
    outputs: dict[str, Path] = field(default_factory=dict)  # summary, samples, report when written again


def shard_path(run_dir: Path, rank: int, world: int) -> Path:
    return run_dir / SHARD_DIR / f"shard-{rank:03d}-of-{world:03d}.sqlite"


def finished_keys(run_dir: Path) -> set[str]:
    """Keys finished in the main store or in any shard, whatever worker count wrote them."""
    keys: set[str] = set()
    for p in _store_paths(run_dir):
        if p.exists():
            with Store(p) as s:
                keys |= s.generation_keys()
    return keys


def merge_shards(run_dir: Path) -> int:
    """Fold every shard into the main store by key. Idempotent; returns rows added. The main store takes the
    plan of the newest shard, so that a manual merge after a run with a changed config reads that config's
    rows (shards of an earlier run may still lie beside it)."""
    added = 0
    shards = sorted((run_dir / SHARD_DIR).glob("shard-*.sqlite"))
    with Store(run_dir / STORE_NAME) as main:
        for p in shards:
            added += main.merge_from(p)
        if shards:
            with Store(max(shards, key=lambda p: p.stat().st_mtime_ns)) as newest:
                keys = newest.get_meta("plan_keys")
            if keys is not None:
                main.set_meta("plan_keys", keys)
    return added


def build_target(spec: ComponentSpec, artifacts: Path | None = None) -> Any:
    """The target with its modifiers applied in order. A modifier that trains is trained once per key into
    `artifacts` (a run's ``artifacts`` folder; None: the cache), keyed by the target it modifies."""
    target = registry("targets").build(spec.name, **spec.args)
    for i, m in enumerate(spec.modifiers):
        modifier = registry("modifiers").build(m.name, **m.args)
        if getattr(modifier, "trains", False):
            base_key = replace(spec, modifiers=spec.modifiers[:i]).key_config()
            build_trained(modifier, target, base_key, artifacts, library_versions())
        target = modifier.apply(target)
    return target


def build_judge(spec: ComponentSpec) -> Judge:
    """A judge or a scorer (a judge of kind ``scorers``), by its spec."""
    return registry(spec.kind if spec.kind == "scorers" else "judges").build(spec.name, **spec.args)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="gen", disable=not enabled, dynamic_ncols=True)


def write_run_meta(store: Store, config: RunConfig, plan: Plan) -> None:
    store.set_meta("config", config.raw_with_base_dir())  # re-judging later reads the same files
    store.set_meta("config_hash", config.hash)
    store.set_meta("name", config.name)
    store.set_meta("seed", config.seed)
    store.set_meta("baseline_defense", config.baseline_defense)
    store.set_meta("versions", library_versions())
    store.set_meta("components", plan.component_configs)
    store.set_meta("plan_keys", sorted(it.key for it in plan.items))
    store.set_meta("load_errors", [
        {"where": f"dataset {name}", "message": str(e)} for name, ds in plan.datasets.items() for e in ds.report.errors
    ])
    if store.get_meta("created") is None:
        store.set_meta("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def generate(config: RunConfig, run_dir: str | Path, *, limit: int | None = None, dry_run: bool = False,
             rank: int = 0, world: int = 1, progress: bool = True, plan: Plan | None = None) -> RunResult:
    """Generate every planned item this worker owns that no store holds yet."""
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    plan = plan or build_plan(config, limit)
    done = finished_keys(run_dir) if run_dir.exists() else set()
    mine = plan.chunks(rank, world)
    pending_chunks = [p for p in ([it for it in c if it.key not in done] for c in mine) if p]
    planned = sum(len(c) for c in mine)
    n_pending = sum(len(c) for c in pending_chunks)
    result = RunResult(run_dir, planned=planned, done_before=planned - n_pending, dry_run=dry_run)
    result.calls = {"generate": n_pending}
    if dry_run:
        return result
    seed_everything(config.seed)
    store_path = run_dir / STORE_NAME if world == 1 else shard_path(run_dir, rank, world)
    with Store(store_path) as store:
        write_run_meta(store, config, plan)
        components: dict[Any, Any] = {}  # judges and helpers defenses use, shared across targets
        attacked_records: dict[str, str] = {}  # attacked samples by attack key, shared across targets
        persist = functools.partial(_persist_images, image_dir=run_dir / IMAGE_DIR)
        others = _store_paths(run_dir)
        by_target: dict[str, list[list[WorkItem]]] = defaultdict(list)
        for c in pending_chunks:
            by_target[c[0].target].append(c)
        for spec in config.targets:
            chunks = by_target.get(spec.id)
            if not chunks:
                continue  # finished targets are never loaded
            items = [it for c in chunks for it in c]
            white = {it.key for it in items if getattr(plan.attacks[it.attack], "access", "") == "white-box"}
            # black-box attacks before the target loads: shared by every target, and a failure costs no load
            attacked, errors = attack_items([it for it in items if it.key not in white], plan, store, others, None,
                                            persist, config.chunk_size, attacked_records)
            # the run folder rather than the cache: every worker of the run sees it, on whatever host it runs
            target = build_target(spec, run_dir / ARTIFACT_DIR)
            if white:
                more, more_errors = attack_items([it for it in items if it.key in white], plan, store, others,
                                                 target, persist, config.chunk_size, attacked_records)
                attacked.update(more)
                errors.update(more_errors)
            for key, message in errors.items():
                store.add_error(key, "attack", message)
            result.failed += len(errors)
            setup_failed = set_up_defenses(plan, {c[0].defense for c in chunks}, target, components,
                                           run_dir / IMAGE_DIR, artifacts=run_dir / ARTIFACT_DIR,
                                           target_key=spec.key_config())
            store.set_meta(f"target_config:{spec.id}", _safe_config(target))
            store.set_meta(f"target_label:{spec.id}", {"label": target_label(target, spec.id),
                                                        "organism": bool(getattr(target, "organism", False))})
            # the machine that made these replies (speed, and reduced-precision outputs); each reply keeps its own
            # in its provenance, since a resumed run may be on another machine (the meta entry is the latest)
            machine = machine_info() if "torch" in sys.modules else None
            if machine is not None:
                store.set_meta(f"target_machine:{spec.id}", machine)
            with _progress(sum(len(c) for c in chunks), f"generate {spec.id}", progress) as bar:
                for chunk in chunks:
                    if chunk[0].defense in setup_failed:
                        for it in chunk:
                            store.add_error(it.key, "setup", setup_failed[chunk[0].defense])
                        result.failed += len(chunk)
                        bar.update(len(chunk))
                        continue
                    ready = [it for it in chunk if it.key in attacked]
                    if ready:
                        ok, failed = _generate_chunk(store, plan, target, ready, attacked, f"{rank}/{world}",
                                                     run_dir / IMAGE_DIR, machine)
                        result.generated += ok
                        result.failed += failed
                    bar.update(len(chunk))
    result.seconds = time.perf_counter() - t0
    return result


def build_component(uses: Uses) -> Any:
    """A judge or helper target a defense uses, as its context builds it."""
    if uses.kind == "targets":
        return build_target(ComponentSpec("targets", uses.name, uses.role or uses.name, dict(uses.args)))
    return registry(uses.kind).build(uses.name, **uses.args)


def set_up_defenses(plan: Plan, defense_ids: set[str], target: Any, cache: dict[Any, Any],
                    image_dir: Path | None = None, *, artifacts: Path | None = None,
                    target_key: dict[str, Any] | None = None) -> dict[str, str]:
    """Give each defense with work on this target its context (judges and helpers are built here, once); with
    `image_dir`, images a defense sends that are not its sample's are saved there as the attack stage's are.
    What a defense trains (a prompt pool) is built once into `artifacts` (the run's folder, shared by its workers
    and resumes), keyed by `target_key` (the target's result key).
    Returns the defenses whose set-up failed, with the cause: their chunks are recorded as failed (stage
    ``setup``) and retried on the next run, while the other defenses go on."""
    save = functools.partial(save_png, image_dir=image_dir) if image_dir is not None else None
    failed = {}
    for defense_id in sorted(defense_ids):
        defense = plan.defenses[defense_id]
        if not hasattr(defense, "setup"):
            continue
        try:
            defense.setup(DefenseContext(target, build_component, cache, save_image=save, artifacts=artifacts,
                                         target_key=target_key, key_of=component_key))
        except Exception as exc:  # a judge that cannot load must not end the other defenses' work
            log.error("defense %s: set-up failed (%s): %s", defense_id, type(exc).__name__, exc)
            failed[defense_id] = f"{type(exc).__name__}: {exc}"
    return failed


def _safe_config(target: Any) -> dict[str, Any]:
    try:
        cfg = dict(target.config())
        applied = getattr(target, "applied_modifiers", ())
        if applied:
            cfg["modifiers"] = [m.config() if hasattr(m, "config") else {"name": m.name} for m in applied]
        return cfg
    except Exception as exc:  # a provenance problem must not lose the run
        return {"error": f"config() failed: {exc}"}


def _store_paths(run_dir: Path) -> list[Path]:
    """The main store and every shard: whatever worker count stored an attack or a reply, it is found."""
    return [run_dir / STORE_NAME, *sorted((run_dir / SHARD_DIR).glob("shard-*.sqlite"))]


def _generate_chunk(store: Store, plan: Plan, target: Any, chunk: list[WorkItem], attacked_by_key: dict[str, Any],
                    worker: str, image_dir: Path, machine: dict[str, Any] | None = None) -> tuple[int, int]:
    params = plan.params_for(chunk[0])
    try:
        attacked = [attacked_by_key[it.key] for it in chunk]
        gens, traces = defended_generate(plan.defenses[chunk[0].defense], target, attacked, params)
    except Exception as exc:  # one failing chunk must not end the run: record, go on, retry on resume
        log.error("generation failed for %d items (%s): %s", len(chunk), type(exc).__name__, exc)
        for it in chunk:
            store.add_error(it.key, "generate", f"{type(exc).__name__}: {exc}")
        return 0, len(chunk)
    rows = generation_rows(plan, chunk, attacked, gens, traces, params, worker, image_dir, machine)
    store.add_generations(rows)
    return len(rows), 0


def defended_generate(defense: Any, target: Any, samples: Sequence[Any], params: Any) -> tuple[list[Any], list[Any]]:
    """One call of `defense` on `samples` (a chunk of a run, a batch of served requests): the replies and, per
    sample, the trace of every sub-call the defense made through its context (empty lists without one)."""
    ctx = getattr(defense, "ctx", None)
    if ctx is not None:
        ctx.begin(samples)
    gens = defense.generate(target, samples, params)
    if len(gens) != len(samples):
        raise RuntimeError(f"defense returned {len(gens)} generations for {len(samples)} conversations")
    return gens, (ctx.traces if ctx is not None else [[] for _ in samples])


def generation_rows(plan: Plan, chunk: Sequence[WorkItem], attacked: Sequence[Any], gens: Sequence[Any],
                    traces: Sequence[Any], params: Any, worker: str, image_dir: Path,
                    machine: dict[str, Any] | None = None) -> list[GenerationRow]:
    """The store's rows for a chunk's replies: each with its sample record (images saved under `image_dir`) and
    its provenance (target, defense, attack, params, dataset, config hash, seed, machine, the defense's trace)."""
    now = time.time()
    provenance_base = {
        "target": plan.component_configs[f"target:{chunk[0].target}"],
        "defense": plan.component_configs[f"defense:{chunk[0].defense}"],
        "attack": plan.attacks[chunk[0].attack].config(),
        "params": params.to_dict(),
        "dataset": plan.component_configs.get(f"dataset:{chunk[0].dataset}", {}),
        "config_hash": plan.config.hash, "seed": plan.config.seed,
    }
    if machine is not None:  # provenance only: the machine never enters a result key
        provenance_base["machine"] = machine
    rows = []
    for it, s, g, trace in zip(chunk, attacked, gens, traces, strict=True):
        record = _persist_images(s, image_dir)
        prov = dict(provenance_base, dataset=plan.component_configs.get(f"dataset:{it.dataset}", {}))
        if g.extra:
            prov["extra"] = g.extra
        if trace:
            prov["trace"] = trace  # every sub-call of the defense: role, what was sent, tokens, seconds
        rows.append(GenerationRow(
            key=it.key, target=it.target, dataset=it.dataset, defense=it.defense, attack=it.attack,
            sample_id=it.sample.id, kind=it.sample.kind, category=it.sample.category, prompt=s.prompt,
            sample=json.dumps(record, default=str), response=g.text, prompt_tokens=g.prompt_tokens,
            completion_tokens=g.completion_tokens, seconds=g.seconds, finish_reason=g.finish_reason,
            provenance=json.dumps(prov, sort_keys=True, default=str), created=now, worker=worker))
    return rows


def target_label(target: Any, fallback: str) -> str:
    """What reports call a target: its name and its modifiers (two targets on one model differ there)."""
    return " + ".join([str(getattr(target, "name", None) or fallback), *applied_labels(target)])


def _persist_images(sample: Any, image_dir: Path) -> dict[str, Any]:
    """The sample's record, with in-memory images (made by attacks) saved as PNG under the run
    directory so that judges and reports can see exactly what the model saw."""
    record = sample.to_record()
    refs = iter([img for t in sample.turns for img in t.images])
    for turn in record["turns"]:
        for img_rec in turn["images"]:
            img = next(refs)
            if img.path is None:
                img_rec["ref"] = str(save_png(img, image_dir))
    return record


def save_png(img: ImageRef, image_dir: Path) -> Path:
    """`img` as ``image_dir/<content hash>.png`` (written once: the same picture is the same file), for the attack
    stage's images and the ones a defense sends (its context is handed this)."""
    image_dir.mkdir(parents=True, exist_ok=True)
    path = image_dir / f"{img.content_hash()}.png"
    if not path.exists():  # workers attacking one sample for two targets write it at once: write_atomic allows that
        write_atomic(path, img.data() if img.data()[:4] == b"\x89PNG" else _png(img))
    return path


def _png(img: Any) -> bytes:
    import io

    buf = io.BytesIO()
    img.pil().save(buf, format="PNG")
    return buf.getvalue()


def judge_input(generation: dict[str, Any]) -> JudgeInput:
    """What a judge reads of a stored generation, from its sample record (parsed once): the request as the
    dataset gave it when an attack rewrote it (a jailbreak template or a word moved into the image would
    otherwise hide the request from the judge), the images the model saw, and the sample's metadata, which
    scorers compare the reply with (answer, answers, options, task)."""
    record = json.loads(generation["sample"])
    metadata = record.get("metadata") or {}
    objective = metadata.get("objective")
    paths = [Path(i["ref"]) for t in record.get("turns", []) for i in t.get("images", [])]
    return JudgeInput(objective if isinstance(objective, str) and objective else generation["prompt"],
                      generation["response"], images=tuple(ImageRef(p) for p in paths if p.exists()),
                      kind=generation["kind"], category=generation["category"], reference=dict(metadata))


def judge(run_dir: str | Path, judges: Sequence[ComponentSpec], *, progress: bool = True,
          batch_size: int = 64) -> JudgeResult:
    """Score every stored generation that a judge has not scored yet; count judgments added and failed."""
    run_dir = Path(run_dir)
    result = JudgeResult()
    with Store(run_dir / STORE_NAME) as store:
        identities = dict(store.get_meta("judges", {}))
        for spec in judges:
            j = build_judge(spec)
            ident = j.identity()
            identities[spec.id] = {**ident.to_dict(), "key": ident.key, "id": spec.id}
            store.set_meta("judges", identities)
            done = store.judged_keys(ident.key)
            todo = [g for g in store.generations(store.plan_keys()) if g["key"] not in done]
            with _progress(len(todo), f"judge {spec.id}", progress) as bar:
                for i in range(0, len(todo), batch_size):
                    part = todo[i:i + batch_size]
                    inputs = [judge_input(g) for g in part]
                    try:
                        verdicts = j.judge(inputs)
                    except Exception as exc:
                        log.error("judge %s failed on %d items: %s", spec.id, len(part), exc)
                        for g in part:
                            store.add_error(g["key"], f"judge:{spec.id}", f"{type(exc).__name__}: {exc}")
                        result.failed += len(part)
                        bar.update(len(part))
                        continue
                    store.add_judgments((g["key"], ident.key, v.flag, v.score, v.label, v.reason)
                                        for g, v in zip(part, verdicts, strict=True))
                    result.added += len(part)
                    bar.update(len(part))
    return result
