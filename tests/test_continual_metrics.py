"""The continual metrics on a hand-computed accuracy matrix, the AUROC against its definition, seed intervals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from safeglass.continual.metrics import (
    auroc,
    average_accuracy,
    average_forgetting,
    backward_transfer,
    mean_interval,
    summary,
)

# R[i, j]: accuracy on task j after training task i (upper triangle: tasks not yet seen)
R = np.array([[0.90, 0.10, 0.00],
              [0.60, 0.80, 0.05],
              [0.50, 0.70, 0.95]])


def test_metrics_by_hand() -> None:
    assert average_accuracy(R) == pytest.approx((0.50 + 0.70 + 0.95) / 3)
    # forgetting: task 0 peaked at 0.90, ends at 0.50 (0.40); task 1 peaked at 0.80, ends at 0.70 (0.10)
    assert average_forgetting(R) == pytest.approx((0.40 + 0.10) / 2)
    # BWT: (0.50 - 0.90 + 0.70 - 0.80) / 2
    assert backward_transfer(R) == pytest.approx(-0.25)
    assert summary(R)["average_forgetting"] == pytest.approx(0.25)


def test_forgetting_uses_the_peak_not_the_just_trained_accuracy() -> None:
    r = np.array([[0.5, 0.0, 0.0], [0.9, 0.8, 0.0], [0.6, 0.8, 0.9]])  # task 0 improved after task 1 was learnt
    assert average_forgetting(r) == pytest.approx((0.3 + 0.0) / 2)
    assert backward_transfer(r) == pytest.approx((0.1 + 0.0) / 2)
    one = np.array([[0.7]])
    assert average_forgetting(one) == 0.0 and backward_transfer(one) == 0.0 and average_accuracy(one) == 0.7


def test_auroc_matches_the_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 30).astype(float), rng.integers(0, 5, 20).astype(float)  # many ties
    pairs = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)]
    assert auroc(pos, neg) == pytest.approx(np.mean(pairs))
    assert auroc([2, 3], [0, 1]) == 1.0 and auroc([0, 1], [2, 3]) == 0.0
    assert auroc([], [1.0]) is None


def test_mean_interval_over_seeds() -> None:
    m = mean_interval([0.8, 0.9, 1.0])
    assert m["mean"] == pytest.approx(0.9)
    # t(0.975, 2) = 4.303, sd 0.1, n 3
    assert m["ci_high"] - m["mean"] == pytest.approx(4.3027 * 0.1 / np.sqrt(3), rel=1e-3)
    assert mean_interval([0.5]) == {"mean": 0.5, "ci_low": 0.5, "ci_high": 0.5, "n": 1}
