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
        report: bool = True, progress: bool = True, backend: str = "process", threads: int | None = None,
        fail_on_skipped: bool = False) -> Any:
    """Run (or resume) an audit: generate, judge, and write summary.json, samples.jsonl, report.html.

    ``workers > 1`` splits generation over local processes (``backend="process"``) or Ray tasks
    (``backend="ray"``: the cluster ``RAY_ADDRESS`` or an earlier ``ray.init(address=...)`` names, else a local one;
    docs/architecture.md); under torchrun / accelerate each rank takes its shard automatically. Local workers
    share the machine's cores (``threads`` each; default cores // workers; a Ray task asks for ``threads`` CPUs,
    default 1); ``threads`` alone sets this
    process's torch threads. Returns a RunResult; ``result.failed`` counts the planned generations still
    missing (a rerun resumes them), ``result.plan.skipped()`` the bad records the datasets skipped;
    ``fail_on_skipped`` makes a skipped record an error (``SkippedRecordsError``) before anything is generated.
    Ctrl-C raises ``safeglass.eval.crash.Interrupted`` (a KeyboardInterrupt) saying what was saved.
    """
    from safeglass.eval import orchestrate

    return orchestrate.run(config, out, limit=limit, dry_run=dry_run, workers=workers, shard=shard, judge=judge,
                           finish=_write_outputs if report else None, progress=progress, backend=backend,
                           threads=threads, fail_on_skipped=fail_on_skipped)


def _write_outputs(run_dir: Path) -> dict[str, Path]:
    return report(run_dir)


def judge(run_dir: str | Path, judges: list[str] | None = None, *, progress: bool = True,
          report: bool = True) -> Any:
    """(Re-)judge the stored generations of a run with the run's judges or the ones named, then (``report``)
    write its summary, samples and report again, so that they show the new judgments; returns the judgments
    ``added`` and ``failed`` and the ``outputs`` written."""
    from safeglass.eval.orchestrate import rejudge

    result = rejudge(run_dir, judges, progress=progress)
    if report:
        result.outputs = _write_outputs(Path(run_dir))
    return result


def report(run_dir: str | Path, *, show_harmful: bool = False) -> dict[str, Path]:
    """Write summary.json, samples.jsonl and report.html for a run directory (for a CLIP run folder, which holds
    clip-*.json and no run store: clip-report.md / .html with their pictures, see clip_report)."""
    from safeglass.clip.report import is_clip_run
    from safeglass.eval.runner import STORE_NAME
    from safeglass.reporting.outputs import write_outputs

    if not (Path(run_dir) / STORE_NAME).exists() and is_clip_run(run_dir):
        return clip_report(run_dir)

    return write_outputs(run_dir, show_harmful=show_harmful)


def serve_app(config: str | Path | dict[str, Any] | None = None, **flags: Any) -> Any:
    """The ASGI app of ``safeglass serve`` (Starlette), without binding a port: the target and defense are built now.
    ``config`` is a serve YAML, its dict or None; ``flags`` (target, defense, host, port, token_env, log_to, ...)
    override its fields. See docs/serve.md."""
    from safeglass.serve.app import build_app
    from safeglass.serve.config import serve_config

    return build_app(serve_config(config, **flags))


def serve(config: str | Path | dict[str, Any] | None = None, *, run: bool = True, **flags: Any) -> Any:
    """Serve a target behind a defense configuration as an OpenAI-compatible endpoint (``/v1/chat/completions``,
    ``/v1/models``). ``run``: block in uvicorn until stopped; otherwise return the uvicorn Server (``.run()`` it, or
    ``.serve()`` it in a loop of your own; port 0 picks a free port). A non-loopback host needs ``token_env``."""
    from safeglass.serve.app import build_app, uvicorn_server
    from safeglass.serve.config import serve_config

    cfg = serve_config(config, **flags)
    server = uvicorn_server(cfg, build_app(cfg))
    if not run:
        return server
    server.run()
    return server


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


def build_organism(name: str, *, profile: str | None = None, seed: int = 0, out: str | Path | None = None,
                   progress: Any = None) -> dict[str, Any]:
    """Train a model organism from its recipe; writes weights and card.json (default $SAFEGLASS_HOME/organisms)."""
    from safeglass.organisms import registry as organisms

    return organisms.build(name, profile=profile, seed=seed, out=out, progress=progress)


def load_organism(name: str, path: str | Path | None = None) -> tuple[Any, Any, Any]:
    """(model, tokenizer, image processor) of a built model organism."""
    from safeglass.organisms import registry as organisms

    return organisms.load(name, path)


