"""What every section shares: settings (presets and flags), timing, the inputs, and the results report."""
from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sciknow.config import POLYAI_SET, SHARED_DIR, EvalSpec
from sciknow.data import KnowledgeSet, load_knowledge_set
from sciknow.io import atomic_write_text
from sciknow.multiple_choice import MCItem, load_mmlu

RESULTS = Path(os.environ.get("SCIKNOW_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))
MMLU_DIR = SHARED_DIR / "reference" / "mmlu"
PLOS_DIR = SHARED_DIR / "corpora" / "plos-starter"
SECTIONS = "machine,eval,train,levers,optim,profile,sweep,suite"  # the default run
OPTIONAL_SECTIONS = "writers"  # only when named in --only: needs `scripts/setup.sh --writers`
LR = {"lora": 1e-4, "full": 1e-5}
MAX_SCORE_DIFF = 0.02  # issue: scores of the two sides within 0.02
MIN_IDENTICAL = 0.95  # issue: >= 95 % identical answers
MAX_EPOCH_LOSS_DIFF = 1e-3  # per-epoch mean training loss, sciknow vs HF Trainer (same data, seed, optimizer)

# Sizes per preset; every one can be overridden by its flag. Times are for an idle 2-core CPU and SmolLM2-135M
# (LoRA step on 1x200 tokens ~2 s, full-parameter step ~4 s, greedy decoding ~0.09 s/token at batch 1).
PRESETS = {
    # The sizes: hours.
    "paper": dict(repeats=3, mmlu_repeats=3, max_new_tokens=100, n_mmlu=50, train_texts=42, train_epochs=2,
                  train_repeats=3, max_length=256, sweep_contents=12, sweep_epochs=10, sweep_repeats=2,
                  decode_tokens=32, profile_steps=4, lever_documents=4, lever_epochs=3, lever_repeats=2,
                  lever_compile=True, suite_documents=2, suite_epochs=3),
    # 16 min: full-size evaluation (5 PolyAI x3, 50 MMLU x100 tokens x1), training on the 12 PolyAI contents
    # for 2 epochs (6 min with the generation passes), a 4-content 3-epoch sweep trial (4 min).
    "standard": dict(repeats=3, mmlu_repeats=1, max_new_tokens=100, n_mmlu=50, train_texts=12, train_epochs=2,
                     train_repeats=1, max_length=256, sweep_contents=4, sweep_epochs=3, sweep_repeats=1,
                     decode_tokens=32, profile_steps=4, lever_documents=2, lever_epochs=3, lever_repeats=2,
                     lever_compile=False, suite_documents=1, suite_epochs=3),
    # Minutes, for iteration (smoke runs: add --model tiny-llama).
    "quick": dict(repeats=2, mmlu_repeats=1, max_new_tokens=24, n_mmlu=16, train_texts=4, train_epochs=2,
                  train_repeats=1, max_length=128, sweep_contents=2, sweep_epochs=2, sweep_repeats=1,
                  decode_tokens=16, profile_steps=2, lever_documents=1, lever_epochs=1, lever_repeats=1,
                  lever_compile=False, suite_documents=1, suite_epochs=1),
}


def parse_args(argv: list[str] | None = None, description: str = "") -> argparse.Namespace:
    """The flags of `python -m benchmarks.run`; a size left unset comes from the chosen preset."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=PRESETS, default="paper", help="sizes (default: the issue's, hours)")
    p.add_argument("--quick", dest="preset", action="store_const", const="quick", help="= --preset quick (minutes)")
    p.add_argument("--standard", dest="preset", action="store_const", const="standard",
                   help="= --preset standard (16 min on an idle 2-core CPU)")
    p.add_argument("--model", default="smollm2-135m-instruct", help="e.g. tiny-llama for smoke runs")
    p.add_argument("--only", default=SECTIONS, help=f"comma-separated sections of {SECTIONS},{OPTIONAL_SECTIONS}")
    p.add_argument("--repeats", type=int, help="repeats of the PolyAI evaluation and decoding timings")
    p.add_argument("--mmlu-repeats", type=int, help="repeats of the MMLU evaluation timings")
    p.add_argument("--batch-size", type=int, default=EvalSpec.batch_size, help="sciknow evaluator batch size")
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--n-mmlu", type=int, help="size of the MMLU question set")
    p.add_argument("--train-texts", type=int, help="training texts: 12 PolyAI contents, 10 irrelevant, then PLOS")
    p.add_argument("--train-epochs", type=int)
    p.add_argument("--train-repeats", type=int)
    p.add_argument("--max-length", type=int)
    p.add_argument("--sweep-contents", type=int, help="PolyAI contents trained in the sweep trial")
    p.add_argument("--sweep-epochs", type=int)
    p.add_argument("--sweep-repeats", type=int, help="sweep trials per side (median)")
    p.add_argument("--lever-documents", type=int, help="suite documents per lever setting (section levers)")
    p.add_argument("--lever-epochs", type=int)
    p.add_argument("--lever-repeats", type=int, help="repeats of every lever setting (median)")
    p.add_argument("--lever-compile", action=argparse.BooleanOptionalAction, default=None,
                   help="also measure torch.compile (minutes of compilation)")
    p.add_argument("--suite-documents", type=int, help="suite documents per notebook-08 unit (section suite)")
    p.add_argument("--suite-epochs", type=int, help="E of the notebook-08 units (section suite)")
    p.add_argument("--writer-documents", type=int, default=3,
                   help="suite documents each writer augments (section writers; needs setup.sh --writers)")
    p.add_argument("--writers", default="qwen2.5-coder-0.5b-instruct,qwen2.5-coder-1.5b-instruct",
                   help="comma-separated registered writers (section writers)")
    p.add_argument("--writer-precision", default="bf16", choices=["fp32", "bf16"])
    p.add_argument("--threads", type=int, help="torch threads for the whole run (default: torch's)")
    args = p.parse_args(argv)
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.machine_repeats = 5
    args.optim_repeats = 3
    return args


# ----------------------------------------------------------------------------------------------- timing

def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def timed(fn: Callable, *args, **kwargs) -> tuple[float, object]:
    """(seconds, result) of one call."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


@dataclass
class Machine:
    """The limits every other section is compared with (section `machine`)."""

    peak: float  # fp32 matmul FLOP/s
    bw: float  # memory bandwidth, bytes/s
    param_bytes: int  # the benchmarked model's weights

    @property
    def bound(self) -> float:
        """Batch-1 decoding tokens/s if every step only streamed the weights once at the measured bandwidth."""
        return self.bw / self.param_bytes


# ----------------------------------------------------------------------------------------------- report

def fmt(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


KEYS = ["section", "metric", "sciknow", "original", "unit", "speedup", "target", "met", "note"]


@dataclass
class Report:
    """The results table (one row per measured quantity -> bench.csv), notes and explanations (-> bench.md), and
    the failed correctness checks (-> exit status 1)."""

    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    explanations: dict[str, str] = field(default_factory=dict)  # title -> paragraph in bench.md
    failures: list[str] = field(default_factory=list)

    def row(self, section: str, metric: str, sciknow: float | None, original: float | None, unit: str,
            note: str = "", higher_is_better: bool = True, target: str = "", met: str = "") -> None:
        ratio = None
        if sciknow not in (None, 0) and original not in (None, 0):
            ratio = sciknow / original if higher_is_better else original / sciknow
        self.rows.append({"section": section, "metric": metric, "sciknow": sciknow, "original": original,
                          "unit": unit, "speedup": ratio, "target": target, "met": met, "note": note})

    def check(self, ok: bool, failure: str) -> str:
        """Record a failed correctness check (-> exit status 1); returns the table's `met` cell."""
        if not ok:
            self.failures.append(failure)
        return "yes" if ok else "NO"

    def write(self, args: argparse.Namespace, started: float, results: Path = RESULTS) -> None:
        """Rewrite bench.csv and bench.md (after every section, so a long run leaves partial results)."""
        table = io.StringIO()
        w = csv.DictWriter(table, KEYS)
        w.writeheader()
        for r in self.rows:
            w.writerow({k: fmt(r[k]) for k in KEYS})
        atomic_write_text(results / "bench.csv", table.getvalue())
        lines = [
            "# sciknow benchmark", "",
            f"Command: `{' '.join([Path(sys.executable).name, '-m', 'benchmarks.run'] + sys.argv[1:])}`  ",
            f"Wall time so far: {time.perf_counter() - started:.0f} s; torch {torch.__version__}, "
            f"threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs, load average at end {os.getloadavg()[0]:.1f}", "",
            f"Settings: {vars(args)}", "",
            "All timings are medians of interleaved repeats; `speedup` = sciknow / original for rates "
            "(original / sciknow for times).", "",
            "| " + " | ".join(KEYS) + " |",
            "|" + "---|" * len(KEYS),
        ]
        for r in self.rows:
            lines.append("| " + " | ".join(fmt(r[k]).replace("|", "/") for k in KEYS) + " |")
        for title, text in self.explanations.items():
            lines += ["", f"## {title}", "", text]
        lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        if self.failures:
            lines += ["", "## FAILED checks", ""] + [f"- {f}" for f in self.failures]
        atomic_write_text(results / "bench.md", "\n".join(lines) + "\n")


# ----------------------------------------------------------------------------------------------- inputs

def polyai() -> KnowledgeSet:
    return load_knowledge_set(POLYAI_SET)


def mmlu_items(n: int) -> list[MCItem]:
    """`n` MMLU college chemistry + physics items (half each); asked with their numbered choices, answered freely."""
    half = (n + 1) // 2
    items = load_mmlu(MMLU_DIR / "college_chemistry_test.csv")[:half] + \
        load_mmlu(MMLU_DIR / "college_physics_test.csv")[:half]
    return items[:n]


def train_texts(n: int) -> list[str]:
    """The first `n` of: PolyAI's 12 contents, its 10 irrelevant texts, then PLOS introductions (seed 0)."""
    from sciknow.corpus import irrelevant_texts

    k = polyai()
    texts = [c.text for c in k.contents] + [c.text for c in k.irrelevant_texts]
    if n > len(texts):
        texts += irrelevant_texts(PLOS_DIR, n - len(texts), 0)
    return texts[:n]
