"""SmoothVLM: N perturbed copies answered in one call, the majority of judged refusals decides, the copies drawn
from the generation seed and the sample id (a resume sends the same ones), and saved with the run for the report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from PIL import Image

from safeglass.api import run
from safeglass.defenses.context import DefenseContext
from safeglass.defenses.smoothvlm import SmoothVLM
from safeglass.eval.runner import IMAGE_DIR, STORE_NAME, build_component
from safeglass.eval.store import Store
from safeglass.options import UnknownOptionError
from safeglass.types import Conversation, Generation, GenerationParams, ImageRef, Sample

REFUSAL = "I'm sorry, but I can't help with that"


class CopyScript:
    """A target whose j-th copy of a request refuses when ``script[request][j]`` is true (copies of one request
    are sent together, in copy order); it counts its ``generate`` calls and keeps what it was sent."""

    name = "copy-script"

    def __init__(self, script: dict[str, Sequence[bool]] | None = None) -> None:
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
            refuse = self.script.get(text, [False] * (j + 1))[j]
            out.append(Generation(f"{REFUSAL} (copy {j})." if refuse else f"Sure, copy {j} answers {text}.",
                                  seconds=0.5))
        return out


def picture(seed: int = 0, size: int = 32) -> ImageRef:
    """A picture with no black pixel, so that every masked pixel shows."""
    pixels = np.random.default_rng(seed).integers(40, 256, (size, size, 3), dtype=np.uint8)
    return ImageRef(Image.fromarray(pixels))


def sample(id: str, text: str, image: bool = True) -> Sample:
    return Sample.from_text(id, text, images=(picture(),) if image else ())


def defended(target: Any, **options: Any) -> SmoothVLM:
    d = SmoothVLM(**options)
    d.setup(DefenseContext(target, build_component))
    return d


def pixels(ref: ImageRef) -> np.ndarray:
    return np.asarray(ref.pil().convert("RGB"))


def test_the_majority_of_copies_decides_in_one_call_and_a_tie_refuses():
    # N = 4: 0 or 1 refusals answer, 2 (a tie), 3 or 4 refuse
    script = {f"request {k}": [j < k for j in range(4)][::-1] for k in range(5)}  # the refusals come last
    target = CopyScript(script)
    d = defended(target, copies=4)
    samples = [sample(f"s{k}", f"request {k}") for k in range(5)]
    gens = d.generate(target, samples, GenerationParams())
    assert len(target.calls) == 1 and len(target.calls[0]) == 20  # every copy of the chunk in one call
    votes = [g.extra["smoothvlm"] for g in gens]
    assert [v["refused"] for v in votes] == [0, 1, 2, 3, 4]
    assert [v["verdict"] for v in votes] == ["answered", "answered", "refused", "refused", "refused"]
    # the reply is the first copy on the winning side: refusals are copies 4-k..3, answers copies 0..3-k
    assert gens[0].text.startswith("Sure, copy 0") and gens[1].text.startswith("Sure, copy 0")
    assert [g.text for g in gens[2:]] == [f"{REFUSAL} (copy {4 - k})." for k in (2, 3, 4)]
    assert [v["chosen"] for v in votes] == [0, 0, 2, 1, 0]
    assert all(g.seconds == pytest.approx(2.0) for g in gens)  # a reply costs its four copies


def test_an_odd_number_of_copies_follows_the_strict_majority():
    target = CopyScript({"q": [True, False, True, False, False], "r": [False, True, True, False, True]})
    gens = defended(target, copies=5).generate(target, [sample("a", "q"), sample("b", "r")], GenerationParams())
    assert [g.extra["smoothvlm"]["verdict"] for g in gens] == ["answered", "refused"]
    assert gens[0].text.startswith("Sure, copy 1") and gens[1].text == f"{REFUSAL} (copy 1)."


@pytest.mark.parametrize("kind", ["mask", "patch", "noise", "swap"])
def test_copies_differ_and_the_same_seed_and_sample_give_the_same_ones(kind):
    d = SmoothVLM(copies=4, perturbation=kind, rate=0.2)
    s = sample("s1", "look")
    copies = d.copies_of(s, seed=0)
    hashes = [c[0].images[0].content_hash() for c in copies]
    original = s.images[0].content_hash()
    assert len(set(hashes)) == 4 and original not in hashes
    assert all(c[0].text == "look" for c in copies)  # the image is perturbed, the request is not
    assert pixels(copies[0][0].images[0]).shape == pixels(s.images[0]).shape
    # a resume builds a new defense: the same generation seed and sample id make the same copies
    again = [c[0].images[0].content_hash() for c in SmoothVLM(copies=4, perturbation=kind, rate=0.2).copies_of(s, 0)]
    assert again == hashes
    other_id = [c[0].images[0].content_hash() for c in d.copies_of(sample("s2", "look"), 0)]
    other_seed = [c[0].images[0].content_hash() for c in d.copies_of(s, 1)]
    assert set(other_id).isdisjoint(hashes) and set(other_seed).isdisjoint(hashes)


def test_each_perturbation_touches_what_it_says():
    s = sample("s", "look")
    before = pixels(s.images[0]).astype(int)
    mask = pixels(SmoothVLM(perturbation="mask", rate=0.25).copies_of(s, 0)[0][0].images[0]).astype(int)
    changed = (mask != before).any(-1)
    assert 0.15 < changed.mean() < 0.35 and (mask[changed] == 0).all()  # a quarter of the pixels, blacked out
    patch = pixels(SmoothVLM(perturbation="patch", rate=0.25).copies_of(s, 0)[0][0].images[0]).astype(int)
    black = (patch == 0).all(-1)
    cells = black.reshape(16, 2, 16, 2).transpose(0, 2, 1, 3).reshape(256, 4)  # 32 px: 2 x 2 pixels a cell
    assert black.any() and (cells.all(1) | ~cells.any(1)).all()  # whole cells or nothing
    noise = pixels(SmoothVLM(perturbation="noise", rate=0.05).copies_of(s, 0)[0][0].images[0]).astype(int)
    assert (noise != before).mean() > 0.5 and np.abs(noise - before).mean() < 0.1 * 255  # everywhere, a little
    swap = pixels(SmoothVLM(perturbation="swap", rate=0.25).copies_of(s, 0)[0][0].images[0]).astype(int)
    assert 0.15 < (swap != before).any(-1).mean() < 0.35


def test_text_only_samples_are_answered_once_or_swapped_as_smoothllm():
    target = CopyScript({"a plain request without any image": [True, True, False, False]})
    plain = sample("t", "a plain request without any image", image=False)
    once = defended(target, copies=4)
    (g,) = once.generate(target, [plain], GenerationParams())
    assert target.calls[-1] == [plain.turns] and "smoothvlm" not in g.extra  # no copies, no vote
    swapped = defended(target, copies=4, text_only="swap", rate=0.2).copies_of(plain, 0)
    texts = [c[-1].text for c in swapped]
    assert len(set(texts)) == 4 and plain.prompt not in texts
    assert all(len(t) == len(plain.prompt) for t in texts)
    assert all(sum(a != b for a, b in zip(t, plain.prompt, strict=True)) <= int(0.2 * len(t)) for t in texts)


def test_options_are_checked_and_the_vote_judge_must_measure_refusal(tmp_path):
    for bad in ({"copies": 0}, {"perturbation": "blur"}, {"rate": 0.0}, {"rate": 1.5}, {"text_only": "skip"}):
        with pytest.raises(ValueError, match="smoothvlm"):
            SmoothVLM(**bad)
    SmoothVLM(perturbation="noise", rate=1.5)  # a standard deviation may exceed 1
    cfg = {"name": "v", "targets": ["echo"], "datasets": [{"name": "advbench", "limit": 2}], "judges": [],
           "defenses": [{"name": "smoothvlm", "args": {"judge": "proxy-harm"}}]}
    with pytest.raises(UnknownOptionError, match="proxy-harm measures harm; it needs one that measures refusal"):
        run(cfg, out=tmp_path / "r", dry_run=True, progress=False)


def _run(tmp_path, name: str, chunk_size: int) -> list[dict[str, Any]]:
    cfg = {"name": "smooth", "seed": 0, "chunk_size": chunk_size,
           "targets": [{"name": "tiny", "id": "llava", "args": {"family": "llava"}}],
           "datasets": [{"name": "shapeworld-vqa", "id": "sw", "args": {"n": 3, "size": 32}}],
           "defenses": [{"name": "smoothvlm", "args": {"copies": 3}}], "judges": [],
           "generation": {"max_new_tokens": 3}}
    run(cfg, out=tmp_path / name, report=False, judge=False, progress=False)
    with Store(tmp_path / name / STORE_NAME) as s:
        return sorted(s.generations(), key=lambda r: r["sample_id"])


def test_a_run_traces_and_saves_every_copy_and_another_chunking_sends_the_same_ones(tmp_path):
    from safeglass.reporting.html import _trace_blob
    from safeglass.reporting.thumbnails import thumbnails

    rows = _run(tmp_path, "a", chunk_size=3)
    assert len(rows) == 3
    image_dir = tmp_path / "a" / IMAGE_DIR
    sent = {}
    for r in rows:
        prov = json.loads(r["provenance"])
        trace = prov["trace"]
        assert [t["role"] for t in trace] == ["copy"] * 3 + ["vote judge"] * 3
        saved = [t["sent"][-1]["saved"][0] for t in trace[:3]]
        assert len(set(saved)) == 3 and all((image_dir / f"{h}.png").is_file() for h in saved)
        assert prov["extra"]["smoothvlm"]["copies"] == 3
        sent[r["sample_id"]] = saved
        # the report's sample browser shows each copy as a thumbnail
        paths = [str(image_dir / f"{h}.png") for h in saved]
        blob = _trace_blob(trace, False, [], thumbnails(paths), image_dir)
        assert [e["sent"][-1].get("thumbs") for e in blob[:3]] == [[p] for p in paths]
    again = _run(tmp_path, "b", chunk_size=1)  # other batches, the same copies
    assert {r["sample_id"]: [t["sent"][-1]["saved"][0] for t in json.loads(r["provenance"])["trace"][:3]]
            for r in again} == sent
