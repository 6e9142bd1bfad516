"""Knowledge sets (a fictitious document, its rewrites, test questions), suites of them, and training texts.

A knowledge set is one JSON file (see data/README.md):
    {"name", "field"?, "description"?, "source"?, "license"?, "notes"?,
     "contents": [{"id", "style", "lang", "text"}],
     "questions": [{"id", "question", "paraphrase"?, "reference_answer", "keywords": [...], "content_ids"?}],
     "irrelevant_texts"?: [{"id", "text"}], "extra_translations"?: [{"id", "style", "lang", "text"}]}
A suite is a folder of such files, one document each (data/knowledge/suite/).

Loading is the one validator (data/knowledge/check_knowledge.py calls it too). It refuses, naming the file and
the field: unknown fields (with the nearest valid name), wrong types (null, numbers, NaN, lists where text is
expected: nothing is coerced), duplicate JSON keys, lone surrogates and control characters, ids and keywords
with surrounding spaces, duplicate ids (a text's id is unique across contents and irrelevant texts), unknown
content ids, styles outside `STYLES` and languages that are not ISO 639 codes. `strict=True` (every suite document) adds the
rules that make a set a fair test: every keyword occurs in the original and in each English rewrite, and no
keyword occurs, ignoring case, in any question or paraphrase. A suite adds: keywords are unique across
documents and no keyword occurs in another document's texts.
"""
from __future__ import annotations

import json
import re
import stat
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import DEFAULT_KNOWLEDGE_SET, POLYAI_SET, REPO_ROOT, SHARED_DIR, SUITE_DIR, DataSpec, did_you_mean

MAX_FILE_BYTES = 50_000_000  # a knowledge set is text written by people: anything larger is a wrong file
ENGLISH_REWRITE_STYLES = ("original", "qa", "article", "interview", "textbook")
# A content's style: the original, a rewrite (the PolyAI set adds casual and narrative) or a translation; an
# irrelevant text's style is "irrelevant". Languages are ISO 639 codes (2 letters, or 3 where 639-1 has none: hmn).
STYLES = (*ENGLISH_REWRITE_STYLES, "casual", "narrative", "translation")
IRRELEVANT_STYLES = ("irrelevant",)
_LANG = re.compile(r"[a-z]{2,3}")
# A suite folder holding this file is machine-written (sciknow.make.machine_suite): its rewrites may miss keywords.
PARTIAL_REWRITES_MARKER = "PARTIAL_REWRITES.md"
MACHINE_SUITE_DIR = REPO_ROOT / "data" / "knowledge" / "suite_machine"


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
    paraphrase: str | None = None  # a second wording asking for the same fact
    content_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class KnowledgeSet:
    name: str
    path: str
    contents: tuple[Content, ...]
    questions: tuple[Question, ...]
    irrelevant_texts: tuple[Content, ...] = ()
    extra_translations: tuple[Content, ...] = ()
    field: str | None = None  # scientific field (suite documents)
    partial_rewrites: bool = False  # loaded with rewrites allowed to miss keywords (machine-written sets)

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

    def keyword_coverage(self) -> dict[str, tuple[int, int]]:
        """English content id -> (question keywords it carries verbatim, all question keywords)."""
        keywords = list(dict.fromkeys(k for q in self.questions for k in q.keywords))
        return {c.id: (sum(k in c.text for k in keywords), len(keywords)) for c in self.contents
                if c.lang == "en" and c.style in ENGLISH_REWRITE_STYLES}

    def leaked_keywords(self) -> dict[str, list[str]]:
        """Keywords that already appear in their own question: an untrained model gets them for free."""
        leaks = {q.id: [k for k in q.keywords if k in q.question] for q in self.questions}
        return {qid: ks for qid, ks in leaks.items() if ks}


# --- field rules -------------------------------------------------------------------------------------------

TOP_FIELDS = ("name", "field", "description", "source", "license", "notes", "contents", "extra_translations",
              "questions", "irrelevant_texts")
CONTENT_FIELDS = ("id", "style", "lang", "text")
IRRELEVANT_FIELDS = ("id", "text", "style", "lang")
QUESTION_FIELDS = ("id", "question", "paraphrase", "reference_answer", "keywords", "content_ids")
_TEXT_CONTROLS_OK = {"\n", "\t", "\r"}  # line breaks and tabs are fine in prose, nowhere else


def _fail(where: str, message: str) -> KnowledgeSetError:
    return KnowledgeSetError(f"{where}: {message}")


