"""CSI-manipulation attacks on the victim scheduler by the adversarial users, who control only their own channel
reports (their reported gains: the `log10 ||h~||^2` observation features; the reported direction stays their true
one, so the lie is a magnitude the base station cannot check against anything but its statistics).

Constraints on a report: plausibility (within mean +- k_plausible std of that feature under the victim's own
normaliser, what an outlier check at the base station would let through) and power (reported gain at most
max_gain_db).

- fggm: grey-box. One universal report per adversary, fixed for the whole episode, found by climbing the CROWN
  lower bound of "a chosen victim-free action beats every action that serves the victim" over the whole observation
  box of everything the adversaries do not control (mean +- k std under the normaliser, clipped). A positive bound
  is a certificate: no observation in the box gets the victim scheduled.
- pgd: white-box upper bound. Every slot, projected sign-gradient descent on the exact observation (the victims'
  true CSI and averages) pushes the best victim-serving action's Q below the best victim-free one.
- greedy: every adversary claims the best plausible channel (the naive lie). random: a uniform plausible report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from safeglass.rl.bounds import crown, ibp
from safeglass.rl.env import MuMimoEnv
from safeglass.rl.policy import CLIP, QPolicy


@dataclass(frozen=True)
class Threat:
    """Who lies, whom they target, and the region the attack must hold over (normalised coordinates)."""

    adversaries: tuple[int, ...]
    victim: int
    users: int
    actions: tuple[tuple[int, ...], ...]
    box_k: float = 2.0          # victims' observation box: mean +- box_k std
    plausible_k: float = 2.0    # adversaries' reports: mean +- plausible_k std of their gain feature
    max_gain_db: float = 15.0   # power constraint on a reported gain
    # the adversaries' own measured average throughput, which they know: an over-claimed channel loses every
    # packet (env.delivered_rates), so under the attack it decays to 0. None: let it range over the box instead.
    adversary_average: float | None = 0.0

    @property
    def controlled(self) -> list[int]:
        return list(self.adversaries)  # the adversaries' gain features (the first `users` observation entries)

    @property
    def own_average(self) -> list[int]:
        return [self.users + a for a in self.adversaries]  # the adversaries' average-throughput features

    def victim_actions(self) -> list[int]:
        return [i for i, a in enumerate(self.actions) if self.victim in a]

    def other_actions(self) -> list[int]:
        return [i for i, a in enumerate(self.actions) if self.victim not in a]


def threat_of(env: MuMimoEnv, **kw: Any) -> Threat:
    c = env.config
    return Threat(tuple(c.adversaries), c.victim, c.users, tuple(env.actions), **kw)


def _phys_lo(policy: QPolicy, users: int) -> torch.Tensor:
    """Normalised value of each feature's physical minimum: averages are >= 0, gains (log10) >= -6."""
    raw = torch.cat([torch.full((users,), -6.0), torch.zeros(users)])
    return (raw - policy.obs_mean) / policy.obs_std


def observation_box(policy: QPolicy, threat: Threat) -> tuple[torch.Tensor, torch.Tensor]:
    """[lo, hi] (normalised) of the victims' region: +-box_k, clipped to the normaliser's clip and physics."""
    d = policy.obs_mean.shape[0]
    lo = torch.maximum(torch.full((d,), -min(threat.box_k, CLIP)), _phys_lo(policy, threat.users))
    hi = torch.maximum(torch.full((d,), min(threat.box_k, CLIP)), lo)
    if threat.adversary_average is not None:
        idx = threat.own_average
        known = ((threat.adversary_average - policy.obs_mean[idx]) / policy.obs_std[idx]).clamp(-CLIP, CLIP)
        lo, hi = lo.clone(), hi.clone()
        lo[idx], hi[idx] = known, known
    return lo, hi


def report_range(policy: QPolicy, threat: Threat) -> tuple[torch.Tensor, torch.Tensor]:
    """[lo, hi] (normalised) of each adversary's gain report: plausibility and power together."""
    idx = threat.controlled
    k = min(threat.plausible_k, CLIP)
    cap = (threat.max_gain_db / 10 - policy.obs_mean[idx]) / policy.obs_std[idx]
    hi = torch.minimum(torch.full((len(idx),), k), cap)
    lo = torch.minimum(torch.maximum(torch.full((len(idx),), -k), _phys_lo(policy, threat.users)[idx]), hi)
    return lo, hi


def to_raw(policy: QPolicy, threat: Threat, z: torch.Tensor) -> np.ndarray:
    """Normalised adversary reports -> raw log10 gains."""
    idx = threat.controlled
    return (z * policy.obs_std[idx] + policy.obs_mean[idx]).detach().numpy().astype(np.float64)


def margin_spec(threat: Threat, target: int, n_actions: int) -> torch.Tensor:
    """Rows e_target - e_a for every victim-serving action a: all rows > 0 <=> the victim is not scheduled."""
    rows = torch.zeros(len(threat.victim_actions()), n_actions)
    for r, a in enumerate(threat.victim_actions()):
        rows[r, target], rows[r, a] = 1.0, -1.0
    return rows


