"""The project's mitigation: an entropy gate on the memory's door, plugged into any replay strategy (`er+gate`).

Why (the failure-mode analysis in docs/continual.md): a generator's images are prototypical, so the learner fits
them with lower predictive entropy than real images of the same class (entropy separates them, AUROC well above
0.5), and a reservoir fills with them in proportion to the contamination. Replay then rehearses easy, prototypical
images that say little about the real decision boundary, and old classes are forgotten on real test images.
The gate needs no provenance: a sample may enter the memory only if its entropy (under the current model) is at or
above the `quantile` of the entropies its class has shown so far. Within a class the low-entropy tail is where the
synthetic images gather, so the memory keeps a larger real share; at 0 % contamination it keeps the harder half of
real samples, which costs little. The strategy's own sampler (reservoir, balanced, ...) then runs on what passes.
"""

from __future__ import annotations

import numpy as np
import torch


class EntropyGate:
    def __init__(self, quantile: float = 0.5, warmup: int = 8) -> None:
        if not 0.0 <= quantile < 1.0:
            raise ValueError(f"gate quantile {quantile} is outside [0, 1)")
        self.quantile, self.warmup = quantile, warmup
        self.history: dict[int, list[float]] = {}

    def admit(self, y: torch.Tensor, ent: torch.Tensor) -> torch.Tensor:
        """A boolean mask: which of the batch may enter. Each class's threshold is the quantile of every entropy the
        class has offered so far, this batch included; until a class has offered `warmup` samples all pass."""
        keep = torch.ones(len(y), dtype=torch.bool)
        for c in y.unique().tolist():
            rows = torch.nonzero(y == c).flatten()
            hist = self.history.setdefault(int(c), [])
            hist.extend(float(e) for e in ent[rows])
            if len(hist) < self.warmup:
                continue
            cut = float(np.quantile(np.asarray(hist), self.quantile))
            keep[rows] = ent[rows] >= cut
        return keep
