"""MMBench-format TSV loader and the multiple-choice scorer, on a small TSV written here."""

import base64
import csv
import io

import pytest
from PIL import Image

from safeglass.data.errors import DataError
from safeglass.data.mmbench import DEFAULT_INSTRUCTION, load_mmbench, mc_accuracy, parse_choice
from safeglass.options import UnknownOptionError
from safeglass.registry import registry

HEADER = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "l2-category", "split"]


def png_b64(rgb: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), rgb).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


RED, GREEN = png_b64((255, 0, 0)), png_b64((0, 255, 0))


def write_tsv(path, rows, header=HEADER):
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow(r)
    return path


def row(index, question="What colour is the square?", hint="", a="red", b="green", c="blue", d="black",
        answer="A", category="color_attribute", image=RED, l2="attribute_reasoning", split="dev"):
    return [index, question, hint, a, b, c, d, answer, category, image, l2, split]


@pytest.fixture
def tsv(tmp_path):
    rows = [
        row(1, hint="Look at the centre."),                        # line 2
        row(2, question="Which colour?\nPick one.", c="", d="",    # lines 3-4: a quoted cell spans two lines
            answer="B", image=GREEN),
        row(3, image="not base64!!"),                               # line 5: bad image
        row(4, answer="E"),                                         # line 6: answer not an option
        row(5, question=""),                                        # line 7: no question
        row(1000001, image="1", hint="nan"),                         # line 8: circular copy of row 1's image
        row(6, answer=""),                                          # line 9: test split, no answer
        row(7, c="", d="purple"),                                   # line 10: option hole
        row(8, image=base64.b64encode(b"not an image").decode()),   # line 11: base64 but not an image
        row(9, image="77"),                                         # line 12: reference to a missing row
    ]
    path = write_tsv(tmp_path / "mmbench_dev.tsv", rows)
    with open(path, "a", encoding="utf-8") as f:
        f.write("10\tshort row\n")                                  # line 13: too few cells
    return path


def test_loads_good_rows_and_reports_bad_ones_with_file_line_field(tsv):
    ds = load_mmbench(str(tsv))
    assert [s.id for s in ds.samples] == ["mmbench-1", "mmbench-2", "mmbench-1000001", "mmbench-6"]
    errors = {(e.record, e.field) for e in ds.report.errors}
    assert errors == {("line 5", "image"), ("line 6", "answer"), ("line 7", "question"), ("line 10", "C"),
                      ("line 11", "image"), ("line 12", "image"), ("line 13", "<tsv>")}
    assert all(e.file == str(tsv.resolve()) for e in ds.report.errors)
    assert ds.report.loaded == 4 and ds.provenance["options"] == ["A", "B", "C", "D"]
    assert len(ds.provenance["sha256"]) == 64


def test_samples_are_multiple_choice_prompts_with_their_image(tsv):
    by_id = {s.id: s for s in load_mmbench(str(tsv)).samples}
    first = by_id["mmbench-1"]
    assert first.prompt == ("Hint: Look at the centre.\nQuestion: What colour is the square?\nOptions:\n"
                            "A. red\nB. green\nC. blue\nD. black\n" + DEFAULT_INSTRUCTION)
    assert first.kind == "benign" and first.category == "color_attribute" and first.source == "mmbench"
    assert first.metadata["answer"] == "A" and first.metadata["l2_category"] == "attribute_reasoning"
    assert first.images[0].pil().getpixel((4, 4)) == (255, 0, 0)
    two = by_id["mmbench-2"]
    assert "Question: Which colour?\nPick one.\n" in two.prompt and "C." not in two.prompt
    assert two.metadata["options"] == {"A": "red", "B": "green"}
    assert two.images[0].pil().getpixel((0, 0)) == (0, 255, 0)
    circular = by_id["mmbench-1000001"]
    assert circular.images[0] == first.images[0] and "Hint" not in circular.prompt  # "nan" hint is absent
    assert by_id["mmbench-6"].metadata["answer"] is None


def test_registry_loader_limit_and_instruction(tsv):
    loader = registry("datasets").get("mmbench")
    ds = loader(path=str(tsv), limit=2, instruction="Reply with one letter.")
    assert len(ds) == 2 and ds.samples[0].prompt.endswith("D. black\nReply with one letter.")


def test_whole_file_problems_stop_the_load(tmp_path):
    with pytest.raises(DataError, match="needs path"):
        load_mmbench()
    with pytest.raises(DataError, match="does not exist"):
        load_mmbench(str(tmp_path / "nope.tsv"))
    with pytest.raises(DataError, match="lacks column"):
        load_mmbench(str(write_tsv(tmp_path / "x.tsv", [], header=["index", "question", "A", "B"])))
    with pytest.raises(UnknownOptionError, match="unknown option 'images'"):
        registry("datasets").check("mmbench", {"path": str(tmp_path / "y.tsv"), "images": "x"})


@pytest.mark.parametrize("response, expected", [
    ("B", "B"), ("(C)", "C"), ("**D**.", "D"), ("c", "C"), ("The answer is B.", "B"), ("Answer: (C)", "C"),
    ("answer: d", "D"), ("B. green", "B"), ("(B) green", "B"), ("B - green", "B"), ("I think C is right.", "C"),
    ("Option A is wrong; the answer is B", "B"), ("The correct option is A", "A"),
    ("A red square.", "A"), ("It is green", "B"), ("a dark blue square", None), ("Both A and B", None),
    ("I am not sure.", None), ("", None), ("E", None), ("The answer is a red square", "A"),
])
def test_parse_choice(response, expected):
    # "a dark blue square" names two options, neither inside the other: no choice
    options = {"A": "red", "B": "green", "C": "dark blue", "D": "blue square"}
    assert parse_choice(response, options) == expected


def test_parse_choice_prefers_the_longer_option_text():
    assert parse_choice("a black cat", {"A": "cat", "B": "black cat", "C": "dog"}) == "B"
    assert parse_choice("A", "AB") == "A" and parse_choice("C", "AB") is None


def test_mc_accuracy():
    out = mc_accuracy(["B", "The answer is (A)", "no idea", "C", "D"], ["B", "B", "C", None, "d"])
    assert (out["n"], out["correct"], out["unparsed"], out["skipped"]) == (4, 2, 1, 1)
    assert out["accuracy"] == 0.5 and out["ci_low"] < 0.5 < out["ci_high"]
    assert out["chosen"] == ["B", "A", None, "C", "D"]
    with_text = mc_accuracy(["It is green"], ["B"], options=[{"A": "red", "B": "green"}])
    assert with_text["accuracy"] == 1.0
    with pytest.raises(ValueError, match="same length"):
        mc_accuracy(["A"], ["A", "B"])
