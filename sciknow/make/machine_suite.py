"""The machine-augmented twin of the suite: each suite document's original rewritten by the default writer.

For every document of data/knowledge/suite/ (in `conditions.spread_documents` order, so that the first n done are
the n documents notebook 08 picks), the writer rewrites the original text (C1) in the four styles through
`sciknow.make.augment`'s prompts, fidelity check and one retry (`augment.write_rewrites`). The questions, keywords and
paraphrases stay the suite's own, so the fidelity check and the retry use the suite's question keywords; the
writer writes no questions or paraphrases (they would not be used). Translations are Apertium's, as in augment.

Per document it writes, as soon as the document is done:
* `<out>/<doc>.json`: the knowledge set: C1 the original, C2..C5 the rewrites (qa, article, interview, textbook)
  that are faithful or miss only keywords (kept with their coverage: `augment.RewriteOutcome.chosen(
  partial="keep")`), C6..C8 the translations (es, ca, it), the suite's questions. A style whose rewrite was
  unusable (too short, a copy) has no content; ids stay the suite's. It loads with
  `load_knowledge_set(..., partial_rewrites=True)`; the "machine rewrites" condition uses only its fully covered
  rewrites (augment's "drop").
* `<out>/<doc>.json.steps.jsonl`: every writer and translator output (augment's resumable sidecar);
* `<out>/reports/<doc>.json`: each attempt's fidelity problem and keyword coverage, which rewrites the default
  check keeps, and the writer time.

    python -m sciknow.make.machine_suite            # all 24 documents, resumable, one torch thread
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .augment import (DEFAULT_WRITER, STYLES, TRANSLATIONS, AugmentError, RewriteOutcome, StepRunner, check_text,
                       first_attempts, first_rewrite_steps, generate_together, make_backend, retry_steps,
                       sidecar_path, write_knowledge_set, write_rewrites)
from ..conditions import spread_documents
from ..config import SUITE_DIR
from ..data import MACHINE_SUITE_DIR, PARTIAL_REWRITES_MARKER, KnowledgeSet, load_suite
from ..generate import ApertiumTranslator, Backend
from ..io import atomic_write_text, read_jsonl

OUT_DIR = MACHINE_SUITE_DIR
STYLE_IDS = {"original": "C1", "qa": "C2", "article": "C3", "interview": "C4", "textbook": "C5"}  # as the suite's
TRANSLATION_IDS = {"es": "C6", "ca": "C7", "it": "C8"}
MARKER_TEXT = """# Machine-written rewrites

The knowledge sets in this folder were written by `python -m sciknow.make.machine_suite`: the suite's originals
and questions, rewritten by a writer model. Their rewrites may miss question keywords, so this file tells
`sciknow.data.load_sets` to load the folder with `partial_rewrites=True` (every other rule of the suite holds);
`KnowledgeSet.keyword_coverage()` gives what each rewrite carries, `reports/` each attempt.
"""


def suite_keywords(kset: KnowledgeSet) -> list[str]:
    """Every question keyword of a document, once, in question order."""
    return list(dict.fromkeys(k for q in kset.questions for k in q.keywords))


def attempt_report(attempt, keywords: Sequence[str]) -> dict[str, Any]:
    return {"problem": attempt.problem or None, "other_problem": attempt.other_problem or None,
            "keywords_carried": len(keywords) - len(attempt.missing), "missing": attempt.missing}


def write_together(ksets: Sequence[KnowledgeSet], out_dir: Path, backend: Backend, writer_id: str,
                   batch_size: int) -> None:
    """The writer calls of several documents made together (first attempts, then retries), `batch_size` prompts
    per call, each recorded in its document's sidecar; `machine_document` then reads them back."""
    runners = {k.name: StepRunner(backend, writer_id, check_text(k.content("C1").text), sidecar_path(
        out_dir / f"{k.name}.json"), progress=False) for k in ksets}
    try:
        generate_together([(r, first_rewrite_steps(r.text, STYLES)) for r in runners.values()], batch_size)
        generate_together([(runners[k.name], list(retry_steps(runners[k.name].text, first_attempts(
            runners[k.name], runners[k.name].text, STYLES, suite_keywords(k))).values())) for k in ksets], batch_size)
    finally:
        for runner in runners.values():
            runner.close()


