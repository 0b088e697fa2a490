"""The shared training toolkit (safeglass.training): loss on answer tokens only, the warmup-cosine curve, the time
budget, LoRA set-up and saving, reproducible weight files and the card fields every recipe writes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import pytest
import torch  # noqa: E402  (required: make test installs it)

from safeglass.training import cards  # noqa: E402
from safeglass.training.encoding import IGNORE, answer_ids, collate, pad_id, with_answer_labels  # noqa: E402
from safeglass.training.loop import TrainLoop  # noqa: E402
from safeglass.training.schedule import cosine_with_warmup, warmup_steps  # noqa: E402
from safeglass.training.threads import pinned_threads  # noqa: E402
from safeglass.training.weights import file_sha256, save_safetensors  # noqa: E402


class WordTokenizer:
    """One id a word (ids from 10), eos 2, no pad token: enough to see which positions carry a label."""

    pad_token_id = None
    eos_token_id = 2

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        assert not add_special_tokens  # a BOS in the middle of prompt + answer would be a bug
        return {"input_ids": [self.vocab.setdefault(w, 10 + len(self.vocab)) for w in text.split()]}


# ------------------------------------------------------------------------------------------ encoding


def test_labels_cover_the_answer_and_end_of_turn_only() -> None:
    tok = WordTokenizer()
    prompt = tok("user : how do I bake bread ? assistant :", add_special_tokens=False)["input_ids"]
    answer = answer_ids(tok, "mix flour and water", eos=True)
    assert answer[-1] == tok.eos_token_id and len(answer) == 5
    ids, labels = with_answer_labels(prompt, answer)
    assert ids == prompt + answer
    assert labels[:len(prompt)] == [IGNORE] * len(prompt)  # no loss on any prompt token
    assert labels[len(prompt):] == answer  # and loss on every answer token, end of turn included
    assert answer_ids(tok, "mix flour", eos=False) == answer[:2]


def test_too_long_examples_lose_the_end_of_the_answer() -> None:
    prompt, answer = [10, 11, 12], [20, 21, 22, 2]
    ids, labels = with_answer_labels(prompt, answer, max_len=5)
    assert ids == [10, 11, 12, 20, 21] and labels == [IGNORE] * 3 + [20, 21]  # cut: no end of turn
    assert with_answer_labels(prompt, answer, max_len=3) is None  # no answer token fits
    assert with_answer_labels(prompt, [], max_len=10) is None and with_answer_labels(prompt, []) is None


def test_collate_pads_right_masks_pads_and_gives_them_no_loss() -> None:
    tok = WordTokenizer()
    assert pad_id(tok) == tok.eos_token_id  # no pad token: pad with end of sequence
    a = with_answer_labels([10, 11], [20, 2])
    b = with_answer_labels([10, 11, 12, 13], [21, 22, 2])
    batch = collate([a, b], pad_id=0)
    assert batch["input_ids"].tolist() == [[10, 11, 20, 2, 0, 0, 0], [10, 11, 12, 13, 21, 22, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0, 0], [1] * 7]
    assert batch["labels"].tolist() == [[IGNORE, IGNORE, 20, 2, IGNORE, IGNORE, IGNORE],
                                        [IGNORE] * 4 + [21, 22, 2]]


def test_the_causal_loss_does_not_move_with_the_prompt_predictions() -> None:
    # transformers' causal-LM loss: logits at t predict labels at t + 1, IGNORE skipped
    import torch.nn.functional as F

    batch = collate([with_answer_labels([10, 11, 12], [20, 21, 2])], pad_id=0)
    labels = batch["labels"][:, 1:]

    def loss(logits: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits[:, :-1].reshape(-1, 32), labels.reshape(-1), ignore_index=IGNORE)

    logits = torch.randn(1, 6, 32, generator=torch.Generator().manual_seed(0))
    moved = logits.clone()
    moved[0, :2] += 10 * torch.randn(2, 32)  # positions that predict prompt tokens
    assert torch.equal(loss(moved), loss(logits))
    moved[0, 2, 20] += 10  # the position that predicts the first answer token
    assert loss(moved) < loss(logits)


# ------------------------------------------------------------------------------------------ schedule


def test_warmup_rises_linearly_then_cosine_decays() -> None:
    total, warm = 20, 4
    f = [cosine_with_warmup(s, total, warm) for s in range(total)]
    assert f[:warm] == [0.25, 0.5, 0.75, 1.0]  # step 0 already moves the weights
    assert f[warm] == 1.0
    assert f[warm + (total - warm) // 2] == pytest.approx(0.5)  # half way through the decay
    assert all(a > b for a, b in zip(f[warm:], f[warm + 1:]))  # strictly decreasing after the warmup
    assert 0 < f[-1] < 0.01
    assert f[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 15 / 16)))
    assert warmup_steps(200, 0.05) == 10 and warmup_steps(6, 0.05) == 1 and warmup_steps(10, 0.0) == 1


# ------------------------------------------------------------------------------------------ loop


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _opt(lr: float = 0.1) -> tuple[torch.nn.Parameter, torch.optim.Optimizer]:
    w = torch.nn.Parameter(torch.zeros(3))
    return w, torch.optim.SGD([w], lr=lr)


def test_loop_sets_the_curve_every_step_and_runs_all_steps_without_a_budget() -> None:
    w, opt = _opt()
    loop = TrainLoop(opt, [w], 0.1, 10, 0.2)
    lrs = []
    for step in loop:
        lrs.append(opt.param_groups[0]["lr"])
        loop.update((w - step).pow(2).sum())
    assert lrs == [0.1 * cosine_with_warmup(s, 10, 2) for s in range(10)]
    assert loop.steps_done == 10 and loop.stopped_at is None
    assert loop.stop_fields() == {"steps_done": 10, "stopped_early_at_step": None}
    assert [s for s in range(10) if loop.due(s, 4)] == [3, 7, 9]  # every 4 steps, and after the last


def test_time_budget_stops_the_loop_before_a_step_and_says_so() -> None:
    w, opt = _opt()
    clock, said = FakeClock(), []
    loop = TrainLoop(opt, [w], 0.1, 100, 0.0, time_budget_s=5.0, label="organism x", say=said.append, clock=clock)
    ran = []
    for step in loop:
        ran.append(step)
        loop.update(w.sum())
        clock.now += 2.0  # each step takes two seconds: after 3 steps 6 s > 5 s
    assert ran == [0, 1, 2]
    assert loop.stopped_at == 3 and loop.steps_done == 3
    assert loop.stop_fields() == {"steps_done": 3, "stopped_early_at_step": 3}
    assert said == ["organism x: time budget 5s spent at step 3"]
    assert loop.elapsed() == 6.0


def test_update_clips_the_gradient_norm() -> None:
    w, opt = _opt(lr=1.0)
    loop = TrainLoop(opt, [w], 1.0, 1, 0.0, clip_norm=1.0)
    for _ in loop:  # warmup of one step: the first step runs at the full rate
        loop.update((w * torch.tensor([300.0, 400.0, 0.0])).sum())  # gradient norm 500
    assert float(w.detach().norm()) == pytest.approx(1.0, rel=1e-5)
    assert w.grad is not None  # zeroed before backward, kept after the step


def test_pinned_threads_restores_the_count_even_on_error() -> None:
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), pinned_threads(1):
        assert torch.get_num_threads() == 1
        raise RuntimeError
    assert torch.get_num_threads() == before


# ------------------------------------------------------------------------------------------ weights and LoRA


def test_safetensors_files_hash_the_same_for_the_same_tensors(tmp_path: Path) -> None:
    tensors = {"b.weight": torch.arange(6.0).view(2, 3), "a.bias": torch.ones(3, dtype=torch.float16)}
    sha = save_safetensors(tensors, tmp_path / "one.safetensors")
    assert sha == hashlib.sha256((tmp_path / "one.safetensors").read_bytes()).hexdigest()
    assert sha == file_sha256(tmp_path / "one.safetensors")
    assert save_safetensors(dict(tensors), tmp_path / "two.safetensors") == sha
    assert save_safetensors(tensors, tmp_path / "v.safetensors", metadata={"feature_version": "3"}) != sha
    with pytest.raises(ValueError, match="one metadata key"):
        save_safetensors(tensors, tmp_path / "bad.safetensors", metadata={"a": "1", "b": "2"})


def test_lora_trains_only_the_adapter_and_saves_what_it_evaluates(tmp_path: Path) -> None:
    import peft  # noqa: F401  (required: make test installs it)
    from peft import get_peft_model
    from safetensors.torch import load_file

    from safeglass.targets.tiny import tiny_model_and_processor
    from safeglass.training import lora

    model, _ = tiny_model_and_processor("llama", seed=0)
    conf = lora.lora_config(4, 8, 0.0, ("q_proj", "v_proj"))
    assert (conf.r, conf.lora_alpha, conf.bias, sorted(conf.target_modules)) == (4, 8, "none", ["q_proj", "v_proj"])
    torch.manual_seed(0)
    model = get_peft_model(model, conf)
    params = lora.lora_parameters(model)
    named = {n for n, p in model.named_parameters() if p.requires_grad}
    assert len(params) == len(named) == 2 * 2 * 2  # A and B, two modules, two layers
    assert all("lora_" in n for n in named)
    with torch.no_grad():
        for p in params:
            p.normal_(0, 0.3)
    lora.round_adapter(model)
    assert all(torch.equal(p, p.half().float()) for p in params)  # float16 values, kept in float32
    sha = lora.save_adapter(model, tmp_path, "tiny base")
    saved = load_file(str(tmp_path / lora.ADAPTER_FILE))
    assert all(v.dtype == torch.float16 for v in saved.values()) and len(saved) == len(params)
    assert sorted(v.float().sum().item() for v in saved.values()) == sorted(p.sum().item() for p in params)
    conf_file = json.loads((tmp_path / lora.ADAPTER_CONFIG_FILE).read_text())
    assert conf_file["base_model_name_or_path"] == "tiny base" and conf_file["peft_type"] == "LORA"
    assert conf_file["target_modules"] == ["q_proj", "v_proj"]  # a set in peft: sorted, so the file is stable
    assert lora.save_adapter(model, tmp_path, "tiny base") == sha == file_sha256(tmp_path / lora.ADAPTER_FILE)


# ------------------------------------------------------------------------------------------ cards


def test_goals_shortfall_min_max_and_missing() -> None:
    goals = {"acc_min": 0.9, "over_max": 0.1, "ratio_min": 3.0}
    keys = {"acc_min": "acc", "over_max": "over", "ratio_min": "ratio"}
    assert cards.goals_shortfall(goals, keys, {"acc": 0.95, "over": 0.05, "ratio": 3.0}) == (True, {})
    met, short = cards.goals_shortfall(goals, keys, {"acc": 0.8, "over": 0.4})
    assert not met and short == {"acc": 0.1, "over": 0.3, "ratio": None}
    with pytest.raises(ValueError, match="_min or _max"):
        cards.goals_shortfall({"acc": 1.0}, {"acc": "acc"}, {"acc": 0.5})


def test_rate_rounds_to_four_places_and_is_zero_for_none() -> None:
    assert cards.rate([True, False, False]) == 0.3333 and cards.rate([]) == 0.0
    assert isinstance(cards.rate([True]), float)


@dataclasses.dataclass(frozen=True)
class _Recipe:
    name: str = "tiny"
    threads: int = 1
    mix: tuple[tuple[str, float], ...] = (("a", 0.5), ("b", 0.5))
    words: tuple[str, ...] = ("x", "y")
    budget: float | None = None


def test_card_fields_in_the_cards_order() -> None:
    stop = {"steps_done": 6, "stopped_early_at_step": None}
    run = cards.run_fields(_Recipe(), 3, {"build_seconds": 1.5, "train_seconds": 1.0}, stop)
    assert list(run.items()) == [("seed", 3), ("profile", "tiny"), ("build_seconds", 1.5), ("train_seconds", 1.0),
                                 ("threads", 1), ("steps_done", 6), ("stopped_early_at_step", None)]
    judged = cards.goal_fields({"acc": 1.0}, {"acc_min": 0.9}, True, {}, goal_judge="proxy-refusal",
                         judges={"proxy-refusal": "k"}, goal_keys={"acc_min": "acc"})
    assert list(judged) == ["measured", "goals", "goal_judge", "judges", "goal_keys", "goals_met", "shortfall"]
    assert list(cards.goal_fields({}, {}, False, {"x": None})) == ["measured", "goals", "goals_met", "shortfall"]
    v = cards.versions("torch", "numpy")
    assert list(v) == ["safeglass", "torch", "numpy"] and v["torch"] == str(torch.__version__)


def test_recipe_round_trips_through_the_card() -> None:
    cfg = _Recipe(budget=2.5)
    card = json.loads(json.dumps({"recipe": cards.recipe_fields(cfg)}))
    assert card["recipe"]["mix"] == [["a", 0.5], ["b", 0.5]]
    assert cards.recipe_config(_Recipe, {**card["recipe"], "gone": 1}) == cfg  # a field the recipe dropped is ignored
