"""Streams: stratified split, task splits, ESRM-style contamination per class and per task with hidden provenance,
image folders both ways, and the class-conditional generator (packaged weights, determinism, conditioning)."""

from __future__ import annotations

import numpy as np
import pytest

from safeglass.continual import generator, streams


@pytest.fixture(scope="module")
def digits():
    return streams.digits()


def fake_sampler(cls: int, n: int, seed: int) -> np.ndarray:
    # synthetic images marked by their value: 0.5 + class / 100, so a test can tell them and their class apart
    return np.full((n, 64), 0.5 + cls / 100, np.float32)


def test_split_is_stratified_disjoint_and_fixed(digits) -> None:
    tr, te = streams.split(digits, 0.25, 0)
    assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == len(digits.y)
    for c in range(10):
        n = (digits.y == c).sum()
        assert abs((digits.y[te] == c).sum() - 0.25 * n) <= 1
    tr2, _ = streams.split(digits, 0.25, 0)
    tr3, _ = streams.split(digits, 0.25, 1)
    assert np.array_equal(tr, tr2) and not np.array_equal(tr, tr3)


def test_task_classes_and_their_errors() -> None:
    assert streams.task_classes(10, 5) == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    assert streams.task_classes(4, 2, [3, 1, 0, 2]) == [(3, 1), (0, 2)]
    with pytest.raises(ValueError, match="permutation"):
        streams.task_classes(4, 2, [0, 0, 1, 2])
    with pytest.raises(ValueError, match="tasks"):
        streams.task_classes(4, 5)


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 1.0])
def test_contamination_replaces_that_share_of_each_class(digits, ratio) -> None:
    s = streams.make_stream(digits, 5, sampler=fake_sampler, ratio=ratio, seed=3)
    for task in s.tasks:
        for c in task.classes:
            mine = task.y_train == c
            assert task.synthetic[mine].sum() == round(ratio * mine.sum())
            # the synthetic images are the sampler's, of the right class; the real ones are untouched digits
            assert np.allclose(task.x_train[mine & task.synthetic], 0.5 + c / 100)
            assert not np.any(np.all(task.x_train[mine & ~task.synthetic] == 0.5 + c / 100, axis=1))
        assert set(np.unique(task.y_test)) == set(task.classes)
    assert s.meta["n_synthetic"] == sum(int(t.synthetic.sum()) for t in s.tasks)


def test_per_class_beats_per_task_beats_ratio(digits) -> None:
    s = streams.make_stream(digits, 5, sampler=fake_sampler, ratio=0.5, per_task=[1.0, 0.0, 0.0, 0.0, 0.2],
                            per_class={9: 0.0}, seed=0)
    share = {c: t.synthetic[t.y_train == c].mean() for t in s.tasks for c in t.classes}
    assert share[0] == share[1] == 1.0 and share[2] == 0.0
    assert abs(share[8] - 0.2) < 0.02 and share[9] == 0.0


def test_a_contaminated_stream_needs_a_source_and_seeds_change_it(digits) -> None:
    with pytest.raises(ValueError, match="synthetic source"):
        streams.make_stream(digits, 5, ratio=0.5)
    a = streams.make_stream(digits, 5, sampler=fake_sampler, ratio=0.5, seed=0)
    b = streams.make_stream(digits, 5, sampler=fake_sampler, ratio=0.5, seed=0)
    c = streams.make_stream(digits, 5, sampler=fake_sampler, ratio=0.5, seed=1)
    assert np.array_equal(a.tasks[0].synthetic, b.tasks[0].synthetic)
    assert not np.array_equal(a.tasks[0].synthetic, c.tasks[0].synthetic)
    # the same test sets whatever the seed: only the training stream changes
    assert np.array_equal(a.tasks[2].x_test, c.tasks[2].x_test)


def test_folder_round_trip(digits, tmp_path) -> None:
    streams.write_folder(digits.x[:30], digits.y[:30], digits.classes, (8, 8), tmp_path, scale=2)
    back = streams.folder(tmp_path, image_size=8)
    assert back.classes == tuple(sorted({str(int(v)) for v in digits.y[:30]}))
    assert len(back.y) == 30 and back.x.shape == (30, 64)
    # 8 px written at 2x and read back at 8 px: each image comes back within rounding (matched by its total ink)
    assert np.abs(np.sort(back.x.sum(1)) - np.sort(digits.x[:30].sum(1))).max() < 0.5


def test_shapeworld_source_is_small_and_labelled_by_shape() -> None:
    s = streams.shapeworld(40, 0, 16)
    assert s.x.shape == (40, 16 * 16 * 3) and 0 <= s.x.min() and s.x.max() <= 1
    assert len(s.classes) >= 2 and s.y.max() < len(s.classes)


def test_packaged_generator_is_conditional_and_deterministic(digits) -> None:
    model, card = generator.load("cvae-digits")
    assert card["architecture"]["dim"] == 64 and "training" in card
    a, b = model.sample(3, 20, seed=7), model.sample(3, 20, seed=7)
    assert np.array_equal(a, b) and not np.array_equal(a, model.sample(3, 20, seed=8))
    # conditioning works: each class's samples lie nearer that class's real mean than any other class's mean
    tr, _ = streams.split(digits)
    means = np.stack([digits.x[tr][digits.y[tr] == c].mean(0) for c in range(10)])
    hits = [np.mean(np.argmin(((model.sample(c, 50, 1)[:, None] - means[None]) ** 2).sum(-1), 1) == c)
            for c in range(10)]
    assert np.mean(hits) > 0.8


def test_a_generator_trains_on_the_fly_and_loss_falls() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.random((40, 16)) * 0.2, 0.8 + rng.random((40, 16)) * 0.2]).astype(np.float32)
    y = np.repeat([0, 1], 40)
    _, short = generator.train_cvae(x, y, 2, epochs=1, seed=0, hidden=32, latent=2)
    model, long = generator.train_cvae(x, y, 2, epochs=40, seed=0, hidden=32, latent=2)
    assert long["final_loss_per_image"] < short["final_loss_per_image"]
    assert model.sample(0, 10, 0).mean() < 0.5 < model.sample(1, 10, 0).mean()