def machine_document(kset: KnowledgeSet, out_dir: Path, backend: Backend | None, writer_id: str,
                     batch_size: int = 4, translate_to: Sequence[str] = TRANSLATIONS, progress: bool = False
                     ) -> dict[str, Any]:
    """Rewrite one suite document, write its set and report (see the module docstring); return the report."""
    began = time.perf_counter()
    original = kset.content("C1")
    text = check_text(original.text, f"{kset.path} C1")
    keywords = suite_keywords(kset)
    out = out_dir / f"{kset.name}.json"
    runner = StepRunner(backend, writer_id, text, sidecar_path(out), batch_size=batch_size, progress=progress)
    try:
        outcomes = write_rewrites(runner, text, STYLES, keywords)
        translations = runner.translate(ApertiumTranslator(), "apertium", translate_to) if translate_to else {}
    finally:
        runner.close()
    records = [r for r in read_jsonl(sidecar_path(out)) if r.get("writer") == writer_id]
    writer_seconds = round(sum(float(r.get("seconds", 0)) for r in records), 1)
    report = {
        "document": kset.name, "writer": writer_id, "keywords": len(keywords),
        "writer_seconds": writer_seconds,  # every writer call this set's texts took, in whichever run made them
        "wall_seconds_this_run": round(time.perf_counter() - began, 1), "steps_run": runner.ran,
        "steps_resumed": runner.resumed,
        "rewrites": {o.style: style_report(o, keywords) for o in outcomes},
    }
    report["kept"] = [s for s, r in report["rewrites"].items() if r["kept"]]
    report["kept_partial"] = [s for s, r in report["rewrites"].items() if r["stored"] and not r["kept"]]
    write_knowledge_set(machine_set(kset, text, outcomes, translations, writer_id), out, partial_rewrites=True)
    atomic_write_text(out_dir / "reports" / f"{kset.name}.json", json.dumps(report, indent=2) + "\n")
    return report


def style_report(outcome: RewriteOutcome, keywords: Sequence[str]) -> dict[str, Any]:
    """Whether the default check keeps the style ("drop": faithful only), whether the set stores it ("keep":
    also a rewrite missing only keywords), and each attempt's coverage."""
    kept, stored = outcome.chosen("drop"), outcome.chosen("keep")
    return {"kept": kept is not None, "stored": stored is not None,
            "keywords_carried": None if stored is None else len(keywords) - len(stored.missing),
            "attempts": [attempt_report(a, keywords) for a in outcome.attempts]}


def machine_set(kset: KnowledgeSet, text: str, outcomes: Sequence[RewriteOutcome], translations: dict[str, str],
                writer_id: str) -> dict[str, Any]:
    contents = [{"id": "C1", "style": "original", "lang": "en", "text": text}]
    for outcome in outcomes:
        chosen = outcome.chosen("keep")
        if chosen is not None:
            contents.append({"id": STYLE_IDS[outcome.style], "style": outcome.style, "lang": "en", "text": chosen.text})
    contents += [{"id": TRANSLATION_IDS[lang], "style": "translation", "lang": lang, "text": t}
                 for lang, t in translations.items()]
    questions = [{"id": q.id, "question": q.question, **({"paraphrase": q.paraphrase} if q.paraphrase else {}),
                  "reference_answer": q.reference_answer, "keywords": list(q.keywords)} for q in kset.questions]
    return {
        "name": kset.name, **({"field": kset.field} if kset.field else {}),
        "description": f"Machine-augmented twin of the suite document {kset.name}: its original text rewritten by "
                       f"the writer model {writer_id} (Qwen2.5-Coder-1.5B-Instruct, Apache-2.0, greedy) through "
                       "sciknow.make.augment's prompts; the suite's own questions.",
        "source": f"data/knowledge/suite/{kset.name}.json (original text and questions); rewrites written by "
                  f"{writer_id} with sciknow.make.machine_suite",
        "license": "CC0-1.0",
        "notes": ("C1 is the suite's original; C2..C5 (qa, article, interview, textbook) are the writer's rewrites "
                  "that passed sciknow.make.augment's fidelity check against the suite's question keywords, or that "
                  "miss only keywords (kept with their keyword coverage; a style whose rewrite was unusable is "
                  "absent); C6..C8 are Apertium translations of C1 (es, ca, it). Questions, paraphrases and "
                  "keywords are the suite's. Written once; the writer's outputs are in the .steps.jsonl beside "
                  "this file and per-rewrite coverage in reports/."),
        "contents": contents,
        "questions": questions,
    }