def certified_margin(policy: QPolicy, threat: Threat, reports: torch.Tensor, target: torch.Tensor,
                     box: tuple[torch.Tensor, torch.Tensor], method: str = "crown") -> torch.Tensor:
    """min over victim actions of the lower bound of Q(target) - Q(a) over the box, per row of `reports` (B, n_adv)
    with `target` (B,) action indices. > 0 certifies the attack for every observation in the box."""
    n = reports.shape[0]
    lo, hi = (b.expand(n, -1).clone() for b in box)
    lo[:, threat.controlled] = reports
    hi[:, threat.controlled] = reports
    n_actions = policy.mlp[-1].out_features
    spec = torch.stack([margin_spec(threat, int(t), n_actions) for t in target])
    lower = (crown(policy.mlp, lo, hi, spec) if method == "crown" else ibp(policy.mlp, lo, hi, spec))[0]
    return lower.min(1).values


@dataclass
class FggmResult:
    reports_raw: list[float]      # log10 reported gain per adversary
    reports_norm: list[float]
    target_action: list[int]
    box_k: float                  # the box the search certified (or its smallest, if none)
    certified_margin: float       # CROWN lower bound of the margin over that box (> 0: certified)
    certified: bool
    ibp_margin: float             # the same bound by intervals (looser)
    certified_box_k: float        # the largest box (mean +- k std, k <= threat.box_k) the found report certifies
    sampled_success: float        # share of sampled observations of the full box with the victim unscheduled
    schedule: list[dict[str, float]]  # per box tried: k, best CROWN and IBP margins


def _search(policy: QPolicy, threat: Threat, steps: int, starts: int, lr: float, seed: int
            ) -> tuple[torch.Tensor, torch.Tensor, float]:
    gen = torch.Generator().manual_seed(seed)
    box = observation_box(policy, threat)
    r_lo, r_hi = report_range(policy, threat)
    targets = torch.tensor(threat.other_actions()).repeat_interleave(starts)
    n_adv = len(threat.controlled)
    init = r_lo + (r_hi - r_lo) * torch.rand(len(targets), n_adv, generator=gen)
    init[::starts] = r_hi  # one start at the greedy corner for every target
    z = init.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    for _ in range(steps):
        m = certified_margin(policy, threat, z, targets, box)
        opt.zero_grad()
        (-m.clamp(max=1.0)).sum().backward()  # past a comfortable certificate, stop pushing
        opt.step()
        with torch.no_grad():
            z.copy_(torch.maximum(torch.minimum(z, r_hi), r_lo))
    with torch.no_grad():
        m = certified_margin(policy, threat, z, targets, box)
    best = int(m.argmax())
    return z[best].detach(), targets[best:best + 1], float(m[best])


def fggm(policy: QPolicy, threat: Threat, *, steps: int = 80, starts: int = 4, lr: float = 0.1, seed: int = 0,
         samples: int = 10000, box_ks: tuple[float, ...] | None = None) -> FggmResult:
    """Search one universal report per adversary: for every victim-free target action and several starts, Adam on
    the reports climbing the CROWN lower bound of the margin over the box, projected onto the report range. Boxes
    are tried from the largest (threat.box_k) down through `box_ks`; the first certified one is kept."""
    ks = sorted({float(threat.box_k), *(k for k in (box_ks or ()) if k < threat.box_k)}, reverse=True)
    schedule = []
    for k in ks:
        t = Threat(**{**threat.__dict__, "box_k": k})
        reports, target, margin = _search(policy, t, steps, starts, lr, seed)
        with torch.no_grad():
            ibp_m = float(certified_margin(policy, t, reports[None], target, observation_box(policy, t), "ibp")[0])
        schedule.append({"box_k": k, "crown_margin": round(margin, 4), "ibp_margin": round(ibp_m, 4)})
        if margin > 0:
            break
    with torch.no_grad():
        k_cert = _largest_certified_k(policy, threat, reports, target)
        success = sampled_success(policy, threat, reports, observation_box(policy, threat), samples, seed)
    return FggmResult(to_raw(policy, threat, reports).round(5).tolist(), reports.numpy().round(5).tolist(),
                      list(threat.actions[int(target)]), k, margin, margin > 0, ibp_m, k_cert, success, schedule)


def _largest_certified_k(policy: QPolicy, threat: Threat, reports: torch.Tensor, target: torch.Tensor,
                         iters: int = 12) -> float:
    lo_k, hi_k = 0.0, threat.box_k
    for _ in range(iters):
        mid = (lo_k + hi_k) / 2
        t = Threat(**{**threat.__dict__, "box_k": mid})
        ok = certified_margin(policy, t, reports[None], target, observation_box(policy, t))[0] > 0
        lo_k, hi_k = (mid, hi_k) if ok else (lo_k, mid)
    return round(lo_k, 4)


def sampled_success(policy: QPolicy, threat: Threat, reports: torch.Tensor, box: tuple[torch.Tensor, torch.Tensor],
                    n: int, seed: int) -> float:
    """Share of n uniform observations in the box (adversary reports fixed) whose chosen action skips the victim."""
    gen = torch.Generator().manual_seed(seed + 1)
    x = box[0] + (box[1] - box[0]) * torch.rand(n, box[0].shape[0], generator=gen)
    x[:, threat.controlled] = reports
    chosen = policy.mlp(x).argmax(1)
    served = torch.tensor([threat.victim in a for a in threat.actions])[chosen]
    return round(float((~served).float().mean()), 4)


