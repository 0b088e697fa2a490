"""Class- and task-incremental streams over real images, contaminated by synthetic ones.

A source is (images flattened to [0, 1], labels, class names). The split into train and test is stratified and fixed
by `split_seed`; the test sets are real only. Contamination follows ESRM's protocol: within each class of a task's
training data a share `ratio` of the real images is *replaced* by as many synthetic images of that class, so the
stream keeps its size and its class balance. The learner sees (x, y) only; `Task.synthetic` keeps the provenance for
the analysis.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# a synthetic source: (class index, how many, seed) -> images (n, D) in [0, 1]
Sampler = Callable[[int, int, int], np.ndarray]


@dataclass(frozen=True)
class Source:
    x: np.ndarray                 # (N, D) float32 in [0, 1]
    y: np.ndarray                 # (N,) int64
    classes: tuple[str, ...]
    shape: tuple[int, ...]        # one image's (H, W) or (H, W, 3), for plots and folders
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    index: int
    classes: tuple[int, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    synthetic: np.ndarray         # (n_train,) bool: provenance, never shown to a strategy
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class Stream:
    tasks: tuple[Task, ...]
    n_classes: int
    scenario: str                 # "class" (one head over all classes) or "task" (task id known at test time)
    classes: tuple[str, ...]
    shape: tuple[int, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def input_dim(self) -> int:
        return int(self.tasks[0].x_train.shape[1])


def digits() -> Source:
    """scikit-learn's 1,797 real 8x8 handwritten digits (shipped in the wheel, offline)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return Source((d.data / 16.0).astype(np.float32), d.target.astype(np.int64), tuple(str(i) for i in range(10)),
                  (8, 8), {"source": "digits", "n": int(len(d.target))})


def shapeworld(n: int = 1200, seed: int = 0, image_size: int = 16) -> Source:
    """ShapeCLIP's world (one large shape on a textured background), labelled by shape, rendered small."""
    from safeglass.clip.images import shapeworld as scenes

    s = scenes(n, seed, image_size, "test")
    x = (s.images.reshape(len(s.labels), -1) / 255.0).astype(np.float32)
    return Source(x, s.labels.astype(np.int64), s.classes, (image_size, image_size, 3),
                  {"source": "shapeworld", "n": n, "seed": seed, "image_size": image_size})


def folder(path: str | Path, image_size: int = 16, grey: bool = True) -> Source:
    """A folder of class subfolders (CIFAR-100 or ImageNet-100 subsets, or generated images), resized square."""
    from safeglass.clip.images import folder as read

    s = read(path, image_size)
    imgs = s.images.astype(np.float32) / 255.0
    if grey:
        imgs = imgs.mean(axis=-1)
    return Source(imgs.reshape(len(s.labels), -1).astype(np.float32), s.labels.astype(np.int64), s.classes,
                  imgs.shape[1:], {"source": "folder", "path": str(path), "image_size": image_size, "grey": grey})


def write_folder(x: np.ndarray, y: np.ndarray, classes: Sequence[str], shape: tuple[int, ...], out: str | Path,
                 scale: int = 4) -> int:
    """Images as PNGs in class subfolders (`out/<class>/<i>.png`), readable back by :func:`folder`."""
    from PIL import Image

    out = Path(out)
    for i, (img, label) in enumerate(zip(x, y)):
        d = out / classes[int(label)]
        d.mkdir(parents=True, exist_ok=True)
        arr = (np.clip(img.reshape(shape), 0, 1) * 255).round().astype(np.uint8)
        pic = Image.fromarray(arr)
        pic.resize((pic.width * scale, pic.height * scale), Image.NEAREST).save(d / f"{i:05d}.png")
    return len(y)


