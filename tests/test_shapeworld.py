import dataclasses
import itertools

import numpy as np
import pytest

from safeglass.data.shapeworld import render as R
from safeglass.data.shapeworld.tasks import answer_correct, to_samples
from safeglass.data.shapeworld.text import captions, number, vqa
from safeglass.data.shapeworld.world import (
    COLOURS,
    SHAPES,
    Background,
    Obj,
    Scene,
    ShapeWorld,
    ShapeWorldConfig,
    generate,
    render,
    render_batch,
    sample_batch,
    sample_scene,
    with_text,
    without_text,
    wrong_label,
)

TEXT = {"p_text": 0.5, "p_occluder": 0.3}


def test_vocabulary_is_rich_enough():
    assert len(SHAPES) >= 8 and len(COLOURS) >= 8
    assert {"circle", "square", "triangle", "star", "cross", "heart", "diamond", "ellipse", "hexagon"} <= set(SHAPES)


def test_same_seed_same_bytes_different_seed_different():
    a = generate(40, seed=3, config=TEXT)
    b = ShapeWorld(seed=3, config=TEXT).generate(40)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    c = generate(40, seed=4, config=TEXT)
    assert not np.array_equal(a["images"], c["images"])


def test_stream_does_not_depend_on_batch_size():
    cfg = ShapeWorldConfig(**TEXT)
    rng = np.random.default_rng(9)
    parts = [sample_batch(n, rng, cfg, masks=True) for n in (1, 6, 13)]
    whole = sample_batch(20, np.random.default_rng(9), cfg, masks=True)
    assert np.array_equal(np.concatenate([p["images"] for p in parts]), whole["images"])
    assert np.array_equal(np.concatenate([p["masks"] for p in parts]), whole["masks"])


def test_render_is_pure_and_cache_independent():
    scenes = ShapeWorld(seed=1, config=TEXT).scenes(30)
    first = [render(s, 64)[0] for s in scenes]
    R.clear_caches()
    for s, img in zip(reversed(scenes), reversed(first)):
        assert np.array_equal(render(s, 64)[0], img)


def test_golden_bytes_stay_put():
    # A checksum of a fixed world: if this moves, images drawn by older runs are no longer reproducible.
    import hashlib

    imgs = generate(16, seed=0, config={"p_text": 0.0, "p_occluder": 0.3}, masks=True)
    digest = hashlib.sha256(imgs["images"].tobytes() + imgs["masks"].tobytes()).hexdigest()[:16]
    assert digest == GOLDEN, digest


GOLDEN = "c82f485ccc9e65d9"


def _solid(scene: Scene) -> Scene:
    return dataclasses.replace(scene, objects=tuple(dataclasses.replace(o, texture="solid") for o in scene.objects))


def _dilate(m: np.ndarray) -> np.ndarray:
    out = m.copy()
    for dy, dx in itertools.product((-1, 0, 1), repeat=2):
        out |= np.roll(np.roll(m, dy, 0), dx, 1)
    return out


def test_masks_match_the_drawn_pixels():
    world = ShapeWorld(seed=2, config={"p_occluder": 0.3, "p_text": 0.3})
    checked = 0
    for scene in world.scenes(60):
        scene = _solid(scene)
        img, m = render(scene, 64)
        assert m.ids.dtype == np.uint8 and m.ids.shape == (64, 64)
        # Text is anti-aliased and translucent: its fringe tints objects without hiding them, so leave it out.
        near_text = _dilate(m.text)
        for i, o in enumerate(scene.objects):
            assert m.object(i).any(), f"object {i} ({o.shape}) invisible"
            px = img[m.object(i) & ~near_text]
            assert len(px) > 0 and np.all(px == COLOURS[o.colour]), (i, o)
            checked += 1
        # What hides an object takes its pixels out of the id map.
        assert not (m.ids.astype(bool) & m.occluder).any()
        assert not (m.ids.astype(bool) & m.postit).any()
        vis = m.visible_fraction()
        assert ((vis > 0) & (vis <= 1)).all()
        if not scene.occluders and scene.text is None:
            assert (vis == 1).all()
    assert checked > 80


