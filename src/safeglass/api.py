"""The Python API; the CLI is a thin layer over these functions.

Importing this module must stay cheap (no torch): heavy modules are imported inside functions.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from safeglass.registry import Entry, registry

log = logging.getLogger("safeglass")


def list_components(kind: str) -> list[Entry]:
    """Registered components of a kind: datasets, targets, attacks, defenses or judges."""
    return list(registry(kind))


def component_options(kind: str, name: str) -> Any:
    """What a component takes in a config's ``args``: its options (name, default, a line on each) and whether it
    also takes undeclared ones, read from its code without importing it."""
    return registry(kind).options(name)


def run(config: str | Path | dict[str, Any], out: str | Path | None = None, *, limit: int | None = None,
        dry_run: bool = False, workers: int = 1, shard: tuple[int, int] | None = None, judge: bool = True,
        report: bool = True, progress: bool = True, backend: str = "process", threads: int | None = None) -> Any:
    """Run (or resume) an audit: generate, judge, and write summary.json, samples.jsonl, report.html.

    ``workers > 1`` splits generation over local processes (``backend="process"``) or Ray tasks
    (``backend="ray"``); under torchrun / accelerate each rank takes its shard automatically. Local workers
    share the machine's cores (``threads`` each; default cores // workers); ``threads`` alone sets this
    process's torch threads. Returns a RunResult; ``result.failed`` counts the planned generations still
    missing (a rerun resumes them).
    """
    from safeglass.config import RunConfig, load_config, parse_config
    from safeglass.eval import runner, scale
    from safeglass.eval.plan import build_plan

    if isinstance(config, RunConfig):
        cfg, config_path = config, None
    elif isinstance(config, dict):
        cfg, config_path = parse_config(config), None
    else:
        cfg, config_path = load_config(config), Path(config)
    run_dir = Path(out) if out is not None else Path("runs") / cfg.name

    plan = build_plan(cfg, limit)  # loads datasets once; never loads a model
    if threads is not None and not (workers > 1 and shard is None):
        scale.set_threads(threads)
    dist = scale.distributed_rank()
    coordinated = shard is None and dist is not None  # torchrun / accelerate: rank 0 merges
    if coordinated:
        shard = dist
    if workers > 1 and shard is None and not dry_run:
        if config_path is None:
            config_path = run_dir / "config.yaml"
            _write_config(cfg, config_path)
        keys = {it.key for it in plan.items}
        before = len(keys & runner.finished_keys(run_dir)) if run_dir.exists() else 0
        if backend == "ray":
            scale.run_ray_workers(config_path, run_dir, workers, limit)
        else:
            scale.run_local_workers(config_path, run_dir, workers, limit, progress, threads)
        result = runner.RunResult(run_dir, planned=len(plan.items), done_before=before)
        finished = keys & runner.finished_keys(run_dir)
        result.generated = len(finished) - before
        result.failed = len(keys) - len(finished)
        result.outputs, result.judge_failed = _finish(cfg, plan, run_dir, judge, report, progress, merge=True)
        return result

    rank, world = shard or (0, 1)
    if world > 1:
        scale.pin_local_gpu()
    result = runner.generate(cfg, run_dir, limit=limit, dry_run=dry_run, rank=rank, world=world,
                             progress=progress, plan=plan)
    if dry_run:
        # Upper bound: judgments already stored for finished generations are skipped at run time.
        result.calls["judge"] = len(cfg.judges) * result.planned
        return result
    if config_path is not None:
        _write_config(cfg, run_dir / "config.yaml")
    if world > 1:
        plan_hash = _plan_hash(plan)
        scale.mark_shard_complete(run_dir, rank, world, plan_hash)
        if rank != 0 or not coordinated:
            return result  # explicit --shard workers stop here; whoever launched them merges
        scale.wait_for_shards(run_dir, world, plan_hash)
        result.outputs, result.judge_failed = _finish(cfg, plan, run_dir, judge, report, progress, merge=True)
        return result
    result.outputs, result.judge_failed = _finish(cfg, plan, run_dir, judge, report, progress, merge=False)
    return result


def _plan_hash(plan: Any) -> str:
    from safeglass.hashing import content_hash

    return content_hash(sorted(it.key for it in plan.items))


def _write_config(cfg: Any, path: Path) -> None:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.raw, sort_keys=False), encoding="utf-8")


def _finish(cfg: Any, plan: Any, run_dir: Path, judge: bool, report_: bool, progress: bool, *,
            merge: bool) -> tuple[dict[str, Path], int]:
    """Merge shards, judge, write the outputs; returns the outputs and the number of judgments that failed."""
    from safeglass.eval import runner
    from safeglass.eval.store import Store

    if merge:
        runner.merge_shards(run_dir)
        with Store(run_dir / runner.STORE_NAME) as store:  # meta lives in shards until the first merge
            runner.write_run_meta(store, cfg, plan)
            _copy_target_meta(run_dir, store)
    failed = runner.judge(run_dir, cfg.judges, progress=progress).failed if judge else 0
    return (report(run_dir) if report_ else {}), failed


def _copy_target_meta(run_dir: Path, store: Any) -> None:
    from safeglass.eval.runner import SHARD_DIR
    from safeglass.eval.store import Store

    for p in sorted((run_dir / SHARD_DIR).glob("shard-*.sqlite")):
        with Store(p) as shard:
            for (k, v) in shard.conn.execute("SELECT k, v FROM meta WHERE k LIKE 'target_%'"):
                store.conn.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (k, v))


def judge(run_dir: str | Path, judges: list[str] | None = None, *, progress: bool = True) -> Any:
    """(Re-)judge the stored generations of a run with the run's judges or the ones named; returns the
    judgments ``added`` and ``failed``."""
    from safeglass.config import parse_config
    from safeglass.eval import runner
    from safeglass.eval.store import Store

    run_dir = Path(run_dir)
    with Store(run_dir / runner.STORE_NAME) as store:
        raw = store.get_meta("config")
    if raw is None:
        raise FileNotFoundError(f"{run_dir}: no run found here (no {runner.STORE_NAME} with a config)")
    if judges:
        raw = {**raw, "judges": judges}
    cfg = parse_config(raw, source=str(run_dir / "config.yaml"))
    return runner.judge(run_dir, cfg.judges, progress=progress)


def report(run_dir: str | Path, *, show_harmful: bool = False) -> dict[str, Path]:
    """Write summary.json, samples.jsonl and report.html for a run directory."""
    from safeglass.reporting.outputs import write_outputs

    return write_outputs(run_dir, show_harmful=show_harmful)


def calibrate(judge: Any, labels: str | Path | list[str | Path], *, label_kind: str | None = None,
              fields: dict[str, str] | None = None, limit: int | None = None, resamples: int = 2000,
              seed: int = 0, save: bool = True, store_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Measure a judge against human labels; one result per labels spec, saved to the calibration store.

    ``judge`` is a registered name (``"keyword-refusal"``), a ``module:attr`` path or a Judge instance.
    ``labels``: ``"pyrit:refusal"``, ``"pyrit:objective"``, ``"pyrit:objective/<name>"`` or a labelled
    CSV/JSONL file (``label_kind`` "refusal" or "objective" says what it labels; ``fields`` maps
    prompt/response/label/category to its columns). The PyRIT sets are a held-out yardstick: never
    tune a judge on them. Results go to ``$SAFEGLASS_HOME/calibration`` unless ``store_dir`` is given
    (``save=False`` keeps them in memory); each result gets a ``"saved_to"`` path when saved.
    """
    from safeglass.judges.base import Judge
    from safeglass.judges.calibration import calibrate_judge, predicted_labels
    from safeglass.judges.calibration_store import save as save_result
    from safeglass.judges.labels import resolve_labels

    if isinstance(judge, Judge):
        j = judge
    else:
        factory = registry("judges").get(str(judge))
        if isinstance(factory, type) and getattr(factory, "measure", None) == "toxicity":
            predicted_labels("toxicity", "refusal", [])  # fail before loading a model's weights
        j = factory()
    specs = [labels] if isinstance(labels, str | Path) else list(labels)
    if not specs:
        raise ValueError("calibrate needs at least one labels set")
    sets = [resolve_labels(str(s), label_kind, fields=fields) for s in specs]
    for ls in sets:  # refuse an inapplicable judge before any judging
        predicted_labels(j.identity().measure, ls.kind, [])
    results = []
    for ls in sets:
        result = calibrate_judge(j, ls, limit=limit, resamples=resamples, seed=seed)
        if save:
            result["saved_to"] = str(save_result(result, store_dir))
        results.append(result)
    return results


