"""Section `profile`: torch.profiler over a few full-parameter training steps. Where the step time goes, by kind
of op, and why full-parameter training does not reach 70 % of the matmul peak (an explanation in bench.md; the
profiler's own table in profile_full_train.txt)."""
from __future__ import annotations

import argparse

from benchmarks.common import LR, RESULTS, Machine, Report, log
from sciknow import models
from sciknow.config import TrainSpec
from sciknow.io import atomic_write_text
from sciknow.train import train

MATMUL = "matmul (aten::mm/addmm/bmm)"
ATTENTION = "attention kernel (SDPA)"
LOSS = "softmax + cross-entropy"
EMBEDDING = "embedding (fwd + dense bwd)"
OPTIMIZER = "optimizer (AdamW step, zero_grad) + grad-norm clipping"
OTHER = "other: elementwise, RMSNorm, rotary, grad accumulation, copies, autograd overhead"
KINDS = [MATMUL, ATTENTION, LOSS, EMBEDDING, OPTIMIZER, OTHER]


def event_kind(event) -> str:
    """What a profiled op works for. Ops inside the optimizer or the embedding's forward/backward count there
    (they are generic fill_/sqrt/div/index ops by name); the rest by their own name."""
    e = event
    while e is not None:
        if e.name.startswith("Optimizer."):
            return OPTIMIZER
        if e.name == "aten::embedding" or "EmbeddingBackward" in e.name:
            return EMBEDDING
        e = e.cpu_parent
    name = event.name
    if name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"):
        return MATMUL
    if "scaled_dot_product" in name or "flash_attention" in name:
        return ATTENTION
    if "softmax" in name or "nll_loss" in name or "cross_entropy" in name:
        return LOSS
    if name in ("aten::_foreach_norm", "aten::linalg_vector_norm"):  # clip_grad_norm_ (no profiler range)
        return OPTIMIZER
    return OTHER


def profile_seconds(prof) -> tuple[dict[str, float], float]:
    """Profiled self CPU seconds per kind of op, and the FLOP/s the matmul ops reached by themselves."""
    seconds = dict.fromkeys(KINDS, 0.0)
    mm_flops = 0
    for e in prof.events():  # the raw events key_averages() sums, with their parents
        kind = event_kind(e)
        seconds[kind] += e.self_cpu_time_total / 1e6
        if kind == MATMUL:
            mm_flops += e.flops
    return seconds, mm_flops / max(seconds[MATMUL], 1e-12)


def bench_profile(args: argparse.Namespace, report: Report, loaded: models.LoadedModel, machine: Machine,
                  texts: list[str]) -> None:
    """torch.profiler over a few full-parameter steps: where training time goes, and why not 70 % of peak."""
    from torch.profiler import ProfilerActivity, profile

    steps = min(args.profile_steps, len(texts) - 1)
    log(f"profile: {steps} full-parameter training steps after a warm-up step")
    spec = TrainSpec(method="full", lr=LR["full"], epochs=1, max_length=args.max_length, seed=0, autocast="off")
    prof = profile(activities=[ProfilerActivity.CPU], with_flops=True)
    forwards = 0

    def start_at_second_step(module, args):  # the first step also creates AdamW's moment buffers: a one-off
        nonlocal forwards
        forwards += 1
        if forwards == 2:
            prof.start()

    with models.trainable(loaded, spec) as model:
        handle = model.register_forward_pre_hook(start_at_second_step)
        train(model, loaded.tokenizer, texts[: steps + 1], spec, progress=False)
        prof.stop()
        handle.remove()
    averages = prof.key_averages()
    atomic_write_text(RESULTS / "profile_full_train.txt",
                      averages.table(sort_by="self_cpu_time_total", row_limit=25))
    seconds, mm_rate = profile_seconds(prof)
    total = sum(seconds.values())
    shares = {k: v / total for k, v in seconds.items()}
    for kind, share in shares.items():
        report.row("profile", f"full-parameter step time: {kind}", share, None, "fraction",
                   f"torch.profiler self CPU time, {steps} steps")
    report.row("profile", "matmul ops' own rate", mm_rate / 1e9, machine.peak / 1e9, "GFLOP/s",
               "profiler FLOP counts / time in matmul ops; 'original' column = 2048² matmul peak")
    # AdamW moves ~28 bytes per parameter per step (reads param, grad, 2 moments; writes param, 2 moments).
    n_params = sum(p.numel() for p in loaded.model.parameters())
    opt_step, opt_bound = seconds[OPTIMIZER] / steps, 28 * n_params / machine.bw
    report.row("profile", "optimizer + clipping time per step vs memory-bandwidth bound", opt_step, opt_bound, "s",
               "bound = 28 bytes/parameter / measured bandwidth", higher_is_better=False)
    report.explanations["Why full-parameter training is not at 70 % of the matmul peak"] = explain(
        args, report, loaded, machine, steps, shares, mm_rate, opt_step, opt_bound)


