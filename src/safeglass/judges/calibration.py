"""How far to trust a judge: its agreement with human labels, with bootstrap intervals.

``safeglass judges calibrate --judge NAME --labels pyrit:refusal`` runs a judge over a labelled set
(:mod:`safeglass.judges.labels`) and reports accuracy, precision, recall, F1 and Cohen's kappa, each
with a seeded percentile-bootstrap 95 % interval, plus the confusion matrix, per-category accuracy,
the judge's identity and the labels' file hashes.

The public (PyRIT) sets are a held-out yardstick: never train, tune or pick thresholds on them,
or the figures stop meaning anything.

How a verdict becomes a predicted label (positive class = label 1):

* refusal judge, refusal labels: predicted refusal = ``flag``.
* refusal judge, objective labels: predicted "objective achieved" = ``not flag``. This is a proxy:
  a reply that does not refuse may still fail to achieve the objective (vague, wrong, off-topic),
  so expect false positives.
* harm judge, objective labels: predicted achieved = ``flag``.
* harm judge, refusal labels: not meaningful (harmlessness is not refusal), refused.
* toxicity judges: not applicable to either kind, refused with a clear error.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from safeglass.data.errors import DataError  # the labels do not fit the judge: the user's to fix (exit 2)
from safeglass.judges.base import Judge, JudgeInput, Verdict
from safeglass.judges.labels import LabelSet

__all__ = ["METRICS", "bootstrap_intervals", "calibrate_judge", "cohen_kappa", "format_result", "format_table",
           "metrics", "predicted_labels"]

METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "kappa")
CALIBRATION_SCHEMA = 1


def _from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> dict[str, np.ndarray]:
    """All metrics from confusion counts; works on scalars and on arrays of bootstrap resamples."""
    tp, fp, fn, tn = (np.asarray(x, dtype=float) for x in (tp, fp, fn, tn))
    n = tp + fp + fn + tn
    with np.errstate(divide="ignore", invalid="ignore"):
        # Undefined precision/recall/F1 (no predicted / no true positives) count as 0, as sklearn's
        # zero_division default does, so a judge that never flags is not flattered by a NaN.
        precision = np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1), 0.0)
        recall = np.where(tp + fn > 0, tp / np.where(tp + fn > 0, tp + fn, 1), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / np.where(2 * tp + fp + fn > 0, 2 * tp + fp + fn, 1), 0.0)
        po = (tp + tn) / n
        pe = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (n * n)
        # kappa is undefined when chance agreement is 1 (one class only on both sides): NaN.
        kappa = np.where(pe < 1, (po - pe) / np.where(pe < 1, 1 - pe, 1), np.nan)
    return {"accuracy": po, "precision": precision, "recall": recall, "f1": f1, "kappa": kappa}


def _counts(y_true: np.ndarray, y_pred: np.ndarray, axis: int | None = None) -> tuple[np.ndarray, ...]:
    tp = np.sum(y_true & y_pred, axis=axis)
    fp = np.sum(~y_true & y_pred, axis=axis)
    fn = np.sum(y_true & ~y_pred, axis=axis)
    tn = np.sum(~y_true & ~y_pred, axis=axis)
    return tp, fp, fn, tn


def metrics(y_true: Sequence[bool], y_pred: Sequence[bool]) -> dict[str, Any]:
    """Point estimates and the confusion matrix (positive class = label 1)."""
    t, p = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    if t.size == 0:
        raise ValueError("no labelled items to score")
    tp, fp, fn, tn = _counts(t, p)
    out: dict[str, Any] = {k: float(v) for k, v in _from_counts(tp, fp, fn, tn).items()}
    out["confusion"] = {"tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn)}
    out["n"] = int(t.size)
    return out


def cohen_kappa(y_true: Sequence[bool], y_pred: Sequence[bool]) -> float:
    """Cohen's kappa for two binary raters: (p_observed - p_chance) / (1 - p_chance)."""
    return float(metrics(y_true, y_pred)["kappa"])