def _fields(obj: Any, allowed: Sequence[str], required: Sequence[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _fail(where, f"expected an object, got {_kind(obj)}")
    for key in obj:
        if key not in allowed:
            raise _fail(where, f"unknown field {key!r}{did_you_mean(key, allowed, list_valid=True)}")
    for key in required:
        if key not in obj:
            raise _fail(where, f"missing field '{key}'")
    return obj


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _text(value: Any, where: str, prose: bool = False) -> str:
    """A non-empty string: valid Unicode, no control characters (prose may hold line breaks and tabs)."""
    if not isinstance(value, str):
        raise _fail(where, f"expected str, got {_kind(value)} {value!r}"[:300])
    if not value.strip():
        raise _fail(where, "empty text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise _fail(where, f"lone surrogate {value[err.start]!r} at character {err.start}") from None
    for i, ch in enumerate(value):
        if unicodedata.category(ch) == "Cc" and not (prose and ch in _TEXT_CONTROLS_OK):
            raise _fail(where, f"control character {ch!r} at character {i}")
    return value


def _name(value: Any, where: str) -> str:
    """An id or keyword: text without surrounding spaces (they would silently never match)."""
    value = _text(value, where)
    if value != value.strip():
        raise _fail(where, f"{value!r} has surrounding spaces")
    return value


def _strings(value: Any, where: str, allow_empty: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _fail(where, f"expected list, got {_kind(value)} {value!r}"[:300])
    if not value and not allow_empty:
        raise _fail(where, "need a non-empty list")
    return tuple(_name(v, f"{where}[{i}]") for i, v in enumerate(value))


def _texts(raw: dict, key: str, where: str, required: bool, irrelevant: bool = False) -> tuple[Content, ...]:
    if key not in raw and not required:
        return ()
    items = raw[key]
    if not isinstance(items, list):
        raise _fail(f"{where}.{key}", f"expected list, got {_kind(items)}")
    if required and not items:
        raise _fail(f"{where}.{key}", "empty list")
    out = []
    for i, item in enumerate(items):
        at = f"{where}.{key}[{i}]"
        allowed, needed = (IRRELEVANT_FIELDS, ("id", "text")) if irrelevant else (CONTENT_FIELDS, CONTENT_FIELDS)
        item = _fields(item, allowed, needed, at)
        style = _name(item.get("style", "irrelevant"), f"{at}.style")
        styles = IRRELEVANT_STYLES if irrelevant else STYLES
        if style not in styles:
            raise _fail(f"{at}.style", f"unknown style {style!r}{did_you_mean(style, styles, list_valid=True)}")
        lang = _name(item.get("lang", "en"), f"{at}.lang")
        if not _LANG.fullmatch(lang):
            raise _fail(f"{at}.lang", f"{lang!r} is not an ISO 639 code (2 or 3 lowercase letters: en, es, hmn)")
        out.append(Content(id=_name(item["id"], f"{at}.id"), style=style, lang=lang,
                           text=_text(item["text"], f"{at}.text", prose=True)))
    return tuple(out)


def _questions(raw: dict, where: str, content_ids: set[str]) -> tuple[Question, ...]:
    items = raw["questions"]
    if not isinstance(items, list):
        raise _fail(f"{where}.questions", f"expected list, got {_kind(items)}")
    if not items:
        raise _fail(f"{where}.questions", "empty list")
    out = []
    for i, item in enumerate(items):
        at = f"{where}.questions[{i}]"
        item = _fields(item, QUESTION_FIELDS, ("id", "question", "keywords"), at)
        ids = _strings(item.get("content_ids", []), f"{at}.content_ids", allow_empty=True)
        for cid in ids:
            if cid not in content_ids:
                raise _fail(f"{at}.content_ids", f"unknown content id {cid!r}")
        out.append(Question(
            id=_name(item["id"], f"{at}.id"),
            question=_text(item["question"], f"{at}.question", prose=True),
            reference_answer=(_text(item["reference_answer"], f"{at}.reference_answer", prose=True)
                              if "reference_answer" in item else ""),
            keywords=_strings(item["keywords"], f"{at}.keywords"),
            paraphrase=_text(item["paraphrase"], f"{at}.paraphrase", prose=True) if "paraphrase" in item else None,
            content_ids=ids,
        ))
    return tuple(out)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ValueError(f"duplicate key(s) {dupes} in one object")
    return dict(pairs)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


def _read_json(path: Path) -> Any:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a folder, a FIFO, a device: never read (a FIFO would block forever)
            raise KnowledgeSetError(f"{path}: not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise KnowledgeSetError(f"{path}: {info.st_size} bytes, more than {MAX_FILE_BYTES}")
        data = path.read_bytes()
    except FileNotFoundError:
        raise KnowledgeSetError(f"{path}: file not found") from None
    except OSError as err:  # a symlink loop, a permission problem
        raise KnowledgeSetError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys,
                          parse_constant=_refuse_constant)
    except UnicodeDecodeError as err:
        raise KnowledgeSetError(f"{path}: not UTF-8 ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise KnowledgeSetError(f"{path}: invalid JSON ({err.msg} at line {err.lineno})") from None
    except ValueError as err:  # duplicate keys, NaN/Infinity
        raise KnowledgeSetError(f"{path}: invalid JSON ({err})") from None
    except RecursionError:
        raise KnowledgeSetError(f"{path}: invalid JSON (nested too deeply)") from None


def load_knowledge_set(path: str | Path, strict: bool = False, partial_rewrites: bool = False) -> KnowledgeSet:
    """Load and validate a knowledge-set JSON file (`strict`: also the fair-test rules, see the module doc).

    `partial_rewrites` (machine-written rewrites, `sciknow.make.machine_suite`): the fair-test rules except that
    a rewrite may miss keywords (each keyword must still be in the original); `KnowledgeSet.keyword_coverage`
    gives what each rewrite carries."""
    path = Path(path)
    if not path.exists() and SHARED_DIR in path.absolute().parents:
        raise KnowledgeSetError(f"{path}: file not found. Shared data is read from {SHARED_DIR} (set SCIKNOW_SHARED "
                                "to the folder that holds reference/ and corpora/)")
    raw = _read_json(path)
    where = str(path)
    raw = _fields(raw, TOP_FIELDS, ("contents", "questions"), where)
    for key in ("name", "field", "description", "source", "license", "notes"):
        if key in raw:
            _text(raw[key], f"{where}.{key}", prose=True)
    contents = _texts(raw, "contents", where, required=True)
    extra = _texts(raw, "extra_translations", where, required=False)
    irrelevant = _texts(raw, "irrelevant_texts", where, required=False, irrelevant=True)
    questions = _questions(raw, where, {c.id for c in contents + extra})
    # a text's id names one text: contents, extra translations and irrelevant texts share one id space
    for key, group in (("contents", contents + extra), ("questions", questions),
                       ("contents and irrelevant_texts", contents + extra + irrelevant)):
        ids = [x.id for x in group]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise _fail(f"{where}.{key}", f"duplicate id(s) {dupes}")
    kset = KnowledgeSet(
        name=raw.get("name", path.stem), path=str(path), contents=contents, questions=questions,
        irrelevant_texts=irrelevant, extra_translations=extra, field=raw.get("field"),
        partial_rewrites=partial_rewrites,
    )
    if strict or partial_rewrites:
        _check_fair(kset)
    return kset


def _check_fair(kset: KnowledgeSet) -> None:
    """Every keyword is in the original and each English rewrite (only the original when `kset.partial_rewrites`);
    none is in any question or paraphrase."""
    english = [c for c in kset.contents if c.lang == "en" and c.style in ENGLISH_REWRITE_STYLES]
    if not any(c.style == "original" for c in english):
        raise _fail(f"{kset.path}.contents", "no content with style 'original' and lang 'en'")
    asked = [(f"questions[{i}].{kind}", text) for i, q in enumerate(kset.questions)
             for kind, text in (("question", q.question), ("paraphrase", q.paraphrase)) if text]
    for i, q in enumerate(kset.questions):
        for k in q.keywords:
            at = f"{kset.path}.questions[{i}].keywords"
            for c in english:
                if k not in c.text and (c.style == "original" or not kset.partial_rewrites):
                    rule = "" if c.style == "original" else (
                        ": the rule that every rewrite carries every keyword (a set whose rewrites may miss "
                        "keywords, machine-written, loads with partial_rewrites=True)")
                    raise _fail(at, f"keyword {k!r} is missing from content {c.id} ({c.style}){rule}")
            for where, text in asked:
                if k.lower() in text.lower():
                    raise _fail(at, f"keyword {k!r} occurs in {where} (ignoring case): a free answer")


def suite_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise KnowledgeSetError(f"{folder}: not a suite folder")
    return sorted(folder.glob("*.json"))


def load_suite(folder: str | Path, documents: Sequence[str] = (), partial_rewrites: bool = False
               ) -> list[KnowledgeSet]:
    """The suite's documents (all, or those named, in the given order), each loaded strictly (`partial_rewrites`:
    see `load_knowledge_set`), plus the suite rules: keywords unique across documents and absent, ignoring case,
    from every other document's texts."""
    files = {p.stem: p for p in suite_files(folder)}
    if not files:
        raise KnowledgeSetError(f"{folder}: no *.json documents in this suite folder")
    for name in documents:
        if name not in files:
            raise KnowledgeSetError(f"{folder}: no document {name!r}{did_you_mean(name, list(files))}")
    every = [load_knowledge_set(p, strict=True, partial_rewrites=partial_rewrites) for p in files.values()]
    owner: dict[str, KnowledgeSet] = {}
    for a in every:
        for i, q in enumerate(a.questions):
            for k in q.keywords:
                b = owner.setdefault(k.lower(), a)
                if b is not a:
                    raise _fail(f"{a.path}.questions[{i}].keywords",
                                f"keyword {k!r} is also a keyword of document {b.name!r} ({b.path})")
    for a in every:
        for i, q in enumerate(a.questions):
            for k in q.keywords:
                for b in every:
                    if b is a:
                        continue
                    texts = [(f"content {c.id}", c.text) for c in b.contents + b.extra_translations] + [
                        (f"questions {x.id}", f"{x.question} {x.paraphrase or ''} {x.reference_answer}")
                        for x in b.questions]
                    for where, text in texts:
                        if k.lower() in text.lower():
                            raise _fail(f"{a.path}.questions[{i}].keywords",
                                        f"keyword {k!r} also occurs in document {b.name!r} ({b.path}, {where})")
    by_name = {Path(k.path).stem: k for k in every}
    return [by_name[n] for n in documents] if documents else every


def resolve_knowledge_set(name: str) -> str:
    """A notebook's `knowledge_set` parameter as a path: "default" (zephyrite), "paper" (the paper's PolyAI set,
    read from the shared folder), "suite" (the repo's suite folder), else a path (relative to the repo root).
    A named set that is missing is an error that says where it was looked for: never a silent substitute."""
    named = {"default": DEFAULT_KNOWLEDGE_SET, "paper": POLYAI_SET, "suite": SUITE_DIR}
    path = named.get(name, REPO_ROOT / name)  # an absolute `name` stays as it is
    if not path.exists():
        hint = (f" The shared data folder is {SHARED_DIR}: set SCIKNOW_SHARED to the folder that holds "
                "reference/polyai/polyai.json." if name == "paper" else "")
        raise KnowledgeSetError(f"knowledge set {name!r}: {path} does not exist.{hint}")
    return str(path)


def has_partial_rewrites(folder: str | Path) -> bool:
    """Is `folder` a machine-written suite (it holds `PARTIAL_REWRITES_MARKER`), loaded with `partial_rewrites`?"""
    return (Path(folder) / PARTIAL_REWRITES_MARKER).is_file()


def load_sets(data: DataSpec) -> list[KnowledgeSet]:
    """The knowledge sets a run uses: one file, or the chosen documents of a suite folder."""
    path = Path(data.knowledge_set)
    if path.is_dir():
        return load_suite(path, data.documents, partial_rewrites=has_partial_rewrites(path))
    if data.documents:
        raise KnowledgeSetError(f"data.documents={data.documents!r} needs data.knowledge_set to be a suite folder, "
                                f"not the file {path}")
    return [load_knowledge_set(path)]


def irrelevant_source(name: str | None) -> str:
    """A notebook's `irrelevant_source` parameter as a DataSpec value: empty -> the shared PLOS starter corpus
    (introductions chunked to <= 2000 words), "knowledge_set" -> the set's own texts, else a repo-relative folder."""
    if not name:
        return str(SHARED_DIR / "corpora" / "plos-starter")
    return name if name == "knowledge_set" else str(REPO_ROOT / name)


def training_texts(data: DataSpec, ksets: Sequence[KnowledgeSet] | KnowledgeSet | None = None) -> list[str]:
    """The texts one run trains on: the chosen contents of each document (each `repeats` times), plus N
    irrelevant texts drawn by seed. Task 4 runs (`data.dataset`) are not knowledge-set runs: see paper_datasets."""
    if data.kind != "knowledge set":
        raise ValueError("training_texts: data.dataset is a Task 4 run; use sciknow.paper_datasets.training_texts")
    if isinstance(ksets, KnowledgeSet):
        ksets = [ksets]
    ksets = ksets or load_sets(data)
    texts = [kset.content(cid).text for kset in ksets for cid in data.contents for _ in range(data.repeats)]
    if data.n_irrelevant:
        from . import corpus  # JATS parsing is only needed when irrelevant texts are used

        if data.irrelevant_source == "knowledge_set":
            pool = [c.text for kset in ksets for c in kset.irrelevant_texts]
            if data.n_irrelevant > len(pool):
                raise ValueError(f"data.n_irrelevant={data.n_irrelevant}: the knowledge set holds {len(pool)} "
                                 "irrelevant texts")
            texts += corpus.sample_texts(pool, data.n_irrelevant, data.irrelevant_seed)
        else:
            texts += corpus.irrelevant_texts(data.irrelevant_source, data.n_irrelevant, data.irrelevant_seed)
    return texts
