"""Exact per-neuron AUROC against sklearn (ties, constants, signed zeros, dtypes, chunking, memory),
the streaming estimate's error bound, and the expertise artifact on disk."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from safeglass.neurons.expertise import Expertise, StreamingAUROC, auroc
from safeglass.neurons.recording import Activations, SiteSlice


def _data(n: int = 301, m: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, m)).astype(np.float32) + y[:, None] * rng.normal(size=m).astype(np.float32)
    x[:, :20] = np.round(x[:, :20] * 2)        # heavy ties, mixed across classes
    x[:, 20] = 3.5                             # constant -> 0.5
    x[:, 21] = np.where(y == 1, 1.0, -1.0)     # perfect separation -> 1.0
    x[:, 22] = np.where(y == 1, -2.0, 2.0)     # perfectly reversed -> 0.0
    x[:, 23] = np.where(rng.random(n) < 0.5, -0.0, 0.0)  # signed zeros are one value
    x[:, 24] = np.where(y == 1, 0.0, -0.0)
    x[:, 25] = rng.choice([-6e4, 0.0, 6e4], size=n)
    x[:, 26] = np.where(np.arange(n) % 2 == 0, -1e-45, 1e-45)  # denormals on both sides of zero
    return x, y


def _sklearn(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.array([roc_auc_score(y, x[:, j]) for j in range(x.shape[1])])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_auroc_equals_sklearn_with_ties(dtype):
    x, y = _data()
    x = x.astype(dtype)
    ref = _sklearn(x.astype(np.float64), y)
    got = auroc(x, y)
    assert got.dtype == np.float64 and got.shape == (x.shape[1],)
    assert np.abs(got - ref).max() <= 1e-9
    assert got[20] == 0.5 and got[21] == 1.0 and got[22] == 0.0 and got[23] == 0.5 and got[24] == 0.5


def _pairs(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """AUROC by counting every (toxic, non-toxic) pair: the definition itself."""
    pos, neg = x[y == 1], x[y == 0]
    gt = (pos[:, None, :] > neg[None, :, :]).sum((0, 1))
    eq = (pos[:, None, :] == neg[None, :, :]).sum((0, 1))
    return (gt + 0.5 * eq) / (len(pos) * len(neg))


def test_auroc_handles_infinities_by_pair_counting():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 120)
    x = rng.choice([-np.inf, -1.0, 0.0, 2.5, np.inf], size=(120, 9)).astype(np.float32)
    assert np.abs(auroc(x, y) - _pairs(x, y)).max() <= 1e-12
    assert np.abs(auroc(x.astype(np.float64), y) - _pairs(x, y)).max() <= 1e-12


def test_auroc_values_one_ulp_apart_are_not_ties():
    # the fast path drops the lowest key bit first; neighbours must still be told apart
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 400)
    base = rng.normal(size=(1, 12)).astype(np.float32)
    base = (base.view(np.int32) & np.int32(-2)).view(np.float32)  # even keys: base and base + 1 ulp share a bucket
    up = np.nextafter(base, np.float32(np.inf))
    x = np.where(rng.random((400, 12)) < 0.5, base, up).astype(np.float32)
    x[:, :6] = np.where(y[:, None] == 1, up[:, :6], base[:, :6])  # every toxic value 1 ulp above
    x[:, 10] = np.where(y == 1, -0.0, np.float32(-1e-45))
    x[:, 11] = np.where(np.arange(400) % 3 == 0, x[:, 11], rng.normal(size=400).astype(np.float32))
    ref = _pairs(x, y)
    assert np.abs(auroc(x, y) - ref).max() <= 1e-12
    assert (auroc(x, y)[:6] == 1.0).all() and auroc(x, y)[10] == 1.0


def test_auroc_chunking_and_labels_forms_do_not_change_results():
    x, y = _data(n=200, m=50, seed=3)
    y[:2] = [0, 1]
    whole = auroc(x, y)
    assert np.array_equal(auroc(x, y, max_chunk_bytes=1), whole)  # one column at a time
    assert np.array_equal(auroc(x, y.astype(bool)), whole)
    acts = Activations(x, (SiteSlice("s", "m", 0, 50, 0, "language_model"),), "prompt", "max", np.ones(200))
    assert np.array_equal(auroc(acts, y), whole)


def test_auroc_extra_memory_stays_below_the_matrix():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1000, 3000)).astype(np.float32)
    y = rng.integers(0, 2, 1000)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        auroc(x, y, max_chunk_bytes=x.nbytes)  # the largest chunks the budget allows
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 1.1 * x.nbytes


def test_auroc_rejects_bad_input():
    x, y = _data(n=20, m=30)
    with pytest.raises(ValueError, match="both classes"):
        auroc(x, np.ones(20))
    with pytest.raises(ValueError, match="0/1"):
        auroc(x, np.arange(20))
    with pytest.raises(ValueError, match="vector of 20"):
        auroc(x, y[:10])
    x[4, 2] = np.nan
    with pytest.raises(ValueError, match="column 2 has NaN"):
        auroc(x, y)


def test_streaming_bound_holds_and_tightens_with_bins():
    rng = np.random.default_rng(2)
    n, m = 3000, 40
    y = rng.integers(0, 2, n)
    x = (rng.normal(size=(n, m)) + 0.4 * y[:, None] * rng.normal(size=m)).astype(np.float32)
    exact = auroc(x, y)
    widths = []
    for bins in (4, 32, 512):
        s = StreamingAUROC(n_bins=bins)
        for i in range(0, n, 700):  # later batches fall partly outside the first batch's range
            s.update(x[i:i + 700], y[i:i + 700])
        err, bound = np.abs(s.estimate() - exact), s.error_bound()
        assert (err <= bound + 1e-12).all()
        widths.append(bound.mean())
    assert widths[0] > widths[1] > widths[2] and widths[2] < 0.01


def test_streaming_is_exact_when_each_value_has_its_own_bin():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 500)
    x = rng.integers(0, 10, size=(500, 7)).astype(np.float32) + y[:, None] * (np.arange(7) % 3)
    s = StreamingAUROC(n_bins=20, value_range=(-0.5, 19.5))  # bin width 1: integers land mid-bin
    s.update(x[:250], y[:250])
    s.update(x[250:], y[250:])
    # same-bin pairs are exact ties here, which count half in both: the estimate is exact
    assert np.abs(s.estimate() - _sklearn(x, y)).max() <= 1e-12
    assert (s.error_bound() > 0).all()


def test_streaming_rejects_mismatched_batches():
    s = StreamingAUROC(8)
    with pytest.raises(ValueError, match="no batches"):
        s.estimate()
    s.update(np.zeros((4, 3), np.float32), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="3"):
        s.update(np.zeros((4, 5), np.float32), [0, 1, 0, 1])


def _expertise() -> Expertise:
    layout = (SiteSlice("lm.mlp.0", "model.layers.0.mlp.down_proj", 0, 4, 0, "language_model"),
              SiteSlice("lm.mlp.1", "model.layers.1.mlp.down_proj", 4, 3, 1, "language_model"))
    return Expertise(np.array([0.1, 0.5, 0.75, 0.9, 0.55, 1.0, 0.3]), layout, {"span": "response", "n_toxic": 3})


def test_expertise_round_trip_and_tamper(tmp_path):
    exp = _expertise()
    exp.save(tmp_path / "e")
    back = Expertise.load(tmp_path / "e")
    assert np.array_equal(back.auroc, exp.auroc) and back.layout == exp.layout and back.hash == exp.hash
    assert back.provenance == exp.provenance
    assert list(back.site("lm.mlp.1")) == [0.55, 1.0, 0.3]
    s = exp.summary()
    assert s["experts"] == 4 and [p["experts"] for p in s["per_site"]] == [2, 2]
    assert sum(s["histogram"]["counts"]) == 7 and s["top"][0] == {"site": "lm.mlp.1", "neuron": 1, "auroc": 1.0}
    doc = json.loads((tmp_path / "e" / "expertise.json").read_text())
    doc["sites"][0]["module_path"] = "model.layers.9.mlp.down_proj"
    (tmp_path / "e" / "expertise.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="hash"):
        Expertise.load(tmp_path / "e")
    with pytest.raises(FileNotFoundError, match="expertise"):
        Expertise.load(tmp_path)


def test_expertise_compute_records_provenance():
    x, y = _data(n=40, m=30)
    acts = Activations(x, (SiteSlice("s", "m", 0, 30, 0, "language_model"),), "response", "mean", np.ones(40),
                       {"target": {"weights": "abc"}})
    exp = Expertise.compute(acts, y, {"seed": 7})
    assert exp.provenance["n_toxic"] == int(y.sum()) and exp.provenance["n_non_toxic"] == 40 - int(y.sum())
    assert exp.provenance["span"] == "response" and exp.provenance["pooling"] == "mean"
    assert exp.provenance["seed"] == 7 and exp.provenance["target"] == {"weights": "abc"}
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Expertise(np.array([1.2]), (SiteSlice("s", "m", 0, 1, 0, "language_model"),))
