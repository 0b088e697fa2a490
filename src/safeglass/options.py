"""What a component accepts: its options, their defaults and a line on each, read from its code.

A component's options are the keyword parameters of its factory (a function, or a class's ``__init__``,
inherited ones included), plus, where a factory passes ``**kwargs`` on, those of the callables it names
with :func:`forwards_options`. Each option's line is its entry in the factory's docstring ``Args:``
section. Everything is read from the source with :mod:`ast`, without importing the component: listing
and checking options stays as cheap as listing names (no torch), and what is shown is what the code
takes, so the two cannot drift apart. A factory with an undeclared ``**kwargs`` (a user's component,
usually) is *open*: its named options are known, anything else is let through.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from safeglass.schema import ConfigError, did_you_mean, value_problem

REQUIRED = "<required>"


class OptionError(ConfigError):
    """A component's options do not fit what its code declares."""


class UnknownOptionError(OptionError):
    """An option a component does not take, or a required one left out; names the known ones."""


@dataclass(frozen=True)
class Option:
    name: str
    default: str = REQUIRED     # the default as source text (a literal's repr, or the expression)
    help: str = ""
    annotation: str = ""

    @property
    def required(self) -> bool:
        return self.default == REQUIRED


@dataclass(frozen=True)
class Options:
    """The options of one component; ``open`` when it also takes keywords it does not declare."""

    options: tuple[Option, ...] = ()
    open: bool = False
    doc: str = ""
    where: str = ""
    excluded: tuple[str, ...] = field(default=(), compare=False)

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.options]

    def get(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)

    def without(self, names: Iterable[str]) -> Options:
        drop = set(names)
        return Options(tuple(o for o in self.options if o.name not in drop), self.open, self.doc, self.where,
                       tuple(sorted(set(self.excluded) | drop)))

    def check(self, args: Mapping[str, Any], what: str) -> None:
        """Raise :class:`UnknownOptionError` for an option not taken or a required one missing."""
        known = self.names
        unknown = [a for a in args if a not in known]
        if unknown and not self.open:
            parts = [f"'{a}'{did_you_mean(a, known)}" for a in unknown]
            listed = ", ".join(known) or "none"
            note = "".join(f"; '{a}' is set outside args" for a in unknown if a in self.excluded)
            raise UnknownOptionError(f"{what}: unknown option{'s' if len(parts) > 1 else ''} {', '.join(parts)}"
                                     f"{note}. Known options: {listed}")
        missing = [o.name for o in self.options if o.required and o.name not in args]
        if missing:
            raise UnknownOptionError(f"{what}: missing required option{'s' if len(missing) > 1 else ''} "
                                     f"{', '.join(repr(m) for m in missing)} (give it under args)")

    def value_problems(self, args: Mapping[str, Any], what: str) -> list[str]:
        """A line for each value not of its option's declared type (``delay_s: soon`` for a float). Only simple
        annotations are checked (int, float, bool, str, their lists, ``| None``, Literal): a missing or complex
        one (a custom class, Path) lets any value through, as does None for an option whose default is None."""
        problems = []
        for name, value in args.items():
            option = self.get(name)
            if option is None or (value is None and option.default == "None"):
                continue
            problem = value_problem(option.annotation, value)
            if problem is not None:
                problems.append(f"{what}: option '{name}': {problem}")
        return problems


