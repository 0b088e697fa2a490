"""The cross-encoder judges (fulfilment-ce, refusal-ce): the pair input, saving and loading the trained tensors over
their own base only, the cached training path, resuming a killed build; then the shipped weights on the held-out
texts of tests/test_judges_v4_models.py (written for that file, in no training data)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from test_judges_v4_models import (
    GARDEN_DEFLECTION,
    GARDEN_LATE_REFUSAL,
    GARDEN_REQUEST,
    LONG_ANSWER,
    LONG_DEFLECTION,
    LONG_LATE_REFUSAL,
    RELATED_ANSWER,
    REQUEST,
)

from safeglass.judges.base import JudgeInput
from safeglass.judges.cross_encoder import (
    MAX_TOKENS,
    REQUEST_TOKENS,
    TAIL_TOKENS,
    CrossEncoder,
    FulfilmentCEJudge,
    RefusalCEJudge,
    load_trained,
    pair_ids,
)
from safeglass.judges.proxy import MiniLMEmbedder
from safeglass.judges.proxy_files import CROSS_CARD_FILE, CROSS_WEIGHTS_FILE, embedding_model_dir
from safeglass.organisms import cross_judge_train as cjt
from safeglass.organisms.cross_judge_train import save_trained
from safeglass.organisms.fulfilment_train import Example

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def _tiny_base(folder, seed: int) -> MiniLMEmbedder:
    """A random 4-layer BERT with the packaged MiniLM's tokenizer, loaded as the judges load their base."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512)
    BertModel(cfg).save_pretrained(str(folder), safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copy(embedding_model_dir() / name, folder / name)
    return MiniLMEmbedder(model_dir=folder, dtype="float32")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> MiniLMEmbedder:
    return _tiny_base(tmp_path_factory.mktemp("tiny_base"), 0)


def _examples() -> list[Example]:
    topics = [("How do I boil an egg?", "Put the egg in boiling water for eight minutes, then cool it in cold water."),
              ("How do I fold a paper plane?", "Fold the sheet in half, fold the corners in, then the wings."),
              ("How do I water a cactus?", "Water it deeply every two weeks in summer and hardly at all in winter."),
              ("How do I clean a kettle?", "Boil a mix of water and white vinegar, leave it an hour, then rinse.")]
    out = []
    for k, (q, a) in enumerate(topics):
        split = "val" if k == 3 else "train"
        out += [Example(q, [(a, "answer")], 1, 0, "t:answer", split),
                Example(q, [("I'm sorry, but I can't help with that.", "refusal")], 0, 1, "t:refusal", split),
                Example(q, [(a.split(",")[0] + ".", "answer"), ("I won't go further.", "refusal")], 0, None,
                        "t:partial", split)]
    return out


def test_the_pair_keeps_the_request_head_and_the_replys_head_and_tail(tiny) -> None:
    tok = tiny.tokenizer
    request = "please " * 80 + "explain it"
    reply = "Opening words here. " + "filler " * 400 + "Finally, I will not walk you through it."
    ids, types = pair_ids(tok, request, reply)
    assert len(ids) == len(types) == MAX_TOKENS
    assert types.count(0) == REQUEST_TOKENS + 2 and ids[REQUEST_TOKENS + 1] == tok.sep_token_id
    text = tok.decode(ids[REQUEST_TOKENS + 2:])
    assert text.startswith("opening words here.")
    assert text.endswith("finally, i will not walk you through it. [SEP]")  # the late refusal at the end survives
    rep = tok(reply, add_special_tokens=False)["input_ids"]
    assert ids[-TAIL_TOKENS - 1:-1] == rep[-TAIL_TOKENS:]
    short_ids, short_types = pair_ids(tok, "Hi?", "Hello there.")  # nothing cut when it fits
    assert tok.decode(short_ids) == "[CLS] hi? [SEP] hello there. [SEP]" and sum(short_types) == len(short_ids) - 4


def test_save_and_load_give_the_same_probabilities_in_float16(tiny, tmp_path) -> None:
    model = CrossEncoder(tiny.model, 2, seed=3).eval()
    save_trained(model, {"base_files_hash": tiny.files_hash, "trained_layers": 2,
                         "heads": {"fulfilment": {"threshold": 0.5}, "refusal": {"threshold": 0.5}}}, tmp_path)
    loaded, card = load_trained(tmp_path, tiny)
    assert card["weights_dtype"] == "float16"
    assert set(loaded.state_dict()) == set(model.state_dict()) and not any(k.startswith("_base")
                                                                         for k in loaded.state_dict())
    q, r = ["How do I boil an egg?"] * 2, ["Boil it for eight minutes.", "I can't help with that."]
    p0 = model.probabilities(tiny.tokenizer, q, r)
    p1 = loaded.probabilities(tiny.tokenizer, q, r)
    assert np.abs(p0 - p1).max() < 5e-3  # float16 rounding only
    judge = FulfilmentCEJudge(weights=tmp_path, embedder=tiny)
    scores = judge.scores([JudgeInput(a, b) for a, b in zip(q, r)])
    assert np.allclose(scores, p1[:, 0], atol=1e-6)
    assert RefusalCEJudge(weights=tmp_path, embedder=tiny).identity().key != judge.identity().key


def test_another_input_budget_and_depth_travel_with_the_weights(tiny, tmp_path) -> None:
    model = CrossEncoder(tiny.model, 3, seed=2, max_tokens=64, request_tokens=8, tail_tokens=8).eval()
    save_trained(model, {"base_files_hash": tiny.files_hash, "trained_layers": 3,
                         "input": {"max_tokens": 64, "request_tokens": 8, "reply_tail_tokens": 8}}, tmp_path)
    loaded, _ = load_trained(tmp_path, tiny)
    assert len(loaded.upper) == 3 and loaded.budget == {"max_tokens": 64, "request_tokens": 8, "tail_tokens": 8}
    q, r = ["please " * 30 + "boil an egg"], ["Boil it. " * 60]
    assert np.abs(model.probabilities(tiny.tokenizer, q, r) - loaded.probabilities(tiny.tokenizer, q, r)).max() < 5e-3
    # the budget decides what is read: a longer request past the 8 tokens kept changes nothing
    longer = ["please " * 30 + "fold a paper plane"]
    assert np.allclose(loaded.probabilities(tiny.tokenizer, q, r), loaded.probabilities(tiny.tokenizer, longer, r))
    assert cjt.cache_key(_examples(), tiny, loaded) != cjt.cache_key(_examples(), tiny, CrossEncoder(tiny.model, 3))
    with pytest.raises(ValueError, match="does not fit"):
        CrossEncoder(tiny.model, 2, max_tokens=1024)


def test_building_the_model_leaves_the_callers_random_state_alone(tiny) -> None:
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    a = CrossEncoder(tiny.model, 2, seed=5)
    assert torch.equal(torch.rand(3), expected)
    assert torch.equal(a.head.weight, CrossEncoder(tiny.model, 2, seed=5).head.weight)


def test_loading_over_another_base_model_is_refused(tiny, tmp_path) -> None:
    model = CrossEncoder(tiny.model, 2)
    save_trained(model, {"base_files_hash": tiny.files_hash, "trained_layers": 2}, tmp_path / "w")
    other = _tiny_base(tmp_path / "other", 1)
    assert other.files_hash != tiny.files_hash
    with pytest.raises(ValueError, match="only fit their own base"):
        load_trained(tmp_path / "w", other)
    with pytest.raises(FileNotFoundError, match="build_cross_judge"):
        load_trained(tmp_path / "missing", tiny)


def test_the_cached_path_scores_as_the_judge_does(tiny) -> None:
    examples = _examples()
    model = CrossEncoder(tiny.model, 2, seed=1).eval()
    cache = cjt.build_cache(model, tiny.tokenizer, examples, "k", batch_size=4, log=lambda m: None)
    p_cache = cjt.cached_probabilities(model, cache)
    p_judge = model.probabilities(tiny.tokenizer, [e.prompt for e in examples], [e.response for e in examples], 5)
    assert np.abs(p_cache - p_judge).max() < 1e-5


def test_a_partial_replys_refusal_loss_is_masked() -> None:
    logits = torch.zeros((2, 2), requires_grad=True)
    y = torch.tensor([[0.0, -1.0], [1.0, 1.0]])
    cjt._loss(logits, y, torch.ones((2, 2))).backward()
    assert logits.grad[0, 1] == 0 and logits.grad[0, 0] != 0 and logits.grad[1, 1] != 0
    assert cjt.labels_of(_examples())[2].tolist() == [0.0, -1.0]


def _train(tiny, out, work, epochs: int) -> dict:
    return cjt.train(out, epochs=epochs, budget_min=60, work_dir=work, embedder=tiny, examples=_examples(),
                     batch_size=4, lr_layers=1e-3, lr_head=1e-2, log=lambda m: None)


def test_a_resumed_build_ends_with_the_weights_of_an_unbroken_one(tiny, tmp_path) -> None:
    from safetensors.torch import load_file

    whole = _train(tiny, tmp_path / "whole", tmp_path / "work_whole", 2)
    first = _train(tiny, tmp_path / "first", tmp_path / "work_broken", 1)  # "killed" after epoch 1
    assert (tmp_path / "work_broken" / cjt.CACHE_FILE).is_file()
    resumed = _train(tiny, tmp_path / "resumed", tmp_path / "work_broken", 2)
    assert first["epochs"] == 1 and whole["epochs"] == resumed["epochs"] == 2
    a = load_file(str(tmp_path / "whole" / CROSS_WEIGHTS_FILE))
    b = load_file(str(tmp_path / "resumed" / CROSS_WEIGHTS_FILE))
    c = load_file(str(tmp_path / "first" / CROSS_WEIGHTS_FILE))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the second epoch changed something
    assert [h["loss"] for h in whole["history"]] == [h["loss"] for h in resumed["history"]]
    assert (tmp_path / "whole" / CROSS_CARD_FILE).is_file() and whole["heads"]["refusal"]["n_val"] == 2


# --- the shipped weights (src/safeglass/judges/cross_weights/) on the held-out texts of test_judges_v4_models.py ---


@pytest.fixture(scope="module")
def shipped():
    fulfil = FulfilmentCEJudge()
    return fulfil, RefusalCEJudge(embedder=fulfil.embedder)


def _one(judge, response: str, prompt: str = REQUEST):
    return judge.judge([JudgeInput(prompt, response)])[0]


def test_the_shipped_weights_are_data_v4s_over_the_packaged_minilm(shipped) -> None:
    from safeglass.judges.fulfilment import FulfilmentV4Judge
    from safeglass.registry import registry

    fulfil, refusal = shipped
    card = fulfil.card
    assert card["recipe"] == "fulfilment-data-v4" and card["n_examples"] == 4802 and card["seed"] == 0
    assert card["base_files_hash"] == fulfil.embedder.files_hash and card["weights_dtype"] == "float16"
    assert 0 < fulfil.threshold < 1 and 0 < refusal.threshold < 1
    assert fulfil.identity().key != FulfilmentV4Judge(embedder=fulfil.embedder).identity().key
    assert {"fulfilment-ce", "refusal-ce"} <= set(registry("judges").names())


def test_a_fulfilling_and_a_deflecting_reply_to_one_request_get_opposite_verdicts(shipped) -> None:
    fulfil, refusal = shipped
    assert _one(fulfil, LONG_ANSWER).flag and not _one(refusal, LONG_ANSWER).flag
    assert not _one(fulfil, LONG_DEFLECTION).flag and _one(refusal, LONG_DEFLECTION).flag


def test_the_same_answer_under_another_request_is_not_achieved(shipped) -> None:
    fulfil, refusal = shipped
    assert not _one(fulfil, LONG_ANSWER, GARDEN_REQUEST).flag


def test_the_v3_tests_long_deflection_is_not_achieved(shipped) -> None:
    fulfil, refusal = shipped
    assert not _one(fulfil, GARDEN_DEFLECTION, GARDEN_REQUEST).flag
    assert _one(refusal, GARDEN_DEFLECTION, GARDEN_REQUEST).flag


def test_late_refusals_are_caught(shipped) -> None:
    fulfil, refusal = shipped
    for request, reply in ((REQUEST, LONG_LATE_REFUSAL), (GARDEN_REQUEST, GARDEN_LATE_REFUSAL)):
        assert _one(refusal, reply, request).flag
        assert not _one(fulfil, reply, request).flag


@pytest.mark.xfail(strict=True, reason="measured 2026-12-08 03:23 on the committed weights (7f25f74): fulfilment-ce "
                   "calls the answer to a related question achieved (p 0.957 >= 0.18) and refusal-ce compliance "
                   "(p 0.038 < 0.87); on data v4's validation split it gets 0 of 11 related answers right "
                   "(docs/judges.md, Cross-encoder)")
def test_an_answer_to_a_related_question_is_not_achieved(shipped) -> None:
    fulfil, refusal = shipped
    assert not _one(fulfil, RELATED_ANSWER).flag
    assert _one(refusal, RELATED_ANSWER).flag  # PyRIT's strict reading: another question's answer is a refusal
