"""TeCoA / FARE fine-tuning (clip.robust) and the robust ShapeCLIP organisms (organisms.shapeclip_robust): only the
vision tower trains, TeCoA lowers the adversarial loss of a learnable task, a killed run resumes to the same weights,
and the packaged organisms load by name with ShapeCLIP's text tower and their own vision tower."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import require

from safeglass.clip import adversarial as A
from safeglass.clip import robust as R
from safeglass.clip.backends import CLIP_ORGANISMS, load_backend, tiny_random
from safeglass.clip.zeroshot import TextCache
from safeglass.organisms import registry

CLASSES = ("circle", "star")
TEMPLATES = ("a photo of a {}",)
ROBUST = CLIP_ORGANISMS[1:]


def _task(b, n: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """A trivially learnable task: dark images are circles, bright ones stars."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2
    base = np.where(labels[:, None, None, None] == 0, 40, 215)
    noise = rng.integers(-30, 31, (n, b.image_size, b.image_size, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8), labels


def _adv_loss(b, model, images, labels, eps: float = 4 / 255) -> float:
    emb = TextCache().class_embeddings(b, CLASSES, TEMPLATES)
    loss = A.zero_shot_ce(A.image_encoder(b, model), emb, torch.as_tensor(labels), b.logit_scale())
    x = A.to_unit(images)
    x_adv = A.pgd(loss, x, eps, 10, eps / 4, seed=0)
    with torch.no_grad():
        return float(loss(x_adv, torch.arange(len(x))).mean())


@pytest.mark.parametrize("family", ["clip", "siglip"])
@pytest.mark.parametrize("method", R.ROBUST_METHODS)
def test_a_training_step_changes_only_the_vision_tower(tmp_path: Path, family, method) -> None:
    b = tiny_random(family, seed=0)
    images, labels = _task(b, 8)
    before = {k: v.clone() for k, v in b.model.state_dict().items()}
    s = R.RobustSettings(method=method, eps=4, attack_steps=2, train_steps=1, batch_size=8, lr=1e-3, warmup=0)
    out = R.train(b, s, images, labels if method == "tecoa" else None, CLASSES, TEMPLATES, tmp_path)
    after = out["model"].state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(R.VISION_PREFIXES) for k in changed)
    assert any(k.startswith("vision_model.encoder") for k in changed)
    # the backend's own model is untouched (training works on a copy)
    assert all(torch.equal(before[k], v) for k, v in b.model.state_dict().items())


def test_tecoa_lowers_the_adversarial_loss_of_a_learnable_task(tmp_path: Path) -> None:
    b = tiny_random("clip", seed=0)
    images, labels = _task(b, 32)
    start = _adv_loss(b, b.model, images, labels)
    s = R.RobustSettings(method="tecoa", eps=4, attack_steps=3, train_steps=30, batch_size=16, lr=3e-3, warmup=3)
    out = R.train(b, s, images, labels, CLASSES, TEMPLATES, tmp_path)
    end = _adv_loss(b, out["model"], images, labels)
    assert end < 0.5 * start, (start, end)
    hist = [h["loss"] for h in out["history"]]
    assert np.mean(hist[-5:]) < np.mean(hist[:5])


def test_fare_needs_no_labels_and_pulls_the_adversarial_embedding_back(tmp_path: Path) -> None:
    b = tiny_random("clip", seed=1)
    images, _ = _task(b, 32)
    s = R.RobustSettings(method="fare", eps=8, attack_steps=3, train_steps=25, batch_size=16, lr=3e-3, warmup=3)
    out = R.train(b, s, images, None, CLASSES, TEMPLATES, tmp_path)
    hist = [h["loss"] for h in out["history"]]
    assert np.mean(hist[-5:]) < np.mean(hist[:5])
    with pytest.raises(ValueError, match="supervised"):
        R.train(b, R.RobustSettings(method="tecoa"), images, None, CLASSES, TEMPLATES, tmp_path / "t")


class Killed(Exception):
    pass


@pytest.mark.parametrize("method", R.ROBUST_METHODS)
def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path: Path, method) -> None:
    b = tiny_random("clip", seed=0)
    images, labels = _task(b, 16)
    s = R.RobustSettings(method=method, eps=4, attack_steps=2, train_steps=6, batch_size=8, lr=1e-3, warmup=2,
                         checkpoint_every=2)
    whole = R.train(b, s, images, labels, CLASSES, TEMPLATES, tmp_path / "whole")

    def kill_after_step_5(line: str) -> None:
        if "step 5/6" in line:  # step 5 is done but not checkpointed: the resumed run redoes it
            raise Killed

    with pytest.raises(Killed):
        R.train(b, s, images, labels, CLASSES, TEMPLATES, tmp_path / "killed", kill_after_step_5)
    assert json.loads((tmp_path / "killed" / R.CHECKPOINT_META).read_text())["step"] == 4
    lines: list[str] = []
    resumed = R.train(b, s, images, labels, CLASSES, TEMPLATES, tmp_path / "killed", lines.append)
    assert any("resuming at step 4" in ln for ln in lines)
    a, c = R.vision_state(whole["model"]), R.vision_state(resumed["model"])
    assert a.keys() == c.keys() and all(torch.equal(a[k], c[k]) for k in a)
    assert resumed["history"] == whole["history"]
    # other settings do not resume from this checkpoint
    other = R.RobustSettings(**{**s.__dict__, "lr": 2e-3})
    lines.clear()
    R.train(b, other, images, labels, CLASSES, TEMPLATES, tmp_path / "killed", lines.append)
    assert not any("resuming" in ln for ln in lines)


