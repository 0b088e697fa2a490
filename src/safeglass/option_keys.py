"""Result keys derived from the options a component was built with.

A defense's or attack's result key says which of its replies a resumed run may reuse. Written by hand, a key
silently misses the option someone forgot to list (SmoothVLM's number of copies, AdaShield's iterations), and
a resume then serves replies made under other settings. :class:`KeyedByOptions` records every option a
component's constructor received, defaults included, so the default key is everything, less the options that
change speed or placement only (:data:`NON_OUTPUT_ARGS`). A file option enters by its content, not its path.
Components that wrote their key by hand before this existed keep it (their ``config()``); one test over the
registry (``tests/test_option_keys.py``) checks that every option of every component changes its key.
"""

from __future__ import annotations

import functools
import inspect
import os
from typing import Any

from safeglass.hashing import file_hash

# Options that change speed or placement, never outputs: they stay out of result keys so that a run resumed
# with another batch size, concurrency or device reuses its finished work.
NON_OUTPUT_ARGS = frozenset({
    "batch_size", "concurrency", "timeout_s", "max_retries", "backoff_s", "device", "delay_s",
    "progress",
})

_RECORDED = "_recorded_options"


class KeyedByOptions:
    """Records the options of the outermost ``__init__`` (bound to its signature, defaults applied) before it
    runs, so a subclass needs no code for its key: :meth:`option_key` is name + every output option."""

    name: str = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None or getattr(init, "__records_options__", False):
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self: Any, *args: Any, **kw: Any) -> None:
            # the outermost constructor is what the user called; a super().__init__ inside it must not overwrite
            if _RECORDED not in self.__dict__:
                self.__dict__[_RECORDED] = _bound_options(signature, self, args, kw)
            init(self, *args, **kw)

        recording_init.__records_options__ = True  # type: ignore[attr-defined]
        cls.__init__ = recording_init  # type: ignore[method-assign]

    def recorded_options(self) -> dict[str, Any]:
        """The options this component was built with (defaults included)."""
        return dict(self.__dict__.get(_RECORDED, {}))

    def option_key(self) -> dict[str, Any]:
        """Name and every option that can change an output; a file option by its content."""
        opts = self.recorded_options()
        return {"name": self.name, **{k: _keyed_value(k, v) for k, v in sorted(opts.items())
                                      if k not in NON_OUTPUT_ARGS}}


def _bound_options(signature: inspect.Signature, obj: Any, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> dict[str, Any]:
    bound = signature.bind(obj, *args, **kwargs)
    bound.apply_defaults()
    out: dict[str, Any] = {}
    params = list(signature.parameters.values())[1:]  # less self
    for p in params:
        if p.name not in bound.arguments:
            continue
        value = bound.arguments[p.name]
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        elif p.kind is inspect.Parameter.VAR_POSITIONAL:
            out[p.name] = list(value)
        else:
            out[p.name] = value
    return out


def _keyed_value(name: str, value: Any) -> Any:
    """A file option's content hash (an edited file must not reuse older replies; a moved one should)."""
    if (name.endswith("_file") or name == "path") and isinstance(value, str | os.PathLike) and os.path.isfile(value):
        return {"sha256": file_hash(str(value))}
    return value
