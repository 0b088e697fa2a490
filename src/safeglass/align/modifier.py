"""The ``unlearn`` target modifier: an unlearning attack as a trained LoRA adapter folded into a white-box causal
LM, so runs and studies evaluate the unlearned model like any other target.

    targets:
      - name: safesmol
        modifiers: [{name: unlearn, args: {method: npo, steps: 20, examples: 8, subset: easy,
                                           ranking: runs/align-safesmol/phases/forgetting.json}}]

Trained once per content key (its options, the ranking file's content, and the base target's key) through the
artifact store, checkpointed so a killed training resumes; only the adapter is stored (safetensors).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, ClassVar, Literal

from safeglass.targets.modifiers import TargetModifier, record_applied

RECIPE = 1  # bump when the training changes for the same options


class UnlearnModifier(TargetModifier):
    """Unlearn the target's refusals with one of the audit's methods before it generates.

    Args:
        method: ga, gd, npo, rmu or refusal_prefix.
        steps: optimizer steps.
        lr: learning rate (warmup then cosine decay).
        examples: how many alignment examples (or, for refusal_prefix, benign answers) are trained on.
        subset: random, or easy / hard from `ranking`.
        ranking: an audit's phases/forgetting.json (or align-audit.json): its easy -> hard order.
        forget_n: the alignment set the subset is drawn from (as the audit's data.forget_n).
        max_prompt_chars: the longest prompt kept in the alignment and retain sets.
        seed: data order, the random subset and the adapter's initialisation.
        step_examples: examples a step (the training batch; it changes the weights, unlike a batch_size).
        lora_r: the adapter's rank.
        top_layers: LoRA on the last N decoder layers only (None: all).
    """

    name: ClassVar[str] = "unlearn"
    trains: ClassVar[bool] = True

    def __init__(self, method: Literal["ga", "gd", "npo", "rmu", "refusal_prefix"] = "npo", steps: int = 20,
                 lr: float = 2e-3, examples: int = 8, subset: Literal["random", "easy", "hard"] = "random",
                 ranking: str | None = None, forget_n: int = 40, max_prompt_chars: int = 120, seed: int = 0,
                 step_examples: int = 4, lora_r: int = 8, top_layers: int | None = None) -> None:
        self.method, self.steps, self.lr, self.examples, self.subset = method, steps, lr, examples, subset
        self.ranking = None if ranking is None else str(ranking)
        self.forget_n, self.max_prompt_chars, self.seed = forget_n, max_prompt_chars, seed
        self.step_examples, self.lora_r, self.top_layers = step_examples, lora_r, top_layers

    def _options(self) -> dict[str, Any]:
        return {"method": self.method, "steps": self.steps, "lr": self.lr, "examples": self.examples,
                "subset": self.subset, "forget_n": self.forget_n, "max_prompt_chars": self.max_prompt_chars,
                "seed": self.seed, "step_examples": self.step_examples, "lora_r": self.lora_r,
                "top_layers": self.top_layers}

    def key(self) -> dict[str, Any]:
        from safeglass.hashing import file_hash

        ranking = None if self.ranking is None else file_hash(self.ranking, length=16)
        return {**self._options(), "ranking": ranking, "recipe": RECIPE}

    def _ranking(self) -> list[str]:
        data = json.loads(Path(self.ranking or "").read_text(encoding="utf-8"))
        res = data.get("result", data)
        order = res.get("ranking_easy_to_hard") or res.get("forgetting", {}).get("ranking_easy_to_hard")
        if not order:
            raise ValueError(f"unlearn: {self.ranking} holds no ranking_easy_to_hard")
        return list(order)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, **self.key()}

    def _method_config(self) -> Any:
        from safeglass.align.unlearn import MethodConfig

        return MethodConfig(name=self.method, lr=self.lr, batch_size=self.step_examples, lora_r=self.lora_r,
                            lora_alpha=2 * self.lora_r, top_layers=self.top_layers)

    def train(self, target: Any, workdir: Path) -> None:
        from safeglass.align.audit import refusal_prefixed
        from safeglass.align.data import build_data
        from safeglass.align.forgetting import subsets
        from safeglass.align.unlearn import Unlearner
        from safeglass.artifacts import CHECKPOINTS
        from safeglass.training.lora import save_adapter

        if self.subset != "random" and self.ranking is None:
            raise ValueError(f"unlearn: subset {self.subset!r} needs a ranking (an audit's phases/forgetting.json)")
        model = copy.deepcopy(target.model).float()  # the target itself stays as loaded until `apply`
        spec = {"forget_n": self.forget_n, "retain_n": max(self.examples, 8), "heldout_n": 2, "lookalikes_n": 0,
                "fluency_n": 0, "max_prompt_chars": self.max_prompt_chars, "answer_tokens": 24}
        data = build_data(model, target.tokenizer, spec, self.seed, say=lambda s: None)
        by_id = {p.id: p for p in data.forget}
        if self.method == "refusal_prefix":
            pairs = refusal_prefixed(data.retain[:self.examples], self.seed)
        else:
            order = self._ranking() if self.ranking is not None else [p.id for p in data.forget]
            ids = subsets([i for i in order if i in by_id], self.examples, self.seed)[self.subset]
            pairs = [by_id[i] for i in ids]
        unl = Unlearner(model, target.tokenizer, self._method_config(), seed=self.seed)
        unl.run(self.method, pairs, self.steps, retain=data.retain, stream=10, label="unlearn modifier",
                checkpoint_dir=workdir / CHECKPOINTS, every=max(1, self.steps // 4))
        save_adapter(unl.model, workdir, f"the target it modified ({getattr(target, 'name', 'target')})")
        (workdir / "unlearn.json").write_text(json.dumps({"examples": [p.id for p in pairs], **self.key()},
                                                         indent=1) + "\n", encoding="utf-8")

    def apply(self, target: Any) -> Any:
        from peft import get_peft_model, set_peft_model_state_dict
        from safetensors.torch import load_file

        from safeglass.training.lora import ADAPTER_FILE, lora_config

        if self.artifact is None:
            raise RuntimeError("unlearn: apply before train (the runner sets the artifact folder)")
        c = self._method_config()
        lc = lora_config(c.lora_r, c.lora_alpha, 0.0, c.target_modules)
        if c.top_layers is not None:
            total = int(target.model.config.num_hidden_layers)
            lc.layers_to_transform = list(range(max(0, total - c.top_layers), total))
        peft_model = get_peft_model(target.model, lc)
        tensors = {k: v.to(next(target.model.parameters()).dtype)
                   for k, v in load_file(str(Path(self.artifact) / ADAPTER_FILE)).items()}
        result = set_peft_model_state_dict(peft_model, tensors)
        if result.unexpected_keys:
            raise ValueError(f"{self.artifact}: unexpected tensors {result.unexpected_keys[:3]}")
        target.model = peft_model.merge_and_unload().eval()
        record_applied(target, self)
        return target

    def label(self) -> str:
        return f"unlearn {self.method} {self.subset} {self.examples}x{self.steps}"