def forwards_options(*targets: str, exclude: Iterable[str] = (),
                     docs_from: Iterable[str] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare that a factory's ``**kwargs`` go to ``targets`` ("module:Qualname" strings), less ``exclude``
    (the ones the factory sets itself). The factory's own parameters without a line in its docstring take the
    line of the same option in ``targets`` or ``docs_from`` (a wrapper need not copy what it passes on). Read
    from the source by :func:`options_of`; the decorator only records it."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.__forwards_options__ = (tuple(targets), tuple(exclude))  # type: ignore[attr-defined]
        fn.__options_docs_from__ = tuple(docs_from)  # type: ignore[attr-defined]
        return fn

    return mark


def options_of(target: str | Callable[..., Any], exclude: Iterable[str] = ()) -> Options:
    """The options of a "module:Qualname" component (read from its source) or of a callable.

    ``exclude`` drops parameters the caller supplies itself (a dataset's ``limit``)."""
    if isinstance(target, str):
        opts = _from_source(target)
        if opts is None:  # not found in the source (built at import time): import it and look
            module, _, attr = target.partition(":")
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            opts = _from_callable(obj)
    else:
        opts = _from_callable(target)
    return opts.without(exclude) if exclude else opts


# --- docstrings ----------------------------------------------------------------------------------------------


_SECTIONS = {"args:", "arguments:", "options:", "parameters:"}
_OTHER_SECTIONS = {"returns:", "raises:", "yields:", "example:", "examples:", "note:", "notes:", "attributes:"}


def parse_args_section(doc: str | None) -> dict[str, str]:
    """``{name: line}`` from a Google-style ``Args:`` section (continuation lines joined)."""
    if not doc:
        return {}
    lines = inspect.cleandoc(doc).splitlines()
    out: dict[str, str] = {}
    inside, base, current = False, 0, None
    for line in lines:
        stripped = line.strip()
        if stripped.lower() in _SECTIONS:
            inside, base, current = True, -1, None
            continue
        if not inside:
            continue
        if stripped.lower() in _OTHER_SECTIONS or (stripped and not line.startswith((" ", "\t"))):
            inside = False
            continue
        if not stripped:
            current = None
            continue
        indent = len(line) - len(line.lstrip())
        if base < 0:
            base = indent
        name, sep, text = stripped.partition(":")
        name = name.split("(")[0].strip().lstrip("*")
        if indent == base and sep and name.isidentifier():
            current = name
            out[name] = text.strip()
        elif current is not None:
            out[current] = f"{out[current]} {stripped}".strip()
    return out


def summary_line(doc: str | None) -> str:
    return inspect.cleandoc(doc).split("\n\n")[0].replace("\n", " ").strip() if doc else ""


# --- reading the source ----------------------------------------------------------------------------------------


def _module_file(module: str) -> Path | None:
    """The source file of ``module``, found without importing it or its parent packages (a package's
    ``__init__`` may import torch; finding a submodule with importlib would run it)."""
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if not rest:
        return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    for folder in spec.submodule_search_locations or []:
        base = Path(folder).joinpath(*rest)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


@lru_cache(maxsize=256)
def _module_ast(module: str) -> tuple[ast.Module, str] | None:
    path = _module_file(module)
    if path is None:
        return None
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), str(path)
    except (OSError, SyntaxError):
        return None


def _package_of(module: str, tree_path: str) -> str:
    return module if tree_path.endswith("__init__.py") else module.rpartition(".")[0]


def _lookup(module: str, name: str, depth: int = 0) -> tuple[str, ast.AST] | None:
    """The top-level definition ``name`` in ``module``, following ``from x import name`` and aliases."""
    parsed = _module_ast(module)
    if parsed is None or depth > 8:
        return None
    tree, path = parsed
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == name:
            return module, node
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            if isinstance(node.value, ast.Name):
                return _lookup(module, node.value.id, depth + 1)
            return None
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    source = node.module or ""
                    if node.level:
                        pkg = _package_of(module, path)
                        for _ in range(node.level - 1):
                            pkg = pkg.rpartition(".")[0]
                        source = f"{pkg}.{source}" if source else pkg
                    return _lookup(source, alias.name, depth + 1)
    return None


def _constant(module: str, name: str) -> Any:
    parsed = _module_ast(module)
    if parsed is None:
        raise ValueError(name)
    for node in parsed[0].body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) and node.value is not None else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return ast.literal_eval(node.value)
    raise ValueError(name)


def _default_text(module: str, node: ast.expr) -> str:
    try:
        return repr(ast.literal_eval(node))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if isinstance(node, ast.Name):
        try:
            return repr(_constant(module, node.id))
        except (ValueError, TypeError, SyntaxError):
            pass
    return ast.unparse(node)


def _forwarding(fn: ast.FunctionDef) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] | None:
    """(targets, exclude, docs_from) of a ``@forwards_options`` decorator."""
    for dec in fn.decorator_list:
        if isinstance(dec, ast.Call) and getattr(dec.func, "id", getattr(dec.func, "attr", "")) == "forwards_options":
            targets = tuple(ast.literal_eval(a) for a in dec.args)
            kws = {kw.arg: tuple(ast.literal_eval(kw.value)) for kw in dec.keywords if kw.arg}
            return targets, kws.get("exclude", ()), kws.get("docs_from", ())
    return None


