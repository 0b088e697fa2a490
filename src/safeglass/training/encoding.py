"""Token ids for supervised answers: the loss reads the answer (and its end of turn), never the prompt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

IGNORE = -100  # the label torch's cross-entropy (and transformers' causal-LM loss) skips

Example = tuple[list[int], list[int]]  # (input_ids, labels)


def pad_id(tokenizer: Any) -> int:
    """The padding id; tokenizers without one pad with end-of-sequence (pads carry no loss and are masked)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def answer_ids(tokenizer: Any, answer: str, eos: bool) -> list[int]:
    """The answer's ids, with the end-of-turn token when the answer is complete (a cut one must not learn to
    stop there)."""
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    return ids + [tokenizer.eos_token_id] if eos else ids


def with_answer_labels(prompt: Sequence[int], answer: Sequence[int], max_len: int | None = None) -> Example | None:
    """(input_ids, labels): prompt then answer, labels IGNORE on the prompt. With `max_len`, a too-long example
    loses the end of its answer; None when no answer token fits (such an example teaches nothing)."""
    a = list(answer)
    if max_len is not None:
        room = max_len - len(prompt)
        if room < 1:
            return None
        a = a[:room]
    if not a:
        return None
    return list(prompt) + a, [IGNORE] * len(prompt) + a


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, Any]:
    """Right-padded batch (positions of the real tokens stay 0..n-1); pads are masked and carry no loss."""
    import torch

    n = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), n), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), n), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), n), dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        ids[i, :len(x)] = torch.tensor(x)
        labels[i, :len(y)] = torch.tensor(y)
        mask[i, :len(x)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
