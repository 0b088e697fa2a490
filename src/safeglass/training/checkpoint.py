"""A training state on disk without pickle, so a killed training resumes where it stopped.

Tensors (the trainable parameters, the optimizer's state tensors, torch's random state) go to one safetensors
file; everything else (the next step, seconds spent, the optimizer's scalars and hyperparameters, Python's and
NumPy's global random state, the caller's own JSON state) to one JSON file. ``torch.save`` of an optimizer's
``state_dict`` would be simpler, but it is pickle, and loading a pickle runs whatever code it names.

Each checkpoint is written to ``step-NNNNNNNN.tmp`` and renamed, so a kill mid-write leaves the previous one whole.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safeglass.training.weights import save_safetensors

TENSORS = "state.safetensors"
SCALARS = "state.json"
_PREFIX = "step-"


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest finished checkpoint in `folder` (None: none yet)."""
    done = sorted(p for p in folder.glob(f"{_PREFIX}*") if p.is_dir() and not p.name.endswith(".tmp"))
    return done[-1] if done else None


def save_checkpoint(folder: Path, next_step: int, params: Sequence[Any], opt: Any, *, elapsed: float,
                    extra: dict[str, Any] | None = None) -> Path:
    """Save the state before step `next_step` into `folder`, then drop older checkpoints; returns its path."""
    import numpy as np
    import torch

    tensors: dict[str, Any] = {f"param.{i}": p.detach() for i, p in enumerate(params)}
    scalars: dict[str, dict[str, Any]] = {}
    state = opt.state_dict()
    for pid, entry in state["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{pid}.{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = value
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors.update({f"rng.cuda.{d}": s for d, s in enumerate(torch.cuda.get_rng_state_all())})
    np_state = np.random.get_state()
    meta = {
        "next_step": next_step, "elapsed": elapsed, "extra": extra or {}, "opt_scalars": scalars,
        "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in state["param_groups"]],
        "python_random": random.getstate(),
        "numpy_random": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{_PREFIX}{next_step:08d}"
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_safetensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp / TENSORS)
    (tmp / SCALARS).write_text(json.dumps(meta, sort_keys=True) + "\n", encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    tmp.replace(final)
    for old in folder.glob(f"{_PREFIX}*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, params: Sequence[Any], opt: Any) -> dict[str, Any]:
    """Put a checkpoint's state back into `params`, `opt` and the random generators; returns its JSON part
    (``next_step``, ``elapsed``, ``extra``). `params` and `opt` must be built as for the run that saved it."""
    import numpy as np
    import torch
    from safetensors.torch import load_file

    tensors = load_file(str(path / TENSORS))
    meta = json.loads((path / SCALARS).read_text(encoding="utf-8"))
    if sum(k.startswith("param.") for k in tensors) != len(params):
        raise ValueError(f"{path}: saved for {sum(k.startswith('param.') for k in tensors)} trainable tensors, "
                         f"this training has {len(params)}")
    with torch.no_grad():
        for i, p in enumerate(params):
            p.copy_(tensors[f"param.{i}"])
    state: dict[int, dict[str, Any]] = {int(pid): dict(values) for pid, values in meta["opt_scalars"].items()}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    groups = opt.state_dict()["param_groups"]
    for group, saved in zip(groups, meta["param_groups"], strict=True):
        # JSON turned tuples (Adam's betas) into lists; the optimizer expects what it was built with
        group.update({k: tuple(v) if isinstance(group.get(k), tuple) else v for k, v in saved.items()})
    opt.load_state_dict({"state": state, "param_groups": groups})
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")), key=_device_index)]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, values, gauss = meta["python_random"]
    random.setstate((version, tuple(values), gauss))
    name, keys, pos, has_gauss, cached = meta["numpy_random"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    return meta


def _device_index(key: str) -> int:
    return int(key.rsplit(".", 1)[1])