def bootstrap_intervals(y_true: Sequence[bool], y_pred: Sequence[bool], *, resamples: int = 2000, seed: int = 0,
                        alpha: float = 0.05) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval for every metric, resampling items with replacement.

    Vectorised: one (resamples x n) index matrix, counts summed along rows. Resamples where a
    metric is undefined (kappa with one class) are left out of that metric's percentiles.
    """
    t, p = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    n = t.size
    if n == 0:
        return {m: (float("nan"), float("nan")) for m in METRICS}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    stats = _from_counts(*_counts(t[idx], p[idx], axis=1))
    out = {}
    for m in METRICS:
        vals = stats[m][np.isfinite(stats[m])]
        if vals.size == 0:
            out[m] = (float("nan"), float("nan"))
        else:
            lo, hi = np.percentile(vals, [100 * alpha / 2, 100 * (1 - alpha / 2)])
            out[m] = (float(lo), float(hi))
    return out


def predicted_labels(measure: str, label_kind: str, verdicts: Sequence[Verdict]) -> list[bool]:
    """A judge's verdicts as predictions of the labels' positive class (rules in the module doc)."""
    if measure == "toxicity":
        raise DataError("a toxicity judge cannot be calibrated on refusal or objective labels: toxicity is a "
                         "different property (calibrate it on toxicity labels, which safeglass does not read yet)")
    if measure == "refusal" and label_kind == "refusal":
        return [v.flag for v in verdicts]
    if measure == "refusal" and label_kind == "objective":
        return [not v.flag for v in verdicts]  # proxy: "did not refuse" stands for "achieved"
    if measure == "harm" and label_kind == "objective":
        return [v.flag for v in verdicts]
    raise DataError(f"a {measure} judge cannot be calibrated on {label_kind} labels")


def mapping_note(measure: str, label_kind: str) -> str:
    if measure == "refusal" and label_kind == "objective":
        return "proxy: predicted objective achieved = judge did not flag a refusal"
    if label_kind == "objective":
        return "predicted objective achieved = judge flag"
    return "predicted refusal = judge flag"


def calibrate_judge(judge: Judge, labels: LabelSet, *, limit: int | None = None, resamples: int = 2000,
                    seed: int = 0) -> dict[str, Any]:
    """Run ``judge`` over ``labels`` and measure its agreement with the human labels."""
    ident = judge.identity()
    predicted_labels(ident.measure, labels.kind, [])  # fail before judging anything
    items = labels.items[:limit] if limit is not None else labels.items
    if not items:
        raise DataError(f"labels {labels.name!r}: no usable labelled items")
    start = time.perf_counter()
    verdicts: list[Verdict] = []
    batch = max(1, int(getattr(judge, "batch_size", 64) or 64))
    for i in range(0, len(items), batch):
        chunk = items[i:i + batch]
        verdicts += judge.judge([JudgeInput(it.prompt, it.response, category=it.category) for it in chunk])
    judge_s = time.perf_counter() - start
    y_true = [it.label for it in items]
    y_pred = predicted_labels(ident.measure, labels.kind, verdicts)
    point = metrics(y_true, y_pred)
    t0 = time.perf_counter()
    cis = bootstrap_intervals(y_true, y_pred, resamples=resamples, seed=seed)
    boot_s = time.perf_counter() - t0

    by_cat: dict[str, list[bool]] = defaultdict(list)
    for it, pred in zip(items, y_pred):
        by_cat[it.category or "uncategorized"].append(pred == it.label)
    per_category = {c: {"n": len(v), "accuracy": sum(v) / len(v)} for c, v in sorted(by_cat.items())}

    # A partial run must not overwrite (or pass for) the full set's figures in the store.
    dataset = labels.name if len(items) == len(labels.items) else f"{labels.name}-first{len(items)}"
    return _finite({
        "schema": CALIBRATION_SCHEMA,
        "dataset": dataset,
        "label_kind": labels.kind,
        "mapping": mapping_note(ident.measure, labels.kind),
        "judge": {"key": ident.key, **ident.to_dict()},
        "labels_files": labels.files,
        "skipped": [str(e) for e in labels.errors],
        "n": point["n"],
        "positives": int(sum(y_true)),
        **{m: point[m] for m in METRICS},
        **{f"{m}_ci": list(cis[m]) for m in METRICS},
        "confusion": point["confusion"],
        "per_category": per_category,
        "bootstrap": {"resamples": resamples, "seed": seed, "method": "percentile", "level": 0.95},
        "timing_s": {"judge": round(judge_s, 4), "bootstrap": round(boot_s, 4)},
        "limit": limit,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })


def _finite(obj: Any) -> Any:
    """NaN (kappa with a single class) becomes None: JSON has no NaN."""
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _fmt(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"


def format_result(result: dict[str, Any]) -> str:
    """:func:`format_table`, then how long judging and the bootstrap took and where the result was saved: what
    ``safeglass judges calibrate`` and the calibration scripts print per result."""
    t = result["timing_s"]
    saved = f"; saved to {result['saved_to']}" if result.get("saved_to") else ""
    return (f"{format_table(result)}\n\njudged in {t['judge']:.2f} s, bootstrap in {t['bootstrap']:.2f} s{saved}\n")


def format_table(result: dict[str, Any]) -> str:
    """A readable table: metric, value, 95 % CI, then the confusion matrix and per-category accuracy."""
    j = result["judge"]
    lines = [f"judge {j['name']} v{j['version']} ({j['key']}) on {result['dataset']} "
             f"({result['label_kind']} labels, n={result['n']}, {result['positives']} positive)",
             f"mapping: {result['mapping']}", "",
             f"{'metric':<10} {'value':>7}  95% CI"]
    for m in METRICS:
        lo, hi = result[f"{m}_ci"]
        lines.append(f"{m:<10} {_fmt(result[m]):>7}  [{_fmt(lo)}, {_fmt(hi)}]")
    c = result["confusion"]
    lines += ["", "confusion    pred 1  pred 0", f"label 1   {c['tp']:>8}{c['fn']:>8}",
              f"label 0   {c['fp']:>8}{c['tn']:>8}"]
    if len(result["per_category"]) > 1:
        lines += ["", "per category accuracy:"]
        lines += [f"  {cat:<24} {v['accuracy']:.3f}  (n={v['n']})" for cat, v in result["per_category"].items()]
    if result["skipped"]:
        lines += ["", f"skipped {len(result['skipped'])} bad record(s):"] + [f"  {s}" for s in result["skipped"]]
    return "\n".join(lines)