def _function_options(module: str, fn: ast.FunctionDef, doc_helps: Mapping[str, str], where: str,
                      depth: int) -> Options:
    args = fn.args
    helps = {**doc_helps, **parse_args_section(ast.get_docstring(fn))}  # the method's own lines win
    positional = args.args
    if positional and positional[0].arg in ("self", "cls"):
        positional = positional[1:]
    defaults: list[ast.expr | None] = [None] * (len(args.args) - len(args.defaults)) + list(args.defaults)
    defaults = defaults[len(args.args) - len(positional):]
    params = [*zip(positional, defaults), *zip(args.kwonlyargs, args.kw_defaults)]
    opts = [Option(a.arg, REQUIRED if d is None else _default_text(module, d), helps.get(a.arg, ""),
                   ast.unparse(a.annotation) if a.annotation is not None else "") for a, d in params]
    open_ = False
    fwd = _forwarding(fn)
    if args.kwarg is not None:
        if fwd is None:
            open_ = True
        else:
            own = {o.name for o in opts}
            for target in fwd[0]:
                sub = _from_source(target, depth + 1)
                if sub is None:
                    open_ = True
                    continue
                open_ = open_ or sub.open
                for o in sub.options:
                    if o.name not in own and o.name not in fwd[1]:
                        own.add(o.name)
                        opts.append(Option(o.name, o.default, helps.get(o.name, o.help), o.annotation))
    if fwd is not None and any(not o.help for o in opts):
        lines: dict[str, str] = {}
        for target in (*fwd[0], *fwd[2]):  # what the kwargs go to first, then the named sources
            sub = _from_source(target, depth + 1)
            for o in sub.options if sub else ():
                lines.setdefault(o.name, o.help)
        opts = [o if o.help else Option(o.name, o.default, lines.get(o.name, ""), o.annotation) for o in opts]
    return Options(tuple(opts), open_, ast.get_docstring(fn) or "", where)


def _class_options(module: str, cls: ast.ClassDef, depth: int, method: str = "__init__") -> Options | None:
    class_doc = ast.get_docstring(cls) or ""
    # A constructor is __init__, or __new__ when a class builds its instance there (factories shaped as classes).
    names = (method, "__new__") if method == "__init__" else (method,)
    for name in names:
        for node in cls.body:
            if isinstance(node, ast.FunctionDef) and node.name == name:
                opts = _function_options(module, node, parse_args_section(class_doc), f"{module}:{cls.name}", depth)
                if any(not o.help for o in opts.options):  # a subclass may leave its lines to its base
                    base_opts = _base_options(module, cls, depth, method)
                    base_help = {o.name: o.help for o in base_opts.options} if base_opts else {}
                    opts = Options(tuple(Option(o.name, o.default, o.help or base_help.get(o.name, ""), o.annotation)
                                         for o in opts.options), opts.open, opts.doc, opts.where)
                return Options(opts.options, opts.open, class_doc or opts.doc, opts.where)
    inherited = _base_options(module, cls, depth, method)  # inherited constructor
    if inherited is not None:
        helps = parse_args_section(class_doc)
        return Options(tuple(Option(o.name, o.default, helps.get(o.name, o.help), o.annotation)
                             for o in inherited.options), inherited.open, class_doc or inherited.doc,
                       f"{module}:{cls.name}")
    if method == "__init__" and all(isinstance(b, ast.Name) for b in cls.bases):
        return Options((), False, class_doc, f"{module}:{cls.name}")  # object's constructor: no options
    return None


def _base_options(module: str, cls: ast.ClassDef, depth: int, method: str) -> Options | None:
    """The options of the first base class (in this module or imported into it) that defines ``method``."""
    for base in cls.bases:
        if not isinstance(base, ast.Name):
            continue
        found = _lookup(module, base.id)
        if found is not None and isinstance(found[1], ast.ClassDef):
            inherited = _class_options(found[0], found[1], depth + 1, method)
            if inherited is not None:
                return inherited
    return None


def _from_source(target: str, depth: int = 0) -> Options | None:
    if depth > 6 or ":" not in target:
        return None
    module, _, qual = target.partition(":")
    head, _, method = qual.partition(".")
    found = _lookup(module, head)
    if found is None:
        return None
    mod, node = found
    if isinstance(node, ast.ClassDef):
        return _class_options(mod, node, depth, method or "__init__")
    if isinstance(node, ast.FunctionDef) and not method:
        return _function_options(mod, node, {}, f"{mod}:{node.name}", depth)
    return None


def _from_callable(obj: Callable[..., Any]) -> Options:
    """The runtime view, for components registered as objects (``@register``) rather than as source paths."""
    fn = obj.__init__ if isinstance(obj, type) else obj  # type: ignore[misc]
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return Options(open=True)
    helps = {**parse_args_section(getattr(fn, "__doc__", None)), **parse_args_section(getattr(obj, "__doc__", None))}
    opts, open_ = [], False
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            fwd = getattr(obj, "__forwards_options__", None)
            if fwd is None:
                open_ = True
                continue
            own = {o.name for o in opts}
            for target in fwd[0]:
                sub = _from_source(target) or Options(open=True)
                open_ = open_ or sub.open
                opts += [o for o in sub.options if o.name not in own and o.name not in fwd[1]]
            continue
        if p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY):
            continue
        default = REQUIRED if p.default is p.empty else repr(p.default)
        ann = "" if p.annotation is p.empty else str(p.annotation)
        opts.append(Option(p.name, default, helps.get(p.name, ""), ann))
    return Options(tuple(opts), open_, getattr(obj, "__doc__", "") or "", getattr(obj, "__qualname__", ""))