def pgd_reports(policy: QPolicy, threat: Threat, obs: np.ndarray, *, steps: int = 20, starts: int = 3,
                step_size: float = 0.25, over_claim: bool = False) -> torch.Tensor:
    """White-box: the normalised reports that best push this exact observation's choice off the victim. `obs` holds
    the true gains; over_claim keeps each report at or above its adversary's true gain (an under-claim delivers the
    adversary's packets, raising its average and so the victim's later chances)."""
    r_lo, r_hi = report_range(policy, threat)
    if over_claim:
        true = policy.normalise(torch.as_tensor(obs, dtype=torch.float32))[threat.controlled]
        r_lo = torch.minimum(torch.maximum(r_lo, true), r_hi)
    x0 = policy.normalise(torch.as_tensor(obs, dtype=torch.float32))
    z = torch.stack([r_hi, r_lo, (r_lo + r_hi) / 2][:starts]).clone().requires_grad_(True)
    v, o = threat.victim_actions(), threat.other_actions()

    def margin(zz: torch.Tensor) -> torch.Tensor:
        x = x0.expand(zz.shape[0], -1).clone()
        x[:, threat.controlled] = zz
        q = policy.mlp(x)
        return q[:, v].max(1).values - q[:, o].max(1).values

    for _ in range(steps):
        g, = torch.autograd.grad(margin(z).sum(), z)
        with torch.no_grad():
            z -= step_size * (r_hi - r_lo) * g.sign() / 4
            z.copy_(torch.maximum(torch.minimum(z, r_hi), r_lo))
    with torch.no_grad():
        return z[int(margin(z).argmin())].detach()


def make_reporter(kind: str, policy: QPolicy, threat: Threat, *, universal: torch.Tensor | None = None,
                  seed: int = 0, pgd_steps: int = 20, over_claim: bool = True
                  ) -> Callable[[MuMimoEnv], dict[int, np.ndarray]] | None:
    """The env's reporter for an attack: the adversaries' reported channels each slot (their true direction scaled
    to the attack's gain)."""
    if kind == "none":
        return None
    rng = np.random.default_rng(seed)
    r_lo, r_hi = report_range(policy, threat)

    def scaled(env: MuMimoEnv, raw: np.ndarray) -> dict[int, np.ndarray]:
        out = {}
        for k, g in zip(threat.adversaries, raw):
            h = env.h[k]
            out[k] = h / max(np.linalg.norm(h), 1e-12) * np.sqrt(10 ** g)
        return out

    def report(env: MuMimoEnv) -> dict[int, np.ndarray]:
        if kind == "fggm":
            z = universal
        elif kind == "greedy":
            z = r_hi
        elif kind == "random":
            z = r_lo + (r_hi - r_lo) * torch.as_tensor(rng.random(len(threat.adversaries)), dtype=torch.float32)
        elif kind == "pgd":
            gain = np.log10(np.maximum((np.abs(env.h) ** 2).sum(axis=1), 1e-6))
            z = pgd_reports(policy, threat, np.concatenate([gain, env.avg]).astype(np.float32), steps=pgd_steps,
                            over_claim=over_claim)
        else:
            raise ValueError(f"unknown attack {kind!r}")
        return scaled(env, to_raw(policy, threat, z))

    if kind == "fggm" and universal is None:
        raise ValueError("fggm needs the universal report (fggm(...).reports_norm)")
    return report


def bound_tightness(policy: QPolicy, threat: Threat, *, n: int = 10000, seed: int = 0) -> dict[str, Any]:
    """The victim's Q-value bounds over the full normaliser box (mean +- box_k std, every feature free, clipped):
    violations by n sampled observations (must be 0) and the mean width of CROWN against intervals."""
    free = Threat(**{**threat.__dict__, "adversary_average": None})
    lo, hi = observation_box(policy, free)
    with torch.no_grad():
        c_lo, c_hi = crown(policy.mlp, lo[None], hi[None])
        i_lo, i_hi = ibp(policy.mlp, lo[None], hi[None])
        x = lo + (hi - lo) * torch.rand(n, lo.shape[0], generator=torch.Generator().manual_seed(seed))
        q = policy.mlp(x)
    tol = 1e-4
    crown_w, ibp_w = float((c_hi - c_lo).mean()), float((i_hi - i_lo).mean())
    return {"box_k": threat.box_k, "samples": n,
            "crown_violations": int(((q < c_lo - tol) | (q > c_hi + tol)).sum()),
            "ibp_violations": int(((q < i_lo - tol) | (q > i_hi + tol)).sum()),
            "crown_mean_width": round(crown_w, 4), "ibp_mean_width": round(ibp_w, 4),
            "sampled_mean_range": round(float((q.amax(0) - q.amin(0)).mean()), 4),
            "crown_over_ibp": round(crown_w / ibp_w, 4)}
