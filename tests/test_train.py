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