def test_textured_objects_use_their_colour_and_its_shade():
    obj = Obj("square", "red", "large", 0.5, 0.5, 0.25, 0, "striped", 0)
    for texture in ("striped", "dotted"):
        scene = Scene((dataclasses.replace(obj, texture=texture),), Background("plain", "white"))
        img, m = render(scene, 64)
        px = img[m.object(0)]
        kinds = {tuple(p) for p in px}
        assert tuple(COLOURS["red"]) in kinds and len(kinds) == 2
        assert (np.all(px == COLOURS["red"], axis=1)).mean() > 0.4


def test_all_shapes_distinguishable_at_same_size_and_place():
    masks = {}
    for shape in SHAPES:
        scene = Scene((Obj(shape, "red", "medium", 0.5, 0.5, 0.15),), Background("plain", "white"))
        masks[shape] = render(scene, 64)[1].object(0)
        assert masks[shape].sum() > 20
    for a, b in itertools.combinations(SHAPES, 2):
        assert (masks[a] != masks[b]).sum() >= 10, (a, b)
    # Rotation must not turn one class into another: a diamond is a rhombus, never a square.
    square = [render(Scene((Obj("square", "red", "large", 0.5, 0.5, 0.22, a),)), 64)[1].object(0)
              for a in range(-45, 46, 15)]
    diamond = render(Scene((Obj("diamond", "red", "large", 0.5, 0.5, 0.22, 0),)), 64)[1].object(0)
    assert all((s != diamond).sum() > 40 for s in square)


def test_captions_and_vqa_agree_with_the_scene():
    world = ShapeWorld(seed=5, config={"p_text": 0.4, "max_objects": 4})
    kinds_seen = set()
    for scene in world.scenes(200):
        caps = captions(scene)
        art = "an" if scene.main.shape[0] in "aeiou" else "a"
        assert len(caps) >= 3 and f"a photo of {art} {scene.main.shape}" in caps
        for o in scene.objects:
            assert o.colour in caps[0] and o.shape in caps[0]
        assert scene.background.colour in caps[0]
        for qa in vqa(scene):
            kinds_seen.add(qa.kind)
            q = qa.question
            if q.startswith("How many shapes"):
                assert qa.answer == number(len(scene.objects))
            elif q.startswith("How many"):
                shape = next(s for s in SHAPES if f" {s}" in q)
                assert qa.answer == number(scene.count(shape))
            elif q.startswith("Is there"):
                shape = next(s for s in SHAPES if f" {s} " in q)
                assert qa.answer == ("yes" if scene.count(shape) else "no")
            elif q.startswith("What shape"):
                assert qa.answer == scene.main.shape
            elif q.startswith("What colour is the "):
                shape = q.removeprefix("What colour is the ").rstrip("?")
                assert [o.colour for o in scene.objects if o.shape == shape] == [qa.answer]
            elif q.startswith("Where is"):
                ref = q.removeprefix("Where is the ").rstrip("?").split()
                hits = [o for o in scene.objects if o.shape == ref[-1] and (len(ref) == 1 or o.colour == ref[0])]
                assert len(hits) == 1 and hits[0].region == qa.answer
            elif q.startswith("What word"):
                assert qa.answer == scene.text.word
    assert {"shape", "colour", "count", "exists", "where", "size", "texture", "relation", "text"} <= kinds_seen


def test_count_scene_caption():
    objs = tuple(Obj("square", "green", "small", x, 0.5, 0.1) for x in (0.2, 0.5, 0.8))
    scene = Scene(objs, Background("plain", "blue"))
    assert captions(scene)[:2] == ["three green squares on a blue background", "three green squares"]
    single = Scene((Obj("circle", "red", "small", 0.2, 0.2, 0.1),), Background("plain", "blue"))
    assert captions(single)[0] == "a small red circle on a blue background"


def test_text_is_drawn_masked_and_removable():
    base = Scene((Obj("circle", "red", "large", 0.5, 0.6, 0.22),), Background("plain", "white"))
    plain, _ = render(base, 64)
    for font, postit in itertools.product(("sans", "serif", "mono"), (False, True)):
        scene = with_text(base, wrong_label(base, 0), font=font, postit=postit, position="top")
        img, m = render(scene, 64)
        assert m.text.sum() > 10
        assert (img[m.text] != plain[m.text]).any(axis=1).mean() > 0.9
        assert m.postit.any() == postit
        assert np.array_equal(render(without_text(scene), 64)[0], plain)
    # Long words shrink to fit instead of running off the image.
    img, m = render(with_text(base, "a very long phrase indeed", size=0.3), 64)
    assert m.text.any() and not m.text[:, 0].any() and not m.text[:, -1].any()


