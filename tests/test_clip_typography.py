"""The typographic attack on CLIP images: ShapeWorld's renderer writes the word, nothing outside the recorded box
changes, the post-it area is recorded, words and positions follow the seed, and any image folder works."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from safeglass.clip import images, typography
from safeglass.clip.typography import TypoSpec
from safeglass.data.shapeworld.world import render, with_text


def _outside(box, side):
    m = np.ones((side, side), bool)
    y0, x0, y1, x1 = box
    m[max(0, y0):y1, max(0, x0):x1] = False
    return m


@pytest.mark.parametrize("spec", [TypoSpec(word="star"), TypoSpec(word="danger", postit=True, position="top"),
                                  TypoSpec(word="circle", opacity=0.5, colour="red", position="random", size=0.3),
                                  TypoSpec(word="ring", font="mono", position=(0.3, 0.7))])
def test_the_attacked_image_changes_only_inside_its_box(spec) -> None:
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    w = typography.write(clean, spec.word, spec, np.random.default_rng(1))
    changed = (w.image != clean).any(-1)
    assert changed.any()                                   # the word is there
    assert not changed[_outside(w.box, 96)].any()          # and nothing outside its box moved
    assert w.text_mask.any() and not w.text_mask[_outside(w.box, 96)].any()
    assert (w.image.shape, w.image.dtype) == (clean.shape, clean.dtype)
    assert np.array_equal(clean, np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8))  # untouched


def test_the_post_it_area_is_recorded() -> None:
    clean = np.full((64, 64, 3), 200, np.uint8)
    plain = typography.write(clean, "star", TypoSpec(word="star", position="center"))
    note = typography.write(clean, "star", TypoSpec(word="star", position="center", postit=True))
    assert plain.postit_area == 0
    y0, x0, y1, x1 = note.box
    assert note.postit_area == pytest.approx((y1 - y0) * (x1 - x0) / 64 ** 2)
    assert note.spec.colour == "black"                     # black on a note


def test_on_a_scene_it_matches_shapeworlds_own_rendering() -> None:
    d = images.shapeworld(6, seed=3, image_size=64)
    for scene, img in zip(d.scenes, d.images):
        for position in ("auto", "on-object"):
            w = typography.write(img, "heart", TypoSpec(word="heart", position=position), scene=scene)
            expected = render(with_text(scene, "heart", position=position), 64)[0]
            assert np.array_equal(w.image, expected)


def test_scene_positions_need_a_scene() -> None:
    with pytest.raises(ValueError, match="needs a ShapeWorld scene"):
        typography.write(np.zeros((32, 32, 3), np.uint8), "x", TypoSpec(word="x", position="on-object"))
    # auto on an image that is not a scene: the centre
    auto = typography.write(np.zeros((32, 32, 3), np.uint8), "x", TypoSpec(word="x"))
    assert (auto.spec.x, auto.spec.y) == (0.5, 0.5)
    with pytest.raises(ValueError, match="unknown colour"):
        TypoSpec(colour="mauve")
    with pytest.raises(ValueError, match="opacity"):
        TypoSpec(opacity=0)


def test_wrong_class_words_are_seeded_and_never_the_label() -> None:
    classes = ["circle", "star", "heart"]
    labels = [0, 1, 2, 0, 1, 2, 0, 0]
    words = typography.attack_words(labels, classes, "wrong-class", seed=4)
    assert words == typography.attack_words(labels, classes, "wrong-class", seed=4)
    assert all(w != classes[y] and w in classes for w, y in zip(words, labels))
    assert typography.attack_words(labels, classes, "stop", seed=4) == ["stop"] * 8
    d = images.shapeworld(20, seed=0, image_size=64)
    a = typography.attack_set(d.images, d.labels, d.classes, TypoSpec(), seed=0, scenes=d.scenes)
    assert len(a.boxes) == 20 and 0 < a.summary()["mean_box_area"] < 1
    assert a.summary()["mean_postit_area"] == 0


def test_an_image_folder_is_read_squared_and_attacked(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for cls in ("golden_retriever", "tabby"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (40, 70, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "tabby" / "notes.txt").write_text("not an image")
    d = images.folder(tmp_path, 48)
    assert d.classes == ("golden retriever", "tabby") and d.images.shape == (6, 48, 48, 3)
    assert list(d.labels) == [0, 0, 0, 1, 1, 1]
    a = typography.attack_set(d.images, d.labels, d.classes, TypoSpec(position="random", postit=True), seed=1)
    assert a.words == ["tabby"] * 3 + ["golden retriever"] * 3
    for clean, att, box in zip(d.images, a.images, a.boxes):
        assert not (att != clean).any(-1)[_outside(box, 48)].any()
    assert (a.postit_area > 0).all()
    assert len(images.folder(tmp_path, 48, limit=4).labels) == 4
    with pytest.raises(FileNotFoundError):
        images.folder(tmp_path / "missing", 48)
