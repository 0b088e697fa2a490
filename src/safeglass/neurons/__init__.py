"""SGM / AurA neuron-level detoxification: record pooled neuron activations, score each neuron's
expertise (AUROC toxic vs non-toxic), derive glasses (per-neuron dampening factors in [0, 1]) and
wear them (hooks) or fold them into the weights.

    acts = record(target, items, span="response")
    expertise = Expertise.compute(acts, labels)
    glasses = Glasses.sgm(expertise, strength=1.0)
    with wear(target, glasses): ...          # or: handle = fold(target, glasses); handle.undo()
"""


import importlib
from typing import Any

# Names resolve on first use: the glasses modifier's key is read at plan time, which must not import torch.
_EXPORTS = {"Expertise": "expertise", "StreamingAUROC": "expertise", "auroc": "expertise", "Glasses": "glasses",
            "Folded": "intervene", "fold": "intervene", "wear": "intervene", "Activations": "recording",
            "SiteSlice": "recording", "record": "recording"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'safeglass.neurons' has no attribute {name!r}")
    return getattr(importlib.import_module(f"safeglass.neurons.{_EXPORTS[name]}"), name)
