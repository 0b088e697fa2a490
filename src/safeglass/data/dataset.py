"""A loaded dataset: its samples, where they came from, and the records that were skipped."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from safeglass.data.errors import LoadReport
from safeglass.types import Sample


@dataclass
class Dataset:
    name: str
    samples: list[Sample]
    provenance: dict[str, Any] = field(default_factory=dict)  # package+version or path+file hash
    report: LoadReport = field(default_factory=LoadReport)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def head(self, n: int | None) -> Dataset:
        if n is None:
            return self
        return Dataset(self.name, self.samples[:n], self.provenance, self.report)

    def sample(self, n: int | None, seed: int = 0) -> Dataset:
        """A seeded random subset in the original order (stable for a given seed and n)."""
        if n is None or n >= len(self.samples):
            return self
        import random

        idx = sorted(random.Random(seed).sample(range(len(self.samples)), n))
        return Dataset(self.name, [self.samples[i] for i in idx], {**self.provenance, "subset": {"n": n, "seed": seed}},
                       self.report)
