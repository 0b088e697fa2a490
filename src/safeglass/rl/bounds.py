"""Bounds on a ReLU MLP's outputs over an input box: interval bound propagation (IBP) and CROWN / DeepPoly-style
linear relaxation with back-substitution, optionally of a linear specification C @ output (tighter than bounding
the outputs and combining their intervals, since the relaxation keeps the outputs' shared dependence on the input).

Our own code, ~100 lines, differentiable in the box (FGGM's search climbs the bound). Why not the maintained
`bound-propagation` package (which installs here with only torch and numpy): it is GPL-3.0 and safeglass is
Apache-2.0, so it stays an optional cross-check (the `rl` extra; tests/test_rl_bounds.py compares our CROWN with its
CROWN where it is installed, to float precision), never an import of the shipped code path.

The box is the victim's observation region given by its normaliser: mean +- k std in raw units is [-k, k] in the
normalised coordinates the MLP reads (then clipped to the normaliser's clip and to physical limits).
"""

from __future__ import annotations

import torch
from torch import nn


def _layers(mlp: nn.Sequential) -> list[nn.Linear]:
    mods = list(mlp)
    linears = [m for m in mods if isinstance(m, nn.Linear)]
    if any(not isinstance(m, nn.Linear | nn.ReLU) for m in mods) or [type(m) for m in mods] != \
            [t for lin in linears for t in (nn.Linear, nn.ReLU)][:-1]:
        raise TypeError("bounds read an nn.Sequential of Linear, ReLU, ..., Linear")
    return linears


def ibp(mlp: nn.Sequential, lo: torch.Tensor, hi: torch.Tensor, spec: torch.Tensor | None = None
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Interval bounds (B, out) of the outputs, or of spec @ outputs (spec: (B, S, out)) for inputs in [lo, hi]."""
    linears = _layers(mlp)
    for i, lin in enumerate(linears):
        c, r = (lo + hi) / 2, (hi - lo) / 2
        c, r = c @ lin.weight.T + lin.bias, r @ lin.weight.abs().T
        lo, hi = c - r, c + r
        if i < len(linears) - 1:
            lo, hi = lo.clamp(min=0), hi.clamp(min=0)
    if spec is not None:
        c, r = (lo + hi) / 2, (hi - lo) / 2
        c, r = (spec @ c[..., None])[..., 0], (spec.abs() @ r[..., None])[..., 0]
        lo, hi = c - r, c + r
    return lo, hi


def _relu_relaxation(low: torch.Tensor, u: torch.Tensor, adaptive: bool
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lower slope, upper slope, upper intercept) of ReLU over [l, u], elementwise: lower a >= s_l z, upper
    a <= s_u z + t_u. Unstable neurons take the chord above and slope 0 or 1 below (CROWN's adaptive choice: the
    one with the smaller area) or the chord's slope (adaptive=False, Fast-Lin / DeepPoly-parallel)."""
    active, unstable = low >= 0, (low < 0) & (u > 0)
    chord = torch.where(unstable, u / (u - low).clamp(min=1e-12), active.to(low.dtype))
    upper_t = torch.where(unstable, -low * chord, torch.zeros_like(low))
    lower_s = torch.where(unstable, (u >= -low).to(low.dtype) if adaptive else chord, active.to(low.dtype))
    return lower_s, chord, upper_t


def _backward_lower(linears: list[nn.Linear], pre: list[tuple[torch.Tensor, torch.Tensor]], upto: int,
                    spec: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, adaptive: bool) -> torch.Tensor:
    """Lower bound of spec @ z_upto (z_j: pre-activation of linear j) by back-substitution to the input box."""
    lam, bias = spec, torch.zeros(spec.shape[:2], dtype=spec.dtype)
    for j in range(upto, -1, -1):
        lin = linears[j]
        bias = bias + lam @ lin.bias
        lam = lam @ lin.weight
        if j > 0:
            s_l, s_u, t_u = (x[:, None, :] for x in _relu_relaxation(*pre[j - 1], adaptive))
            pos, neg = lam.clamp(min=0), lam.clamp(max=0)
            bias = bias + (neg * t_u).sum(-1)
            lam = pos * s_l + neg * s_u
    c, r = (lo + hi) / 2, (hi - lo) / 2
    return (lam @ c[..., None])[..., 0] - (lam.abs() @ r[..., None])[..., 0] + bias


def crown(mlp: nn.Sequential, lo: torch.Tensor, hi: torch.Tensor, spec: torch.Tensor | None = None, *,
          adaptive: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """CROWN bounds (B, S) of spec @ outputs (spec (B, S, out); None: the outputs themselves) over [lo, hi] (B, in).
    Every hidden layer's pre-activation bounds come from back-substitution too (full CROWN, not CROWN-IBP)."""
    linears = _layers(mlp)
    batch = lo.shape[0]
    pre: list[tuple[torch.Tensor, torch.Tensor]] = []
    for i in range(len(linears) - 1):
        eye = torch.eye(linears[i].out_features, dtype=lo.dtype).expand(batch, -1, -1)
        both = _backward_lower(linears, pre, i, torch.cat([eye, -eye], 1), lo, hi, adaptive)
        n = linears[i].out_features
        pre.append((both[:, :n], -both[:, n:]))
    if spec is None:
        spec = torch.eye(linears[-1].out_features, dtype=lo.dtype).expand(batch, -1, -1)
    s = spec.shape[1]
    both = _backward_lower(linears, pre, len(linears) - 1, torch.cat([spec, -spec], 1), lo, hi, adaptive)
    return both[:, :s], -both[:, s:]


def library_crown(mlp: nn.Sequential, lo: torch.Tensor, hi: torch.Tensor, *, adaptive: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The same bounds from the `bound-propagation` package (optional, GPL-3.0: a cross-check only)."""
    import bound_propagation as bp

    model = bp.BoundModelFactory(adaptive_relu=adaptive).build(mlp)
    out = model.crown(bp.HyperRectangle(lo, hi)).concretize()
    return out.lower, out.upper
