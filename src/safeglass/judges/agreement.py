"""Two judges side by side: per-sample agreement and per-row Cohen's kappa, so a report can flag rows where the
judges disagree (a figure that moves with the choice of judge is a figure about the judge).

:class:`EnsembleJudge` runs two judges of the same measure on the same items; its verdict is the first judge's,
and its label says whether the second agreed (``agree`` / ``disagree``). :func:`row_agreement` groups pairs of
flags by a row key (e.g. target x attack x defense) and gives each row its n, agreement and kappa, flagging a
row whose kappa is below ``min_kappa`` or whose agreement is below ``min_agreement``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

from safeglass.judges.base import Judge, JudgeIdentity, JudgeInput, Verdict

__all__ = ["EnsembleJudge", "agreement", "kappa", "row_agreement"]

# Landis and Koch call kappa below 0.6 "moderate" agreement or worse: a row there is worth a second look.
MIN_KAPPA = 0.6
MIN_AGREEMENT = 0.9


def kappa(a: Sequence[bool], b: Sequence[bool]) -> float | None:
    """Cohen's kappa of two binary raters; None when chance agreement is 1 (both said the same one thing)."""
    if len(a) != len(b):
        raise ValueError(f"the two raters judged different numbers of items: {len(a)} vs {len(b)}")
    n = len(a)
    if n == 0:
        return None
    po = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(map(bool, a)) / n, sum(map(bool, b)) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    if pe >= 1.0:
        return None
    return (po - pe) / (1 - pe)


def agreement(a: Sequence[bool], b: Sequence[bool]) -> list[bool]:
    """Per-sample agreement of two judges' flags."""
    if len(a) != len(b):
        raise ValueError(f"the two judges judged different numbers of items: {len(a)} vs {len(b)}")
    return [bool(x) == bool(y) for x, y in zip(a, b)]


def row_agreement(pairs: Iterable[tuple[Hashable, bool, bool]], *, min_kappa: float = MIN_KAPPA,
                  min_agreement: float = MIN_AGREEMENT) -> dict[Hashable, dict[str, Any]]:
    """``pairs`` of (row key, flag of judge A, flag of judge B) -> per row: n, rates of each judge, agreement,
    kappa (None when undefined) and ``flagged``: agreement below ``min_agreement``, or kappa below ``min_kappa``
    unless a judge gives one answer on more than 90 % of the row (there kappa is pinned near 0 by prevalence)."""
    rows: dict[Hashable, tuple[list[bool], list[bool]]] = defaultdict(lambda: ([], []))
    for key, fa, fb in pairs:
        rows[key][0].append(bool(fa))
        rows[key][1].append(bool(fb))
    out: dict[Hashable, dict[str, Any]] = {}
    for key, (a, b) in rows.items():
        agree = sum(agreement(a, b)) / len(a)
        k = kappa(a, b)
        # Kappa is pinned near 0 when one judge says nearly always the same thing (prevalence), however often the
        # two agree; there agreement decides. Elsewhere low kappa or low agreement flags the row.
        skewed = min(sum(a), len(a) - sum(a), sum(b), len(b) - sum(b)) < 0.1 * len(a)
        flagged = agree < min_agreement or (k is not None and k < min_kappa and not skewed)
        out[key] = {"n": len(a), "rate_a": sum(a) / len(a), "rate_b": sum(b) / len(b), "agreement": agree,
                    "kappa": k, "flagged": bool(flagged)}
    return out


class EnsembleJudge(Judge):
    """Two judges of one measure; the verdict is the first's, the label says whether the second agreed.

    Args:
        judges: two judges (registered names, or Judge objects in Python) of the same measure.
    """

    version = "1"

    def __init__(self, judges: Sequence[Any] = ("refusal-v2", "proxy-refusal")) -> None:
        if len(judges) != 2:
            raise ValueError(f"an ensemble takes exactly two judges, got {len(judges)}")
        built = [_build(j) for j in judges]
        if built[0].measure != built[1].measure:
            raise ValueError(f"the two judges measure different things: {built[0].measure} vs {built[1].measure}")
        self.a, self.b = built
        self.name = f"ensemble:{self.a.name}+{self.b.name}"
        self.measure = self.a.measure
        self.batch_size = min(int(self.a.batch_size), int(self.b.batch_size))

    def identity(self) -> JudgeIdentity:
        ia, ib = self.a.identity(), self.b.identity()
        return JudgeIdentity(self.name, self.version, self.measure, extra={"a": ia.key, "b": ib.key})

    def judge_both(self, items: Sequence[JudgeInput]) -> tuple[list[Verdict], list[Verdict]]:
        return self.a.judge(items), self.b.judge(items)

    def judge(self, items: Sequence[JudgeInput]) -> list[Verdict]:
        va, vb = self.judge_both(items)
        out = []
        for x, y in zip(va, vb):
            same = x.flag == y.flag
            out.append(Verdict(x.flag, x.score, "agree" if same else "disagree",
                               f"{self.a.name}: {x.label} ({x.score:.3f}); {self.b.name}: {y.label} ({y.score:.3f})"))
        return out


def _build(judge: Any) -> Judge:
    if isinstance(judge, Judge):
        return judge
    from safeglass.registry import registry

    return registry("judges").get(str(judge))()
