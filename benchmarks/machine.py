"""Section `machine`: what this CPU can do at best, the yardstick of every other section.

fp32 and bf16 matmul peaks (a square 2048² `torch.mm`), memory bandwidth (a 256 MiB copy), all threads vs one, and batch-1
decoding against the weight-streaming bound (bandwidth / parameter bytes).
"""
from __future__ import annotations

import argparse
import os

import torch

from benchmarks.common import Machine, Report, log, median, timed
from sciknow.evaluate import build_prompt
from sciknow.models import LoadedModel
from sciknow.train import bf16_is_fast


class Yardstick:
    """One sample at a time of the fp32 matmul peak and the memory bandwidth, so that a section can take them
    interleaved with its own timings."""

    def __init__(self, n: int = 2048) -> None:
        self.a, self.b = torch.randn(n, n), torch.randn(n, n)
        self.src = torch.empty(64 * 2 ** 20)  # 256 MiB of fp32
        self.dst = torch.empty_like(self.src)
        self.a @ self.b
        self.dst.copy_(self.src)

    def peak(self, a: torch.Tensor | None = None, b: torch.Tensor | None = None) -> float:
        """FLOP/s of one square `torch.mm` (default: fp32 2048²)."""
        a, b = (self.a, self.b) if a is None else (a, b)
        return 2 * a.shape[0] ** 3 / timed(torch.mm, a, b)[0]

    def bandwidth(self) -> float:
        """Bytes/s read + written by one 256 MiB copy."""
        return 2 * self.src.numel() * self.src.element_size() / timed(self.dst.copy_, self.src)[0]


def bench_machine(args: argparse.Namespace, report: Report, loaded: LoadedModel) -> Machine:
    log("machine: matmul peak and memory bandwidth")
    yardstick = Yardstick()
    a, b = yardstick.a, yardstick.b
    peak = median([yardstick.peak() for _ in range(args.machine_repeats)])
    # bf16 autocast's matmuls (section `levers`). Without native bf16 (AVX2 only) torch emulates them, about a
    # minute per product: not measured, and autocast="auto" trains in fp32 there.
    peak16 = None
    if bf16_is_fast(torch.device("cpu")):
        a16, b16 = a.bfloat16(), b.bfloat16()
        a16 @ b16
        peak16 = median([yardstick.peak(a16, b16) for _ in range(args.machine_repeats)])
    bw = median([yardstick.bandwidth() for _ in range(args.machine_repeats)])
    # Threads: is the second core worth having right now? (matmul at 1 vs all threads, interleaved)
    threads = torch.get_num_threads()
    by_threads = {1: [], os.cpu_count(): []}
    for _ in range(args.machine_repeats):
        for t in by_threads:
            torch.set_num_threads(t)
            by_threads[t].append(yardstick.peak())
    torch.set_num_threads(threads)
    report.row("machine", "fp32 matmul 2048² peak", peak / 1e9, None, "GFLOP/s", f"median of {args.machine_repeats}")
    if peak16 is None:
        report.notes.append("bf16 matmul peak: not measured, this CPU has no native bf16 (AVX512-BF16 or AMX).")
    else:
        report.row("machine", "bf16 matmul 2048² peak vs fp32", peak16 / 1e9, peak / 1e9, "GFLOP/s",
                   "'original' column = fp32; what bf16 autocast can gain on the matmuls")
    report.row("machine", "memory bandwidth (256 MiB copy, read+write)", bw / 1e9, None, "GB/s")
    report.row("machine", f"matmul with {os.cpu_count()} threads vs 1 thread",
               median(by_threads[os.cpu_count()]) / 1e9, median(by_threads[1]) / 1e9, "GFLOP/s",
               "'original' column = 1 thread")
    report.notes.append(f"torch.get_num_threads() = {threads} of os.cpu_count() = {os.cpu_count()} "
                        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}); load average {os.getloadavg()}.")
    param_bytes = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    return Machine(peak=peak, bw=bw, param_bytes=param_bytes)


def bench_decode_bound(args: argparse.Namespace, report: Report, loaded: LoadedModel, machine: Machine) -> None:
    """Batch-1 decoding tokens/s against the weight-streaming bound (parameter bytes / bandwidth)."""
    log("machine: decoding vs weight-streaming bound")
    model, tok = loaded.model, loaded.tokenizer
    x = tok([build_prompt(tok, "What is polymer chemistry?")], return_tensors="pt", add_special_tokens=False)
    n = args.decode_tokens

    def gen(k: int):
        return model.generate(**x, max_new_tokens=k, min_new_tokens=k, do_sample=False, pad_token_id=tok.pad_token_id)

    with torch.no_grad():
        gen(2)
        rates = []
        for _ in range(args.repeats):  # (n+1 tokens) - (1 token) = n decoding steps, without the prefill
            t1, _ = timed(gen, 1)
            tn, _ = timed(gen, n + 1)
            rates.append(n / max(tn - t1, 1e-9))
    rate = median(rates)
    # Thread check on the real workload: 8 decoding steps with all cores vs 1 thread, interleaved.
    threads, by = torch.get_num_threads(), {os.cpu_count(): [], 1: []}
    with torch.no_grad():
        for _ in range(args.repeats):
            for t in by:
                torch.set_num_threads(t)
                by[t].append(timed(gen, 8)[0])
    torch.set_num_threads(threads)
    report.row("machine", f"8-token generate: {os.cpu_count()} threads vs 1 thread", median(by[os.cpu_count()]),
               median(by[1]), "s", "'original' column = 1 thread; speedup > 1 means all cores is faster",
               higher_is_better=False)
    report.row("machine", "batch-1 decode tokens/s vs weight-streaming bound", rate, machine.bound, "tokens/s",
               f"bound = {machine.bw / 1e9:.1f} GB/s / {machine.param_bytes / 1e6:.0f} MB params")
    report.row("machine", "batch-1 decode: fraction of weight-streaming bound", rate / machine.bound, None,
               "fraction")
