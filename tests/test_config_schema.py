"""Typed config schemas: each finding of issue 29, tried the way `safeglass run CFG --dry-run` reads a config,
is a ConfigError naming the file and the field; every problem is reported at once; ids named by other fields
must exist; component options are checked against the types their code declares."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from safeglass.api import run
from safeglass.cli import main
from safeglass.config import ConfigError, parse_config
from safeglass.neurons.evaluate import parse_eval_config
from safeglass.neurons.find import parse_find_config
from safeglass.schema import value_problem

UNIT = {"name": "sgtest_components:load_unit", "id": "unit", "args": {"n": 4}}


def _config(tmp_path: Path, **fields) -> Path:
    raw = {"targets": ["echo"], "datasets": [UNIT], **fields}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _dry_run_error(path: Path, tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as err:
        run(path, out=tmp_path / "out", dry_run=True, progress=False)
    assert not (tmp_path / "out").exists()
    return str(err.value)


@pytest.mark.parametrize("fields, message", [
    ({"seed": "abc"}, "field 'seed': expected an integer, got 'abc'"),
    ({"generation": {"max_new_tokens": "lots"}}, "field 'generation.max_new_tokens': expected an integer, got 'lots'"),
    ({"defenses": ["none", "safety_prompt"], "baseline_defense": "nnone"},
     "field 'baseline_defense': 'nnone' is not one of the defenses' ids (did you mean 'none'?); known: none, "
     "safety_prompt"),
    ({"attacks": [{"name": "typographic", "args": {"image_size": "big"}}]},
     "attacks[0] (typographic): option 'image_size': expected an integer, got 'big' (declared int | None)"),
    ({"targets": [{"name": "echo", "args": {"delay_s": "soon"}}]},
     "targets[0] (echo): option 'delay_s': expected a number, got 'soon' (declared float)"),
])
def test_each_finding_names_the_file_and_the_field(tmp_path, fields, message) -> None:
    path = _config(tmp_path, **fields)
    assert _dry_run_error(path, tmp_path) == f"{path}: {message}"


def test_every_problem_is_reported_at_once_a_line_each(tmp_path) -> None:
    path = _config(tmp_path, seed="abc", generation={"max_new_tokens": "lots", "temprature": 0.5}, chunk_size=0)
    assert _dry_run_error(path, tmp_path).splitlines() == [
        f"{path}: field 'generation.max_new_tokens': expected an integer, got 'lots'",
        f"{path}: field 'generation.temprature': unknown field (did you mean 'temperature'?); known: max_new_tokens, "
        "temperature, top_p, seed, stop, samples_per_prompt",
        f"{path}: field 'seed': expected an integer, got 'abc'",
        f"{path}: field 'chunk_size': must be >= 1, got 0",
    ]


def test_the_cli_exits_2_with_the_lines_and_no_traceback(tmp_path, capsys) -> None:
    path = _config(tmp_path, seed="abc", targets=[{"name": "echo", "args": {"delay_s": "soon"}}])
    assert main(["run", str(path), "--dry-run", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{path}: field 'seed': expected an integer, got 'abc'" in err and "Traceback" not in err
    path = _config(tmp_path, targets=[{"name": "echo", "args": {"delay_s": "soon"}}])
    assert main(["run", str(path), "--dry-run", "--out", str(tmp_path / "out")]) == 2
    assert "targets[0] (echo): option 'delay_s': expected a number" in capsys.readouterr().err


def test_fields_that_name_ids_must_name_existing_ones() -> None:
    raw = {"targets": [{"name": "echo", "id": "a"}], "datasets": [{**UNIT, "id": "unit"}],
           "judges": [{"name": "keyword-refusal", "id": "kw"}], "primary_judge": "kww",
           "attacks": [{"name": "typographic", "datasets": ["unti"], "targets": ["a", "b"]}]}
    with pytest.raises(ConfigError) as err:
        parse_config(raw, source="c.yaml")
    assert str(err.value).splitlines() == [
        "c.yaml: field 'attacks[0].datasets[0]': 'unti' is not one of the datasets' ids (did you mean 'unit'?); "
        "known: unit",
        "c.yaml: field 'attacks[0].targets[1]': 'b' is not one of the targets' ids; known: a",
        "c.yaml: field 'primary_judge': 'kww' is not one of the judges' ids (did you mean 'kw'?); known: kw",
    ]
    # a baseline left at its default may name no defense: nothing is compared then, as before
    assert parse_config({"targets": ["echo"], "datasets": [UNIT], "defenses": ["safety_prompt"]}).baseline_defense \
        == "none"


def test_numbers_keep_the_type_the_file_gives_them() -> None:
    """0 and 0.0 are different text in a result key: an int where a number is asked for stays an int."""
    params = parse_config({"targets": ["echo"], "datasets": [UNIT], "generation": {"temperature": 0}}).generation
    assert params.temperature == 0 and type(params.temperature) is int
    with pytest.raises(ConfigError, match="field 'generation': samples_per_prompt=3 needs temperature > 0"):
        parse_config({"targets": ["echo"], "datasets": [UNIT], "generation": {"samples_per_prompt": 3}})
    with pytest.raises(ConfigError, match=r"top_p': must be <= 1\.0, got 2"):
        parse_config({"targets": ["echo"], "datasets": [UNIT], "generation": {"top_p": 2}})


def test_option_values_against_declared_annotations() -> None:
    assert value_problem("float", 3) is None  # YAML's 3 is a fine float
    assert value_problem("float", "1e-3") == ("expected a number, got '1e-3' (YAML reads 1e-3 as text: write it "
                                              "with a dot, e.g. 1.0e-3) (declared float)")
    assert value_problem("int | None", None) is None
    assert value_problem("bool", 1) == "expected true or false, got 1 (declared bool)"
    assert value_problem("list[str]", ["a", 3]) == "[1]: expected a string, got 3 (declared list[str])"
    assert value_problem("tuple[int, int]", [1, 2]) is None  # YAML has lists only
    assert value_problem("Literal['a', 'b']", "c") == "expected 'a' or 'b', got 'c' (declared Literal['a', 'b'])"
    assert value_problem("str", Path("x")) is None  # a Python caller's Path for a path option
    # what cannot be read simply is let through: no annotation, Any, custom classes, forward references
    for annotation in ("", "Any", "str | Path", "Rubric", "'PILImage'", "Callable[[int], int]"):
        assert value_problem(annotation, object()) is None, annotation


def test_neurons_configs_check_types_too() -> None:
    find = {"target": "tiny", "labelled": [{"jsonl": "x.jsonl", "limit": "all"}], "batch_size": 2.5,
            "span": "middle"}
    with pytest.raises(ConfigError) as err:
        parse_find_config(find, source="f.yaml")
    assert str(err.value).splitlines() == [
        "f.yaml: field 'labelled[0].limit': expected an integer, got 'all'",
        "f.yaml: field 'batch_size': expected an integer, got 2.5",
    ]
    with pytest.raises(ConfigError, match="f.yaml: field 'span': expected one of response, prompt, image, all, auto"):
        parse_find_config({**find, "labelled": [{"jsonl": "x.jsonl"}], "batch_size": 2}, source="f.yaml")
    with pytest.raises(ConfigError, match="f.yaml: field 'toxic': expected a list, got 'a.jsonl'"):
        parse_find_config({"target": "tiny", "toxic": "a.jsonl"}, source="f.yaml")
    with pytest.raises(ConfigError, match=r"field 'labelled\[0\]': kind: not a field of a jsonl source"):
        parse_find_config({"target": "tiny", "labelled": [{"jsonl": "x.jsonl", "kind": "harmful"}]}, source="f.yaml")
    evaluation = {"target": "tiny", "methods": ["aura"], "toxicity": {"temperature": "warm", "kinds": ["harmfull"]}}
    with pytest.raises(ConfigError) as err:
        parse_eval_config(evaluation, source="e.yaml")
    assert str(err.value).splitlines() == [
        "e.yaml: field 'toxicity.temperature': expected a number, got 'warm'",
        "e.yaml: field 'toxicity.kinds[0]': expected 'harmful' or 'benign', got 'harmfull'",
    ]


def test_an_option_outside_args_is_pointed_there() -> None:
    with pytest.raises(ConfigError, match=r"c.yaml: field 'targets\[0\].delay_s': unknown field \(a component's "
                                          r"options go under 'args'\); known: name, args, id, modifiers"):
        parse_config({"targets": [{"name": "echo", "delay_s": 1}], "datasets": [UNIT]}, source="c.yaml")


def test_every_component_default_is_of_its_declared_type() -> None:
    """The option check would refuse what a component's own default is: its annotation is wrong (a loader that
    takes one name or a list declares ``str | Sequence[str]``)."""
    import ast

    from safeglass.registry import KINDS, registry

    wrong = []
    for kind in KINDS:
        for entry in registry(kind):
            for option in registry(kind).options(entry.name).options:
                try:
                    default = ast.literal_eval(option.default)
                except (ValueError, SyntaxError):
                    continue  # required, or an expression
                if default is not None and value_problem(option.annotation, default) is not None:
                    wrong.append(f"{kind} {entry.name}: {option.name}")
    assert wrong == []
