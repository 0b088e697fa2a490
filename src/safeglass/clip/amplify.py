"""The amplification table: does adversarial robustness amplify typographic vulnerability?

For a base model and its robust variants (TeCoA, FARE at several eps), each task (zero-shot classification,
segmentation, VQA) is scored on the same clean and typographically attacked images. A task hands back per-image
sufficient statistics (correct or not; per-class intersections and unions) and a reducer from their sums to its
metric, so one bootstrap serves every metric: the same resampled images for every model and for clean and attacked
images, which pairs every comparison. Reported per (task, model): clean, attacked, the drop in points, the drop
relative to clean, and the drop's difference from the base model's (the amplification), each with a 95 % interval.

A finished (model, task) part is kept under OUT/amplify-parts/ (numpy, no pickle), so a killed run resumes there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from safeglass.clip.segrun import amplify_arrays, miou_reduce
from safeglass.clip.vqarun import amplify_arrays as vqa_arrays
from safeglass.hashing import content_hash

AMPLIFY_JSON = "clip-amplify.json"
PARTS = "amplify-parts"


@dataclass(frozen=True)
class TaskScores:
    """Per-image statistics of one task on one model: `clean` and `attacked` are [N, k]; `reduce(sums, n)` turns
    [R, k] column sums over samples of n images into R metric values."""

    metric: str
    clean: np.ndarray
    attacked: np.ndarray
    reduce: Callable[[np.ndarray, int], np.ndarray]

    def value(self, which: str) -> float:
        a = self.clean if which == "clean" else self.attacked
        return float(self.reduce(a.sum(0, keepdims=True).astype(np.float64), len(a))[0])


def mean_reduce(sums: np.ndarray, n: int) -> np.ndarray:
    return sums[:, 0] / n


def classify_arrays(backend: Any, data: Any, attacked: Any, templates: Sequence[str], cache: Any,
                    **_: Any) -> tuple[np.ndarray, np.ndarray]:
    """Zero-shot classification: 1 where an image is classified as its true class."""
    from safeglass.clip.zeroshot import predict

    clean = predict(backend, data.images, data.classes, templates, cache) == data.labels
    typo = predict(backend, attacked.images, data.classes, templates, cache) == data.labels
    return clean[:, None].astype(np.float64), typo[:, None].astype(np.float64)


@dataclass(frozen=True)
class Task:
    """A task of the table: its metric's name, the reducer of its statistics' sums, and `score(backend, data,
    attacked, templates, cache, cfg=...)` -> (clean, attacked) per-image statistics, [N, k] each."""

    metric: str
    reduce: Callable[[np.ndarray, int], np.ndarray]
    score: Callable[..., tuple[np.ndarray, np.ndarray]]

    def scores(self, clean: np.ndarray, attacked: np.ndarray) -> TaskScores:
        return TaskScores(self.metric, clean, attacked, self.reduce)


TASKS: dict[str, Task] = {"classify": Task("accuracy", mean_reduce, classify_arrays),
                          "segment": Task("miou", miou_reduce, amplify_arrays),    # clip/segrun.py
                          "vqa": Task("accuracy", mean_reduce, vqa_arrays)}        # clip/vqarun.py


def resample_counts(n: int, resamples: int, seed: int) -> np.ndarray:
    """[R, n] how often each image is drawn in each bootstrap resample (seeded; the same for every model)."""
    rng = np.random.default_rng([seed, n, resamples])
    return np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(resamples)]).astype(np.float64)


def _interval(point: float, draws: np.ndarray, scale: float = 100.0) -> dict[str, float | None]:
    """The point and its 95 % percentile interval; None where undefined (a relative drop of a model that is never
    right clean), so the JSON stays valid."""
    finite = draws[np.isfinite(draws)]
    if not np.isfinite(point) or finite.size == 0:
        return {"value": None, "ci_low": None, "ci_high": None}
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return {"value": round(scale * point, 2), "ci_low": round(scale * float(lo), 2),
            "ci_high": round(scale * float(hi), 2)}


def compare(scores: Mapping[str, TaskScores], base: str, resamples: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """One row per model (in the mapping's order): clean, attacked, drop, relative drop and amplification (the drop
    minus the base model's), in points with 95 % bootstrap intervals over the shared images."""
    n = {len(s.clean) for s in scores.values()} | {len(s.attacked) for s in scores.values()}
    if len(n) != 1:
        raise ValueError(f"amplify: the models were scored on different image counts {sorted(n)}")
    counts = resample_counts(n.pop(), resamples, seed)
    size = counts.shape[1]
    boot: dict[str, dict[str, np.ndarray]] = {}
    rows = []
    for name, s in scores.items():
        c = s.reduce(counts @ s.clean, size)
        a = s.reduce(counts @ s.attacked, size)
        with np.errstate(divide="ignore", invalid="ignore"):
            boot[name] = {"drop": c - a, "relative": (c - a) / c}
        cv, av = s.value("clean"), s.value("attacked")
        rows.append({"model": name, "metric": s.metric, "n": size,
                     "clean": _interval(cv, c), "attacked": _interval(av, a), "drop": _interval(cv - av, c - a),
                     "relative_drop": _interval((cv - av) / cv if cv else float("nan"), boot[name]["relative"])})
    if base not in scores:
        raise ValueError(f"amplify: the base model {base!r} was not scored")
    b = scores[base]
    b_drop = b.value("clean") - b.value("attacked")
    b_rel = b_drop / b.value("clean") if b.value("clean") else float("nan")
    for row in rows:
        s = scores[row["model"]]
        drop = s.value("clean") - s.value("attacked")
        rel = drop / s.value("clean") if s.value("clean") else float("nan")
        row["amplification"] = _interval(drop - b_drop, boot[row["model"]]["drop"] - boot[base]["drop"])
        row["relative_amplification"] = _interval(rel - b_rel, boot[row["model"]]["relative"] - boot[base]["relative"])
    return rows


def model_label(spec: Mapping[str, Any]) -> str:
    for k in ("organism", "hub", "open_clip"):
        if spec.get(k):
            return str(spec[k]) + (f"@{spec['pretrained']}" if spec.get("pretrained") else "")
    return f"random-{spec.get('random')}-{spec.get('seed', 0)}"


def _save_part(path: Path, s: TaskScores) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, clean=s.clean, attacked=s.attacked)
    tmp.replace(path)


