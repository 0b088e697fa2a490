"""l-inf PGD / APGD / FARE's embedding attack on CLIP-style models (clip.adversarial), and `safeglass clip attack`
(clip.attack_run): the perturbation stays in the ball and in [0, 1], attacks lower accuracy, APGD beats PGD at
equal steps on ShapeCLIP, eps 0 changes nothing, and the command writes a result with provenance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from clip_fixtures import shapeclip_backend

from safeglass.clip import adversarial as A
from safeglass.clip.backends import tiny_random
from safeglass.clip.config import parse_clip_config
from safeglass.clip.zeroshot import TextCache
from safeglass.schema import ConfigError

CLASSES = ("circle", "square", "triangle", "star")
TEMPLATES = ("a photo of a {}",)


def _images(b, n: int = 12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, b.image_size, b.image_size, 3), dtype=np.uint8)


def _own_labels(b, images: np.ndarray, emb) -> np.ndarray:
    # the model's own clean predictions as labels: clean accuracy is 1, so any flip is the attack's doing
    with torch.no_grad():
        return (A.image_encoder(b)(A.to_unit(images)) @ emb.T).argmax(-1).numpy()


@pytest.mark.parametrize("family", ["clip", "siglip"])
@pytest.mark.parametrize("method", ["pgd", "apgd"])
def test_the_perturbation_stays_in_the_ball_and_in_range(family, method) -> None:
    b = tiny_random(family, seed=1)
    emb = TextCache().class_embeddings(b, CLASSES, TEMPLATES)
    images = _images(b)
    x = A.to_unit(images)
    y = torch.as_tensor(_own_labels(b, images, emb))
    eps = 8 / 255
    loss = A.zero_shot_ce(A.image_encoder(b), emb, y, b.logit_scale())
    x_adv = A.attack(method, loss, x, eps, steps=6, seed=3)
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert float((x_adv - x).abs().max()) <= eps + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert float((x_adv - x).abs().max()) > eps / 2  # it moved
    # the attack raised the loss it maximises
    with torch.no_grad():
        assert float(loss(x_adv, torch.arange(len(x))).mean()) > float(loss(x, torch.arange(len(x))).mean())


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_adversarial_accuracy_is_at_most_clean_and_eps_zero_changes_nothing(family) -> None:
    b = tiny_random(family, seed=2)
    emb = TextCache().class_embeddings(b, CLASSES, TEMPLATES)
    images = _images(b, 16, seed=4)
    labels = _own_labels(b, images, emb)
    clean = A.robust_predictions(b, images, labels, emb, 0.0, 10, "pgd")
    assert (clean["predictions"] == labels).all()
    for method in A.METHODS:
        zero = A.robust_predictions(b, images, labels, emb, 0.0, 10, method)
        assert np.array_equal(zero["predictions"], clean["predictions"])
        assert np.allclose(zero["loss"], clean["loss"])
        adv = A.robust_predictions(b, images, labels, emb, 16 / 255, 10, method)
        assert (adv["predictions"] == labels).mean() < 1.0  # a random tiny model is far from robust at 16/255
        assert adv["loss"].mean() > clean["loss"].mean()


def test_apgd_reaches_at_least_pgds_loss_on_shapeclip() -> None:
    from safeglass.clip import images

    b = shapeclip_backend()
    data = images.shapeworld(32, 0, b.image_size)
    emb = TextCache().class_embeddings(b, data.classes, TEMPLATES)
    for eps in (1, 2):
        pgd = A.robust_predictions(b, data.images, data.labels, emb, eps / 255, 10, "pgd", seed=0)
        apgd = A.robust_predictions(b, data.images, data.labels, emb, eps / 255, 10, "apgd", seed=0)
        assert apgd["loss"].mean() >= pgd["loss"].mean()
        assert (apgd["predictions"] == data.labels).sum() <= (pgd["predictions"] == data.labels).sum() + 1


def test_apgd_checkpoints_follow_the_paper() -> None:
    # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06): 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, ...
    assert A.checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert A.checkpoints(10) == sorted(set(A.checkpoints(10))) and A.checkpoints(10)[0] == 3


def test_the_embedding_attack_moves_the_embedding() -> None:
    b = tiny_random("clip", seed=3)
    x = A.to_unit(_images(b, 8, seed=5))
    raw = A.image_encoder(b, normalize=False)
    with torch.no_grad():
        target = raw(x)
    loss = A.embedding_l2(raw, target)
    rows = torch.arange(len(x))
    with torch.no_grad():
        assert float(loss(x, rows).abs().max()) < 1e-8  # ||f(x) - f(x)|| = 0
    x_adv = A.pgd(loss, x, 4 / 255, 5, 1 / 255, seed=0)
    with torch.no_grad():
        assert float(loss(x_adv, rows).min()) > 0
        # a random point of the same ball moves it less than the attack
        rand = A._start(x, 4 / 255, 9, True)
        assert float(loss(x_adv, rows).mean()) > float(loss(rand, rows).mean())


def test_the_method_is_checked() -> None:
    b = tiny_random("clip")
    with pytest.raises(ValueError, match="unknown method"):
        A.attack("fgsm", lambda x, r: x.sum((1, 2, 3)), A.to_unit(_images(b, 2)), 1 / 255, 1)


def _cfg(**over):
    return {"model": {"random": "clip", "seed": 0}, "data": {"source": "shapeworld", "n": 16, "seed": 0,
                                                          "image_size": 32},
            "adversarial": {"eps": [4, 16], "steps": 5, "method": ["pgd", "apgd"]}, **over}


def test_clip_attack_writes_a_result_with_provenance(tmp_path: Path) -> None:
    from safeglass import api
    from safeglass.clip.attack_run import attack_table

    r = api.clip_attack(_cfg(), tmp_path)
    on_disk = json.loads((tmp_path / "clip-attack.json").read_text())
    assert on_disk["config"]["hash"] == r["config"]["hash"] and r["kind"] == "clip attack"
    assert r["model"]["source"] == "random" and r["seed"] == 0 and "torch" in r["versions"]
    assert [(a["method"], a["eps"]) for a in r["attacks"]] == [("pgd", 4), ("pgd", 16), ("apgd", 4), ("apgd", 16)]
    for a in r["attacks"]:
        assert a["accuracy"]["rate"] <= r["clean"]["rate"] + 1e-9
        assert a["accuracy"]["ci_low"] <= a["accuracy"]["rate"] <= a["accuracy"]["ci_high"]
    big = [a for a in r["attacks"] if a["eps"] == 16]
    assert all(a["mean_loss"] > min(x["mean_loss"] for x in r["attacks"] if x["eps"] == 4) - 1e-6 for a in big)
    assert "PGD-5 at 16/255" in attack_table(r)
    # a second call for the same config reads the finished result
    again = api.clip_attack(_cfg(), tmp_path)
    assert again["created"] == r["created"]


def test_the_adversarial_and_robust_blocks_are_checked_and_optional() -> None:
    base = {"model": {"random": "clip"}}
    cfg = parse_clip_config(base)
    assert cfg.adversarial is None and cfg.robust is None
    # an absent block does not enter the hash; a given one does
    assert parse_clip_config({**base, "adversarial": {"eps": [2]}}).hash != cfg.hash
    with pytest.raises(ConfigError, match="adversarial"):
        parse_clip_config({**base, "adversarial": {"eps": [2], "method": "fgsm"}}, "x.yaml")
    with pytest.raises(ConfigError, match="robust"):
        parse_clip_config({**base, "robust": {"method": "trades"}}, "x.yaml")
    with pytest.raises(ConfigError, match="organism"):
        parse_clip_config({"model": {"organism": "shapeclip-tecoa-eps3"}}, "x.yaml")
    assert parse_clip_config({"model": {"organism": "shapeclip-fare-eps2"}}).model == {
        "organism": "shapeclip-fare-eps2", "seed": 0}


def test_the_shipped_robust_config_is_tecoa_eps4s_recipe() -> None:
    from safeglass.clip.attack_run import settings_of
    from safeglass.clip.config import load_clip_config
    from safeglass.organisms.shapeclip_robust import VARIANTS

    cfg = load_clip_config(Path(__file__).resolve().parents[1] / "configs" / "clip-robust-shapeclip.yaml")
    assert cfg.hash == ROBUST_CONFIG_HASH
    assert settings_of(cfg) == VARIANTS["tecoa-eps4"]  # `clip robust-train` on it rebuilds shapeclip-tecoa-eps4


ROBUST_CONFIG_HASH = "916a6dbd526fa3e4"


def test_the_cli_attacks_and_swaps_in_an_organism(tmp_path: Path, capsys) -> None:
    import yaml

    from safeglass.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**_cfg(), "adversarial": {"eps": [8], "steps": 2, "method": "pgd"}}))
    assert main(["clip", "attack", str(cfg), "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "PGD-2 at 8/255" in out and (tmp_path / "a" / "clip-attack.json").is_file()
    # --organism replaces the model: the result names the organism and keys by another config hash
    small = tmp_path / "s.yaml"
    small.write_text(yaml.safe_dump({"model": {"organism": "shapeclip"}, "data": {"n": 8}, "templates": ["a {}"]}))
    assert main(["clip", "eval", str(small), "--out", str(tmp_path / "e"), "--organism", "shapeclip-fare-eps2",
                 "--no-progress", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["model"]["name"] == "shapeclip-fare-eps2" and r["config"]["raw"]["model"] == {
        "organism": "shapeclip-fare-eps2"}
    from safeglass.clip.config import load_clip_config

    assert r["config"]["hash"] != load_clip_config(small).hash
