"""The natural-variation search (clip/variation.py): attribute edits change what they say and nothing else, a
hand-made backend that reads one attribute is found flipping on exactly that attribute, and `safeglass clip vary`
writes clip-vary.json with provenance on a tiny random CLIP."""

from __future__ import annotations

import json

import numpy as np
import pytest

from safeglass.cli import main
from safeglass.clip import images, variation
from safeglass.data.shapeworld.world import COLOURS, render


class RedBackgroundReader:
    """Calls every image a circle when its top-left pixel is red-ish (the background colour; no object, occluder
    or texture reaches that pixel), else a square: a model that depends on one described attribute only."""

    family, image_size, identity = "clip", 64, {"source": "test", "name": "red-background-reader"}

    def encode_text(self, texts):
        import torch

        from safeglass.organisms.shapeclip import ShapeCLIPConfig

        shapes = ShapeCLIPConfig().shapes
        return torch.stack([torch.eye(len(shapes))[next(i for i, s in enumerate(shapes) if t.endswith(s))]
                            for t in texts])

    def encode_images(self, imgs):
        import torch

        px = np.asarray(imgs)[:, 0, 0, :].astype(int)
        red = px[:, 0] - px[:, 1:].max(1) > 120     # red 180, its alternate shade 138, orange at most 105
        out = torch.zeros(len(px), 8)
        out[torch.from_numpy(red), 0] = 1.0          # circle
        out[torch.from_numpy(~red), 1] = 1.0         # square
        return out

    def logit_scale(self) -> float:
        return 1.0


def test_each_edit_changes_its_attribute_only() -> None:
    data = images.shapeworld(12, 3, 64)
    for s in data.scenes:
        img0, m0 = render(s, 64)
        for a, values in variation.ATTRIBUTES.items():
            for v in values:
                t = variation.apply(s, a, v)
                if t is None:
                    continue
                assert variation.current(t, a) == (v if a != "occluder" else "present")
                img, m = render(t, 64)
                obj = m0.ids > 0
                if a in ("colour", "texture"):       # the object's pixels change, the background does not
                    assert (img[~obj] == img0[~obj]).all() and (img[obj] != img0[obj]).any()
                    if a == "colour":
                        assert (img[m.ids > 0] == COLOURS[v]).all(axis=-1).mean() > 0.4
                elif a in ("background", "background colour"):   # the object's do not
                    assert (img[obj] == img0[obj]).all() and (img[~obj] != img0[~obj]).any()
                elif a == "occluder":
                    assert m.occluder.any() and (img[~m.occluder] == img0[~m.occluder]).all()
                    assert 0.1 < 1 - m.visible_fraction()[0] < 0.8
                elif a == "size":
                    assert m.areas[0] != m0.areas[0] and t.main.shape == s.main.shape
        assert variation.apply(s, "colour", s.background.colour) is None   # would vanish into the background
    with pytest.raises(KeyError, match="described"):
        variation.apply(data.scenes[0], "colour", "mauve")


def test_a_backend_that_reads_one_attribute_flips_on_exactly_that_attribute() -> None:
    from safeglass.clip.zeroshot import TextCache, predict

    b, cache = RedBackgroundReader(), TextCache()
    data = images.shapeworld(60, 0, 64)
    res = variation.search(lambda x: predict(b, x, data.classes, ["a {}"], cache), list(data.scenes),
                           data.labels, data.classes, 64, top=4)
    flipping = {e["changes"][0][0] for e in res["singles"] if e["flip"]["k"] > 0}
    assert flipping == {"background colour"}
    for e in res["singles"]:
        a, v = e["changes"][0]
        if a != "background colour":
            assert e["flip"]["k"] == 0 and e["flip"]["n"] > 0, e["changes"]
    red = next(e for e in res["singles"] if e["changes"] == [["background colour", "red"]])
    assert red["flip"]["rate"] == 1.0 and red["worst"]["called"] == "circle"
    # examples are flips, and those that break a right prediction (squares, here) come first
    assert all(x["pred"] != x["base_pred"] for e in res["singles"] + res["pairs"] for x in e["examples"])
    assert red["examples"][0]["label"] == red["examples"][0]["base_pred"] == "square"
    assert res["ranked"][0].startswith("a shape on a red background flips the prediction on 100 %")
    # the four attributes that flip most (background colour, then three that never flip) paired: 6 pairs, and
    # exactly the three with background colour (at red) flip
    assert len(res["pairs"]) == 6 and res["top_singles"][0] == ["background colour", "red"]
    for p in res["pairs"]:
        assert (p["flip"]["k"] > 0) == ("background colour" in p["attributes"]), p["changes"]
    assert variation.per_attribute(res)["background colour"]["value"] == "red"


def test_clip_vary_writes_json_within_the_budget(tmp_path, capsys) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"name": "tiny", "model": {"random": "clip", "seed": 0}, "data": {"n": 500},
                               "templates": ["a photo of a {}"]}))
    argv = ["clip", "vary", str(cfg), "--out", str(tmp_path / "o"), "--budget", "300", "--top", "3", "--no-progress"]
    assert main(argv) == 0
    r = json.loads((tmp_path / "o" / "clip-vary.json").read_text())
    assert r["kind"] == "clip vary" and r["model"]["source"] == "random" and r["config"]["hash"]
    assert r["settings"] == {"budget": 300, "top": 3} and 0 < r["images_encoded"] <= 300
    assert r["dataset"]["n"] == 300 // variation.images_per_base(top=3)
    assert set(variation.per_attribute(r)) == set(variation.ATTRIBUTES)
    assert "base scenes" in capsys.readouterr().out
    first = r["created"]
    assert main(argv) == 0   # a finished result for the same config and budget is read back
    assert json.loads((tmp_path / "o" / "clip-vary.json").read_text())["created"] == first