def test_the_vision_tower_round_trips_through_safetensors(tmp_path: Path) -> None:
    b = tiny_random("clip", seed=0)
    images, labels = _task(b, 8)
    out = R.train(b, R.RobustSettings(eps=4, attack_steps=1, train_steps=2, batch_size=8, lr=1e-2, warmup=0),
                  images, labels, CLASSES, TEMPLATES, tmp_path)
    sha = R.save_vision(out["model"], tmp_path / "v.safetensors")
    assert len(sha) == 64
    fresh = tiny_random("clip", seed=0).model
    R.load_vision(fresh, tmp_path / "v.safetensors")
    x = A.to_unit(images)
    with torch.no_grad():
        assert torch.allclose(A.image_encoder(b, fresh)(x), A.image_encoder(b, out["model"])(x))
    with pytest.raises(ValueError, match="does not fit"):
        R.load_vision(tiny_random("siglip", seed=0).model, tmp_path / "v.safetensors")


def test_the_robust_organisms_are_registered() -> None:
    for name in ROBUST:
        o = registry.get(name)
        assert o.weights_file == "vision.safetensors" and o.profiles == (name.removeprefix("shapeclip-"),)
        assert o.module().VARIANTS[o.profiles[0]].eps == int(name[-1])


def _built(name: str) -> Path:
    d = registry.PACKAGE_WEIGHTS / name
    require((d / "vision.safetensors").is_file(), f"{name}'s packaged weights",
            "they ship in src/safeglass/organisms/weights/" + name)
    return d


@pytest.mark.parametrize("name", ROBUST)
def test_a_packaged_robust_organism_loads_with_shapeclips_text_tower(name) -> None:
    d = _built(name)
    card = json.loads((d / "card.json").read_text())
    assert (d / "vision.safetensors").stat().st_size < 3_000_000
    from safeglass.hashing import file_hash

    assert file_hash(str(d / "vision.safetensors"), length=64) == card["weights_sha256"]
    base_card = registry.card("shapeclip", registry.PACKAGE_WEIGHTS / "shapeclip")
    assert card["components"]["shapeclip"]["sha256"] == base_card["weights_sha256"]
    for key in ("zero_shot_clean", "zero_shot_typographic", "pgd10_robust_eps2", "pgd10_robust_eps4"):
        assert 0 <= card["measured"][key] <= 1
    b = load_backend({"organism": name, "path": str(d)})
    base = load_backend({"organism": "shapeclip"})
    assert b.identity["name"] == name and b.identity["weights"] != base.identity["weights"]
    texts = ["a photo of a circle", "a photo of a star"]
    assert torch.allclose(b.encode_text(texts), base.encode_text(texts))
    imgs = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert not torch.allclose(b.encode_images(imgs), base.encode_images(imgs))


def test_a_spent_time_budget_stops_training_and_says_so(tmp_path: Path) -> None:
    b = tiny_random("clip", seed=0)
    images, labels = _task(b, 8)
    said: list[str] = []
    out = R.train(b, R.RobustSettings(train_steps=5, batch_size=4, time_budget_s=1e-9), images, labels, CLASSES,
                  TEMPLATES, tmp_path, said.append)
    assert out["stopped_early"] == 0 and out["steps_done"] == 0 and out["history"] == []
    assert any("time budget" in s for s in said)


def test_clip_robust_train_writes_a_vision_tower_and_card_for_any_clip(tmp_path: Path) -> None:
    from safeglass import api

    cfg = {"model": {"random": "siglip", "seed": 0}, "data": {"source": "shapeworld", "n": 16, "seed": 0,
                                                            "image_size": 32},
           "robust": {"method": "fare", "eps": 4, "attack_steps": 1, "train_steps": 2, "batch_size": 8},
           "seed": 3}
    card = api.clip_robust_train(cfg, tmp_path)
    assert card["recipe"]["method"] == "fare" and card["recipe"]["seed"] == 3 and card["steps_done"] == 2
    assert card["model"]["source"] == "random" and card["config"]["hash"]
    fresh = tiny_random("siglip", seed=0).model
    R.load_vision(fresh, tmp_path / R.VISION_WEIGHTS)
    assert json.loads((tmp_path / "card.json").read_text())["weights_sha256"] == card["weights_sha256"]
    with pytest.raises(ValueError, match="start from shapeclip"):
        api.clip_robust_train({**cfg, "model": {"organism": "shapeclip-fare-eps2"}}, tmp_path / "x")
