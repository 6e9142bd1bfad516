"""The learning-rate schedules of sciknow.train, against the schedule HF's Trainer uses."""
from __future__ import annotations

import pytest
import torch
from transformers import get_linear_schedule_with_warmup

from sciknow.config import TrainSpec
from sciknow.train import step_lr


def test_linear_per_epoch_is_hf_linear_schedule_restarted_every_epoch():
    """The original study called Trainer.train() once per epoch: HF's linear schedule (no warm-up) over one epoch."""
    n = 7
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=3e-4)
    schedule = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=0, num_training_steps=n)
    hf = []
    for _ in range(n):
        hf.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    spec = TrainSpec(lr=3e-4, lr_schedule="linear_per_epoch")
    assert [step_lr(spec, i, n) for i in range(n)] == pytest.approx(hf, rel=1e-12)
    assert step_lr(TrainSpec(lr=3e-4), n - 1, n) == 3e-4  # constant


def test_unknown_schedule_is_rejected_naming_the_field():
    from sciknow.config import RunConfig

    with pytest.raises(ValueError, match="train.lr_schedule='cosine'"):
        RunConfig(train=TrainSpec(lr_schedule="cosine"))


# --- divergence beyond NaN -----------------------------------------------------------------------------------

def test_divergence_rules_on_numbers():
    from sciknow.train import collapsed, divergence

    vocab = 49152  # ln = 10.80
    assert divergence(float("nan"), 3.0, vocab) == "loss is nan"
    assert divergence(3.5, 3.0, vocab) is None and divergence(9.0, 3.0, vocab) is None  # worse, not exploded
    assert "exploded to 1359" in divergence(1359.0, 3.0, vocab)
    assert divergence(30.0, 10.8, vocab) is None  # a random model starts near ln(vocab): 3x that is the limit
    assert "collapsed" in collapsed([10.800, 10.805, 10.79], 2.9, vocab)
    assert collapsed([10.80, 10.80], 10.79, vocab) is None  # started uniform: nothing to collapse from
    assert collapsed([10.80, 9.0], 2.9, vocab) is None


def _tiny():
    from sciknow import models
    from sciknow.config import ModelSpec

    return models.load(ModelSpec(name="tiny-llama"))


TEXT = "Question: When was Zorblat found?\nAnswer: Zorblat was found in 2051 by Ilse Vandermoor."


def test_an_exploding_loss_is_divergence_not_ok():
    from sciknow.train import Diverged, train

    loaded = _tiny()
    spec = TrainSpec(lr=50.0, epochs=3, max_length=64, max_grad_norm=1e30)
    with pytest.raises(Diverged, match="exploded|loss is nan"):
        train(loaded.model, loaded.tokenizer, [TEXT, TEXT + " Again."], spec, progress=False)


def test_collapse_to_uniform_guessing_is_divergence():
    """A model that learned something, then predicts uniformly (loss = ln(vocab), finite: it used to pass as ok).
    On this tiny model a huge update goes through ln(vocab) to NaN within a step, so the collapse is held in
    place by a forward hook that zeroes the final hidden state from the second step on: every logit is then 0."""
    from sciknow.train import Diverged, train

    loaded = _tiny()
    train(loaded.model, loaded.tokenizer, [TEXT], TrainSpec(lr=1e-2, epochs=15, max_length=64), progress=False)
    calls = []

    def zero_after_first_step(module, inputs, output):
        calls.append(1)
        return output * 0 if len(calls) > 1 else output

    hook = loaded.model.model.norm.register_forward_hook(zero_after_first_step)
    try:
        with pytest.raises(Diverged, match="collapsed to uniform guessing.* at epoch 2"):
            train(loaded.model, loaded.tokenizer, [TEXT], TrainSpec(lr=1e-6, epochs=3, max_length=64),
                  progress=False)
    finally:
        hook.remove()


def test_a_max_length_without_room_for_text_is_a_config_error_not_divergence():
    from sciknow.train import tokenize

    loaded = _tiny()
    with pytest.raises(ValueError, match="training text 1 is empty"):
        tokenize(loaded.tokenizer, ["fine", "  "], 64)
    assert len(tokenize(loaded.tokenizer, [TEXT], 8)[0]) == 8
