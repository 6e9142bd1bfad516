"""Section `optim`: one AdamW step on the model's parameter shapes, torch's default (for-loop) vs foreach vs fused.

sciknow uses fused=True (`sciknow.train.adamw`); the original recipe's HF Trainer is pinned to the same.
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.common import Report, log, median, timed
from sciknow.models import LoadedModel

VARIANTS = {"default (for-loop)": {}, "foreach=True": {"foreach": True}, "fused=True": {"fused": True}}


def bench_optim(args: argparse.Namespace, report: Report, loaded: LoadedModel) -> None:
    log("optim: AdamW step, default vs foreach vs fused")
    params = [p.detach().clone().requires_grad_() for p in loaded.model.parameters()]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(args.optim_repeats):  # interleaved, one optimizer (and its moment buffers) alive at a time
        for name, kwargs in VARIANTS.items():
            opt = torch.optim.AdamW(params, lr=1e-6, **kwargs)
            opt.step()  # creates the moment buffers
            times[name].append(median([timed(opt.step)[0] for _ in range(3)]))
            del opt
    base = median(times["default (for-loop)"])
    n = sum(p.numel() for p in params)
    for name, ts in times.items():
        report.row("optim", f"AdamW step, {name}", median(ts), base, "s",
                   f"{n / 1e6:.0f}M params, {len(params)} tensors; 'original' column = torch's default (for-loop); "
                   f"sciknow uses fused=True", higher_is_better=False)
