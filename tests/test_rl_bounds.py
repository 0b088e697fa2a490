"""Bounds: sound on 10,000 sampled observations of the box (no violation, outputs and a margin specification),
CROWN tighter than intervals, and our CROWN equal to the bound-propagation package's (the `rl` extra, which
`make install` installs: a test-time cross-check, not a dependency of the shipped code)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from safeglass.rl.bounds import crown, ibp, library_crown


def _mlp(seed: int = 0, d: int = 12, h: int = 64, out: int = 21) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, out))


def _box(seed: int, n: int = 4, d: int = 12, width: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    lo = torch.randn(n, d, generator=g)
    return lo, lo + width * torch.rand(n, d, generator=g)


@pytest.mark.parametrize("adaptive", [True, False])
def test_sound_on_10000_samples_and_tighter_than_intervals(adaptive):
    mlp = _mlp()
    lo, hi = _box(1)
    spec = torch.randn(4, 6, 21, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        cl, cu = crown(mlp, lo, hi, adaptive=adaptive)
        il, iu = ibp(mlp, lo, hi)
        sl, su = crown(mlp, lo, hi, spec, adaptive=adaptive)
        isl, isu = ibp(mlp, lo, hi, spec)
        x = lo + (hi - lo) * torch.rand(10000, 4, 12, generator=torch.Generator().manual_seed(3))
        y = mlp(x)
        ys = (spec @ y[..., None])[..., 0]
    for low, up, v in ((cl, cu, y), (il, iu, y), (sl, su, ys), (isl, isu, ys)):
        assert (v >= low - 1e-5).all() and (v <= up + 1e-5).all()
    # tighter on average, and never looser than intervals by more than rounding on the specification
    assert (cu - cl).mean() < 0.5 * (iu - il).mean()
    assert (su - sl).mean() < 0.5 * (isu - isl).mean()
    # the bound is not vacuous: sampled extremes come close
    assert ((cu - y.amax(0)).mean() < (iu - y.amax(0)).mean())


def test_point_box_is_exact():
    mlp = _mlp(1)
    x = torch.randn(3, 12)
    with torch.no_grad():
        lo, hi = crown(mlp, x, x)
        assert torch.allclose(lo, mlp(x), atol=1e-4) and torch.allclose(hi, mlp(x), atol=1e-4)


def test_rejects_other_architectures():
    with pytest.raises(TypeError):
        crown(nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1)), torch.zeros(1, 2), torch.ones(1, 2))


@pytest.mark.parametrize("adaptive", [True, False])
def test_matches_the_bound_propagation_package(adaptive):
    mlp = _mlp(2)
    lo, hi = _box(4)
    with torch.no_grad():
        ours = crown(mlp, lo, hi, adaptive=adaptive)
        theirs = library_crown(mlp, lo, hi, adaptive=adaptive)
    assert torch.allclose(ours[0], theirs[0], atol=1e-4) and torch.allclose(ours[1], theirs[1], atol=1e-4)
