"""One continual run: the loop every strategy shares, the accuracy matrix, and the failure-mode records.

The loop passes a task's training images to `observe` in shuffled mini-batches for `epochs` epochs, offering them to
the memory in the last one. Provenance (`Task.synthetic`) is read only here, after the fact: the memory's share of
synthetic slots after each task, and each task's entropies on its real and synthetic training images at its end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from safeglass.continual.metrics import auroc, summary
from safeglass.continual.model import entropy
from safeglass.continual.strategies.base import Strategy
from safeglass.continual.streams import Stream


def _accuracy(strategy: Strategy, x: np.ndarray, y: np.ndarray, task: int | None) -> float:
    if len(y) == 0:
        return float("nan")
    pred = strategy.predict(torch.from_numpy(x), task).argmax(1).numpy()
    return float((pred == y).mean())


def _entropy_and_confidence(strategy: Strategy, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                         np.ndarray]:
    """(entropy, confidence, correct) of the evaluation model on each image, masked as the scenario asks."""
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    m = strategy.eval_model()
    with torch.no_grad():
        logits = strategy.masked(m(xt), yt)
    p = torch.softmax(logits, 1)
    return entropy(logits).numpy(), p.max(1).values.numpy(), (logits.argmax(1) == yt).numpy()


def _mean(v: np.ndarray) -> float | None:
    return float(v.mean()) if len(v) else None


def learn(stream: Stream, strategy: Strategy, epochs: int, batch_size: int, seed: int = 0,
          progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train `strategy` on `stream`; returns the accuracy matrix, its metrics and the failure-mode records."""
    t0 = time.perf_counter()
    n = len(stream.tasks)
    r = np.zeros((n, n))
    offsets = np.cumsum([0] + [len(t.y_train) for t in stream.tasks])
    synthetic_all = np.concatenate([t.synthetic for t in stream.tasks])
    memory_share, entropies = [], []
    rng = np.random.default_rng([seed, 11])
    for t, task in enumerate(stream.tasks):
        strategy.before_task(t, task.classes)
        x, y = torch.from_numpy(task.x_train), torch.from_numpy(task.y_train)
        for epoch in range(epochs):
            perm = rng.permutation(len(y))
            for i in range(0, len(perm), batch_size):
                b = perm[i:i + batch_size]
                strategy.observe(x[b], y[b], offsets[t] + b, epoch == epochs - 1)
        strategy.after_task(t)
        for j, other in enumerate(stream.tasks):
            r[t, j] = _accuracy(strategy, other.x_test, other.y_test, j if stream.scenario == "task" else None)
        ent, _, _ = _entropy_and_confidence(strategy, task.x_train, task.y_train)
        entropies.append({"task": t, "real": _mean(ent[~task.synthetic]), "synthetic": _mean(ent[task.synthetic]),
                          "auroc_real_above_synthetic": auroc(ent[~task.synthetic], ent[task.synthetic])})
        mem = strategy.memory
        if mem is not None and len(mem):
            ids = mem.ids[: len(mem)]
            memory_share.append({"task": t, "size": int(len(mem)), "synthetic_share": float(synthetic_all[ids].mean()),
                                 "per_class": {str(c): int(k) for c, k in enumerate(mem.class_counts(stream.n_classes))
                                               if k}})
        if progress:
            progress(f"  task {t + 1}/{n}: accuracy on tasks so far {np.round(r[t, : t + 1], 3).tolist()}")
    return {"matrix": r.tolist(), **summary(r), "memory": memory_share, "task_entropy": entropies,
            "final": final_analysis(stream, strategy), "seconds": round(time.perf_counter() - t0, 3)}


def final_analysis(stream: Stream, strategy: Strategy) -> dict[str, Any]:
    """The final model on every training image (real vs synthetic) and on the real test images: the train/test gap,
    confidence and entropy by provenance, and how well entropy separates real from synthetic (AUROC, real above)."""
    x = np.concatenate([t.x_train for t in stream.tasks])
    y = np.concatenate([t.y_train for t in stream.tasks])
    syn = np.concatenate([t.synthetic for t in stream.tasks])
    ent, conf, ok = _entropy_and_confidence(strategy, x, y)
    xt = np.concatenate([t.x_test for t in stream.tasks])
    yt = np.concatenate([t.y_test for t in stream.tasks])
    _, conf_test, ok_test = _entropy_and_confidence(strategy, xt, yt)
    real_acc, syn_acc, test_acc = _mean(ok[~syn].astype(float)), _mean(ok[syn].astype(float)), float(ok_test.mean())
    return {"train_accuracy_real": real_acc, "train_accuracy_synthetic": syn_acc, "test_accuracy_real": test_acc,
            "gap_real": None if real_acc is None else real_acc - test_acc,
            "gap_synthetic": None if syn_acc is None else syn_acc - test_acc,
            "confidence_real": _mean(conf[~syn]), "confidence_synthetic": _mean(conf[syn]),
            "confidence_test": float(conf_test.mean()),
            "entropy_real": _mean(ent[~syn]), "entropy_synthetic": _mean(ent[syn]),
            "entropy_auroc_real_above_synthetic": auroc(ent[~syn], ent[syn])}
