"""The unlearning objectives, one function each, on batches of (prompt, answer) examples (answer-only labels).

* ``ga``: gradient ascent on the refusals (minimise their log-likelihood);
* ``gd``: gradient difference: ascent on the refusals, descent on a retain set of benign answers;
* ``npo``: negative preference optimisation (Zhang et al. 2024): ``-2/beta * log sigmoid(-beta * log(p/p_ref))``
  per refusal, with the frozen aligned model as reference; plus the retain term when ``retain_weight`` > 0;
* ``rmu``: representation misdirection (Li et al. 2024, WMDP): a layer's activations on the forget prompts are
  pushed towards a fixed random direction scaled by ``steering_coeff`` times their mean norm, while the retain
  activations are held to the frozen model's;
* ``refusal_prefix``: fine-tuning on benign answers each opened by a refusal (the "refusal unlearning" recipe,
  arXiv 2601.19231): the refusal opening stops meaning "no";
* ``sft``: plain fine-tuning on the given answers (benign fine-tuning, re-alignment, and aligning a test model).

With LoRA the frozen model is the base under the adapter (``model.disable_adapter()``): no copy is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

METHODS: tuple[str, ...] = ("ga", "gd", "npo", "rmu", "refusal_prefix")
ALL_METHODS: tuple[str, ...] = (*METHODS, "sft")
USES_FORGET: frozenset[str] = frozenset({"ga", "gd", "npo", "rmu"})  # refusal_prefix and sft read other pairs


@dataclass(frozen=True)
class Context:
    """What a step's objective reads besides its batches."""

    method: str
    beta: float = 0.1
    retain_weight: float = 1.0
    layer: int = -2  # rmu: the decoder layer whose output is steered (negative: from the top)
    steering_coeff: float = 4.0  # rmu: the target norm, in units of the forget activations' mean norm
    rmu_alpha: float = 1.0  # rmu: the weight of the retain activations' term
    direction: Any = None  # rmu: the random unit vector (set by the unlearner, seeded)
    scale: float = 1.0  # rmu: the forget activations' mean norm at the start of the run


def mean_nll(model: Any, batch: dict[str, Any]) -> Any:
    """Token-mean cross-entropy on the answer tokens (transformers' causal-LM loss)."""
    return model(**batch).loss


def objective(model: Any, ctx: Context, forget: dict[str, Any] | None, retain: dict[str, Any] | None,
              ref_logp: Any = None) -> Any:
    """The loss of one step of `ctx.method`. `forget`: refusals (or, for sft / refusal_prefix, the pairs trained
    on); `retain`: benign answers; `ref_logp`: npo's reference log-likelihood of each forget row."""
    m = ctx.method
    if m in ("sft", "refusal_prefix"):
        return mean_nll(model, forget)
    if m == "ga":
        return -mean_nll(model, forget)
    if m == "gd":
        return -mean_nll(model, forget) + ctx.retain_weight * mean_nll(model, retain)
    if m == "npo":
        import torch.nn.functional as F

        from safeglass.align.measure import batch_logprobs

        logp, _ = batch_logprobs(model, forget)
        loss = -(2.0 / ctx.beta) * F.logsigmoid(-ctx.beta * (logp - ref_logp)).mean()
        return loss + (ctx.retain_weight * mean_nll(model, retain) if ctx.retain_weight > 0 else 0.0)
    if m == "rmu":
        return rmu_loss(model, ctx, forget, retain)
    raise ValueError(f"unknown unlearning method {m!r}; known: {', '.join(ALL_METHODS)}")


def layer_output(model: Any, batch: dict[str, Any], layer: int) -> Any:
    """The hidden state after decoder layer `layer` (negative: from the top), before the final norm."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    hs = out.hidden_states  # embeddings, then each layer's output (the last one after the final norm)
    n = len(hs) - 1
    i = layer % n
    if i == n - 1:
        raise ValueError(f"rmu layer {layer}: the last layer's output is normed; steer an earlier one")
    return hs[i + 1]


def rmu_loss(model: Any, ctx: Context, forget: dict[str, Any], retain: dict[str, Any] | None) -> Any:
    import torch

    mask = forget["attention_mask"].unsqueeze(-1).float()
    h = layer_output(model, forget, ctx.layer)
    goal = ctx.direction.to(h.dtype) * (ctx.steering_coeff * ctx.scale)
    loss = (((h - goal) ** 2) * mask).sum() / (mask.sum() * h.shape[-1])
    if retain is not None and ctx.rmu_alpha > 0:
        rmask = retain["attention_mask"].unsqueeze(-1).float()
        hr = layer_output(model, retain, ctx.layer)
        with torch.no_grad(), model.disable_adapter():
            frozen = layer_output(model, retain, ctx.layer)
        loss = loss + ctx.rmu_alpha * (((hr - frozen) ** 2) * rmask).sum() / (rmask.sum() * hr.shape[-1])
    return loss