def test_wrong_label_is_wrong():
    for scene in ShapeWorld(seed=7).scenes(50):
        w = wrong_label(scene, 1)
        assert w in SHAPES and w not in {o.shape for o in scene.objects}


def test_batch_arrays():
    b = ShapeWorld(seed=0, config=TEXT).sample_batch(32, masks=True)
    assert b["images"].shape == (32, 64, 64, 3) and b["images"].dtype == np.uint8
    assert b["masks"].shape == (32, 64, 64) and b["text_masks"].dtype == bool
    assert ((0 <= b["labels"]) & (b["labels"] < len(SHAPES))).all()
    assert (b["obj_shapes"][:, 0] == b["labels"]).all()
    assert (b["n_objects"] >= 1).all() and b["text_present"].any() and not b["text_present"].all()
    assert ((b["obj_visible"] > 0) == (b["obj_shapes"] >= 0)).all()
    for i in range(32):  # every object that exists has pixels in the id map
        assert set(range(1, b["n_objects"][i] + 1)) >= set(np.unique(b["masks"][i])) - {0}
    no_masks = render_batch(ShapeWorld(seed=0, config=TEXT).scenes(4))
    assert "masks" not in no_masks


def test_config_validation():
    with pytest.raises(ValueError, match="unknown"):
        ShapeWorldConfig(shapes=("circle", "blob"))
    with pytest.raises(ValueError, match="unknown keys"):
        ShapeWorldConfig.coerce({"p_txt": 1})
    scene = sample_scene({"shapes": ["star"], "max_objects": 1}, 0)
    assert scene.main.shape == "star" and len(scene.objects) == 1


def test_scene_round_trips_through_dict():
    for scene in ShapeWorld(seed=11, config=TEXT).scenes(20):
        assert Scene.from_dict(scene.to_dict()) == scene


def test_other_resolutions():
    scene = ShapeWorld(seed=0, config=TEXT).scene()
    for size in (32, 96, 224):
        img, m = render(scene, size)
        assert img.shape == (size, size, 3) and (m.ids > 0).any()


def test_to_samples_for_the_runner():
    samples = list(to_samples(12, seed=0, per_image=2))
    assert len(samples) == 24 and len({s.id for s in samples}) == 24
    s = samples[0]
    assert s.images and s.images[0].pil().size == (64, 64) and s.kind == "benign" and s.source == "shapeworld"
    assert answer_correct(f"It is {s.metadata['answer']}.", s)
    again = list(to_samples(12, seed=0, per_image=2))
    assert [x.content_hash() for x in again] == [x.content_hash() for x in samples]
    attacked = list(to_samples(6, seed=0, typographic=True, kinds=("shape",)))
    assert all(a.metadata["text"] not in (None, a.metadata["label"]) for a in attacked)


def test_answer_matching():
    s = next(iter(to_samples(1, seed=0, kinds=("where",), config={"max_objects": 1})))
    region = s.metadata["answer"]
    assert answer_correct(f"In the {region}.", s)
    wrong = "top right" if region != "top right" else "bottom left"
    assert not answer_correct(f"It is at the {wrong}", s)


def test_speed_smoke():
    out = sample_batch(200, 0, {"p_text": 0.5, "p_occluder": 0.2}, masks=True)
    assert out["images"].shape[0] == 200


def test_registry_loader_gives_a_runnable_dataset():
    from safeglass.registry import registry

    ds = registry("datasets").get("shapeworld-vqa")(limit=5, n=50, seed=3, typographic=True)
    assert len(ds) == 5 and ds.name == "shapeworld-vqa-typo" and ds.provenance["seed"] == 3
    assert all(s.images and s.kind == "benign" and s.metadata["answer"] for s in ds)
    again = registry("datasets").get("shapeworld-vqa")(limit=5, n=50, seed=3, typographic=True)
    assert [s.content_hash() for s in ds] == [s.content_hash() for s in again]
