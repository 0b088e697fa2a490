"""Replay memories: reservoir sampling (ER, DER++, ER-ACE, A-GEM), GDumb's class-balanced greedy memory, and
ESRM's entropy-aware one. Each keeps, beside the images and labels, the stream position of every slot (`ids`), which
the analysis maps to provenance; strategies never read it."""

from __future__ import annotations

import numpy as np
import torch


class Reservoir:
    """Vitter's algorithm R: after n offers each offered sample is in the memory with probability size / n."""

    def __init__(self, size: int, dim: int, n_classes: int, seed: int = 0) -> None:
        self.size = size
        self.x = torch.zeros(size, dim)
        self.y = torch.zeros(size, dtype=torch.long)
        self.logits = torch.zeros(size, n_classes)   # DER++: the model's logits when the sample was stored
        self.score = torch.zeros(size)                 # ESRM: entropy when stored
        self.ids = np.full(size, -1, np.int64)
        self.n = 0          # filled slots
        self.seen = 0       # samples offered
        self.rng = np.random.default_rng([seed, 17])

    def __len__(self) -> int:
        return self.n

    def _slot(self) -> int | None:
        self.seen += 1
        if self.n < self.size:
            self.n += 1
            return self.n - 1
        j = int(self.rng.integers(0, self.seen))
        return j if j < self.size else None

    def _put(self, j: int, x: torch.Tensor, y: int, i: int, logits: torch.Tensor | None, score: float) -> None:
        self.x[j], self.y[j], self.ids[j], self.score[j] = x, y, i, score
        if logits is not None:
            self.logits[j] = logits

    def add(self, x: torch.Tensor, y: torch.Tensor, ids: np.ndarray, logits: torch.Tensor | None = None,
            scores: torch.Tensor | None = None) -> None:
        for k in range(len(y)):
            j = self._slot()
            if j is not None:
                self._put(j, x[k], int(y[k]), int(ids[k]), None if logits is None else logits[k],
                          0.0 if scores is None else float(scores[k]))

    def sample(self, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """n slots drawn uniformly without replacement: (x, y, logits)."""
        idx = torch.from_numpy(rng.choice(self.n, min(n, self.n), replace=False))
        return self.x[idx], self.y[idx], self.logits[idx]

    def class_counts(self, n_classes: int) -> np.ndarray:
        return np.bincount(self.y[: self.n].numpy(), minlength=n_classes)


class EntropyReservoir(Reservoir):
    """ESRM's memory: reservoir sampling decides whether a sample enters and which slot it takes; the slot actually
    given up is the lowest-entropy one (the most over-confident, likely synthetic) of the drawn slot's class, so the
    classes keep their reservoir shares while each class sheds its most confident samples first."""

    def add(self, x: torch.Tensor, y: torch.Tensor, ids: np.ndarray, logits: torch.Tensor | None = None,
            scores: torch.Tensor | None = None) -> None:
        assert scores is not None, "the entropy memory needs each sample's entropy"
        for k in range(len(y)):
            full = self.n == self.size   # before the draw: the sample that fills the last slot just takes it
            j = self._slot()
            if j is None:
                continue
            if full:
                same = torch.nonzero(self.y[: self.n] == self.y[j]).flatten()
                j = int(same[torch.argmin(self.score[same])])
            self._put(j, x[k], int(y[k]), int(ids[k]), None if logits is None else logits[k], float(scores[k]))


class ClassBalanced(Reservoir):
    """GDumb's greedy sampler: a sample of class c enters while c holds fewer than size / (classes seen) slots; a full
    memory makes room by dropping a random sample of its largest class."""

    def __init__(self, size: int, dim: int, n_classes: int, seed: int = 0) -> None:
        super().__init__(size, dim, n_classes, seed)
        self.classes_seen: set[int] = set()

    def add(self, x: torch.Tensor, y: torch.Tensor, ids: np.ndarray, logits: torch.Tensor | None = None,
            scores: torch.Tensor | None = None) -> None:
        for k in range(len(y)):
            c = int(y[k])
            self.seen += 1
            self.classes_seen.add(c)
            counts = np.bincount(self.y[: self.n].numpy(), minlength=c + 1)
            if counts[c] >= self.size / len(self.classes_seen):
                continue
            if self.n < self.size:
                j = self.n
                self.n += 1
            else:
                largest = np.flatnonzero(counts == counts.max())
                big = int(self.rng.choice(largest))
                j = int(self.rng.choice(np.flatnonzero(self.y[: self.n].numpy() == big)))
            self._put(j, x[k], c, int(ids[k]), None, 0.0)
