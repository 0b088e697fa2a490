"""Jigsaw toxicity judge: Keras fidelity (numpy reference), tokenizer semantics, behaviour, speed."""

from __future__ import annotations

import importlib.util
import sys
import time

import numpy as np
import pytest
from conftest import require

from safeglass.judges.base import JudgeInput
from safeglass.judges.jigsaw import (
    INSTALL_HINT,
    LABELS,
    MAXLEN,
    JigsawToxicityJudge,
    KerasTokenizer,
    clean_text,
    find_package_files,
    pad_sequences,
)

HAVE_PACKAGE = importlib.util.find_spec("toxic_classifier") is not None
require(HAVE_PACKAGE, "the toxic-comment-classifier weights", INSTALL_HINT)
needs_weights = pytest.mark.assets


@pytest.fixture(scope="module")
def judge() -> JigsawToxicityJudge:
    return JigsawToxicityJudge()


# ---------------------------------------------------------------- numpy reference (Keras semantics)

def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _keras_lstm(x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """keras.layers.LSTM(return_sequences=True): gates i, f, c, o; sigmoid recurrent, tanh activation."""
    n, steps, _ = x.shape
    units = recurrent.shape[0]
    h = np.zeros((n, units), np.float64)
    c = np.zeros((n, units), np.float64)
    out = np.zeros((n, steps, units), np.float64)
    for t in range(steps):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = (z[:, k * units:(k + 1) * units] for k in range(4))
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        out[:, t] = h
    return out


def _keras_reference(ids: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    x = w["embedding"][ids].astype(np.float64)
    fwd = _keras_lstm(x, w["fk"], w["fr"], w["fb"])
    # Keras Bidirectional runs the backward layer on the reversed sequence and flips its output back.
    bwd = _keras_lstm(x[:, ::-1], w["bk"], w["br"], w["bb"])[:, ::-1]
    pooled = np.concatenate([fwd, bwd], axis=-1).max(axis=1)  # no mask: padding is pooled too
    hidden = np.maximum(pooled @ w["dk"] + w["db"], 0.0)
    return _sigmoid(hidden @ w["ok"] + w["ob"])


def _read_h5_directly() -> dict[str, np.ndarray]:
    # Read independently of the judge's loader so a wrong mapping there cannot hide here.
    import h5py

    weights_path, _ = find_package_files()
    base = "layers/bidirectional/{}_layer/cell/vars/{}"
    with h5py.File(weights_path, "r") as f:
        return {
            "embedding": f["layers/embedding/vars/0"][()],
            "fk": f[base.format("forward", 0)][()], "fr": f[base.format("forward", 1)][()],
            "fb": f[base.format("forward", 2)][()],
            "bk": f[base.format("backward", 0)][()], "br": f[base.format("backward", 1)][()],
            "bb": f[base.format("backward", 2)][()],
            "dk": f["layers/dense/vars/0"][()], "db": f["layers/dense/vars/1"][()],
            "ok": f["layers/dense_1/vars/0"][()], "ob": f["layers/dense_1/vars/1"][()],
        }


@needs_weights
def test_fidelity_against_numpy_keras_reference(judge: JigsawToxicityJudge) -> None:
    import torch

    rng = np.random.default_rng(0)
    texts = ["you are a stupid idiot", "the weather is nice today", "", "word " * 150]
    ids = np.concatenate([
        judge.encode(texts),
        rng.integers(0, 20000, size=(3, MAXLEN)),  # full-length random sequences
        pad_sequences([rng.integers(1, 20000, size=7).tolist()]),  # mostly padding
    ])
    ref = _keras_reference(ids, _read_h5_directly())
    with torch.inference_mode():
        got = judge.model(torch.from_numpy(ids)).double().numpy()
    diff = float(np.abs(got - ref).max())
    print(f"\njigsaw fidelity: max |torch - numpy keras reference| = {diff:.2e} over {ids.shape[0]} sequences")
    assert diff <= 1e-5


# ---------------------------------------------------------------- tokenizer / padding semantics

def test_tokenizer_matches_keras_rules() -> None:
    tok = KerasTokenizer(word_index={"the": 1, "cat": 2, "don't": 3, "rare": 7}, num_words=5)
    # lower-cased, filters become the split string, empties dropped, apostrophes kept,
    # indices >= num_words dropped, unknown words dropped without an oov token.
    assert tok.texts_to_sequences(["The  CAT!!the\tcat.", "Don't rare dog", ""]) == [[1, 2, 1, 2], [3], []]
    with_oov = KerasTokenizer(word_index={"<oov>": 1, "the": 2, "rare": 9}, num_words=5, oov_token="<oov>")
    assert with_oov.texts_to_sequences(["the dog rare"]) == [[2, 1, 1]]


def test_pad_sequences_pre_pad_pre_truncate() -> None:
    out = pad_sequences([[1, 2, 3], list(range(1, 106)), []], maxlen=MAXLEN)
    assert out.shape == (3, MAXLEN)
    assert out[0, -3:].tolist() == [1, 2, 3] and not out[0, :-3].any()
    assert out[1].tolist() == list(range(6, 106))  # the front is cut, the end kept
    assert not out[2].any()


def test_clean_text_matches_package_utils() -> None:
    assert clean_text("Visit http://x.com NOW!!  It's   <b>great</b>") == "visit now!! it s b great b"


@needs_weights
def test_tokenizer_pickle_loaded_without_keras(judge: JigsawToxicityJudge) -> None:
    tok = judge.tokenizer
    assert tok.num_words == 20000 and tok.lower and tok.split == " " and tok.oov_token is None
    assert tok.word_index["the"] == 1
    assert "keras" not in sys.modules and "tensorflow" not in sys.modules
    ids = judge.encode(["The the THE"])
    assert ids[0, -3:].tolist() == [1, 1, 1] and not ids[0, :-3].any()


# ---------------------------------------------------------------- behaviour

TOXIC = ["you are a stupid idiot", "shut up, you moron", "fuck you", "you are a worthless piece of shit"]
NEUTRAL = ["the weather is nice today", "I like reading books about history",
           "Thanks for the help, the recipe worked well.", "Paris is the capital of France."]


@needs_weights
def test_toxic_and_neutral_texts(judge: JigsawToxicityJudge) -> None:
    verdicts = judge.judge([JudgeInput("p", t) for t in TOXIC + NEUTRAL])
    for text, v in zip(TOXIC, verdicts[:len(TOXIC)], strict=True):
        assert v.flag and v.score > 0.5 and v.label in LABELS, (text, v)
        assert v.reason.startswith("top labels: ") and "toxic=" in v.reason
    for text, v in zip(NEUTRAL, verdicts[len(TOXIC):], strict=True):
        assert not v.flag and v.score < 0.2 and v.label == "non_toxic", (text, v)


@needs_weights
def test_label_max_and_threshold() -> None:
    text = "you are a stupid idiot"
    probs = JigsawToxicityJudge().predict_proba([text])[0]
    v_max = JigsawToxicityJudge(label="max")("p", text)
    assert v_max.score == pytest.approx(float(probs.max()))
    strict = JigsawToxicityJudge(threshold=1.0)("p", text)
    assert not strict.flag and strict.score == pytest.approx(float(probs[0]))
    with pytest.raises(ValueError):
        JigsawToxicityJudge(label="mean")  # type: ignore[arg-type]


@needs_weights
def test_identity_and_lazy_build() -> None:
    from safeglass.hashing import file_hash

    j = JigsawToxicityJudge()
    ident = j.identity()
    assert j._model is None  # identity must not build the model
    weights_path, _ = find_package_files()
    assert ident.name == "jigsaw-toxicity" and ident.measure == "toxicity"
    assert ident.weights_hash == file_hash(str(weights_path))
    assert JigsawToxicityJudge(threshold=0.7).identity().key != ident.key
    j.judge([JudgeInput("p", "hello")])
    model = j._model
    j.judge([JudgeInput("p", "hello again")])
    assert j._model is model  # built once per instance


@needs_weights
def test_empty_batch_and_empty_text(judge: JigsawToxicityJudge) -> None:
    assert judge.judge([]) == []
    v = judge("p", "")
    assert not v.flag and 0.0 <= v.score <= 1.0


@needs_weights
def test_throughput(judge: JigsawToxicityJudge, capsys: pytest.CaptureFixture[str]) -> None:
    texts = [f"{(TOXIC + NEUTRAL)[i % 8]} and some more words, number {i}" for i in range(500)]
    judge.judge([JudgeInput("p", "warm up")])
    start = time.perf_counter()
    verdicts = judge.judge([JudgeInput("p", t) for t in texts])
    rate = len(texts) / (time.perf_counter() - start)
    assert len(verdicts) == 500
    with capsys.disabled():
        print(f"\njigsaw-toxicity throughput: {rate:.0f} texts/s (500 texts, batch 64, cpu)")


def test_missing_package_error_names_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps toxic-comment-classifier==0\.3\.0"):
        JigsawToxicityJudge()