def explain(args: argparse.Namespace, report: Report, loaded: models.LoadedModel, machine: Machine, steps: int,
            shares: dict[str, float], mm_rate: float, opt_step: float, opt_bound: float) -> str:
    """The bench.md paragraph: the fraction of peak as (matmul share of the time) x (matmul ops' own rate / peak),
    with the `train` and `optim` sections' numbers when they ran."""
    trained = next((r for r in report.rows if r["metric"].startswith("full-parameter training: fraction")), None)
    achieved = f"{trained['sciknow']:.0%} of" if trained else "a fraction of"
    cfg, peak = loaded.model.config, machine.peak
    mm_eff = mm_rate / peak
    optim = {r["metric"]: r["sciknow"] for r in report.rows if r["section"] == "optim"}
    fused = ""
    if optim:
        t_fused, t_default = optim["AdamW step, fused=True"], optim["AdamW step, default (for-loop)"]
        fused = (f" (the `optim` rows time one AdamW step on these parameters at {t_fused * 1e3:.0f} ms fused vs "
                 f"{t_default * 1e3:.0f} ms for torch's default for-loop, which sciknow used before)")
    return (
        f"Full-parameter training runs at {achieved} the fp32 matmul peak ({peak / 1e9:.1f} GFLOP/s, a square "
        f"2048² `torch.mm`). A profile of {steps} steps after a warm-up step (batch 1, ≤{args.max_length} tokens; "
        f"`profile_full_train.txt`; self CPU time per op, attributed through the profiler's call tree) splits the "
        f"step time into: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()) + ". "
        f"Nearly all FLOPs are matmul FLOPs, so the fraction of peak is about (matmul share of the time) × "
        f"(matmul ops' own rate / peak) = {shares[MATMUL]:.0%} × {mm_eff:.0%} = {shares[MATMUL] * mm_eff:.0%}; "
        f"70 % needs both factors above ~84 %. The matmul ops reach {mm_rate / 1e9:.1f} GFLOP/s = {mm_eff:.0%} "
        f"of the square-matmul peak: at batch 1 one side of every matmul is the sequence (≤{args.max_length} "
        f"rows) against {cfg.hidden_size}- to {cfg.intermediate_size}-wide weights and the {cfg.vocab_size}-row "
        f"output layer, thinner than 2048². The other {1 - shares[MATMUL]:.0%} of the time does O(1) FLOPs per "
        f"byte, so at best it runs at memory speed ({machine.bw / 1e9:.0f} GB/s here, i.e. "
        f"~{machine.bw / 8e9:.0f} G float reads+writes/s against {peak / 1e9:.0f} GFLOP/s): on this CPU it "
        f"cannot be made to count toward the matmul peak, only made shorter. Of it, the optimizer + clipping "
        f"take {opt_step * 1e3:.0f} ms per step, {opt_step / opt_bound:.1f}× the {opt_bound * 1e3:.0f} ms "
        f"needed just to move AdamW's ~28 bytes per parameter at the measured bandwidth with sciknow's fused "
        f"AdamW{fused}.")
