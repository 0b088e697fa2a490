"""Component options: read from the code, checked at plan time for every kind, listed with defaults and help."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, subprocess_env

from safeglass.config import parse_config
from safeglass.eval.plan import build_plan
from safeglass.options import UnknownOptionError, options_of, parse_args_section
from safeglass.registry import KINDS, registry

# One real component of every kind, its misspelt option and the option meant. Every kind in KINDS must have a
# row, so a kind added later gets the same check or this test fails.
TYPOS = {
    "datasets": ("harmbench", "splt", "split"),
    "targets": ("smollm2", "dtyp", "dtype"),
    "modifiers": ("glasses", "pth", "path"),
    "attacks": ("text-jailbreak", "templte", "template"),
    "defenses": ("safety_prompt", "promt", "prompt"),
    "judges": ("keyword-refusal", "extra_phrase", "extra_phrases"),
    "scorers": ("mc-accuracy", "feild", "field"),
}


def test_every_kind_has_a_typo_case() -> None:
    assert set(TYPOS) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_an_unknown_option_of_any_kind_is_a_clear_plan_time_error(kind: str) -> None:
    name, typo, meant = TYPOS[kind]
    raw = {"targets": ["echo"], "datasets": [{"name": "advbench", "limit": 2}], "judges": ["keyword-refusal"]}
    spec = {"name": name, "args": {typo: 1}}
    if kind == "modifiers":  # listed under their target
        raw["targets"] = [{"name": "echo", "modifiers": [spec]}]
        where = f"cfg.yaml: targets[0] (echo) modifiers[0] ({name})"
    else:
        raw[kind] = [spec] if kind not in ("targets", "datasets") else [*raw[kind], spec]
        where = f"cfg.yaml: {kind}[{len(raw[kind]) - 1}] ({name})"
    with pytest.raises(UnknownOptionError) as err:
        build_plan(parse_config(raw, source="cfg.yaml"))
    msg = str(err.value)
    assert where in msg
    assert f"unknown option '{typo}' (did you mean '{meant}'?)" in msg
    assert "Known options:" in msg and meant in msg.split("Known options:")[1]


def test_the_check_comes_before_any_model_loads(monkeypatch) -> None:
    from safeglass.eval import runner

    monkeypatch.setattr(runner, "build_target", lambda spec: pytest.fail("a target was built"))
    raw = {"targets": [{"name": "hf-lm", "args": {"model": "nowhere", "dtyp": "bfloat16"}}], "datasets": ["advbench"]}
    with pytest.raises(UnknownOptionError, match="'dtyp'"):
        from safeglass.api import run

        run(raw, out="unused", progress=False)


def test_all_problems_are_reported_at_once_and_required_options_are_named() -> None:
    raw = {"targets": [{"name": "hf-vlm", "args": {"dtype": "float32"}}],
           "datasets": [{"name": "jsonl", "args": {"path": "x.jsonl", "feilds": {}}}],
           "attacks": [{"name": "typographic", "args": {"canvs": "plain"}}]}
    with pytest.raises(UnknownOptionError) as err:
        build_plan(parse_config(raw, source="c.yaml"))
    lines = str(err.value).splitlines()
    assert len(lines) == 3
    assert "datasets[0] (jsonl): unknown option 'feilds' (did you mean 'fields'?)" in lines[0]
    assert "targets[0] (hf-vlm): missing required option 'model'" in lines[1]
    assert "attacks[0] (typographic): unknown option 'canvs' (did you mean 'canvas'?)" in lines[2]


def test_a_dataset_limit_in_args_points_at_the_limit_field() -> None:
    with pytest.raises(UnknownOptionError, match="'limit' is set outside args"):
        registry("datasets").check("advbench", {"limit": 3})


def test_cli_exits_2_with_the_message_and_no_traceback(tmp_path) -> None:
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("targets: [{name: smollm2, args: {dtyp: bfloat16}}]\ndatasets: [{name: advbench, limit: 2}]\n"
                   "attacks: [{name: text-jailbreak, args: {templte: combination}}]\n")
    out = subprocess.run([sys.executable, "-m", "safeglass", "run", str(cfg), "--out", str(tmp_path / "r")],
                         env=subprocess_env(), capture_output=True, text=True)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "targets[0] (smollm2): unknown option 'dtyp' (did you mean 'dtype'?)" in out.stderr
    assert "attacks[0] (text-jailbreak): unknown option 'templte' (did you mean 'template'?)" in out.stderr
    assert not (tmp_path / "r").exists()


def test_user_components_are_checked_from_their_source_and_open_ones_let_through() -> None:
    reg = registry("datasets")
    assert reg.options("sgtest_components:load_unit").names == ["n", "categories"]
    with pytest.raises(UnknownOptionError, match="did you mean 'categories'"):
        reg.check("sgtest_components:load_unit", {"categores": 2})

    # a class that builds its instance in __new__ takes __new__'s parameters
    assert registry("judges").options("sgtest_components:PrefixRefusalJudge").names == ["version"]

    def factory(a: int = 1, **rest: object) -> None:
        """A user's factory.

        Args:
            a: the a.
        """

    opts = options_of(factory)
    assert opts.open and opts.names == ["a"] and opts.get("a").help == "the a."
    opts.check({"anything": 1}, "factory")  # open: undeclared keywords pass


def test_forwarded_options_follow_the_declaration() -> None:
    smol = registry("targets").options("smollm2")
    hf = registry("targets").options("hf-lm")
    assert not smol.open
    assert set(smol.names) == set(hf.names) - {"model", "gguf_file"}
    assert smol.get("dtype").help == hf.get("dtype").help
    tiny = registry("targets").options("tiny")
    assert {"family", "seed", "dtype", "batch_size"} <= set(tiny.names) and "glasses" not in tiny.names
    assert "tokenizer" not in tiny.names and "config" not in tiny.names


def test_every_builtin_option_has_a_line_and_no_line_names_a_missing_option() -> None:
    problems = []
    for kind in KINDS:
        for entry in registry(kind):
            opts = registry(kind).options(entry.name)
            if opts.open:
                problems.append(f"{kind}/{entry.name}: takes undeclared options")
            problems += [f"{kind}/{entry.name}: option '{o.name}' has no line in its docstring's Args"
                         for o in opts.options if not o.help]
            stale = set(parse_args_section(opts.doc)) - set(opts.names) - {"limit"}
            problems += [f"{kind}/{entry.name}: documents '{n}', which it does not take" for n in sorted(stale)]
    assert problems == []


def test_args_section_parsing() -> None:
    doc = """Summary.

    Args:
        model: hub id or local folder,
            continued here.
        dtype (str): float32 or bfloat16.

    Returns:
        nothing: not an option.
    """
    assert parse_args_section(doc) == {"model": "hub id or local folder, continued here.",
                                       "dtype": "float32 or bfloat16."}


def test_list_shows_options_with_defaults_without_importing_torch() -> None:
    code = ("import sys; from safeglass.cli import main; main(['list', 'attacks']); main(['list', 'targets', 'hf-lm']);"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'")
    out = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    template = next(line for line in lines if line.strip().startswith("template "))
    assert "[default 'combination']" in template and len(template.split("[")[0].split()) > 2  # a help line
    assert any(line.strip().startswith("model ") and line.endswith("[required]") for line in lines)
    js = subprocess.run([sys.executable, "-m", "safeglass", "list", "defenses", "--json"], env=subprocess_env(),
                        capture_output=True, text=True, check=True)
    prompt = next(o for e in json.loads(js.stdout) if e["name"] == "safety_prompt" for o in e["options"]
                  if o["name"] == "prompt")
    assert prompt["help"] and not prompt["required"]


def test_components_reference_is_generated_from_the_code() -> None:
    """docs/components.md is `scripts/components_doc.py`'s output: it cannot drift from the code."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "components_doc.py")], env=subprocess_env(),
                         capture_output=True, text=True, check=True)
    assert (ROOT / "docs" / "components.md").read_text(encoding="utf-8") == out.stdout, \
        "docs/components.md is stale: run .venv/bin/python scripts/components_doc.py > docs/components.md"


def test_readme_components_table_names_every_option() -> None:
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = re.search(r"\n## Components\n(.*?)\n### ", readme, re.S).group(1)
    missing = [f"{kind}/{e.name}.{o.name}" for kind in KINDS for e in registry(kind)
               for o in registry(kind).options(e.name).options if f"`{o.name}`" not in table]
    assert missing == []
