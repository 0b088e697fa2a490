"""Glasses from expertise: AurA, Damp, Det0 and SGM factors, never amplification, site selection,
files and content hash."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from safeglass.neurons.expertise import Expertise
from safeglass.neurons.glasses import Glasses
from safeglass.neurons.recording import SiteSlice

AUC0 = [0.2, 0.45, 0.5, 0.6, 0.75, 1.0]
AUC1 = [0.55, 0.9, 0.35, 0.5, 0.8, 0.65]
VIS = [0.95, 0.1, 0.7, 0.5]


def _expertise(vision: bool = False) -> Expertise:
    layout = [SiteSlice("lm.mlp.0", "model.layers.0.mlp.down_proj", 0, 6, 0, "language_model"),
              SiteSlice("lm.mlp.1", "model.layers.1.mlp.down_proj", 6, 6, 1, "language_model")]
    values = AUC0 + AUC1
    if vision:
        layout.append(SiteSlice("vision.mlp.0", "model.visual.blocks.0.mlp.fc2", 12, 4, 0, "vision_tower"))
        values = values + VIS
    return Expertise(np.array(values), tuple(layout), {"span": "response", "target": {"weights": "w"}})


def test_aura_is_one_minus_gini_above_half():
    g = Glasses.aura(_expertise())
    np.testing.assert_allclose(g.alphas["lm.mlp.0"], [1, 1, 1, 0.8, 0.5, 0.0], atol=1e-7)
    np.testing.assert_allclose(g.alphas["lm.mlp.1"], [0.9, 0.2, 1, 1, 0.4, 0.7], atol=1e-7)
    assert g.alphas["lm.mlp.0"].dtype == np.float32 and g.n_dampened == 7 and g.method == "aura"
    assert g.provenance["target"] == {"weights": "w"} and g.provenance["expertise_hash"] == _expertise().hash


def test_damp_and_det0_pick_the_global_top_k():
    d = Glasses.damp(_expertise(), k=3, alpha=0.25)
    assert d.alphas["lm.mlp.0"].tolist() == [1, 1, 1, 1, 1, 0.25]   # 1.0
    assert d.alphas["lm.mlp.1"].tolist() == [1, 0.25, 1, 1, 0.25, 1]  # 0.9, 0.8
    z = Glasses.det0(_expertise(), k=4)
    assert z.alphas["lm.mlp.0"].tolist() == [1, 1, 1, 1, 0, 0] and z.n_dampened == 4
    assert Glasses.det0(_expertise(), k=0).n_dampened == 0
    with pytest.raises(ValueError, match="k must be"):
        Glasses.det0(_expertise(), k=13)
    with pytest.raises(ValueError, match="alpha must lie"):
        Glasses.damp(_expertise(), k=2, alpha=1.5)


def test_sgm_curves_strength_and_layers():
    exp = _expertise()
    linear = Glasses.sgm(exp)
    for site in ("lm.mlp.0", "lm.mlp.1"):  # strength 1, linear, threshold 0.5 is AurA
        np.testing.assert_array_equal(linear.alphas[site], Glasses.aura(exp).alphas[site])
    gini = np.clip(2 * (np.array(AUC0) - 0.5), 0, 1)
    sq = Glasses.sgm(exp, strength=0.5, curve="sqrt")
    np.testing.assert_allclose(sq.alphas["lm.mlp.0"], 1 - 0.5 * np.sqrt(gini), atol=1e-7)
    square = Glasses.sgm(exp, curve="square")
    np.testing.assert_allclose(square.alphas["lm.mlp.0"], 1 - gini ** 2, atol=1e-7)
    strong = Glasses.sgm(exp, strength=3.0)  # 1 - 3 * 0.6 < 0: clipped to fully off, not negative
    assert strong.alphas["lm.mlp.1"].min() == 0.0 and (strong.alphas["lm.mlp.1"] >= 0).all()
    only1 = Glasses.sgm(exp, layers=[1])
    assert [s.name for s in only1.sites] == ["lm.mlp.1"] and only1.params["layers"] == [1]
    high = Glasses.sgm(exp, min_auroc=0.7)
    assert high.alphas["lm.mlp.0"][3] == 1.0 and high.alphas["lm.mlp.0"][4] == 0.5
    with pytest.raises(ValueError, match="layers"):
        Glasses.sgm(exp, layers=[5])
    with pytest.raises(ValueError, match="curve"):
        Glasses.sgm(exp, curve="cubic")
    with pytest.raises(ValueError, match="strength"):
        Glasses.sgm(exp, strength=-0.5)


def test_a_low_threshold_cannot_amplify():
    # the public port's bug: threshold 0.3 amplified neurons with AUROC in (0.3, 0.5]
    exp = _expertise()
    for curve in ("linear", "sqrt", "square"):
        g = Glasses.sgm(exp, min_auroc=0.3, curve=curve, strength=2.0)
        for site in ("lm.mlp.0", "lm.mlp.1"):
            a = g.alphas[site]
            auc = exp.site(site)
            assert (a <= 1.0).all()
            assert (a[(auc > 0.3) & (auc <= 0.5)] == 1.0).all()  # selected, but without expertise: untouched
    with pytest.raises(ValueError, match="never amplify"):
        Glasses({"lm.mlp.0": np.array([1.0, 1.2, 1, 1, 1, 1])}, exp.layout[:1], "hand-made")
    with pytest.raises(ValueError, match="outside"):
        Glasses({"lm.mlp.0": np.array([1.0, np.nan, 1, 1, 1, 1])}, exp.layout[:1], "hand-made")
    with pytest.raises(ValueError, match="shape"):
        Glasses({"lm.mlp.0": np.ones(5)}, exp.layout[:1], "hand-made")


def test_post_fusion_only_keeps_language_model_sites():
    exp = _expertise(vision=True)
    assert [s.component for s in Glasses.sgm(exp).sites] == ["language_model"] * 2
    everything = Glasses.sgm(exp, post_fusion_only=False)
    np.testing.assert_allclose(everything.alphas["vision.mlp.0"], [0.1, 1, 0.6, 1], atol=1e-6)
    assert "vision.mlp.0" in Glasses.det0(exp, k=1, post_fusion_only=False).alphas
    assert Glasses.det0(exp, k=1).alphas["lm.mlp.0"][5] == 0  # top among LM neurons, vision's 0.95 excluded
    vision_only = Expertise(np.array(VIS), (SiteSlice("vision.mlp.0", "v", 0, 4, 0, "vision_tower"),))
    with pytest.raises(ValueError, match="no sites selected"):
        Glasses.aura(vision_only)


def test_from_expertise_dispatch_and_parameter_errors():
    exp = _expertise()
    assert Glasses.from_expertise(exp, "det0", k=2, alpha=None).hash == Glasses.det0(exp, k=2).hash
    with pytest.raises(ValueError, match="takes"):
        Glasses.from_expertise(exp, "sgm", k=3)
    with pytest.raises(ValueError, match="needs k"):
        Glasses.from_expertise(exp, "det0")
    with pytest.raises(ValueError, match="method must be"):
        Glasses.from_expertise(exp, "amplify")


def test_save_load_round_trip_and_content_hash(tmp_path):
    exp = _expertise()
    g = Glasses.sgm(exp, strength=0.7, curve="sqrt")
    g.save(tmp_path / "a")
    back = Glasses.load(tmp_path / "a")
    assert back.hash == g.hash and back.method == "sgm" and back.params == g.params
    assert back.sites == g.sites and back.provenance == json.loads(json.dumps(g.provenance))
    for site in g.alphas:
        assert np.array_equal(back.alphas[site], g.alphas[site])
    assert Glasses.load(tmp_path / "a" / "glasses.json").hash == g.hash
    # the hash follows content: another folder, same hash; other alphas, another hash
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert Glasses.load(tmp_path / "b").hash == g.hash
    assert Glasses.sgm(exp, strength=0.71, curve="sqrt").hash != g.hash
    # method names and provenance do not change outputs, so they do not change the hash
    renamed = Glasses(g.alphas, g.sites, "renamed", {}, {"other": 1})
    assert renamed.hash == g.hash
    doc = json.loads((tmp_path / "b" / "glasses.json").read_text())
    doc["sites"][0]["module_path"] = "model.layers.1.mlp.down_proj"
    (tmp_path / "b" / "glasses.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="hash"):
        Glasses.load(tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="glasses folder"):
        Glasses.load(tmp_path)
