"""The Attack interface: samples in, attacked samples out (same ids, recorded attack config).

The runner's attack stage calls ``apply_batch`` once per (sample, attack config) and, for white-box attacks,
per target, stores the result and reuses it for every defense and on resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from safeglass.option_keys import KeyedByOptions
from safeglass.types import Sample

# "black-box": needs nothing of the target (runs before it loads, shared by all targets); "white-box": gets the
# loaded target (gradients, log-likelihoods) and is computed per target.
ACCESS = ("black-box", "white-box")


class Attack(KeyedByOptions):
    """``config()`` identifies the attack in result keys: by default its name and every option it was built with
    (``option_keys``), so an option a new attack adds enters its key without code."""

    name: str = "none"
    access: str = "black-box"

    def config(self) -> dict[str, Any]:
        return self.option_key()

    def apply(self, sample: Sample, target: Any = None) -> Sample:
        return sample

    def apply_batch(self, samples: Sequence[Sample], target: Any = None) -> list[Sample]:
        """Attack several samples at once; override where batching pays (gradient attacks on a batch)."""
        return [self.apply(s, target) for s in samples]


class NoAttack(Attack):
    """The prompt as the dataset gives it."""

    name = "none"
    stored = False  # the identity: nothing to attack, nothing to store
