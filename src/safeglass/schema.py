"""Typed configs: one pydantic model per config kind, and problems that name the file and the field.

A config kind is one :class:`Schema` subclass: fields with their types, defaults and bounds; an unknown field is
an error with a "did you mean". :func:`validate` reads a mapping into it and raises one :class:`ConfigError`
that lists every problem, a line each (``cfg.yaml: field 'generation.max_new_tokens': expected an integer, got
'lots'``). Checks that span fields (an id naming another entry, a registry name) go in
:meth:`Schema.cross_check`. :func:`value_problem` checks a component option against the annotation its code
declares. A kernel module: run, neurons and study configs and the option checks all read their input here.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    WrapValidator,
)

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]


class ConfigError(ValueError):
    """A config problem, with the file and the field at fault (one line a problem)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def field_path(loc: Loc) -> str:
    """``('targets', 0, 'args')`` as ``targets[0].args``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f"{'.' if out else ''}{part}"
    return out


def shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _keep_as_given(value: Any, handler: Any) -> Any:
    handler(value)  # the type and the bounds
    return value    # an int stays an int: 0 and 0.0 are different text in result keys


# A number (an int is one): checked as a float, kept as written, so that keys hash what the file says.
Number = Annotated[float, WrapValidator(_keep_as_given)]
# A component's options (`args:` left empty in YAML is null: no options).
Args = Annotated[dict[str, Any], BeforeValidator(lambda v: {} if v is None else v)]


class Schema(BaseModel):
    """The base of every config kind: strict types (``seed: abc`` and ``"5"`` for an integer are errors, an
    integer is a number), unknown fields forbidden."""

    model_config = ConfigDict(extra="forbid", strict=True)
    config_kind: ClassVar[str] = "config"

    def cross_check(self) -> list[Problem]:
        """Problems across fields, once every field has its type: (location, message) pairs."""
        return []


S = TypeVar("S", bound=Schema)


def validate(schema: type[S], raw: Any, source: str) -> S:
    """``raw`` read into ``schema``; every problem at once, as one ConfigError naming ``source`` and the fields."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a {schema.config_kind} config is a mapping, not {type(raw).__name__}")
    try:
        model = schema.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(render(source, [(tuple(e["loc"]), describe(e, schema)) for e in exc.errors()])) from None
    problems = model.cross_check()
    if problems:
        raise ConfigError(render(source, problems))
    return model


def render(source: str, problems: Iterable[Problem]) -> str:
    return "\n".join(f"{source}: field '{field_path(loc)}': {msg}" if loc else f"{source}: {msg}"
                     for loc, msg in problems)


_EXPECTED = {"int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
             "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
             "bool_parsing": "true or false", "string_type": "a string", "list_type": "a list",
             "tuple_type": "a list", "set_type": "a list", "dict_type": "a mapping", "model_type": "a mapping",
             "model_attributes_type": "a mapping", "none_required": "null"}
_BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
           "less_than": ("<", "lt")}


def describe(error: Mapping[str, Any], schema: type[BaseModel] | None = None) -> str:
    """One pydantic error in a config's words."""
    kind, got, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    if kind in _EXPECTED:
        hint = ""
        if kind.startswith("float") and isinstance(got, str) and _yaml_text_number(got):
            e = got.lower().index("e")
            hint = f" (YAML reads {got} as text: write it with a dot, e.g. {got[:e]}.0{got[e:]})"
        return f"expected {_EXPECTED[kind]}, got {shown(got)}{hint}"
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        known = _fields_at(schema, tuple(error["loc"])[:-1]) if schema is not None else []
        name = str(error["loc"][-1])
        hint = " (a component's options go under 'args')" if "args" in known and not did_you_mean(name, known) else ""
        return f"unknown field{did_you_mean(name, known) or hint}" + (f"; known: {', '.join(known)}" if known else "")
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}, got {shown(got)}"
    if kind in _BOUNDS:
        sign, key = _BOUNDS[kind]
        return f"must be {sign} {ctx.get(key)}, got {shown(got)}"
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        return "must list at least one entry" if least == 1 else f"must list at least {least} entries"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    msg = str(error.get("msg", kind))
    return f"{msg[:1].lower()}{msg[1:]}, got {shown(got)}"


def _yaml_text_number(text: str) -> bool:
    """``1e-3``: a number to Python, text to YAML 1.1 (its floats need a dot)."""
    try:
        float(text)
    except ValueError:
        return False
    return "e" in text.lower() and "." not in text


def _fields_at(schema: type[BaseModel], loc: Loc) -> list[str]:
    """The field names of the model found at ``loc`` under ``schema`` (for "did you mean")."""
    tp: Any = schema
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(part, int):
            args = typing.get_args(tp)
            tp = args[0] if typing.get_origin(tp) in (list, tuple) and args else None
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        else:
            return []
    tp = _unwrap(tp)
    return list(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _unwrap(tp: Any) -> Any:
    """``X`` from ``Annotated[X, ...]`` and ``X | None``."""
    while True:
        if typing.get_origin(tp) is Annotated:
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) in (typing.Union, types.UnionType):
            rest = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(rest) != 1:
                return tp
            tp = rest[0]
        else:
            return tp


# --- component options against the annotations their code declares -------------------------------------------

def _path_is_text(value: Any, handler: Any) -> Any:
    return value if isinstance(value, os.PathLike) else handler(value)  # a Python caller's Path for a str option


# What a simple annotation may name. Scalars are strict (a YAML string is no number; an int is a float); lists
# and tuples accept each other, as YAML has only lists. A name not here (Path, a custom class) makes the
# annotation one we do not check.
_SIMPLE: dict[str, Any] = {
    "int": StrictInt, "float": StrictFloat, "bool": StrictBool,
    "str": Annotated[StrictStr, WrapValidator(_path_is_text)], "list": list, "tuple": tuple, "dict": dict, "set": set,
    "Sequence": Sequence, "Mapping": Mapping, "Literal": Literal, "Optional": typing.Optional, "Union": typing.Union,
    "Any": Any, "None": None, "typing": typing,
}


@lru_cache(maxsize=512)
def _adapter(annotation: str) -> TypeAdapter[Any] | None:
    if not annotation:
        return None
    try:
        tp = eval(annotation, {"__builtins__": {}}, _SIMPLE)  # only the names above resolve
        return TypeAdapter(tp)
    except Exception:  # an annotation we cannot read (a custom type, a forward reference): not checked
        return None


def value_problem(annotation: str, value: Any) -> str | None:
    """Why ``value`` is not of the type ``annotation`` (source text, e.g. ``float``, ``int | None``,
    ``list[str]``, ``Literal['a', 'b']``) declares, or None when it is or when the annotation is not a simple
    one (absent, ``Any``, a custom class: let through)."""
    adapter = _adapter(annotation)
    if adapter is None:
        return None
    try:
        adapter.validate_python(value)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        where = field_path(tuple(p for p in first["loc"] if isinstance(p, int)))
        return f"{where + ': ' if where else ''}{describe(first)} (declared {annotation})"
    except Exception:  # a type pydantic cannot check at all: let it through
        return None
    return None
