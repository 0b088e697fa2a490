"""ESRM (Wang et al., NeurIPS 2024, arXiv 2411.13852) without its oracle flags.

Entropy selection: the stream's cross-entropy counts only samples at or above the batch's median entropy (synthetic
images are learnt with low entropy); the memory replaces the lowest-entropy slot of the newcomer's class
(`EntropyReservoir`). Real-synthetic similarity: an InfoNCE term (tau 0.07) that pulls each selected stream sample's
features towards memory samples of its class and away from the others, aligning the feature space of what is kept
(likely real) with everything of the class, without knowing which images are synthetic.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from safeglass.continual.buffers import EntropyReservoir
from safeglass.continual.model import entropy
from safeglass.continual.strategies.simple import ER


def info_nce(anchors: torch.Tensor, ya: torch.Tensor, keys: torch.Tensor, yk: torch.Tensor,
             tau: float = 0.07) -> torch.Tensor:
    """Supervised InfoNCE from anchors to keys: the mean over anchors with a same-class key of
    -log(sum over positives of exp(sim / tau) / sum over all keys of exp(sim / tau)), on L2-normalised features."""
    sim = F.normalize(anchors, dim=1) @ F.normalize(keys, dim=1).T / tau
    pos = ya[:, None] == yk[None, :]
    has = pos.any(1)
    if not has.any():
        return anchors.sum() * 0
    logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    return -(torch.logsumexp(logp.masked_fill(~pos, -1e9), dim=1)[has]).mean()


class ESRM(ER):
    name = "esrm"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.memory = EntropyReservoir(self.s.buffer_size, self.dim, self.n_classes, self.seed)

    def observe(self, x: torch.Tensor, y: torch.Tensor, ids: np.ndarray, last_epoch: bool) -> None:
        feats = self.model.features(x)
        logits = self.model.head(feats)
        ent = entropy(self.masked(logits, y)).detach()
        keep = ent >= ent.median()
        loss = self.ce(logits[keep], y[keep])
        r = self.replay()
        if r is not None:
            bfeats = self.model.features(r[0])
            loss = loss + self.ce(self.model.head(bfeats), r[1])
            loss = loss + self.s.esrm_weight * info_nce(feats[keep], y[keep], bfeats, r[1], self.s.esrm_tau)
        self.step(loss)
        if last_epoch:
            self.offer(x, y, ids)
