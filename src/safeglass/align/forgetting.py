"""Per-example forgetting: under one fixed unlearning run over the whole alignment set, the step at which each
example's refusal flips (its margin drops below zero; a forgetting event in the sense of Toneva et al. 2019 is
such a 1 -> 0 transition between probes), and the cheap proxies read in one forward pass before any training:

* ``loss``: the mean NLL of the refusal (high: weakly learnt, expected easy);
* ``likelihood``: the mean log-probability of the refusal's opening (low: expected easy);
* ``margin``: refusal opening minus compliant opening (low: expected easy);
* ``memorisation``: the refusal's log-likelihood under the aligned model minus under its base, where the base
  is known (RUM, NeurIPS 2024: more memorised, harder to unlearn).

Each proxy is turned into an ease score (higher: expected to flip sooner) and compared with the measured steps by
Spearman's rank correlation of ease with minus steps (positive: the proxy ranks the right way round). Examples that
never flip count as flipping one probe after the end (tied last).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from safeglass.align.measure import OPENER_TOKENS, Pair, answer_logprobs, margins, refusal_loss

# proxy -> sign turning it into an ease score
EASE_SIGN: dict[str, float] = {"loss": 1.0, "likelihood": -1.0, "margin": -1.0, "memorisation": -1.0}


def rankdata(x: Sequence[float]) -> np.ndarray:
    """Average ranks (ties share the mean of their ranks), 1-based."""
    a = np.asarray(x, dtype=float)
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(len(a))
    ranks[order] = np.arange(1, len(a) + 1)
    for v in np.unique(a):
        idx = a == v
        if idx.sum() > 1:
            ranks[idx] = ranks[idx].mean()
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rho with average ranks for ties; None when either side is constant."""
    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def proxies(model: Any, tokenizer: Any, pairs: Sequence[Pair], base: Any = None,
            openers: Sequence[str] = ()) -> dict[str, list[float]]:
    """The one-forward-pass proxies per example (memorisation only with a `base` model; `openers`: the margin's
    other refusal openings, as the probes read it)."""
    out = {"loss": refusal_loss(model, tokenizer, pairs),
           "likelihood": [s / max(1, n) for s, n in answer_logprobs(model, tokenizer, pairs,
                                                                     answer_tokens=OPENER_TOKENS)],
           "margin": margins(model, tokenizer, pairs, openers=openers)}
    if base is not None:
        base_loss = refusal_loss(base, tokenizer, pairs)
        out["memorisation"] = [b - a for a, b in zip(out["loss"], base_loss)]
    return out


def forgetting_steps(history: Sequence[tuple[int, Sequence[float]]], end: int) -> tuple[list[int], list[int]]:
    """From probes (step, per-example margins): per example, the first probed step at which it is flipped
    (margin < 0; 0 when it never held; `end` when it never flips), and its number of forgetting events
    (held at one probe, flipped at the next)."""
    n = len(history[0][1])
    first = [end] * n
    events = [0] * n
    for i in range(n):
        prev = None
        for step, m in history:
            held = m[i] >= 0
            if not held and first[i] == end:
                first[i] = step
            if prev is True and not held:
                events[i] += 1
            prev = held
    return first, events


def measure_forgetting(unlearner: Any, forget: Sequence[Pair], retain: Sequence[Pair], method: str, steps: int,
                       every: int, *, base: Any = None, say: Callable[[str], None] = print,
                       lr: float | None = None, openers: Sequence[str] = (),
                       train: Sequence[Pair] | None = None) -> dict[str, Any]:
    """Proxies, then one unlearning run of `method` over all of `forget` probed every `every` steps; the
    per-example steps, events, easy -> hard ranking and each proxy's Spearman rho against the steps. An example's
    refusal holds while its margin (its own refusal's opening, or any of `openers`, against a compliant opening) is
    >= 0. `train`: what the run unlearns when it is not `forget` itself (several wordings per prompt). The adapter
    is reset before and after."""
    model, tok = unlearner.model, unlearner.tokenizer
    unlearner.reset()
    prox = proxies(model, tok, forget, base, openers)
    history: list[tuple[int, list[float]]] = []

    def probe(step: int) -> None:
        m = margins(model, tok, forget, openers=openers)
        history.append((step, m))
        say(f"align forgetting: step {step}/{steps}: {sum(x < 0 for x in m)}/{len(m)} refusals flipped")

    unlearner.run(method, forget if train is None else train, steps, retain=retain, stream=1, every=every, probe=probe,
                  label="align forgetting", say=say, lr=lr)
    unlearner.reset()
    end = steps + every
    first, events = forgetting_steps(history, end)
    order = sorted(range(len(forget)), key=lambda i: (first[i], -prox["loss"][i], i))
    neg_steps = [-s for s in first]
    rho = {k: spearman([EASE_SIGN[k] * v for v in vals], neg_steps) for k, vals in prox.items()}
    return {"method": method, "steps": steps, "every": every, "never_flipped_step": end, "openers": list(openers),
            "examples": [{"id": forget[i].id, "forgetting_step": first[i], "forgetting_events": events[i],
                          **{k: round(v[i], 4) for k, v in prox.items()}} for i in range(len(forget))],
            "ranking_easy_to_hard": [forget[i].id for i in order],
            "spearman": {k: None if v is None else round(v, 4) for k, v in rho.items()},
            "flipped": sum(s < end for s in first), "n": len(forget),
            "curve": [{"step": s, "flipped": sum(x < 0 for x in m)} for s, m in history]}


def subsets(ranking: Sequence[str], k: int, seed: int) -> dict[str, list[str]]:
    """The easy (first k), hard (last k) and a seeded random k of a ranking's ids."""
    rng = np.random.default_rng([seed, 30])
    pick = sorted(rng.permutation(len(ranking))[:k].tolist())
    return {"easy": list(ranking[:k]), "random": [ranking[i] for i in pick], "hard": list(ranking[-k:])}
