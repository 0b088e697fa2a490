"""JailGuard: the input and N-1 mutants answered in one call, replies that diverge flag an attack (refused), replies
that agree return the unmodified input's reply; mutants drawn from the generation seed and the sample id."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from PIL import Image

from safeglass.api import run
from safeglass.defenses.context import DefenseContext
from safeglass.defenses.mutation_divergence import (
    DEFAULT_REFUSAL,
    IMAGE_MUTATORS,
    TEXT_MUTATORS,
    JailGuard,
    reply_divergence,
)
from safeglass.defenses.output_filter import DEFAULT_REFUSAL as FILTER_REFUSAL
from safeglass.eval.runner import IMAGE_DIR, STORE_NAME, build_component
from safeglass.eval.store import Store
from safeglass.types import Conversation, Generation, GenerationParams, ImageRef, Sample, Turn

REFUSAL = "I'm sorry, but I can't help with that request."
ANSWER = "Sure, here is how it goes. First, gather what you need; then follow the steps below."


class CopyScript:
    """The j-th copy of a request (copies of one sample are sent together, copy 0 first) gets ``script[request][j]``;
    an unscripted request gets one reply whatever the copy. Counts its calls and keeps what it was sent."""

    name = "copy-script"

    def __init__(self, script: dict[str, Sequence[str]] | None = None) -> None:
        self.script = dict(script or {})
        self.calls: list[list[Conversation]] = []

    def config(self) -> dict[str, Any]:
        return {"type": "copy-script"}

    def generate(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[Generation]:
        self.calls.append(list(conversations))
        seen: dict[str, int] = {}
        out = []
        for conv in conversations:
            text = conv[-1].text
            j = seen[text] = seen.get(text, -1) + 1
            reply = self.script[text][j] if text in self.script else f"The same answer to {text}."
            out.append(Generation(reply, seconds=0.5))
        return out


def picture(seed: int = 0, size: int = 32) -> ImageRef:
    pixels = np.random.default_rng(seed).integers(40, 256, (size, size, 3), dtype=np.uint8)
    return ImageRef(Image.fromarray(pixels))


def sample(id: str, text: str, image: bool = True) -> Sample:
    return Sample.from_text(id, text, images=(picture(),) if image else ())


def defended(target: Any, **options: Any) -> JailGuard:
    d = JailGuard(**options)
    d.setup(DefenseContext(target, build_component))
    return d


def test_diverging_replies_are_refused_and_agreeing_ones_return_the_input_reply_in_one_call():
    target = CopyScript({"split": [ANSWER, REFUSAL] * 4, "agree": [ANSWER] * 8})
    samples = [sample("a", "split"), sample("b", "agree"), sample("c", "unscripted")]
    gens = defended(target).generate(target, samples, GenerationParams())
    assert len(target.calls) == 1 and len(target.calls[0]) == 24  # every copy of the chunk in one call
    # copy 0 of each sample is its unmodified input; the other copies carry mutated images and the same text
    sent = target.calls[0]
    for i, s in enumerate(samples):
        assert sent[8 * i] == s.turns
        assert all(c[-1].text == s.prompt and c[-1].images != s.turns[-1].images for c in sent[8 * i + 1:8 * i + 8])
    split, agree, same = (g.extra["jailguard"] for g in gens)
    assert split["flagged"] and split["divergence"] > split["threshold"] == 0.5
    assert gens[0].text == DEFAULT_REFUSAL and gens[0].finish_reason == "filtered"
    assert not agree["flagged"] and agree["divergence"] == 0.0 and gens[1].text == ANSWER
    assert not same["flagged"] and gens[2].text == "The same answer to unscripted."
    assert len(split["mutators"]) == 7 and set(split["mutators"]) <= {"rotate", "blur", "posterize"}
    assert all(g.seconds == pytest.approx(4.0) for g in gens)  # a reply costs its eight copies


def test_the_threshold_decides_on_the_measured_divergence():
    # one of eight replies differs in wording only: a divergence well under the default, above a strict threshold
    wording = [REFUSAL] * 7 + ["I'm sorry, I can't help with that."]
    target = CopyScript({"q": wording})
    div = reply_divergence(wording)
    (loose,) = defended(target).generate(target, [sample("a", "q")], GenerationParams())
    (strict,) = defended(target, threshold=div / 2).generate(target, [sample("a", "q")], GenerationParams())
    assert 0.0 < div < 0.5 and loose.extra["jailguard"]["divergence"] == pytest.approx(div, abs=1e-6)
    assert loose.text == REFUSAL and not loose.extra["jailguard"]["flagged"]
    assert strict.text == DEFAULT_REFUSAL and strict.extra["jailguard"]["flagged"]


def test_reply_divergence_is_jailguards_kl_of_similarity_rows():
    assert reply_divergence(["same reply"] * 8) == 0.0
    # two replies with no 3-gram in common: similarity clipped to 0.01, rows (1, .01) and (.01, 1), normalised
    p, q = np.array([1, 0.01]) / 1.01, np.array([0.01, 1]) / 1.01
    assert reply_divergence(["aaaa", "zzzz"]) == pytest.approx(float(np.sum(p * np.log(p / q))))
    assert reply_divergence(["aaaa", "zzzz"]) == pytest.approx(0.99 / 1.01 * math.log(100))
    # only the first `chars` characters count
    assert reply_divergence([REFUSAL + " one tail", REFUSAL + " another, longer tail"], chars=len(REFUSAL)) == 0.0
    # a split between refusals and answers is far above wording changes
    reworded = [REFUSAL, "I'm sorry, but I can't help with that.", "Sorry, but I can't help with that request."]
    assert reply_divergence([REFUSAL] * 4 + [ANSWER] * 4) > 2.0 > 0.5 > reply_divergence(reworded + [REFUSAL] * 5)


@pytest.mark.parametrize("kind", IMAGE_MUTATORS)
def test_each_image_mutator_changes_the_picture_and_keeps_its_size(kind):
    s = sample("s1", "look")
    copies, used = JailGuard(copies=4, image_mutators=[kind], rate=0.2).copies_of(s, seed=0)
    assert copies[0] == s.turns and used == ["none", kind, kind, kind]
    original = np.asarray(s.images[0].pil().convert("RGB"))
    for c in copies[1:]:
        mutated = np.asarray(c[0].images[0].pil().convert("RGB"))
        assert mutated.shape == original.shape and not np.array_equal(mutated, original)
        assert c[0].text == "look"  # an image sample keeps its text (mutate: auto)


@pytest.mark.parametrize("kind", TEXT_MUTATORS)
def test_each_text_mutator_changes_the_request_and_leaves_the_system_turn(kind):
    request = "please describe the weather in the mountains near the lake this coming weekend"
    s = Sample("t", (Turn("system", "Be brief."), Turn("user", request)))
    copies, used = JailGuard(copies=4, text_mutators=kind, rate=0.2).copies_of(s, seed=0)
    assert copies[0] == s.turns and used[1:] == [kind] * 3
    texts = [c[-1].text for c in copies[1:]]
    assert all(c[0] == s.turns[0] for c in copies) and all(t != request for t in texts)
    words = request.split()
    if kind == "delete":
        assert all(set(t.split()) < set(words) for t in texts)
    if kind == "punctuation":
        assert all([w for w in t.split() if w not in ".,!?;:"] == words for t in texts)
    if kind in ("replace", "insert"):
        assert all(len(t) == len(request) + (int(0.2 * len(request)) if kind == "insert" else 0) for t in texts)


def test_the_same_seed_and_sample_give_the_same_mutants_and_others_give_others():
    def hashes(d: JailGuard, s: Sample, seed: int) -> list[str]:
        return [c[0].images[0].content_hash() for c in d.copies_of(s, seed)[0]]

    s = sample("s1", "look")
    d = JailGuard(image_mutators=["rotate", "noise"])  # continuous draws: no two mutants alike
    first = hashes(d, s, 0)
    assert len(set(first[1:])) == 7 and first[0] == s.images[0].content_hash()
    assert hashes(JailGuard(image_mutators=["rotate", "noise"]), s, 0) == first  # a resume: a new defense
    assert set(hashes(d, sample("s2", "look"), 0)[1:]).isdisjoint(first) and set(hashes(d, s, 1)[1:]).isdisjoint(first)


def test_mutate_both_changes_the_images_and_the_text():
    copies, used = JailGuard(copies=3, mutate="both", text_mutators=["replace"], rate=0.3).copies_of(
        sample("s", "a request with some words"), 0)
    assert all(c[0].text != "a request with some words" for c in copies[1:])
    assert all(u.endswith("+replace") for u in used[1:])


def test_options_are_checked_and_the_refusal_is_output_filters():
    assert DEFAULT_REFUSAL == FILTER_REFUSAL
    for bad in ({"copies": 1}, {"image_mutators": ["warp"]}, {"text_mutators": []}, {"rate": 0.0},
                {"rate": 1.5}, {"mutate": "text"}, {"threshold": -1.0}, {"reply_chars": 0}):
        with pytest.raises(ValueError, match="jailguard"):
            JailGuard(**bad)


def _run(tmp_path, name: str, chunk_size: int) -> list[dict[str, Any]]:
    cfg = {"name": "jg", "seed": 0, "chunk_size": chunk_size,
           "targets": [{"name": "sgtest_components:PictureParity", "id": "parity"}],
           "datasets": [{"name": "shapeworld-vqa", "id": "sw", "args": {"n": 2, "size": 32}},
                        {"name": "sgtest_components:load_unit", "id": "unit", "args": {"n": 2}}],
           "defenses": [{"name": "jailguard", "args": {"image_mutators": ["hflip", "crop", "mask"]}}], "judges": []}
    run(cfg, out=tmp_path / name, report=False, judge=False, progress=False)
    with Store(tmp_path / name / STORE_NAME) as s:
        return sorted(s.generations(), key=lambda r: r["sample_id"])


def test_a_run_traces_every_copy_refuses_diverging_pictures_and_another_chunking_sends_the_same(tmp_path):
    rows = _run(tmp_path, "a", chunk_size=4)
    assert len(rows) == 4
    sent = {}
    for r in rows:
        prov = json.loads(r["provenance"])
        trace, record = prov["trace"], prov["extra"]["jailguard"]
        assert [t["role"] for t in trace] == ["mutant"] * 8
        if r["sample_id"].startswith("sw"):  # with a picture: mutants split between refusal and compliance
            saved = [t["sent"][-1]["saved"][0] for t in trace[1:]]
            assert "saved" not in trace[0]["sent"][-1]  # copy 0 is the sample's own picture
            # (two flips of one picture are one image: a mutator pool of deterministic ones repeats itself)
            assert len(saved) == 7 and all((tmp_path / "a" / IMAGE_DIR / f"{h}.png").is_file() for h in saved)
            assert record["flagged"] and r["response"] == DEFAULT_REFUSAL
            sent[r["sample_id"]] = saved
        else:  # text only: eight rewordings answered alike
            assert not record["flagged"] and record["divergence"] == 0.0
            assert r["response"] == "A plain answer, the same for any wording."
            texts = [t["sent"][-1]["text"] for t in trace]
            assert texts[0] == r["prompt"] and r["prompt"] not in texts[1:]
    assert len(sent) == 2
    again = _run(tmp_path, "b", chunk_size=1)  # other batches, the same mutants
    assert {r["sample_id"]: [t["sent"][-1]["saved"][0] for t in json.loads(r["provenance"])["trace"][1:]]
            for r in again if r["sample_id"] in sent} == sent