def _load_part(path: Path, task: Task) -> TaskScores | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return task.scores(z["clean"], z["attacked"])
    except (OSError, ValueError, KeyError):
        return None


def amplify(cfg: Any, out: str | Path, progress: Callable[[str], None] | None = None,
            backends: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Score every model of `cfg.amplify.models` (the config's `model` first, as the base) on every task of
    `cfg.amplify.tasks`; writes OUT/clip-amplify.json. `backends` maps model labels to loaded backends (tests)."""
    from safeglass.clip.backends import load_backend
    from safeglass.clip.run import _finished, _write, attacked_split, load_split, provenance, templates_of
    from safeglass.clip.zeroshot import TextCache

    say = progress or (lambda _line: None)
    out = Path(out)
    if (done := _finished(out / AMPLIFY_JSON, cfg, say)) is not None:
        return done
    t0 = time.perf_counter()
    if cfg.amplify is None:
        from safeglass.schema import ConfigError

        raise ConfigError(f"{cfg.source}: field 'amplify': clip amplify needs an amplify block (models, tasks)")
    block = cfg.amplify
    specs = [dict(cfg.model), *[dict(m) for m in block.get("models", [])]]
    labels = [model_label(m) for m in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{cfg.source}: field 'amplify.models': a model is listed twice ({', '.join(labels)})")
    tasks = list(block.get("tasks") or ["classify"])
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"{cfg.source}: field 'amplify.tasks': unknown task(s) {unknown}; known: {', '.join(TASKS)}")
    templates = templates_of(cfg)
    scores: dict[str, dict[str, TaskScores]] = {t: {} for t in tasks}
    shared: dict[str, Any] = {}  # what a task builds once per run (the VQA target)
    # a part depends on the config but not on the amplify block: adding a task or a model reuses the finished parts
    scored = {k: v for k, v in cfg.raw.items() if k not in ("amplify", "name", "description", "batch_size")}
    models: dict[str, Any] = {}
    images: dict[int, tuple[Any, Any]] = {}
    for spec, label in zip(specs, labels):
        b = (backends or {}).get(label)
        b = b if b is not None else load_backend(spec)
        b.batch_size = cfg.batch_size
        models[label] = {**provenance(cfg, b)["model"]}
        if b.image_size not in images:  # the same images for every model of a side: rendered and attacked once
            split = load_split(cfg, b.image_size, "test")
            images[b.image_size] = (split, attacked_split(cfg, split))
        data, attacked = images[b.image_size]
        cache = TextCache()
        for task in tasks:
            part = out / PARTS / f"{task}-{content_hash({'cfg': scored, 'model': models[label]}, length=16)}.npz"
            got = _load_part(part, TASKS[task])
            if got is None:
                say(f"clip amplify: {task} on {label}")
                got = TASKS[task].scores(*TASKS[task].score(b, data, attacked, templates, cache, cfg=cfg,
                                                                   shared=shared))
                _save_part(part, got)
            else:
                say(f"clip amplify: {task} on {label}: reusing {part}")
            scores[task][label] = got
    resamples = int(block.get("resamples") or 1000)
    result: dict[str, Any] = {
        "format": "safeglass.clip/1", "kind": "clip amplify", "name": cfg.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **provenance(cfg, b), "models": models, "base": labels[0], "tasks": tasks, "resamples": resamples,
        "rows": {t: compare(scores[t], labels[0], resamples, cfg.seed) for t in tasks},
    }
    result.pop("model")
    result["seconds"] = round(time.perf_counter() - t0, 2)
    _write(out / AMPLIFY_JSON, result)
    say(f"clip amplify: wrote {out / AMPLIFY_JSON}")
    return result


def table(result: Mapping[str, Any]) -> str:
    """The console table: one block per task."""
    lines = [f"{result['name']}: typographic damage, base {result['base']} against its variants "
             f"(points, 95 % bootstrap intervals over {result['resamples']} resamples)"]
    for task in result["tasks"]:
        lines.append(f"  {task}:")
        lines.append(f"    {'model':<28} {'clean':>8} {'attacked':>9} {'drop':>22} {'vs base':>22}")
        for r in result["rows"][task]:
            d, a = r["drop"], r["amplification"]
            lines.append(f"    {r['model']:<28} {r['clean']['value']:8.1f} {r['attacked']['value']:9.1f} "
                         f"{d['value']:6.1f} [{d['ci_low']:5.1f}, {d['ci_high']:5.1f}] "
                         f"{a['value']:+6.1f} [{a['ci_low']:+5.1f}, {a['ci_high']:+5.1f}]")
    return "\n".join(lines)