def split(source: Source, test_fraction: float = 0.25, split_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices, stratified by class, fixed by `split_seed` (the same for every run and seed)."""
    rng = np.random.default_rng([split_seed, 21])
    train, test = [], []
    for c in np.unique(source.y):
        idx = rng.permutation(np.flatnonzero(source.y == c))
        k = int(round(test_fraction * len(idx)))
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def task_classes(n_classes: int, n_tasks: int, order: Sequence[int] | None = None) -> list[tuple[int, ...]]:
    """Classes cut into `n_tasks` consecutive groups of (nearly) equal size, in `order` (default 0..C-1)."""
    order = list(order) if order is not None else list(range(n_classes))
    if sorted(order) != list(range(n_classes)):
        raise ValueError(f"class order {order} is not a permutation of 0..{n_classes - 1}")
    if not 1 <= n_tasks <= n_classes:
        raise ValueError(f"{n_tasks} tasks for {n_classes} classes")
    return [tuple(int(c) for c in part) for part in np.array_split(np.array(order), n_tasks)]


def ratio_for(cls: int, task: int, ratio: float, per_task: Sequence[float] | None = None,
              per_class: Mapping[int, float] | None = None) -> float:
    """The contamination of one class in one task: per_class wins over per_task, which wins over ratio."""
    if per_class and cls in per_class:
        return float(per_class[cls])
    if per_task is not None:
        return float(per_task[task])
    return float(ratio)


def contaminate(x: np.ndarray, y: np.ndarray, sampler: Sampler | None, ratios: Mapping[int, float],
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Replace round(r * n_c) real images of each class c by synthetic ones (ESRM's protocol); returns the new
    images and the provenance flags. Which images go, and the synthetic draws, follow `seed`."""
    x = x.copy()
    synthetic = np.zeros(len(y), bool)
    rng = np.random.default_rng([seed, 5])
    for c in sorted(ratios):
        r = ratios[c]
        if not 0.0 <= r <= 1.0:
            raise ValueError(f"contamination ratio {r} for class {c} is outside [0, 1]")
        idx = np.flatnonzero(y == c)
        k = int(round(r * len(idx)))
        if k == 0:
            continue
        if sampler is None:
            raise ValueError("a contaminated stream needs a synthetic source")
        chosen = rng.choice(idx, k, replace=False)
        x[chosen] = sampler(int(c), k, int(rng.integers(2**31)))
        synthetic[chosen] = True
    return x, synthetic


def make_stream(source: Source, n_tasks: int, *, scenario: str = "class", sampler: Sampler | None = None,
                ratio: float = 0.0, per_task: Sequence[float] | None = None,
                per_class: Mapping[int, float] | None = None, seed: int = 0, test_fraction: float = 0.25,
                split_seed: int = 0, order: Sequence[int] | None = None,
                train_idx: np.ndarray | None = None, test_idx: np.ndarray | None = None) -> Stream:
    """A stream of `n_tasks` tasks; each task's training images are contaminated per class and shuffled by `seed`."""
    if scenario not in ("class", "task"):
        raise ValueError(f"scenario {scenario!r}; known: class, task")
    if per_task is not None and len(per_task) != n_tasks:
        raise ValueError(f"per_task gives {len(per_task)} ratios for {n_tasks} tasks")
    n_classes = len(source.classes)
    if train_idx is None or test_idx is None:
        train_idx, test_idx = split(source, test_fraction, split_seed)
    tasks = []
    for t, cls in enumerate(task_classes(n_classes, n_tasks, order)):
        tr = train_idx[np.isin(source.y[train_idx], cls)]
        te = test_idx[np.isin(source.y[test_idx], cls)]
        ratios = {c: ratio_for(c, t, ratio, per_task, per_class) for c in cls}
        x, syn = contaminate(source.x[tr], source.y[tr], sampler, ratios, seed * 1000 + t)
        perm = np.random.default_rng([seed, t, 9]).permutation(len(tr))
        tasks.append(Task(t, cls, x[perm], source.y[tr][perm], syn[perm], source.x[te], source.y[te]))
    meta = {**source.meta, "n_tasks": n_tasks, "scenario": scenario, "ratio": ratio, "per_task": per_task,
            "per_class": dict(per_class) if per_class else None, "seed": seed, "split_seed": split_seed,
            "test_fraction": test_fraction, "n_train": int(sum(len(t.y_train) for t in tasks)),
            "n_test": int(sum(len(t.y_test) for t in tasks)),
            "n_synthetic": int(sum(int(t.synthetic.sum()) for t in tasks))}
    return Stream(tuple(tasks), n_classes, scenario, source.classes, source.shape, meta)
