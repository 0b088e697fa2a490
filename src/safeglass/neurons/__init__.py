"""SGM / AurA neuron-level detoxification: record pooled neuron activations, score each neuron's
expertise (AUROC toxic vs non-toxic), derive glasses (per-neuron dampening factors in [0, 1]) and
wear them (hooks) or fold them into the weights.

    acts = record(target, items, span="response")
    expertise = Expertise.compute(acts, labels)
    glasses = Glasses.sgm(expertise, strength=1.0)
    with wear(target, glasses): ...          # or: handle = fold(target, glasses); handle.undo()
"""

from safeglass.neurons.expertise import Expertise, StreamingAUROC, auroc
from safeglass.neurons.glasses import Glasses
from safeglass.neurons.intervene import Folded, fold, wear
from safeglass.neurons.recording import Activations, SiteSlice, record

__all__ = ["Activations", "Expertise", "Folded", "Glasses", "SiteSlice", "StreamingAUROC", "auroc", "fold", "record",
           "wear"]
