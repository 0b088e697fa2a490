"""Data flows one way. Every import in src/safeglass, lazy ones inside functions included, goes to the kernel
or to a stage before the importing module's own; the README's layout section shows the same chain."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
README = Path(__file__).resolve().parents[1] / "README.md"

# (stage, module prefixes), in the order data flows. A module's stage is that of its longest matching prefix.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("kernel", ("safeglass.types", "safeglass.hashing", "safeglass.machine", "safeglass.paths", "safeglass.version",
                "safeglass.stats", "safeglass.safe_pickle", "safeglass.packages", "safeglass.options",
                "safeglass.option_keys", "safeglass.schema",
                "safeglass.registry", "safeglass.catalog", "safeglass.artifacts", "safeglass.processes")),
    ("data", ("safeglass.data",)),
    ("attacks", ("safeglass.attacks",)),
    ("defenses", ("safeglass.defenses",)),
    ("targets", ("safeglass.targets",)),
    ("judges", ("safeglass.judges", "safeglass.scorers")),
    ("eval", ("safeglass.eval", "safeglass.config")),
    ("reporting", ("safeglass.reporting",)),
    ("wings", ("safeglass.study", "safeglass.neurons", "safeglass.organisms", "safeglass.training", "safeglass.clip",
               "safeglass.rl", "safeglass.continual", "safeglass.align")),
    ("front", ("safeglass.api", "safeglass.cli", "safeglass.__main__", "safeglass.serve")),
]
RANK = {name: i for i, (name, _) in enumerate(STAGES)}


def stage_of(module: str) -> str:
    if module == "safeglass":  # the package's front door re-exports the API
        return "front"
    best = max(((p, s) for s, prefixes in STAGES for p in prefixes if module == p or module.startswith(p + ".")),
               key=lambda ps: len(ps[0]), default=None)
    if best is None:
        raise AssertionError(f"{module}: in no stage; add its package to STAGES (and the README's layout)")
    return best[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, me: str | None = None) -> list[tuple[int, str]]:
    """(line, module) of every project import: top-level, inside functions, and import_module("...") calls."""
    me = me or module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            found += [(node.lineno, _submodule(base, a.name)) for a in node.names]
        elif (isinstance(node, ast.Call) and _called(node) == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return [(line, m) for line, m in found if m == "safeglass" or m.startswith("safeglass.")]


def _called(call: ast.Call) -> str | None:
    return getattr(call.func, "attr", getattr(call.func, "id", None))


def _submodule(base: str, name: str) -> str:
    candidate = f"{base}.{name}"
    path = SRC / candidate.replace(".", "/")
    return candidate if path.with_suffix(".py").exists() or path.is_dir() else base


def violations(files: dict[Path, str] | None = None) -> list[str]:
    """Imports against the chain, for every module (or for the given {path: module name})."""
    out = []
    files = files or {p: module_name(p) for p in sorted((SRC / "safeglass").rglob("*.py"))}
    for path, me in files.items():
        mine = stage_of(me)
        for line, target in imports_of(path, me):
            theirs = stage_of(target)
            if theirs == "kernel" or target == me:
                continue
            if mine == "kernel" or RANK[theirs] > RANK[mine]:
                out.append(f"{path.name}:{line}: {me} ({mine}) imports {target} ({theirs})")
    return out


def test_every_import_follows_the_chain() -> None:
    assert violations() == []


def test_the_checker_sees_lazy_and_relative_imports(tmp_path) -> None:
    p = tmp_path / "probe.py"
    p.write_text("from ..judges import base\n\ndef f():\n    from safeglass.api import run\n    import importlib\n"
                 "    importlib.import_module('safeglass.cli')\n")
    assert [m for _, m in imports_of(p, "safeglass.data.probe")] == ["safeglass.judges.base", "safeglass.api",
                                                                    "safeglass.cli"]
    assert len(violations({p: "safeglass.data.probe"})) == 3
    assert violations({p: "safeglass.api"}) == []  # the front door may import anything


def test_the_kernel_imports_only_the_kernel() -> None:
    for path in sorted((SRC / "safeglass").glob("*.py")):
        me = module_name(path)
        if stage_of(me) != "kernel":
            continue
        bad = [t for _, t in imports_of(path) if stage_of(t) != "kernel"]
        assert bad == [], f"{me} imports {bad}"


def test_the_readme_layout_names_the_chain() -> None:
    text = README.read_text(encoding="utf-8")
    layout = text[text.index("## Layout"):]
    chain = [w.strip() for w in layout.split("Data flows one way:", 1)[1].split("\n", 1)[0].split("->")]
    assert [c.split(" ")[0].strip(".`") for c in chain] == [s for s, _ in STAGES[1:]]


def test_no_test_skips_a_required_asset() -> None:
    """A missing required asset fails the tests (conftest.require); a skip would hide a broken install."""
    offenders = []
    for path in sorted((SRC.parent / "tests").glob("*.py")):
        if path.resolve() == Path(__file__).resolve():
            continue  # this test names the calls it looks for
        text = path.read_text(encoding="utf-8")
        for needle in ("pytest.skip(", "importorskip(", "mark.skipif("):
            if needle in text:
                offenders.append(f"{path.name}: {needle}")
    assert offenders == []