def summarize(out_dir: Path) -> dict[str, Any]:
    """Keep rates and keyword coverage over the documents done so far (their reports), per style and in all."""
    reports = [json.loads(p.read_text()) for p in sorted((Path(out_dir) / "reports").glob("*.json"))
               if p.name != "summary.json"]
    by_style = {}
    for style in STYLES:
        rows = [r["rewrites"][style] for r in reports if style in r["rewrites"]]
        carried = [a["keywords_carried"] / r["keywords"] for r in reports if style in r["rewrites"]
                   for a in r["rewrites"][style]["attempts"]]
        by_style[style] = {"kept": sum(x["kept"] for x in rows), "kept_partial": sum(x["stored"] and not x["kept"]
                                                                                      for x in rows),
                           "unusable": sum(not x["stored"] for x in rows),
                           "mean_coverage_of_attempts": round(sum(carried) / len(carried), 3) if carried else None}
    stored = [x["keywords_carried"] / r["keywords"] for r in reports for x in r["rewrites"].values() if x["stored"]]
    return {
        "documents": [r["document"] for r in reports], "writer": sorted({r["writer"] for r in reports}),
        "rewrites": len(reports) * len(STYLES), "kept": sum(len(r["kept"]) for r in reports),
        "kept_partial": sum(len(r["kept_partial"]) for r in reports),
        "mean_coverage_of_stored": round(sum(stored) / len(stored), 3) if stored else None,
        "by_style": by_style,
        "writer_seconds": {r["document"]: r["writer_seconds"] for r in reports},
        "writer_seconds_total": round(sum(r["writer_seconds"] for r in reports), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sciknow.make.machine_suite", description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", default="", help="comma-separated suite documents (default: all)")
    parser.add_argument("--out", default=str(OUT_DIR), help=f"output folder (default {OUT_DIR})")
    parser.add_argument("--writer", default=DEFAULT_WRITER)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--together", type=int, default=1, help="documents whose writer calls are batched together")
    parser.add_argument("--batch-size", type=int, default=4, help="prompts per writer call")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--summary", action="store_true", help="only summarise the reports written so far")
    args = parser.parse_args(argv)
    if args.summary:
        summary = summarize(Path(args.out))
        atomic_write_text(Path(args.out) / "reports" / "summary.json", json.dumps(summary, indent=2) + "\n")
        print(json.dumps(summary, indent=2))
        return 0
    import torch

    torch.set_num_threads(args.threads)
    ksets = load_suite(SUITE_DIR)
    by_name = {k.name: k for k in ksets}
    names = [n.strip() for n in args.documents.split(",") if n.strip()] or spread_documents(ksets, len(ksets))
    unknown = [n for n in names if n not in by_name]
    if unknown:
        print(f"machine_suite: error: --documents: unknown {unknown}", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / PARTIAL_REWRITES_MARKER, MARKER_TEXT)
    try:
        began = time.perf_counter()
        backend, writer_id = make_backend(args.writer, batch_size=args.batch_size, precision=args.precision)
        print(f"writer {writer_id} loaded in {time.perf_counter() - began:.0f} s", flush=True)
        for i, name in enumerate(names, start=1):
            if (i - 1) % args.together == 0:  # a fixed document order: each group's sets are written when it ends
                write_together([by_name[n] for n in names[i - 1:i - 1 + args.together]], out_dir, backend, writer_id,
                               args.batch_size)
            report = machine_document(by_name[name], out_dir, backend, writer_id, batch_size=args.batch_size)
            cover = {s: r["keywords_carried"] for s, r in report["rewrites"].items()}
            print(f"[{i}/{len(names)}] {name}: kept {report['kept']}, partial {report['kept_partial']}, "
                  f"keywords carried {cover} of {report['keywords']}, writer {report['writer_seconds']:.0f} s, "
                  f"wall {report['wall_seconds_this_run']:.0f} s", flush=True)
    except (AugmentError, OSError, RuntimeError) as err:
        print(f"machine_suite: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