def verify_organism(name: str, path: str | Path | None = None, update: bool = False,
                    progress: Any = None) -> dict[str, Any]:
    """Re-measure a model organism from its saved weights and compare with its card (``update``: write
    the new figures into the card, e.g. after a judge it is measured with was re-trained). ``progress``
    (a callable taking a line) hears each stage of the measurement, which takes minutes on a small CPU."""
    from safeglass.organisms import registry as organisms

    return organisms.verify(name, path, update=update, progress=progress)


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


def study_defenses(config: str | Path | dict[str, Any], out: str | Path, *, limit: int | None = None,
                   progress: bool = True, workers: int = 1, report: bool = True) -> dict[str, Any]:
    """The defense comparison study: targets x configurations x benchmarks grouped into attack classes, as one
    resumable run in ``out/run``; attack success, harmless rate and over-refusal with intervals per class, cost,
    winners, the Pareto front, white-box cells and (with ``selector:``) an adaptive selector fitted on one split and
    measured on the other. Writes ``out/study.json`` and ``out/study.html``; returns their paths and the data."""
    from safeglass.study.defense_study import load_study_config, parse_study_config, run_study

    study, raw, source = (parse_study_config(config) if isinstance(config, dict) else load_study_config(config))
    return run_study(study, raw, source, out, limit=limit, progress=progress, workers=workers, report=report)


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


def _clip_config(config: str | Path | dict[str, Any]) -> Any:
    from safeglass.clip.config import ClipConfig, load_clip_config, parse_clip_config

    if isinstance(config, ClipConfig):  # already parsed (e.g. with its model replaced: `clip eval --organism`)
        return config
    return parse_clip_config(config) if isinstance(config, dict) else load_clip_config(config)


def clip_eval(config: str | Path | dict[str, Any], out: str | Path, *, progress: Any = None) -> dict[str, Any]:
    """Zero-shot accuracy of a CLIP-style model on clean and typographically attacked images, and the SCAM choice;
    writes OUT/clip-eval.json (with model identity, data, config hash, seed and versions) and returns it."""
    from safeglass.clip.run import evaluate

    return evaluate(_clip_config(config), out, progress=progress)


def align_audit(config: str | Path | dict[str, Any], out: str | Path, *, save_weights: str | Path | None = None,
                progress: Any = None) -> dict[str, Any]:
    """The alignment durability audit (docs/alignment.md): per-example forgetting and its proxies, the unlearning
    attack from the easy / random / hard subsets at equal budget, budget curves, persistence and relearning.
    Resumable: OUT/phases/*.json are reused by a rerun with the same config. Writes OUT/align-audit.json (model
    identity, data, seed, config hash, versions) and returns it; `save_weights` also writes the easy-subset
    attack's LoRA adapter there."""
    from safeglass.align.audit import audit
    from safeglass.align.config import load_align_config, parse_align_config

    cfg = parse_align_config(config) if isinstance(config, dict) else load_align_config(config)
    return audit(cfg, out, save_weights=save_weights, progress=progress)


def clip_defend(config: str | Path | dict[str, Any], out: str | Path, *, progress: Any = None) -> dict[str, Any]:
    """Dyslexify's greedy head ablation fitted on the config's fit split and scored on its held-out split; writes
    OUT/clip-defend.json and returns it."""
    from safeglass.clip.run import defend

    return defend(_clip_config(config), out, progress=progress)


def clip_segment(config: str | Path | dict[str, Any], out: str | Path, *, progress: Any = None) -> dict[str, Any]:
    """MaskCLIP zero-shot segmentation on clean and typographically attacked images (ShapeWorld masks or a VOC
    folder), mIoU with bootstrap intervals; writes OUT/clip-segment.json and returns it."""
    from safeglass.clip.segrun import evaluate_segmentation

    return evaluate_segmentation(_clip_config(config), out, progress=progress)


def clip_vqa(config: str | Path | dict[str, Any], out: str | Path, *, progress: Any = None) -> dict[str, Any]:
    """A VLM target's open answers and SCAM two-option choices on clean and attacked images, with and without
    the prompt defense (optionally through the config model's vision tower); writes OUT/clip-vqa.json."""
    from safeglass.clip.vqarun import evaluate_vqa

    return evaluate_vqa(_clip_config(config), out, progress=progress)


def clip_amplify(config: str | Path | dict[str, Any], out: str | Path, *, progress: Any = None) -> dict[str, Any]:
    """The amplification table: each task of the config's `amplify` block on clean and typographic images, the
    config's model (the base) against the listed variants, drops and their differences from the base with paired
    bootstrap intervals; writes OUT/clip-amplify.json (resumable per model and task) and returns it."""
    from safeglass.clip.amplify import amplify

    return amplify(_clip_config(config), out, progress=progress)


