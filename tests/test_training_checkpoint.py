"""Checkpoints of the training loop: a training killed part way and resumed reaches the weights of an unbroken
one, and what is saved is safetensors and JSON, never pickle."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch  # noqa: E402  (required: make test installs it)

from safeglass.training.checkpoint import latest_checkpoint
from safeglass.training.loop import TrainLoop

STEPS = 10


class Killed(RuntimeError):
    pass


def _train(checkpoints: Path | None, kill_at: int | None = None) -> tuple[dict[str, torch.Tensor], list[float]]:
    """AdamW on every weight of a tiny Llama; each step's batch is drawn from torch's RNG, so a resume that lost
    the random state would train on other data."""
    from safeglass.targets.tiny import tiny_model_and_processor

    model, _ = tiny_model_and_processor("llama", seed=0)
    torch.manual_seed(0)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.01)
    losses: list[float] = []
    loop = TrainLoop(opt, params, 1e-2, STEPS, 0.2, checkpoint_dir=checkpoints, checkpoint_every=3,
                     extra=lambda: {"losses": losses})
    loop.resume()
    losses += loop.extra_state.get("losses", [])
    model.train()
    for step in loop:
        ids = torch.randint(3, model.config.vocab_size, (2, 8))
        if step == kill_at:
            raise Killed  # mid-step, after the batch was drawn: the checkpoint from before it is what remains
        loss = model(input_ids=ids, labels=ids).loss
        loop.update(loss)
        losses.append(round(loss.item(), 6))
    return {n: p.detach().clone() for n, p in model.named_parameters()}, losses


def test_a_killed_training_resumes_to_the_weights_of_an_unbroken_one(tmp_path) -> None:
    straight, straight_losses = _train(None)
    with pytest.raises(Killed):
        _train(tmp_path / "ckpt", kill_at=7)
    assert latest_checkpoint(tmp_path / "ckpt").name == "step-00000006"  # saved after steps 3 and 6; 6 kept
    resumed, resumed_losses = _train(tmp_path / "ckpt")
    assert resumed_losses == straight_losses and len(straight_losses) == STEPS
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[n], resumed[n]) for n in straight)  # CPU, one thread: bit for bit
    files = {p.name for p in (tmp_path / "ckpt").rglob("*") if p.is_file()}
    assert files == {"state.safetensors", "state.json"}  # no pickle anywhere
    assert latest_checkpoint(tmp_path / "ckpt").name == f"step-{STEPS:08d}"  # after the last step too
    again, _ = _train(tmp_path / "ckpt")  # a finished training resumed runs no step and keeps its weights
    assert all(torch.equal(straight[n], again[n]) for n in straight)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_resumed_loop_counts_the_seconds_before_the_kill_in_its_budget(tmp_path) -> None:
    clock = FakeClock()

    def loop() -> TrainLoop:
        w = torch.nn.Parameter(torch.zeros(2))
        return TrainLoop(torch.optim.SGD([w], lr=0.1), [w], 0.1, 100, 0.0, time_budget_s=9.0, clock=clock,
                         checkpoint_dir=tmp_path, checkpoint_every=2)

    first = loop()
    for step in first:
        if step == 2:
            break  # killed during step 2: the checkpoint after step 1 holds its 4 seconds
        clock.now += 2.0
    second = loop()
    ran = []
    for step in second:
        ran.append(step)
        clock.now += 2.0
    assert second.start_step == 2 and ran == [2, 3, 4]  # 4 s before + 6 s here > 9 s
    assert second.stop_fields() == {"steps_done": 5, "stopped_early_at_step": 5}
    with pytest.raises(ValueError, match="checkpoint_every"):
        TrainLoop(first.opt, first.params, 0.1, 3, 0.0, checkpoint_dir=tmp_path, checkpoint_every=0)
