"""Public benchmark formats read from local paths, on tiny fixtures written in each format."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from safeglass.data import formats
from safeglass.data.errors import DataError
from safeglass.options import UnknownOptionError
from safeglass.registry import registry

FIX = Path(__file__).parent / "fixtures" / "formats"


def errors(ds):
    return [(Path(e.file).name, e.record, e.field) for e in ds.report.errors]


# --- MM-SafetyBench -----------------------------------------------------------------------------------


def test_mm_safetybench_pairs_questions_with_image_types():
    ds = formats.load_mm_safetybench(str(FIX / "mm_safetybench"))
    # 3 questions x 3 image types, minus the one TYPO image the fixture lacks
    assert len(ds) == 8
    assert errors(ds) == [("01-Illegal_Activitiy.json", "item 1", "image TYPO")]
    by_id = {s.id: s for s in ds}
    sd, typo = by_id["mmsb-01-0-SD"], by_id["mmsb-01-0-TYPO"]
    assert sd.prompt.startswith("The image shows an activity")  # Rephrased Question(SD)
    assert typo.prompt.startswith("The bottom of the image")  # Rephrased Question
    assert sd.images[0].path == FIX / "mm_safetybench/imgs/01-Illegal_Activitiy/SD/0.jpg"
    assert sd.category == "Illegal_Activity" and by_id["mmsb-02-0-SD"].category == "HateSpeech"
    assert sd.metadata["scenario"] == 1 and sd.metadata["image_type"] == "SD"
    assert sd.metadata["key_phrase"] == "placeholder phrase 1-0"
    assert all(s.kind == "harmful" for s in ds)
    assert set(ds.provenance["files"]) == {"processed_questions/01-Illegal_Activitiy.json",
                                           "processed_questions/02-HateSpeech.json"}


def test_mm_safetybench_options():
    ds = formats.load_mm_safetybench(str(FIX / "mm_safetybench"), image_types=["SD"], scenarios=[2])
    assert [s.id for s in ds] == ["mmsb-02-0-SD"]
    assert len(formats.load_mm_safetybench(str(FIX / "mm_safetybench"), limit=4)) == 4
    with pytest.raises(DataError, match="image_types"):
        formats.load_mm_safetybench(str(FIX / "mm_safetybench"), image_types=["JPEG"])
    with pytest.raises(DataError, match="processed_questions"):
        formats.load_mm_safetybench(str(FIX / "figstep"))


# --- FigStep -------------------------------------------------------------------------------------------


def test_figstep_text_only_and_with_images():
    text = formats.load_figstep(str(FIX / "figstep" / "safebench.csv"))
    assert [s.id for s in text] == ["figstep-SafeBench-1-1", "figstep-SafeBench-1-2", "figstep-SafeBench-2-1"]
    assert text.samples[0].prompt == "placeholder harmful request 1" and not text.samples[0].images
    assert text.samples[2].category == "Hate Speech"

    img = formats.load_figstep(str(FIX / "figstep"), images="images")
    assert len(img) == 2 and errors(img) == [("safebench.csv", "row 3", "image")]
    s = img.samples[0]
    assert s.prompt == formats.FIGSTEP_PROMPT and s.metadata["instruction"] == "Steps to placeholder 1."
    assert s.images[0].path == (FIX / "figstep/images/query_SafeBench_1_1_6.png").resolve()


# --- VLGuard -------------------------------------------------------------------------------------------


def test_vlguard_subsets_and_kinds():
    ds = formats.load_vlguard(str(FIX / "vlguard"))
    kinds = {s.metadata["subset"]: s.kind for s in ds}
    assert kinds == {"unsafes": "harmful", "safe_unsafes": "harmful", "safe_safes": "benign"}
    assert errors(ds) == [("test.json", "item 2", "image")]  # its image file is missing
    unsafe = next(s for s in ds if s.metadata["subset"] == "unsafes")
    assert unsafe.category == "deception" and unsafe.images[0].path.name == "a.png"
    only = formats.load_vlguard(str(FIX / "vlguard" / "test.json"), subsets=["safe_unsafes"])
    assert [s.metadata["subset"] for s in only] == ["safe_unsafes"] and not only.report.errors
    with pytest.raises(DataError, match="subsets"):
        formats.load_vlguard(str(FIX / "vlguard"), subsets=["unsafe"])


# --- MOSSBench -----------------------------------------------------------------------------------------


def test_mossbench_is_benign_with_over_types():
    ds = formats.load_mossbench(str(FIX / "mossbench"))
    assert [s.id for s in ds] == ["mossbench-1", "mossbench-2", "mossbench-3"]
    assert all(s.kind == "benign" and len(s.images) == 1 for s in ds)
    assert ds.samples[1].category == "Negated Harm" and ds.samples[1].metadata["ocr"] == 1


def test_mossbench_missing_image_is_a_record_error(tmp_path):
    shutil.copytree(FIX / "mossbench", tmp_path / "m")
    (tmp_path / "m" / "images" / "2.png").unlink()
    ds = formats.load_mossbench(str(tmp_path / "m" / "mossbench.json"))
    assert len(ds) == 2 and errors(ds) == [("mossbench.json", "item 1", "image")]


# --- JailbreakV-28K ------------------------------------------------------------------------------------


def test_jailbreakv_rows_formats_and_text_only():
    ds = formats.load_jailbreakv(str(FIX / "jailbreakv"))
    assert [s.id for s in ds] == ["jailbreakv-0", "jailbreakv-1", "jailbreakv-2"]
    assert errors(ds) == [("JailBreakV_28K.csv", "row 4", "image_path")]
    s = ds.samples[0]
    assert s.category == "Illegal Activity" and s.metadata["format"] == "Template"
    assert s.metadata["redteam_query"] == "placeholder harmful request 1"
    assert s.images[0].path == FIX.resolve() / "jailbreakv/llm_transfer_attack/SD/0.png"
    only = formats.load_jailbreakv(str(FIX / "jailbreakv" / "JailBreakV_28K.csv"), formats=["query_related"],
                                   text_only=True)
    assert [s.id for s in only] == ["jailbreakv-3"] and not only.samples[0].images


# --- HarmBench CSVs -----------------------------------------------------------------------------------


def test_harmbench_text_csv():
    ds = formats.load_harmbench_csv(str(FIX / "harmbench" / "harmbench_behaviors_text_fixture.csv"))
    assert [s.id for s in ds] == ["placeholder_behavior_1", "placeholder_behavior_2", "placeholder_behavior_4"]
    assert errors(ds) == [("harmbench_behaviors_text_fixture.csv", "row 3", "Behavior")]
    ctx = ds.samples[1]
    assert ctx.prompt.startswith("placeholder context paragraph,\nwith a comma")
    assert ctx.prompt.endswith("placeholder harmful request 2 about the text above")
    assert ds.samples[2].metadata["tags"] == ["book", "hash_check"]


def test_harmbench_multimodal_csv():
    ds = formats.load_harmbench_csv(str(FIX / "harmbench" / "harmbench_behaviors_multimodal_fixture.csv"))
    assert [s.id for s in ds] == ["mm_behavior_1"]
    assert ds.samples[0].images[0].path.name == "mm_1.png"
    assert ds.samples[0].metadata["redacted_image_description"] == "a placeholder image"
    assert errors(ds) == [("harmbench_behaviors_multimodal_fixture.csv", "row 2", "ImageFileName")]


# --- whole-dataset errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("loader", [formats.load_mm_safetybench, formats.load_figstep, formats.load_vlguard,
                                    formats.load_mossbench, formats.load_jailbreakv,
                                    formats.load_harmbench_csv])
def test_missing_path_and_unknown_option(loader, tmp_path):
    with pytest.raises(DataError, match="path="):
        loader()
    with pytest.raises(DataError, match="nowhere"):
        loader(str(tmp_path / "nowhere"))
    name = {"load_jailbreakv": "jailbreakv-28k", "load_harmbench_csv": "harmbench-csv"}.get(
        loader.__name__, loader.__name__.removeprefix("load_").replace("_", "-"))
    with pytest.raises(UnknownOptionError, match="unknown option 'bogus'"):
        registry("datasets").check(name, {"path": str(FIX), "bogus": 1})


def test_image_is_readable():
    ds = formats.load_mossbench(str(FIX / "mossbench"))
    assert ds.samples[0].images[0].pil().size == (8, 8)


def test_vlguard_bad_items_are_reported(tmp_path):
    import json

    (tmp_path / "img.png").write_bytes((FIX / "vlguard/test/benign/b.png").read_bytes())
    items = [{"id": "ok", "image": "img.png", "safe": True,
              "instr-resp": [{"safe_instruction": "Describe this picture.", "response": "A square."}]},
             {"id": "no_text", "image": "img.png", "safe": False, "instr-resp": [{"instruction": ""}]},
             {"id": "no_flag", "image": "img.png", "instr-resp": [{"instruction": "x"}]},
             "not an object"]
    (tmp_path / "test.json").write_text(json.dumps(items))
    ds = formats.load_vlguard(str(tmp_path))
    assert [s.id for s in ds] == ["vlguard-ok-safe_safes-0"]
    assert errors(ds) == [("test.json", "item 1", "instr-resp[0].instruction"),
                          ("test.json", "item 2", "safe"), ("test.json", "item 3", "<item>")]
