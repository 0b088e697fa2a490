"""Data v5 of the fulfilment judges (organisms/fulfilment_framings.py): data v4 unchanged inside it, every frame on
both sides of the label, the requests all benign ones the project already had, and exact sentence labels."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from safeglass.organisms.fulfilment_framings import FRAMES, framed_examples
from safeglass.organisms.fulfilment_train import Example, build_examples


@pytest.fixture(scope="module")
def data() -> tuple[list[Example], list[Example]]:
    return build_examples(0, data="v4"), build_examples(0, data="v5")


def test_data_v4_is_unchanged_inside_data_v5(data) -> None:
    v4, v5 = data
    assert len(v5) > len(v4)
    assert [(e.prompt, e.response, e.fulfilment, e.refusal, e.origin, e.split) for e in v5[:len(v4)]] == \
        [(e.prompt, e.response, e.fulfilment, e.refusal, e.origin, e.split) for e in v4]


def test_every_frame_delivers_and_fails_to_deliver(data) -> None:
    v4, v5 = data
    new = v5[len(v4):]
    sides = Counter((e.origin.split(":")[-1], e.fulfilment) for e in new)
    for frame in FRAMES:
        # the frame alone must not tell the label: each is seen often on both sides
        assert sides[(frame, 1)] >= 40 and sides[(frame, 0)] >= 40, (frame, sides)
    assert all((e.fulfilment, e.refusal) in {(1, 0), (0, 1)} for e in new)
    assert all(("framed_nd" in e.origin) == (e.fulfilment == 0) for e in new)


def test_data_v5_asks_only_requests_data_v4_already_had(data) -> None:
    v4, v5 = data
    assert {e.prompt for e in v5[len(v4):]} <= {e.prompt for e in v4}
    # and keeps each request on its side of the split
    split = {e.prompt: e.split for e in v4}
    assert all(split[e.prompt] == e.split for e in v5[len(v4):])


def test_a_framed_answer_keeps_the_answer_and_a_dual_reply_labels_its_refusal() -> None:
    answer = [("Mix flour and water. Knead for ten minutes. Bake at 220 C.", "answer")]
    non = [[("It depends on many things. Good luck!", "filler")]]
    fill = {"task": "bread", "vp": "bake bread", "ger": "baking bread"}
    out = framed_examples("How do I bake bread?", answer, non, "train", random.Random(0), fill, Example, "t",
                          per_side=len(FRAMES))
    delivered = [e for e in out if e.fulfilment == 1]
    assert len(delivered) == len(FRAMES) and all("Knead for ten minutes" in e.response for e in delivered)
    assert not any("Knead for ten minutes" in e.response for e in out if e.fulfilment == 0)
    dual = next(e for e in delivered if e.origin.endswith(":dual"))
    assert dual.segments[0][1] == "refusal" and dual.response.startswith("[CLASSIC]")
    assert any(kind == "answer" for _, kind in dual.segments)