def clip_vary(config: str | Path | dict[str, Any], out: str | Path, *, budget: int = 20_000, top: int = 7,
              progress: Any = None) -> dict[str, Any]:
    """The natural-variation search on the config's ShapeWorld scenes within `budget` images; writes
    OUT/clip-vary.json and returns it."""
    from safeglass.clip.variation import run_search

    return run_search(_clip_config(config), out, budget=budget, top=top, progress=progress)


def clip_report(run_dir: str | Path, *, worst: int = 6, progress: Any = None) -> dict[str, Path]:
    """The failure-mode report of a clip run folder (clip-eval.json, clip-defend.json, clip-vary.json): writes
    clip-report.md, clip-report.html and their pictures into `run_dir`; returns their paths."""
    from safeglass.clip.report import write_clip_report

    return write_clip_report(run_dir, worst=worst, progress=progress)


def clip_typo_copy(config: str | Path | dict[str, Any], out: str | Path) -> dict[str, Any]:
    """An ImageNet-typo style attacked copy of the config's image folder (`data.source: folder`), its attack block
    and seed, written into `out` in RTA-100's naming (see safeglass.clip.datasets.typo_copy); returns its summary."""
    from safeglass.clip.datasets import typo_copy
    from safeglass.clip.run import spec_of
    from safeglass.schema import ConfigError

    cfg = _clip_config(config)
    if cfg.data["source"] != "folder":
        raise ConfigError(f"{cfg.source}: field 'data.source': clip typo copies an image folder (source: folder)")
    return typo_copy(cfg.data["image_dir"], out, cfg.data["image_size"] or 224, spec_of(cfg), cfg.seed, cfg.classes)


def rl_attack(config: str | Path | dict[str, Any], out: str | Path, *, progress: Any = None) -> dict[str, Any]:
    """CSI-manipulation attacks on the deep-RL MU-MIMO scheduler (FGGM with CROWN bounds, white-box PGD, greedy,
    random) over the config's seeds; writes OUT/rl-attack.json and OUT/rl-report.html (resumable) and returns the
    result."""
    from safeglass.rl.config import load_rl_config, parse_rl_config
    from safeglass.rl.run import attack_suite

    cfg = parse_rl_config(config) if isinstance(config, dict) else load_rl_config(config)
    return attack_suite(cfg, out, progress=progress)


def clip_attack(config: str | Path | dict[str, Any], out: str | Path, *, organism: str | None = None,
                progress: Any = None) -> dict[str, Any]:
    """Clean vs l-inf PGD / APGD zero-shot accuracy at the config's `adversarial` eps list (Wilson intervals);
    `organism` replaces the config's model by a CLIP organism. Writes OUT/clip-attack.json and returns it."""
    from safeglass.clip.attack_run import attack, with_organism

    return attack(with_organism(_clip_config(config), organism), out, progress=progress)


def clip_robust_train(config: str | Path | dict[str, Any], out: str | Path, *, progress: Any = None) -> dict[str, Any]:
    """TeCoA / FARE fine-tuning of the config's model's vision tower by its `robust` block; writes
    vision.safetensors and card.json into OUT (resuming from a checkpoint there) and returns the card."""
    from safeglass.clip.attack_run import robust_train

    return robust_train(_clip_config(config), out, progress=progress)


def _continual_config(config: str | Path | dict[str, Any]) -> Any:
    from safeglass.continual.config import load_continual_config, parse_continual_config

    return parse_continual_config(config) if isinstance(config, dict) else load_continual_config(config)


def continual_run(config: str | Path | dict[str, Any], out: str | Path, *, progress: Any = None) -> dict[str, Any]:
    """Every strategy of a continual config at its contamination ratio and seed: the accuracy matrices, metrics and
    failure-mode records; writes OUT/continual-run.json (cells under OUT/cells, reused by a rerun) and the plots."""
    from safeglass.continual.run import run

    return run(_continual_config(config), out, progress=progress)


def continual_sweep(config: str | Path | dict[str, Any], out: str | Path, *, progress: Any = None) -> dict[str, Any]:
    """The contamination sweep (strategies x ratios x seeds) with intervals over seeds, the damage per strategy and the
    mitigation's recovery; resumable per cell; writes OUT/continual-sweep.json and the plots."""
    from safeglass.continual.run import sweep

    return sweep(_continual_config(config), out, progress=progress)


def continual_generate(config: str | Path | dict[str, Any], out: str | Path, *, per_class: int = 100,
                       seed: int = 0) -> dict[str, Any]:
    """The config's synthetic images as a folder of class subfolders (for `synthetic: {source: folder}` or other
    tools), with OUT/generated.json recording the generator."""
    from safeglass.continual.run import generate

    return generate(_continual_config(config), out, per_class=per_class, seed=seed)
