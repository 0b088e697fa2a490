import subprocess
import sys

import pytest
from conftest import subprocess_env

from safeglass.config import ConfigError, load_config, parse_config
from safeglass.registry import UnknownComponentError, registry


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownComponentError) as err:
        registry("datasets").entry("advbnech")
    assert "Did you mean: advbench" in str(err.value)


def test_module_path_names_resolve_without_registration():
    fn = registry("datasets").get("sgtest_components:load_unit")
    assert len(fn(limit=5)) == 5


def test_every_builtin_entry_resolves():
    for kind in ("datasets", "targets", "attacks", "defenses", "judges"):
        for entry in registry(kind):
            assert callable(entry.load()), f"{kind}/{entry.name}"


def test_listing_does_not_import_torch():
    code = ("import sys; from safeglass.cli import main; main(['list', 'targets']); "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'")
    out = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "hf-vlm" in out.stdout


def test_config_errors_name_the_file_and_field(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("targets: [echo]\ndatasets: [advbench]\ngeneration: {max_tokens: 5}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: field 'generation.max_tokens': unknown field "
                                          r"\(did you mean 'max_new_tokens'\?\)"):
        load_config(p)
    with pytest.raises(ConfigError, match="x.yaml: field 'datasets': required"):
        parse_config({"targets": ["echo"]}, source="x.yaml")
    with pytest.raises(ConfigError, match=r"field 'datasets\[0\].limit': must be >= 0, got -1"):
        parse_config({"targets": ["echo"], "datasets": [{"name": "a", "limit": -1}]})
    with pytest.raises(ConfigError, match="duplicate id"):
        parse_config({"targets": ["echo", "echo"], "datasets": ["a"]})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_key_config_ignores_speed_only_arguments():
    a = parse_config({"targets": [{"name": "hf-lm", "args": {"model": "m", "batch_size": 4}}], "datasets": ["x"]})
    b = parse_config({"targets": [{"name": "hf-lm", "args": {"model": "m", "batch_size": 32}}], "datasets": ["x"]})
    c = parse_config({"targets": [{"name": "hf-lm", "args": {"model": "m2"}}], "datasets": ["x"]})
    assert a.targets[0].key_config() == b.targets[0].key_config() != c.targets[0].key_config()


def test_glasses_enter_result_keys_by_content_not_path(tmp_path) -> None:
    import json

    from safeglass.config import ConfigError, parse_config

    for name, h in (("a", "h1"), ("b", "h1"), ("c", "h2")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "glasses.json").write_text(json.dumps({"hash": h}))

    def key(name: str) -> dict:
        raw = {"targets": [{"name": "tiny", "args": {"glasses": str(tmp_path / name)}}], "datasets": ["jsonl"]}
        return parse_config(raw).targets[0].key_config()

    assert key("a") == key("b")
    assert key("a") != key("c")
    with pytest.raises(ConfigError, match="glasses"):
        key("missing")


def test_organism_targets_enter_result_keys_by_weights(tmp_path) -> None:
    """A rebuilt organism keeps its name; the key must move with its weights (or a resumed run would reuse
    replies of the old weights) and must not move when only the card's figures are re-measured."""
    import json

    from safeglass.config import ComponentSpec

    def build(name: str, sha: str, tower: str, vqa: float) -> str:
        (tmp_path / name).mkdir()
        card = {"weights_sha256": sha, "components": {"shapeclip": {"sha256": tower}}, "measured": {"vqa": vqa}}
        (tmp_path / name / "card.json").write_text(json.dumps(card))
        return str(tmp_path / name)

    def key(path: str, target: str = "safesmol-vl") -> dict:
        return ComponentSpec("targets", target, "t", {"path": path}).key_config()

    a, recarded = build("a", "p1", "t1", 0.6), build("b", "p1", "t1", 0.7)
    new_projector, new_tower = build("c", "p2", "t1", 0.6), build("d", "p1", "t2", 0.6)
    assert key(a) == key(recarded)
    assert len({str(key(p)) for p in (a, new_projector, new_tower)}) == 3
    assert "weights" not in key(a, target="tiny")["args"]  # not an organism: its args are its identity


def test_local_model_folders_enter_result_keys_by_content(tmp_path) -> None:
    from safeglass.config import ComponentSpec

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.safetensors").write_bytes(b"a" * 100)
    (tmp_path / "m" / "config.json").write_text("{}")

    def key() -> dict:
        return ComponentSpec("targets", "hf-lm", "t", {"model": str(tmp_path / "m")}).key_config()

    before = key()
    assert before == key() and before["args"]["weights"].startswith("files:")
    (tmp_path / "m" / "config.json").write_text('{"x": 1}')  # not a weights file
    assert key() == before
    (tmp_path / "m" / "model.safetensors").write_bytes(b"b" * 100)  # re-trained in place
    assert key() != before
    hub = ComponentSpec("targets", "hf-lm", "t", {"model": "Org/never-a-local-dir"}).key_config()
    assert "weights" not in hub["args"]


def test_build_passes_a_components_own_name_argument() -> None:
    from safeglass.registry import registry

    target = registry("targets").build("echo", name="my echo")
    assert target.name == "my echo"


def test_attacks_can_be_scoped_to_targets_and_datasets():
    from safeglass.eval.plan import build_plan

    raw = {"targets": [{"name": "echo", "id": "a"}, {"name": "echo", "id": "b", "args": {"name": "b"}}],
           "datasets": [{"name": "sgtest_components:load_unit", "id": "u", "args": {"n": 4}},
                        {"name": "sgtest_components:load_topics", "id": "t"}],
           "attacks": ["none", {"name": "typographic", "datasets": ["t"], "targets": ["b"]}]}
    plan = build_plan(parse_config(raw))
    combos = {(it.target, it.dataset, it.attack) for it in plan.items}
    assert ("b", "t", "typographic") in combos
    assert {c for c in combos if c[2] == "typographic"} == {("b", "t", "typographic")}
    assert len(plan.items) == 2 * (4 + 3) + 3
    with pytest.raises(ConfigError, match=r"field 'attacks\[1\].datasets\[0\]': 'x' is not one of the datasets' ids; "
                                          "known: u, t"):
        parse_config({**raw, "attacks": ["none", {"name": "typographic", "datasets": ["x"]}]})
    with pytest.raises(ConfigError, match=r"field 'attacks\[0\].targets': expected a list, got 'b'"):
        parse_config({**raw, "attacks": [{"name": "typographic", "targets": "b"}]})
    with pytest.raises(ConfigError, match="unknown field"):
        parse_config({**raw, "defenses": [{"name": "none", "targets": ["a"]}]})
