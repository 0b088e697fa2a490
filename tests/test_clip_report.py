"""The CLIP failure-mode report (clip/report.py): on a tiny-model run folder with clip-eval.json, clip-defend.json
and clip-vary.json it writes Markdown and HTML holding the JSON's values, and pictures that exist and are linked
relatively (embedded in the HTML); `safeglass report` on such a folder writes the same."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from safeglass import api
from safeglass.cli import main
from safeglass.clip.report import _pct

TINY = {"name": "tiny", "model": {"random": "clip", "seed": 1}, "data": {"n": 40, "seed": 0},
        "templates": ["a photo of a {}"], "attack": {"size": 0.4, "position": "center"},
        "defend": {"fit_n": 16, "patience": 2}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip-run")
    cfg = root / "tiny.yaml"
    cfg.write_text(json.dumps(TINY))
    out = root / "run"
    api.clip_eval(cfg, out)
    api.clip_defend(cfg, out)
    api.clip_vary(cfg, out, budget=400, top=3)
    return out


def test_the_report_holds_the_json_values_and_pictures(run_dir) -> None:
    assert main(["clip", "report", str(run_dir), "--worst", "3", "--no-progress"]) == 0
    md = (run_dir / "clip-report.md").read_text()
    page = (run_dir / "clip-report.html").read_text()
    ev = json.loads((run_dir / "clip-eval.json").read_text())
    de = json.loads((run_dir / "clip-defend.json").read_text())
    va = json.loads((run_dir / "clip-vary.json").read_text())
    for text in (md, page):
        for title in ("Typographic attack (clip eval)", "Dyslexify head ablation (clip defend)",
                      "Natural variation (clip vary)"):
            assert title in text
        for value in (_pct(ev["clean"]), _pct(ev["typographic"]), _pct(de["test"]["typographic_ablated"]),
                      _pct(va["base_accuracy"]), ev["config"]["hash"]):
            assert value in text, value
    assert va["ranked"] and va["ranked"][0] in md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert "clip-report/variation.png" in links
    for rel in links:                                   # relative links to files that exist and are PNGs
        assert not rel.startswith("/") and (run_dir / rel).is_file()
        with Image.open(run_dir / rel) as im:
            assert im.format == "PNG" and im.size[0] > 100
    assert page.count("data:image/png;base64,") == len(links) and "http" not in page.split("<body>")[1]
    # this random model gets no image right clean and wrong attacked: the part says so (ShapeCLIP's test draws them)
    assert "## Typographic failures" in md and "No image is right when clean and wrong when attacked." in md


def test_safeglass_report_on_a_clip_folder_writes_the_clip_report(run_dir, capsys) -> None:
    for f in ("clip-report.md", "clip-report.html"):
        (run_dir / f).unlink(missing_ok=True)
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "clip-report.html").is_file() and (run_dir / "clip-report.md").is_file()
    assert "clip-report.html" in capsys.readouterr().out


def test_a_folder_without_clip_results_is_refused(tmp_path) -> None:
    from safeglass.clip.report import write_clip_report

    with pytest.raises(FileNotFoundError, match="clip-eval.json"):
        write_clip_report(tmp_path)


def test_shapeclip_failures_are_drawn_with_their_attribution(tmp_path) -> None:
    from clip_fixtures import shapeclip_backend

    b = shapeclip_backend()   # fails with how to get them when the packaged weights are missing
    cfg = {"name": "shapeclip-small", "model": {"organism": "shapeclip"}, "data": {"n": 24, "seed": 0},
           "templates": ["a photo of a {}"]}
    from safeglass.clip.config import parse_clip_config
    from safeglass.clip.report import write_clip_report
    from safeglass.clip.run import evaluate

    ev = evaluate(parse_clip_config(cfg), tmp_path, backend=b)
    assert ev["clean"]["rate"] > ev["typographic"]["rate"]      # ShapeCLIP reads: there are failures to show
    paths = write_clip_report(tmp_path, worst=3, backend=b)
    md = paths["markdown"].read_text()
    assert "![" in md and "(clip-report/failures.png)" in md
    with Image.open(paths["failures"]) as im:
        assert im.size[1] > 3 * 160                                  # three rows of cells
    rows = [r for r in md.splitlines() if re.match(r"\| \d+ \|", r)]
    assert len(rows) == 3
    margins = []
    for r in rows:
        _, idx, file, label, word, clean_pred, att_pred, margin, _ = [c.strip() for c in r.split("|")]
        assert clean_pred == label and att_pred != label and float(margin) > 0
        margins.append(float(margin))
    assert margins == sorted(margins, reverse=True)


def test_a_dataset_without_clean_twins_shows_its_wrong_attacked_images(tmp_path) -> None:
    import numpy as np

    (tmp_path / "sub").mkdir()
    for i, (obj, word) in enumerate([("dog", "cat"), ("cat", "dog"), ("cup", "dog"), ("dog", "cup")] * 2):
        folder = tmp_path if i < 4 else tmp_path / "sub"   # the same names twice, in two folders
        img = np.random.default_rng(i).integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(img).save(folder / f"label={obj}_text={word}.png")
    cfg = tmp_path / "rta.yaml"
    cfg.write_text(json.dumps({"name": "rta", "model": {"random": "clip", "seed": 1},
                               "data": {"source": "rta100", "path": "."}, "templates": ["a photo of a {}"]}))
    ev = api.clip_eval(cfg, tmp_path / "run")
    wrong = ev["typographic"]["n"] - ev["typographic"]["k"]
    paths = api.clip_report(tmp_path / "run", worst=3)
    md = paths["markdown"].read_text()
    assert ev["clean"] is None and "has no clean twins" in md
    rows = [r for r in md.splitlines() if re.match(r"\| \d+ \|", r)]
    assert len(rows) == min(3, wrong) > 0
    for r in rows:
        _, idx, file, label, word, clean_pred, att_pred, margin, _ = [c.strip() for c in r.split("|")]
        assert file.endswith(".png") and f"label={label}_text={word}" in file and clean_pred == "n/a"
        assert att_pred != label and float(margin) > 0
    with Image.open(paths["failures"]) as im:   # two cells a row: attacked image, its attribution
        assert im.size[0] == 2 * (160 + 8) + 8


def test_an_amplify_folder_reports_its_table(tmp_path) -> None:
    from safeglass.clip.amplify import amplify
    from safeglass.clip.config import parse_clip_config
    from safeglass.clip.report import write_clip_report

    cfg = parse_clip_config({"name": "amp", "model": {"random": "clip", "seed": 0}, "data": {"n": 12, "seed": 0},
                             "templates": ["a photo of a {}"],
                             "amplify": {"models": [{"random": "clip", "seed": 1}], "resamples": 100}})
    r = amplify(cfg, tmp_path)
    paths = write_clip_report(tmp_path)
    md = paths["markdown"].read_text()
    assert "Does robustness amplify typographic vulnerability?" in md
    variant = r["rows"]["classify"][1]
    d = variant["amplification"]
    assert "random-clip-1" in md and f"{d['value']:+.1f} [{d['ci_low']:+.1f}, {d['ci_high']:+.1f}]" in md
    assert f"{variant['clean']['value']:.1f}" in md and "random-clip-1" in paths["report"].read_text()
