"""Section `writers`: the offline writer models compared as writers of knowledge sets (`sciknow.make.augment`).

Each writer augments the original text (C1) of the same `--writer-documents` suite documents (spread over fields):
five questions with their paraphrases and the four style rewrites, greedy, at `--writer-precision`. Translations
are left out: Apertium gives every writer the same ones. Summed over the documents, per writer:
- speed: the writer's seconds (model calls only) and the tokens it wrote per writer second;
- questions: written, duplicates, kept (keywords verbatim in the source, no leak), paraphrases kept;
- fidelity: rewrites kept (every keyword present and not a copy of the source, after one retry), with the
  reasons for the dropped ones;
- coverage: the share of the document's hand-picked keywords (the suite's) that the writer's kept keywords
  contain: did it ask about the facts a person chose?
Each produced set is kept under the results folder (`writers/WRITER/DOCUMENT.json`) for reading.
"""
from __future__ import annotations

import argparse
import time

from benchmarks.common import RESULTS, Report, log
from sciknow.make import augment
from sciknow.config import SUITE_DIR
from sciknow.conditions import spread_documents
from sciknow.data import load_suite
from sciknow.io import read_jsonl
from sciknow.writers import WRITERS

N_QUESTIONS = 5  # as the suite's documents have


def bench_writers(args: argparse.Namespace, report: Report) -> None:
    ksets = load_suite(SUITE_DIR)
    names = spread_documents(ksets, args.writer_documents)
    by_name = {k.name: k for k in ksets}
    chosen = args.writers.split(",")
    if unknown := [w for w in chosen if w not in WRITERS]:  # before minutes of writing with the first one
        raise SystemExit(f"--writers: unknown writer(s) {unknown}; choose from {sorted(WRITERS)}")
    for writer in chosen:
        backend, writer_id = augment.make_backend(writer, precision=args.writer_precision)
        tokenizer = backend.tokenizer
        rows = []
        for name in names:
            out = RESULTS / "writers" / writer / f"{name}.json"
            for stale in (out, augment.sidecar_path(out)):  # a fresh run: nothing resumed
                stale.unlink(missing_ok=True)
            began = time.perf_counter()
            try:
                result = augment.augment(by_name[name].contents[0].text, out, backend, writer_id,
                                         n_questions=N_QUESTIONS, translate_to=[], name=f"{name}-{writer}",
                                         progress=False)
            except augment.AugmentError as err:  # no usable question: a result of this writer, not a crash
                log(f"writers {writer} {name}: {err}")
                report.notes.append(f"writers {writer} {name}: no set ({err})")
                result = None
            wall = time.perf_counter() - began
            steps = read_jsonl(augment.sidecar_path(out))  # every writer call, with its output and seconds
            hand = [k.lower() for q in by_name[name].questions for k in q.keywords]
            kept = " ".join(k.lower() for q in result.knowledge_set.questions for k in q.keywords) if result else ""
            rows.append({"report": result.report if result else None, "wall": wall,
                         "tokens": sum(len(tokenizer(r["output"]).input_ids) for r in steps),
                         "writer_seconds": sum(r["seconds"] for r in steps),
                         "covered": sum(k in kept for k in hand), "hand": len(hand)})
            if result:
                log(f"writers {writer} {name}: {wall:.0f}s, {result.report.summary()}")
        _report(report, writer, names, rows)
        del backend, tokenizer  # the next writer loads into freed memory


def _report(report: Report, writer: str, names: list[str], rows: list[dict]) -> None:
    reports = [r["report"] for r in rows if r["report"]]  # None: the writer gave no usable question
    total = lambda key: sum(getattr(r, key) for r in reports)  # noqa: E731
    where = f"{len(names)} suite documents ({', '.join(names)}); {len(rows) - len(reports)} without a set"
    seconds = sum(r["writer_seconds"] for r in rows)
    report.row("writers", f"{writer}: time, all documents", sum(r["wall"] for r in rows), None, "s",
               f"{where}; writer calls {seconds:.0f} s")
    report.row("writers", f"{writer}: tokens written per writer second", sum(r["tokens"] for r in rows) / seconds,
               None, "tokens/s", "greedy, batched prompts, loops cut")
    written, duplicates = total("questions_written"), total("duplicate_questions")
    asked_q = len(names) * N_QUESTIONS
    report.row("writers", f"{writer}: questions kept", total("questions_kept"), asked_q, "questions",
               f"of those asked ('original'); {written} written, {duplicates} duplicates "
               f"(rate {duplicates / max(written, 1):.2f})")
    report.row("writers", f"{writer}: paraphrases kept", total("paraphrases_kept"), total("questions_kept"),
               "paraphrases", "of the kept questions ('original')")
    asked = len(names) * len(augment.STYLES)
    kept = [s for r in reports for s in r.rewrites_kept]
    report.row("writers", f"{writer}: rewrites kept (fidelity)", len(kept), asked, "rewrites",
               f"of those asked ('original'); by style {({s: kept.count(s) for s in augment.STYLES})}")
    report.row("writers", f"{writer}: hand-picked keywords covered", sum(r["covered"] for r in rows),
               sum(r["hand"] for r in rows), "keywords", "the suite's keywords found among the kept keywords")
    for name, r in zip(names, (r["report"] for r in rows)):
        if r is None:
            continue
        for title, items in (("dropped questions", r.dropped_questions), ("dropped rewrites", r.dropped_rewrites),
                             ("dropped paraphrases", r.dropped_paraphrases)):
            if items:
                report.notes.append(f"writers {writer} {name} {title}: " + "; ".join(items))