def list_organisms() -> list[dict[str, Any]]:
    """The model organisms safeglass can build: name, kind, description, where the weights are, card figures."""
    from safeglass.organisms import registry as organisms

    return [organisms.status(name) for name in organisms.ORGANISMS]


def build_organism(name: str, *, profile: str = "full", seed: int = 0, out: str | Path | None = None,
                   progress: Any = None) -> dict[str, Any]:
    """Train a model organism from its recipe; writes weights and card.json (default $SAFEGLASS_HOME/organisms)."""
    from safeglass.organisms import registry as organisms

    return organisms.build(name, profile=profile, seed=seed, out=out, progress=progress)


def load_organism(name: str, path: str | Path | None = None) -> tuple[Any, Any, Any]:
    """(model, tokenizer, image processor) of a built model organism."""
    from safeglass.organisms import registry as organisms

    return organisms.load(name, path)


def verify_organism(name: str, path: str | Path | None = None, update: bool = False) -> dict[str, Any]:
    """Re-measure a model organism from its saved weights and compare with its card (``update``: write
    the new figures into the card, e.g. after a judge it is measured with was re-trained)."""
    from safeglass.organisms import registry as organisms

    return organisms.verify(name, path, update=update)


def find_experts(config: str | Path | dict[str, Any], out: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """SGM step 1: record a target's neurons on toxic and non-toxic items and score their expertise.

    ``config`` is a neurons YAML (see ``safeglass.neurons.find``) or its dict. Writes to ``out`` the
    expertise (expertise.safetensors + expertise.json), default glasses (``out/glasses``) and
    summary.json; returns their paths and the summary (``"summary_data"``).
    """
    from safeglass.neurons.find import find, load_find_config, parse_find_config

    cfg = parse_find_config(config) if isinstance(config, dict) else load_find_config(config)
    return find(cfg, out, progress=progress)


def make_glasses(expertise: str | Path | Any, method: str = "sgm", out: str | Path | None = None,
                 **params: Any) -> Any:
    """Glasses from saved expertise (a folder or an Expertise), without loading the model.

    ``method``: aura, damp (k, alpha), det0 (k) or sgm (strength, curve, layers, post_fusion_only,
    min_auroc). Saved to ``out`` when given.
    """
    from safeglass.neurons.expertise import Expertise
    from safeglass.neurons.glasses import Glasses

    exp = expertise if isinstance(expertise, Expertise) else Expertise.load(expertise)
    glasses = Glasses.from_expertise(exp, method, **params)
    if out is not None:
        glasses.save(out)
    return glasses


def evaluate_glasses(config: str | Path | dict[str, Any], out: str | Path, *, limit: int | None = None,
                     expertise: str | Path | None = None, progress: bool = True, workers: int = 1) -> dict[str, Any]:
    """SGM step 3: glasses over a suppression-strength curve, measured by the resumable runner.

    ``config`` is a neurons eval YAML (see ``safeglass.neurons.evaluate``) or its dict: expertise, target,
    a grid of methods (sgm strengths, aura, det0 / damp k), and the blocks to measure (toxicity, harm,
    fluency, utility) under the given defenses. Glasses go to ``out/glasses/<slug>``, one run per block
    to ``out/run/<block>`` (a rerun generates only what is missing), perplexities to ``out/fluency.json``
    (cached by glasses hash). Writes ``out/curve.json`` and ``out/neurons.html``; returns their paths and
    the curve (``"data"``: rows per variant and defense, provenance, what was generated this time).
    ``limit`` caps every dataset (and the fluency texts) for a smoke run; ``expertise`` overrides the
    config's folder.
    """
    from safeglass.neurons.evaluate import evaluate, load_eval_config, parse_eval_config

    cfg = parse_eval_config(config) if isinstance(config, dict) else load_eval_config(config)
    return evaluate(cfg, out, limit=limit, expertise=expertise, progress=progress, workers=workers)
