"""Defense-Prefix: the learned token sits before the class name, only it trains (both towers and the packaged
model stay as they were), it raises ShapeCLIP's typographic accuracy on held-out images, and `clip defend` scores
it (with PAINT) beside Dyslexify by one scorer; the defenses config keeps its golden hash."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from clip_fixtures import shapeclip_backend
from conftest import ROOT

from safeglass import api
from safeglass.clip import images, prefix, scoring, typography
from safeglass.clip.backends import tiny_random
from safeglass.clip.config import load_clip_config, parse_clip_config
from safeglass.clip.dyslexify import correct
from safeglass.clip.run import table
from safeglass.clip.zeroshot import TextCache
from safeglass.schema import ConfigError

DEFENSES = ROOT / "configs" / "clip-shapeclip-defenses.yaml"
DEFENSES_HASH = "e75b6c92ad8e85cf"


@pytest.fixture(scope="module")
def shapeclip():
    return shapeclip_backend()


@pytest.fixture(scope="module")
def splits(shapeclip):
    out = []
    for split, n in (("fit", 150), ("test", 200)):
        d = images.shapeworld(n, seed=0, image_size=64, split=split)
        out.append((d, typography.attack_set(d.images, d.labels, d.classes, typography.TypoSpec(), 0, d.scenes)))
    return out


def test_the_token_goes_before_the_class_name(shapeclip) -> None:
    ids, att, mask = prefix.tokenize(shapeclip, [("a photo of a {}", "circle"), ("{}", "star"),
                                                 ("a photo of a large {}", "ring")])
    vocab = shapeclip.tokenizer.get_vocab()
    ph = prefix._placeholder(shapeclip.tokenizer)
    assert ph != shapeclip.tokenizer.eos_token_id
    w = [vocab[x] for x in ("a", "photo", "of", "circle", "star", "large", "ring")]
    bos, eos = shapeclip.tokenizer.bos_token_id, shapeclip.tokenizer.eos_token_id
    assert ids[0, :8].tolist() == [bos, w[0], w[1], w[2], w[0], ph, w[3], eos]
    assert ids[1, :4].tolist() == [bos, ph, w[4], eos] and att[1].sum() == 4
    assert ids[2, :9].tolist() == [bos, w[0], w[1], w[2], w[0], w[5], ph, w[6], eos]
    assert mask.sum(1).tolist() == [1, 1, 1] and mask[0, 5] and mask[1, 1] and mask[2, 6]


def test_the_token_moves_the_text_embedding_and_leaves_no_hook(shapeclip) -> None:
    emb = shapeclip.model.text_model.embeddings.token_embedding
    pairs = [("a photo of a {}", c) for c in ("circle", "star")]
    v = torch.zeros(emb.weight.shape[1], requires_grad=True)
    f = prefix.encode(shapeclip, v, pairs)
    plain = shapeclip.encode_text([t.format(c) for t, c in pairs])
    assert f.shape == plain.shape and not torch.allclose(f, plain, atol=1e-4)
    f.sum().backward()
    assert v.grad is not None and v.grad.abs().sum() > 0     # differentiable in the token
    assert not emb._forward_hooks                            # removed in finally
    # a token equal to the placeholder's own embedding is the plain model reading the placeholder there
    ph = prefix._placeholder(shapeclip.tokenizer)
    same = prefix.encode(shapeclip, emb.weight[ph].detach(), pairs)
    ids, att, _ = prefix.tokenize(shapeclip, pairs)
    with torch.no_grad():
        ref = shapeclip.model.get_text_features(input_ids=ids, attention_mask=att)
    ref = getattr(ref, "pooler_output", ref)
    assert torch.allclose(same, ref / ref.norm(dim=-1, keepdim=True), atol=1e-5)


def test_siglip_pads_the_prefixed_text_to_its_full_length() -> None:
    b = tiny_random("siglip", 0)
    ids, att, mask = prefix.tokenize(b, [("a photo of a {}", "circle")])
    assert ids.shape[1] == b.model.config.text_config.max_position_embeddings
    v = torch.randn(b.model.text_model.embeddings.token_embedding.weight.shape[1])
    assert prefix.class_embeddings(b, v, ["circle", "star"], ["a {}"]).shape[0] == 2


def test_only_the_token_trains_and_it_helps_on_held_out_images(shapeclip, splits) -> None:
    (fit, fit_att), (test, test_att) = splits
    before = {k: v.clone() for k, v in shapeclip.model.state_dict().items()}
    flags = [p.requires_grad for p in shapeclip.model.parameters()]
    settings = prefix.PrefixSettings(steps=40, lr=0.02, seed=0)
    templates = ["a photo of a {}"]
    got, trace = prefix.defend(shapeclip, fit, fit_att, test, test_att, templates, settings)
    after = shapeclip.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)               # the model is untouched
    assert [p.requires_grad for p in shapeclip.model.parameters()] == flags
    assert trace["history"][-1]["defense"] < trace["history"][0]["defense"]
    assert trace["identity_names"] == 54                                     # ShapeCLIP's words, specials out
    base = correct(shapeclip, test.images, test_att.images, test.labels, test.classes, templates, TextCache())
    s = scoring.score(base, got)
    assert s["typographic"]["rate"] > base[1].mean() + 0.1                   # held out: 200 unseen images
    assert s["clean_loss_points"] < 3
    # seeded: the same seed trains the same token, another seed another one
    a = prefix.train(shapeclip, fit.images[:40], fit_att.images[:40], fit.labels[:40], fit.classes, templates,
                     prefix.PrefixSettings(steps=3, seed=0))
    b = prefix.train(shapeclip, fit.images[:40], fit_att.images[:40], fit.labels[:40], fit.classes, templates,
                     prefix.PrefixSettings(steps=3, seed=0))
    c = prefix.train(shapeclip, fit.images[:40], fit_att.images[:40], fit.labels[:40], fit.classes, templates,
                     prefix.PrefixSettings(steps=3, seed=1))
    assert torch.equal(a.vector, b.vector) and not torch.equal(a.vector, c.vector)


def test_the_scorer_pairs_by_image() -> None:
    base = (np.array([1, 1, 1, 1], bool), np.array([0, 0, 1, 0], bool))
    same = scoring.score(base, base)
    assert same["recovered"] == 0 and same["clean_loss_points"] == 0
    better = scoring.score(base, (np.array([1, 1, 1, 0], bool), np.array([1, 1, 1, 0], bool)))
    assert better["recovered"] == pytest.approx(2 / 3, abs=1e-4) and better["clean_loss_points"] == 25
    assert not better["goal"]["met"]
    with pytest.raises(ValueError, match="other images"):
        scoring.score(base, (base[0][:3], base[1][:3]))


TINY = {"name": "tiny", "model": {"random": "clip", "seed": 0}, "data": {"n": 24, "seed": 0},
        "templates": ["a photo of a {}"],
        "defend": {"fit_n": 16, "patience": 2, "methods": ["dyslexify", "prefix", "paint"],
                   "prefix": {"steps": 3}, "paint": {"epochs": 1, "alphas": [0, 0.5, 1]}}}


def test_clip_defend_scores_every_method_beside_dyslexify(tmp_path) -> None:
    r = api.clip_defend(TINY, tmp_path / "out")
    assert list(r["methods"]) == ["dyslexify", "prefix", "paint"]
    # dyslexify's row is the same score as the top-level result that existed before
    d = r["methods"]["dyslexify"]
    assert d["heads"] == r["fit"]["kept"] and d["recovered"] == r["recovered"]
    assert d["clean"] == r["test"]["clean_ablated"] and d["paired"] == r["paired"]
    assert r["undefended"]["clean"] == r["test"]["clean"]
    for m in r["methods"].values():
        assert {"clean", "typographic", "recovered", "clean_loss_points", "paired", "goal"} <= set(m)
        assert m["clean"]["n"] == 24
    assert r["methods"]["paint"]["alpha"] in (0, 0.5, 1) and len(r["methods"]["paint"]["curve"]) == 3
    text = table(r)
    assert "prefix: clean / typographic" in text and "paint: recovered, clean loss" in text
    # prefix alone: no head search
    alone = api.clip_defend({**TINY, "defend": {**TINY["defend"], "methods": ["prefix"]}}, tmp_path / "p")
    assert "fit" not in alone and list(alone["methods"]) == ["prefix"]
    assert "prefix: clean" in table(alone)


def test_the_defenses_config_keeps_its_hash_and_defaults_keep_the_old_one(tmp_path) -> None:
    cfg = load_clip_config(DEFENSES)
    assert cfg.defend["methods"] == ["dyslexify", "prefix", "paint"]
    assert cfg.hash == DEFENSES_HASH
    shipped = load_clip_config(ROOT / "configs" / "clip-shapeclip.yaml")
    spelled = {**shipped.raw, "defend": {**shipped.raw["defend"], "methods": ["dyslexify"]}}
    assert parse_clip_config(spelled).hash == shipped.hash        # the default, written out, is the same config
    assert parse_clip_config({**spelled, "defend": {**spelled["defend"], "methods": ["prefix"]}}).hash != shipped.hash


@pytest.mark.parametrize(("defend", "field"), [({"methods": ["prefix", "prefix"]}, "defend.methods"),
                                               ({"methods": ["fare"]}, "defend.methods"),
                                               ({"paint": {"alphas": [0.5, 1]}}, "defend.paint.alphas"),
                                               ({"prefix": {"stpes": 3}}, "defend.prefix.stpes")])
def test_a_bad_defend_block_names_the_field(defend, field) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse_clip_config({**TINY, "defend": defend}, "cfg.yaml")
