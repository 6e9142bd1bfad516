"""Knowledge sets (a fictitious document, its rewrites, test questions) and training-text assembly.

A knowledge set is one JSON file (see data/README.md):
    {"name", "contents": [{"id", "style", "lang", "text"}], "questions": [{"id", "question",
     "reference_answer", "keywords": [...]}], "irrelevant_texts": [{"id", "text"}], "extra_translations": [...]}
Loading validates everything and raises `KnowledgeSetError` naming the file and the field; nothing is skipped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .config import DataSpec


class KnowledgeSetError(ValueError):
    """A knowledge-set file is malformed; the message names the file and the offending field."""


@dataclass(frozen=True)
class Content:
    id: str
    style: str
    lang: str
    text: str


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    reference_answer: str
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class KnowledgeSet:
    name: str
    path: str
    contents: tuple[Content, ...]
    questions: tuple[Question, ...]
    irrelevant_texts: tuple[Content, ...] = ()
    extra_translations: tuple[Content, ...] = ()

    def content(self, content_id: str) -> Content:
        for c in self.contents + self.extra_translations:
            if c.id == content_id:
                return c
        raise KeyError(f"{self.path}: no content with id {content_id!r}")

    def ids_by_style(self, styles: list[str]) -> list[str]:
        """Content ids for the given styles, in the given order (first content of each style)."""
        ids = []
        for style in styles:
            matches = [c.id for c in self.contents if c.style == style]
            if not matches:
                raise KeyError(f"{self.path}: no content with style {style!r} "
                               f"(styles present: {sorted({c.style for c in self.contents})})")
            ids.append(matches[0])
        return ids

    def leaked_keywords(self) -> dict[str, list[str]]:
        """Keywords that already appear in their own question: an untrained model gets them for free."""
        leaks = {q.id: [k for k in q.keywords if k in q.question] for q in self.questions}
        return {qid: ks for qid, ks in leaks.items() if ks}


def _require(obj: object, key: str, kind: type, where: str) -> object:
    if not isinstance(obj, dict) or key not in obj:
        raise KnowledgeSetError(f"{where}: missing field '{key}'")
    value = obj[key]
    if not isinstance(value, kind):
        raise KnowledgeSetError(f"{where}.{key}: expected {kind.__name__}, got {type(value).__name__}")
    if isinstance(value, str) and not value.strip():
        raise KnowledgeSetError(f"{where}.{key}: empty text")
    return value


def _texts(raw: dict, key: str, where: str, required: bool, needs_style: bool) -> tuple[Content, ...]:
    if key not in raw and not required:
        return ()
    items = _require(raw, key, list, where)
    if required and not items:
        raise KnowledgeSetError(f"{where}.{key}: empty list")
    out = []
    for i, item in enumerate(items):
        at = f"{where}.{key}[{i}]"
        out.append(Content(
            id=_require(item, "id", str, at),
            style=_require(item, "style", str, at) if needs_style else str(item.get("style", "irrelevant")),
            lang=str(item.get("lang", "en")) if not needs_style else _require(item, "lang", str, at),
            text=_require(item, "text", str, at),
        ))
    return tuple(out)


def load_knowledge_set(path: str | Path) -> KnowledgeSet:
    """Load and validate a knowledge-set JSON file."""
    path = Path(path)
    try:
        raw = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise KnowledgeSetError(f"{path}: file not found") from None
    except UnicodeDecodeError as err:
        raise KnowledgeSetError(f"{path}: not UTF-8 ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise KnowledgeSetError(f"{path}: invalid JSON ({err.msg} at line {err.lineno})") from None
    where = str(path)
    if not isinstance(raw, dict):
        raise KnowledgeSetError(f"{where}: top level must be an object")

    contents = _texts(raw, "contents", where, required=True, needs_style=True)
    extra = _texts(raw, "extra_translations", where, required=False, needs_style=True)
    irrelevant = _texts(raw, "irrelevant_texts", where, required=False, needs_style=False)
    questions = []
    for i, item in enumerate(_require(raw, "questions", list, where)):
        at = f"{where}.questions[{i}]"
        keywords = _require(item, "keywords", list, at)
        if not keywords or not all(isinstance(k, str) and k.strip() for k in keywords):
            raise KnowledgeSetError(f"{at}.keywords: need a non-empty list of non-empty strings")
        questions.append(Question(
            id=_require(item, "id", str, at),
            question=_require(item, "question", str, at),
            reference_answer=str(item.get("reference_answer", "")),
            keywords=tuple(keywords),
        ))
        # A question may say which contents it is about; those ids must exist.
        for cid in item.get("content_ids", []):
            if cid not in {c.id for c in contents + extra}:
                raise KnowledgeSetError(f"{at}.content_ids: unknown content id {cid!r}")
    if not questions:
        raise KnowledgeSetError(f"{where}.questions: empty list")

    for key, group in (("contents", contents + extra), ("questions", questions), ("irrelevant_texts", irrelevant)):
        ids = [x.id for x in group]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise KnowledgeSetError(f"{where}.{key}: duplicate id(s) {dupes}")
    return KnowledgeSet(
        name=str(raw.get("name", path.stem)), path=str(path), contents=contents, questions=tuple(questions),
        irrelevant_texts=irrelevant, extra_translations=extra,
    )


def irrelevant_source(name: str | None) -> str:
    """A notebook's `irrelevant_source` parameter as a DataSpec value: empty -> the shared PLOS starter corpus
    (introductions chunked to <= 2000 words), "knowledge_set" -> the set's own texts, else a repo-relative folder."""
    from .config import REPO_ROOT, SHARED_DIR

    if not name:
        return str(SHARED_DIR / "corpora" / "plos-starter")
    return name if name == "knowledge_set" else str(REPO_ROOT / name)


def training_texts(data: DataSpec, kset: KnowledgeSet | None = None) -> list[str]:
    """The texts one run trains on: the chosen contents plus N irrelevant texts drawn by seed.

    With `data.dataset` (Task 4) the texts are `data.genre_counts` texts per genre of that built dataset instead.
    """
    if data.dataset:
        from . import paperqa

        return paperqa.training_texts(data.dataset, data.genre_counts, data.irrelevant_seed)
    kset = kset or load_knowledge_set(data.knowledge_set)
    texts = [kset.content(cid).text for cid in data.contents]
    if data.n_irrelevant:
        from . import corpus  # JATS parsing is only needed when irrelevant texts are used

        if data.irrelevant_source == "knowledge_set":
            pool = [c.text for c in kset.irrelevant_texts]
            texts += corpus.sample_texts(pool, data.n_irrelevant, data.irrelevant_seed)
        else:
            texts += corpus.irrelevant_texts(data.irrelevant_source, data.n_irrelevant, data.irrelevant_seed)
    return texts
