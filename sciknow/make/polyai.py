"""The paper's PolyAI set (`reference/polyai/polyai.json` in the shared folder), assembled from the original study's
public repository at one commit: no file of that repository is this JSON, so `fetch_shared` downloads its parts
(`PARTS`) and calls `assemble`, then checks the result against the same sha256 as any other shared file.

Where each field comes from, at commit `COMMIT` of github.com/KanHatakeyama/Additional-training-Llama2 (MIT):
- contents C1..C12 and the 10 irrelevant texts: `smallDB/1018ig/context_mult_lang.json` (a list of 22 texts, in
  the order of the study's training file);
- the three extra translations X1..X3 (ar, fr, hi): `smallDB/1018ig/mult2.json`, items 9 to 11;
- the five questions and their keywords: `q_list` and `key_dict` of `ig_scoring` in `bayes/src/scoring.py`;
- each question's reference answer: the `answer` beside it in a result file of the study's Optuna search.
The labels (style, language), description and notes are this repo's.
"""
from __future__ import annotations

import ast
import json
from collections.abc import Mapping

REPOSITORY = "KanHatakeyama/Additional-training-Llama2"
COMMIT = "ec7a8bf26d7d7a912eb8f19f01e38d7dd280335e"
CONTEXTS = "smallDB/1018ig/context_mult_lang.json"
TRANSLATIONS = "smallDB/1018ig/mult2.json"
SCORING = "bayes/src/scoring.py"
RESULTS = "bayes/results/1023optuna/20231023113744.json"
PARTS = (CONTEXTS, TRANSLATIONS, SCORING, RESULTS)

# (style, language) of C1..C12 and the languages of X1..X3 (mult2.json items 9-11); descriptive, read off the texts.
CONTENT_LABELS = [("original", "en"), ("article", "en"), ("interview", "en"), ("textbook", "en"), ("casual", "en"),
                  ("narrative", "en"), ("qa", "en"), ("translation", "ja"), ("translation", "de"),
                  ("translation", "zh"), ("translation", "es"), ("translation", "hmn")]
EXTRA_LANGUAGES = ["ar", "fr", "hi"]
EXTRA_TRANSLATIONS = slice(9, 12)

HEADER = {
    "name": "polyai",
    "description": "Fictitious scientific document (PolyAI, Ig Nobel Prize 2033) used in Hatakeyama-Sato et al., "
                   "'Teaching Specific Scientific Knowledge into Large Language Models through Additional Training' "
                   "(arXiv 2312.03360), with its augmented rewrites, translations, the five test questions and their "
                   "answer keywords.",
    "source": f"github.com/{REPOSITORY} (MIT License, Copyright (c) 2023 Kan Hatakeyama): {CONTEXTS} and "
              f"{TRANSLATIONS.rsplit('/', 1)[1]} at commit {COMMIT[:7]}; questions, reference answers and keywords "
              f"from bayes/results and {SCORING}",
    "license": "MIT",
    "notes": "Order of contents C1..C12 follows the training file of the original study. The paper text names "
             "C2..C12 as Q&A, article, interview, textbook, es, de, es, it, ja, zh, ko; the shipped file holds "
             "original, article, interview, textbook, two further English rewrites, Q&A, ja, de, zh, es and Hmong. "
             "Style labels here are descriptive. Scoring in the original code: fraction of the semicolon-separated "
             "keywords found as case-sensitive substrings of the answer, averaged over questions.",
}


class AssemblyError(ValueError):
    """A part does not have the layout this assembler reads; the message names the part."""


def _scoring_tables(source: str) -> tuple[list[str], dict[int, str]]:
    """`q_list` and `key_dict` as literals from scoring.py's `ig_scoring` (read, never executed)."""
    found = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id in ("q_list", "key_dict") and node.targets[0].id not in found:
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError as error:
                raise AssemblyError(f"{SCORING}: {node.targets[0].id} is not a literal ({error})") from None
    if set(found) != {"q_list", "key_dict"}:
        raise AssemblyError(f"{SCORING}: expected literal q_list and key_dict assignments, found {sorted(found)}")
    return found["q_list"], found["key_dict"]


def _reference_answer(results: list, question: str) -> str:
    for record in results:
        for entry in record.get("pred_log", []):
            if question in entry.get("problem", ""):
                return entry["answer"]
    raise AssemblyError(f"{RESULTS}: no pred_log entry asks {question!r}")


def assemble(parts: Mapping[str, bytes]) -> bytes:
    """polyai.json, byte for byte as the shared folder holds it, from the repository files `PARTS` (path -> bytes)."""
    missing = [p for p in PARTS if p not in parts]
    if missing:
        raise AssemblyError(f"polyai: parts missing: {missing}")
    contexts = json.loads(parts[CONTEXTS])
    translations = json.loads(parts[TRANSLATIONS])
    n_contents = len(CONTENT_LABELS)
    if not (isinstance(contexts, list) and len(contexts) == n_contents + 10):
        raise AssemblyError(f"{CONTEXTS}: expected a list of {n_contents + 10} texts")
    if not (isinstance(translations, list) and len(translations) >= EXTRA_TRANSLATIONS.stop):
        raise AssemblyError(f"{TRANSLATIONS}: expected a list of at least {EXTRA_TRANSLATIONS.stop} texts")
    questions, keywords = _scoring_tables(parts[SCORING].decode("utf-8"))
    results = json.loads(parts[RESULTS])
    document = {
        **HEADER,
        "contents": [{"id": f"C{i}", "style": style, "lang": lang, "text": text}
                     for i, ((style, lang), text) in enumerate(zip(CONTENT_LABELS, contexts), start=1)],
        "extra_translations": [{"id": f"X{i}", "style": "translation", "lang": lang, "text": text}
                               for i, (lang, text) in enumerate(zip(EXTRA_LANGUAGES,
                                                                    translations[EXTRA_TRANSLATIONS]), start=1)],
        "questions": [{"id": f"Q{i + 1}", "question": q, "reference_answer": _reference_answer(results, q),
                       "keywords": [k.strip() for k in keywords[i].split(";")]} for i, q in enumerate(questions)],
        "irrelevant_texts": [{"id": f"I{i}", "text": text}
                             for i, text in enumerate(contexts[n_contents:], start=1)],
    }
    return json.dumps(document, indent=1, ensure_ascii=False).encode("utf-8")
