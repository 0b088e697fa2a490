"""An organism's evaluation replies: the same as one target call, in input order, with a progress bar (verify and
builds spent minutes generating them in silence)."""

from __future__ import annotations

from safeglass.organisms.replies import greedy_replies
from safeglass.targets.doubles import EchoTarget
from safeglass.types import Turn


class BatchRecorder(EchoTarget):
    """Echoes, and records the batches it was handed."""

    def __init__(self, batch_size: int) -> None:
        super().__init__()
        self.batch_size, self.batches = batch_size, []

    def generate(self, conversations, params):
        self.batches.append([c[-1].text for c in conversations])
        return super().generate(conversations, params)


def test_replies_come_in_the_targets_own_batches_in_input_order_with_a_bar(capsys) -> None:
    prompts = ["a much longer prompt here", "b", "ccc", "dd", "a medium one", "e"]
    convs = [(Turn("user", p),) for p in prompts]
    whole = BatchRecorder(batch_size=4)
    whole.generate(sorted(convs, key=lambda c: len(c[-1].text)), None)  # one call, as the recipes made it
    sliced = BatchRecorder(batch_size=4)
    gens = greedy_replies(sliced, convs, max_new_tokens=4, desc="test replies", show=True)
    assert [g.text for g in gens] == [f"You said: {p}" for p in prompts]
    assert [b for batch in sliced.batches for b in batch] == whole.batches[0]
    assert [len(b) for b in sliced.batches] == [4, 2]
    err = capsys.readouterr().err
    assert "test replies" in err and "6/6" in err
