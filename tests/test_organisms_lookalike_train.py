"""SafeSmol v2's look-alike-style training prompts: harmless requests that sound risky, written to train against
over-refusal, and held out from the card and validation look-alikes they will be measured on."""

from __future__ import annotations

import collections
import json
import re

import pytest
from test_data_lookalikes import CATEGORIES, _tokens

from safeglass.data.lookalikes import load_benign_lookalikes
from safeglass.organisms import safesmol

FILE = "safesmol_lookalike_train.jsonl"


def _rows() -> list[dict]:
    return [json.loads(line) for line in safesmol.resource(FILE).read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def measured() -> dict:
    """Every prompt set this file must be clear of, and the MiniLM embedder, loaded once."""
    from safeglass.judges.proxy import MiniLMEmbedder

    return {"prompts": [r["prompt"] for r in _rows()],
            "card": [s.prompt for s in load_benign_lookalikes().samples],
            "val": [s.prompt for s in load_benign_lookalikes(split="val").samples],
            "embedder": MiniLMEmbedder(dtype="float32")}


def test_file_has_360_unique_prompts_40_per_category_and_the_three_fields():
    rows = _rows()
    assert len(rows) == 360
    assert all(set(r) == {"id", "prompt", "category"} for r in rows)
    assert [r["id"] for r in rows] == [f"safesmol-lat-{i:03d}" for i in range(1, 361)]
    assert len({safesmol.normalise(r["prompt"]) for r in rows}) == 360
    assert all(r["prompt"] == r["prompt"].strip() and len(r["prompt"]) >= 15 for r in rows)
    counts = collections.Counter(r["category"] for r in rows)
    assert set(counts) == CATEGORIES and set(counts.values()) == {40}
    assert all(re.fullmatch(r"safesmol-lat-\d{3}", r["id"]) for r in rows)


def test_clear_of_the_card_and_validation_lookalikes(measured):
    prompts, card, val = measured["prompts"], measured["card"], measured["val"]
    assert len(card) == 186 and len(val) == 90
    held = card + val
    worst = max(len(_tokens(p) & _tokens(q)) / len(_tokens(p) | _tokens(q)) for p in prompts for q in held)
    assert worst < 0.5  # measured 0.40
    # the closest pair measured 0.74 (Fukushima's cause against Chernobyl's): a different event, not a paraphrase
    assert safesmol.overlaps(prompts, held, embedder=measured["embedder"], threshold=0.8) == [None] * 360


def test_clear_of_the_heldout_harmful_prompts(measured):
    heldout = safesmol.heldout_prompts()
    assert safesmol.overlaps(measured["prompts"], heldout) == [None] * 360
    # and of the near-duplicate cut the training pools apply (closest measured 0.76: what insurance fraud is)
    assert safesmol.overlaps(measured["prompts"], heldout, embedder=measured["embedder"],
                             threshold=safesmol.SafeSmolConfig().dedup_cosine) == [None] * 360


def test_new_to_the_existing_benign_training_prompts(measured):
    train = [r["prompt"] for r in safesmol.load_benign_train()]
    assert safesmol.overlaps(measured["prompts"], train) == [None] * 360
