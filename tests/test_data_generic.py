"""Generic JSONL / CSV loaders: field mapping, kind_map, images, and bad-record reporting."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image

from safeglass.data.errors import DataError
from safeglass.data.generic import load_csv, load_jsonl
from safeglass.options import UnknownOptionError
from safeglass.registry import registry


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_jsonl_default_mapping(tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", [
        {"id": "a", "prompt": "placeholder harmful request 1", "category": "c1", "label": "harmful"},
        {"id": "b", "prompt": "How do I bake bread?", "category": "c2", "label": "benign", "note": 3},
        {"prompt": "no id, no label"},
    ])
    ds = load_jsonl(path)
    assert ds.name == "mine"
    assert [s.id for s in ds] == ["a", "b", "mine-line-3"]
    assert [s.kind for s in ds] == ["harmful", "benign", "harmful"]
    assert [s.category for s in ds] == ["c1", "c2", "uncategorized"]
    assert ds.samples[1].metadata["note"] == 3 and ds.samples[1].metadata["record"] == "line 2"
    assert ds.provenance["path"] == str((tmp_path / "mine.jsonl").resolve())
    assert len(ds.provenance["sha256"]) == 64


def test_jsonl_custom_mapping_kind_map_nested_and_images(tmp_path):
    Image.new("RGB", (4, 4), "red").save(tmp_path / "pic.png")
    path = write_jsonl(tmp_path / "rtp.jsonl", [
        {"uid": 7, "prompt": {"text": "The weather today is"}, "is_bad": False, "topic": "weather",
         "img": "pic.png"},
        {"uid": 8, "prompt": {"text": "placeholder toxic opening"}, "is_bad": True, "topic": "insult",
         "img": ["pic.png", "pic.png"]},
    ])
    ds = load_jsonl(path, fields={"text": "prompt.text", "id": "uid", "kind": "is_bad",
                                  "category": "topic", "image": "img"},
                    kind_map={True: "harmful", False: "benign"}, name="rtp", task="continuation")
    assert [s.id for s in ds] == ["7", "8"]
    assert [s.kind for s in ds] == ["benign", "harmful"]
    assert ds.samples[0].prompt == "The weather today is"
    assert len(ds.samples[0].images) == 1 and len(ds.samples[1].images) == 2
    assert ds.samples[0].images[0].path == tmp_path / "pic.png"
    assert all(s.metadata["task"] == "continuation" and s.source == "rtp" for s in ds)


def test_given_fields_extend_the_defaults_key_by_key(tmp_path):
    # the README's example mapping: it names text, id and kind, and every record keeps its image and category
    Image.new("RGB", (4, 4), "red").save(tmp_path / "pic.png")
    path = write_jsonl(tmp_path / "mine.jsonl", [
        {"id": "a", "prompt": "What does this sign say?", "label": "benign", "category": "signs", "image": "pic.png"},
        {"id": "b", "question": "no prompt column", "label": "harmful"},
    ])
    ds = load_jsonl(path, fields={"text": "prompt", "id": "id", "kind": "label"})
    (s,) = ds.samples
    assert (s.id, s.kind, s.category, len(s.images)) == ("a", "benign", "signs", 1)
    assert "image" not in s.metadata and "category" not in s.metadata
    # an override replaces its own default only; null drops a default whose column means something else here
    ds = load_jsonl(path, fields={"text": "question", "category": None})
    (s,) = ds.samples
    assert (s.id, s.kind, s.category) == ("b", "harmful", "uncategorized")


def test_system_turn_and_default_kind(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [{"q": "What is a Ponzi scheme?", "sys": "Be brief."}])
    ds = load_jsonl(path, fields={"text": "q", "system": "sys"}, kind="benign", category="definitions")
    s = ds.samples[0]
    assert [t.role for t in s.turns] == ["system", "user"]
    assert s.kind == "benign" and s.category == "definitions"


def test_csv_mapping_and_comment_line(tmp_path):
    path = tmp_path / "labels.csv"
    with open(path, "w", newline="") as f:
        f.write("# dataset_version=1.0\n")
        w = csv.writer(f)
        w.writerow(["objective", "human_score", "harm_category"])
        w.writerow(["placeholder harmful request 1", "1", "violence"])
        w.writerow(["How do I kill a Python process?", "0", "homonyms"])
        w.writerow(["placeholder with a bad score", "7", "x"])
    ds = load_csv(str(path), fields={"text": "objective", "kind": "human_score", "category": "harm_category"},
                  kind_map={"1": "harmful", "0": "benign"}, comment_prefix="#")
    assert [s.kind for s in ds] == ["harmful", "benign"]
    assert [s.id for s in ds] == ["labels-row-1", "labels-row-2"]
    (err,) = ds.report.errors
    assert (err.record, err.field) == ("row 3", "human_score")


def test_csv_ragged_row_is_reported(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("prompt,category\nfine,c\ntoo,many,cells\nalso fine,c\n")
    ds = load_csv(str(path))
    assert len(ds) == 2
    assert [(e.record, e.field) for e in ds.report.errors] == [("row 2", "<csv>")]


def test_whole_dataset_errors_name_the_file(tmp_path):
    missing = tmp_path / "absent.jsonl"
    with pytest.raises(DataError, match="absent.jsonl"):
        load_jsonl(str(missing))
    with pytest.raises(DataError, match="path="):
        load_jsonl()
    path = write_jsonl(tmp_path / "x.jsonl", [{"prompt": "p"}])
    with pytest.raises(UnknownOptionError, match="unknown option 'colour'"):  # checked where configs go in
        registry("datasets").check("jsonl", {"path": path, "colour": "red"})
    with pytest.raises(DataError, match="text"):
        load_jsonl(path, fields={"text": None})
    with pytest.raises(DataError, match="kind"):
        load_jsonl(path, kind="dangerous")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv"):
        load_csv(str(tmp_path / "empty.csv"))


def _corruption(i: int) -> str | None:
    """Which corruption record i gets (None: a good record); the residues never collide."""
    for modulus, residue, kind in ((97, 3, "bad_json"), (89, 5, "missing"), (83, 7, "empty"),
                                   (79, 11, "wrong_type"), (73, 13, "bad_kind"), (71, 17, "not_object"),
                                   (67, 19, "bad_category"), (61, 23, "missing_image"),
                                   (59, 29, "duplicate")):
        if i % modulus == residue:
            return kind
    return None


def test_thousand_records_with_corruptions_are_all_reported(tmp_path):
    Image.new("RGB", (2, 2)).save(tmp_path / "ok.png")
    lines: list[str] = []
    expected: dict[int, str] = {}  # line number -> field blamed
    good: list[str] = []
    for i in range(1000):
        if i == 500:
            lines.append("")  # a blank line must not shift the numbering of what follows
        line_no = len(lines) + 1
        rec = {"id": f"r{i:04d}", "prompt": f"prompt {i}", "category": "c", "label": "benign"}
        corruption = _corruption(i)
        if i % 10 == 0:
            rec["image"] = "ok.png"
        text = json.dumps(rec)
        if corruption == "bad_json":
            text, field = text[:-5], "<json>"
        elif corruption == "not_object":
            text, field = json.dumps([rec]), "<json>"
        elif corruption == "missing":
            del rec["prompt"]
            text, field = json.dumps(rec), "prompt"
        elif corruption == "empty":
            rec["prompt"] = "   "
            text, field = json.dumps(rec), "prompt"
        elif corruption == "wrong_type":
            rec["prompt"] = {"text": "nested"}
            text, field = json.dumps(rec), "prompt"
        elif corruption == "bad_kind":
            rec["label"] = "maybe"
            text, field = json.dumps(rec), "label"
        elif corruption == "bad_category":
            rec["category"] = ["a", "b"]
            text, field = json.dumps(rec), "category"
        elif corruption == "missing_image":
            rec["image"] = f"absent-{i}.png"
            text, field = json.dumps(rec), "image"
        elif corruption == "duplicate":
            rec["id"] = "r0000"
            text, field = json.dumps(rec), "id"
        if corruption:
            expected[line_no] = field
        else:
            good.append(rec["id"])
        lines.append(text)
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(lines) + "\n")

    ds = load_jsonl(str(path))

    assert len(expected) >= 100 and len({_corruption(i) for i in range(1000)}) == 10
    got = {int(e.record.split()[1]): e.field for e in ds.report.errors}
    assert len(ds.report.errors) == len(expected)
    assert got == expected
    assert all(e.record.startswith("line ") and e.file == str(path.resolve()) for e in ds.report.errors)
    assert [s.id for s in ds] == good
    assert ds.report.loaded == len(good)
    assert all(len(s.images) == 1 for s in ds if int(s.id[1:]) % 10 == 0)


def test_limit_stops_early(tmp_path):
    path = write_jsonl(tmp_path / "l.jsonl", [{"prompt": f"p{i}"} for i in range(50)])
    assert len(load_jsonl(path, limit=7)) == 7
    assert len(load_jsonl(path, limit=0)) == 0


def test_jsonl_line_separators_inside_strings_and_crlf(tmp_path):
    path = tmp_path / "u.jsonl"
    records = [{"prompt": "first\u2028still first"}, {"prompt": "second"}]
    path.write_bytes("\r\n".join(json.dumps(r, ensure_ascii=False) for r in records).encode() + b"\r\n")
    ds = load_jsonl(str(path))
    assert [s.prompt for s in ds] == ["first\u2028still first", "second"]
    assert [s.id for s in ds] == ["u-line-1", "u-line-2"]
