"""Typographic datasets from local paths (clip/datasets.py): RTA-100 / PAINT file names, SCAM's metadata layouts
with NoSCAM twins, the ImageNet-typo style copy of a folder, and `clip eval` on each through a tiny random CLIP."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from safeglass.cli import main
from safeglass.clip import datasets
from safeglass.clip.config import parse_clip_config
from safeglass.clip.typography import TypoSpec
from safeglass.schema import ConfigError


def _png(path, colour) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((40, 48, 3), colour, np.uint8)).save(path)


def _rta(root):
    _png(root / "label=dog_text=cat.png", (200, 10, 10))
    _png(root / "label=ice_cream_text=dog.png", (10, 200, 10))
    _png(root / "sub" / "label=cat_text=hello_world.png", (10, 10, 200))
    _png(root / "IMG_0001.png", (90, 90, 90))           # no label= / text=
    _png(root / "label=_text=dog.png", (90, 90, 90))    # empty label
    return root


def test_named_files_parse_labels_and_words_and_skip_bad_names(tmp_path) -> None:
    warned: list[str] = []
    got = datasets.named_files(_rta(tmp_path / "rta"), 32, "rta100", warn=warned.append)
    assert got.classes == ("cat", "dog", "hello world", "ice cream")   # labels and words, sorted
    by_file = {f: (got.classes[y], w) for f, y, w in zip(got.files, got.labels, got.words)}
    assert by_file == {"label=dog_text=cat.png": ("dog", "cat"), "label=ice_cream_text=dog.png": ("ice cream", "dog"),
                       "sub/label=cat_text=hello_world.png": ("cat", "hello world")}
    assert got.images.shape == (3, 32, 32, 3) and got.images.dtype == np.uint8
    # the image content follows the file: the green one is the ice cream
    assert got.images[list(got.files).index("label=ice_cream_text=dog.png")][16, 16, 1] > 150
    assert len(got.meta["skipped"]) == 2 and len(warned) == 2
    assert any("IMG_0001.png" in s and "label=<object>_text=<attack word>" in s for s in got.meta["skipped"])
    assert np.isnan(got.postit_area).all()
    with pytest.raises(datasets.DatasetError, match="no image under"):
        datasets.named_files(_only_bad(tmp_path / "bad"), 32)


def _only_bad(root):
    _png(root / "photo.png", (1, 2, 3))
    return root


def _scam(root, layout: str = "jsonl"):
    rows = []
    for i, (obj, word, area) in enumerate([("dog", "cat", 12.5), ("cup", "dog", 20.0), ("cat", "cup", 8.0)]):
        for kind, colour in (("SCAM", (200, 0, 0)), ("NoSCAM", (0, 200, 0)), ("SynthSCAM", (0, 0, 200))):
            name = f"{kind}/{i}.png"
            _png(root / name, colour)
            rows.append({"id": f"img{i}", "file_name": name, "type": kind, "object_label": obj, "attack_word": word,
                         "postit_area_pct": area if kind != "NoSCAM" else 0.0})
    del rows[7]   # item 2 has no NoSCAM twin
    if layout == "jsonl":
        (root / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    else:
        import csv

        with (root / "metadata.csv").open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return root


@pytest.mark.parametrize("layout", ["jsonl", "csv"])
def test_scam_reads_types_words_areas_and_twins(tmp_path, layout) -> None:
    root = _scam(tmp_path / "scam", layout)
    att, clean = datasets.scam(root, 16, "SCAM")
    assert [att.classes[y] for y in att.labels] == ["dog", "cup", "cat"]
    assert list(att.words) == ["cat", "dog", "cup"]
    np.testing.assert_allclose(att.postit_area, [0.125, 0.2, 0.08])
    assert (att.images[:, 8, 8, 0] > 150).all()                      # the SCAM (red) images
    assert clean is not None and clean.meta["twin_of"] == [0, 1]     # item 2's twin is missing
    assert (clean.images[:, 8, 8, 1] > 150).all()                    # their NoSCAM (green) twins
    assert list(clean.labels) == list(att.labels[:2])
    synth, _ = datasets.scam(root, 16, "SynthSCAM")
    assert (synth.images[:, 8, 8, 2] > 150).all() and len(synth.labels) == 3
    no, twins = datasets.scam(root, 16, "NoSCAM")
    assert len(no.labels) == 2 and twins is None
    with pytest.raises(datasets.DatasetError, match="type"):
        datasets.scam(root, 16, "scam")


def test_scam_skips_rows_with_missing_fields_and_unreadable_images(tmp_path) -> None:
    root = tmp_path / "s"
    _png(root / "a.png", (9, 9, 9))
    (root / "b.png").write_bytes(b"not a png")
    rows = [{"file_name": "a.png", "type": "SCAM", "object_label": "dog", "attack_word": "cat"},
            {"file_name": "b.png", "type": "SCAM", "object_label": "dog", "attack_word": "cat"},
            {"file_name": "a.png", "type": "SCAM", "object_label": "", "attack_word": "cat"}]
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    warned: list[str] = []
    att, clean = datasets.scam(root, 16, warn=warned.append)
    assert len(att.labels) == 1 and clean is None and np.isnan(att.postit_area[0])
    assert any("metadata.jsonl:3" in s and "object_label" in s for s in att.meta["skipped"])
    assert any("b.png" in s for s in att.meta["skipped"]) and len(warned) == 2


def test_scam_parquet_without_pyarrow_says_how_to_read_it(tmp_path, monkeypatch) -> None:
    # pyarrow is not a safeglass dependency (nor installed in the test environment): a parquet or save_to_disk copy
    # must then fail with what to install or how to re-save it, not with an ImportError deep inside
    (tmp_path / "train-00000.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(datasets.DatasetError, match="needs pyarrow"):
        datasets.scam(tmp_path, 16)


def test_typo_copy_writes_an_attacked_folder_that_loads_back(tmp_path) -> None:
    src = tmp_path / "photos"
    for c, colour in (("dog", (200, 200, 200)), ("cat", (40, 40, 40))):
        for k in range(3):
            _png(src / c / f"{k}.png", colour)
    info = datasets.typo_copy(src, tmp_path / "typo", 64, TypoSpec(size=0.3), seed=1)
    assert info["n"] == 6
    back = datasets.named_files(tmp_path / "typo", 64)
    assert back.meta["skipped"] == [] and len(back.labels) == 6
    pairs = {(back.classes[y], w) for y, w in zip(back.labels, back.words)}
    assert pairs == {("dog", "cat"), ("cat", "dog")}   # wrong-class: the other class's name
    manifest = [json.loads(x) for x in (tmp_path / "typo" / "manifest.jsonl").read_text().splitlines()]
    for m in manifest:   # the pixels changed inside the recorded box only
        img = np.asarray(Image.open(tmp_path / "typo" / m["file"]))
        y0, x0, y1, x1 = m["box"]
        base = 200 if m["label"] == "dog" else 40
        outside = np.ones(img.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        assert (np.abs(img[outside].astype(int) - base) <= 2).all() and (img[y0:y1, x0:x1] != base).any()


def test_clip_typo_copies_the_configs_folder(tmp_path, capsys) -> None:
    for c, colour in (("dog", (200, 200, 200)), ("cat", (40, 40, 40))):
        _png(tmp_path / "photos" / c / "0.png", colour)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"model": {"random": "clip"}, "data": {"source": "folder", "image_dir": "photos",
                                                                     "image_size": 48},
                               "attack": {"word": "cat", "postit": True}, "seed": 3}))
    assert main(["clip", "typo", str(cfg), "--out", str(tmp_path / "t")]) == 0
    assert "2 attacked images" in capsys.readouterr().out
    back = datasets.named_files(tmp_path / "t", 48)
    assert sorted(back.words) == ["cat", "cat"] and back.images.shape == (2, 48, 48, 3)
    info = json.loads((tmp_path / "t" / "typo-copy.json").read_text())
    assert info["attack"]["postit"] is True and info["mean_postit_area"] > 0 and info["seed"] == 3
    cfg.write_text(json.dumps({"model": {"random": "clip"}}))
    assert main(["clip", "typo", str(cfg), "--out", str(tmp_path / "t2")]) != 0
    assert "field 'data.source': clip typo copies an image folder" in capsys.readouterr().err


def test_config_rejects_a_dataset_source_without_path_and_defend(tmp_path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_clip_config({"model": {"random": "clip"}, "data": {"source": "scam", "type": "NoSCAM"},
                           "defend": {}}, "x.yaml")
    assert "field 'data.path'" in str(err.value) and "field 'defend'" in str(err.value)
    with pytest.raises(ConfigError, match="data.type"):
        parse_clip_config({"model": {"random": "clip"}, "data": {"type": "SCAM"}}, "x.yaml")


@pytest.mark.parametrize("source", ["rta100", "paint-typo", "scam"])
def test_clip_eval_scores_a_dataset_end_to_end(tmp_path, source, capsys) -> None:
    path = _rta(tmp_path / "d") if source != "scam" else _scam(tmp_path / "d")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"model": {"random": "clip", "seed": 0}, "data": {"source": source, "path": "d"},
                               "templates": ["a photo of a {}"]}))
    assert main(["clip", "eval", str(cfg), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    r = json.loads((tmp_path / "out" / "clip-eval.json").read_text())
    assert r["attack"]["from"] == "dataset" and r["dataset"]["source"] == source
    assert r["typographic"]["n"] == 3 and r["dataset"]["path"] == str(path)
    assert r["follows_word"]["n"] == 3 and r["scam"]["n"] == 3
    if source == "scam":   # clean: the NoSCAM twins (2 of 3)
        assert r["clean"]["n"] == 2 and r["attack"]["mean_postit_area"] == pytest.approx(0.135)
        assert r["typographic_drop_points"] == pytest.approx(100 * (r["clean"]["rate"] - r["typographic"]["rate"]),
                                                             abs=0.01)
    else:
        assert r["clean"] is None and r["typographic_drop_points"] is None and len(r["dataset"]["skipped"]) == 2
        assert "n/a" in capsys.readouterr().out
    assert r["model"]["source"] == "random" and r["config"]["hash"] and "versions" in r
