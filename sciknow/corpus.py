"""JATS XML papers -> clean section texts, plus chunking and seeded sampling helpers.

JATS is the full-text format of PMC, Europe PMC, PLOS and Springer Nature open access. We keep only
what the experiments train on (abstract, introduction, conclusion) as plain prose: inline markup
flattened, citations, figures, tables, display formulas and bracketed figure/table references ("(Fig 2)")
removed, paragraphs separated by blank lines.

Reading is defensive: only regular files up to `max_bytes` (no FIFOs, devices or directories), never
decompressed, never with a DTD, network access, external entities or XInclude. Character entities are
resolved (HTML/ISO names such as `&nbsp;`, and plain-text entities of the document's internal subset); any
other entity, an article in a namespace, or one with nothing to read is a `CorpusError` naming the file.
"""
from __future__ import annotations

import functools
import html.entities
import os
import random
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lxml import etree
from tqdm import tqdm

XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
ALI_LICENSE_REF = "{http://www.niso.org/schemas/ali/1.0/}license_ref"

# Never load the DTD or let libxml2 expand entities: no network access during parsing, no XXE, no billion
# laughs. Entities are resolved afterwards by `_resolve_entities`, one level, text only.
_PARSER_OPTIONS = dict(
    resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True, remove_pis=True
)
DEFAULT_MAX_BYTES = 16 * 2**20  # far above any article's XML; parsing takes about 15x the file size in memory
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"PK\x03\x04": "zip",
               b"\x28\xb5\x2f\xfd": "zstd"}

# Elements whose whole content is not prose (their tail text is kept).
_DROPPED_TAGS = {
    "fig", "fig-group", "table-wrap", "table-wrap-group", "table", "disp-formula", "disp-formula-group",
    "graphic", "inline-graphic", "media", "supplementary-material", "tex-math", "label", "object-id",
    "fn-group", "ref-list",
}
_BLOCK_TAGS = {
    "p", "title", "list", "list-item", "def-list", "def-item", "term", "def", "disp-quote", "statement",
    "boxed-text", "caption", "sec", "break", "tr", "td", "th", "attrib", "verse-line", "address",
}
_DROPPED_XREF_TYPES = {"fn", "table-fn"}  # footnote markers such as "*" or "a"
_FIGURE_XREF_TYPES = {"fig", "table", "supplementary-material", "boxed-text"}
_CITE = "\ue000"  # private-use placeholder for a removed citation, cleaned up after flattening
# A figure/table reference is kept as text between these marks until `clean_text` decides its fate, and is
# swapped for a numbered token there (its text may hold brackets: "Fig. 1(a)").
_FIG_OPEN, _FIG_CLOSE, _TOKEN_OPEN, _TOKEN_CLOSE = "\ue001", "\ue002", "\ue003", "\ue004"
_FIG_SPAN_RE = re.compile(f"{_FIG_OPEN}([^{_FIG_CLOSE}]*){_FIG_CLOSE}")
_TOKEN_RE = re.compile(f"{_TOKEN_OPEN}(\\d+){_TOKEN_CLOSE}")
_INNER_BRACKETS_RE = re.compile(r"\s*([(\[])([^()\[\]]*)([)\]])")
# Words that may surround figure references inside brackets without carrying content of their own.
_FIGURE_WORD = (r"(?:fig(?:ure)?s?|tables?|box(?:es)?|movies?|videos?|supplement(?:ary|al)?|supporting|"
                r"information|materials?|files?|texts?|data(?:sets?)?|protocols?|appendix|appendices|panels?)")
_FIGURE_WORD_RE = re.compile(rf"\b{_FIGURE_WORD}\b\.?", re.I)
_FIGURE_GLUE_RE = re.compile(
    rf"{_TOKEN_RE.pattern}|\b{_FIGURE_WORD}\b\.?|\b(?:see(?:\s+also)?|cf|e\.g|i\.e|and|or|in|also|respectively)\b\.?"
    r"|\b[A-Za-z]?\d+[A-Za-z]{0,2}\b|\b[A-Za-z]\b|[-–—/.:&]", re.I)
_CITE_SEP = r"(?:\s*(?:[,;–—-]|\band\b)\s*)*"  # "1, 2", "3–5", "Smith 2000; Doe 2001", "4, and 5"
_CITE_GROUP = rf"{_CITE}(?:{_CITE_SEP}{_CITE})*"
_CITE_RE = re.compile(rf"\s*(?:\[\s*{_CITE_GROUP}\s*\]|\(\s*{_CITE_GROUP}\s*\)|{_CITE_GROUP})")
# Numeric citations typed as plain text rather than <xref>, e.g. "[1]", "[2, 5–7]".
_PLAIN_CITE_RE = re.compile(r"\s*\[\d+(?:\s*[,;–—-]\s*\d+)*\]")
# Brackets emptied by citation removal, possibly with a leftover lead-in: "()", "(see )", "(e.g., )".
_EMPTY_BRACKETS_RE = re.compile(
    r"\s*[(\[]\s*(?:(?:e\.g\.|i\.e\.|see|cf\.|reviewed in|refs?\.)[,:]?\s*)?[,;\s]*[)\]]", re.I
)

_NUMBERING = r"^\s*(?:(?:\d+(?:\.\d+)*|[IVXLC]+|[A-Z])[.):]?\s+)?"
_INTRO_TITLE = re.compile(_NUMBERING + r"(?:introduction|background)\b", re.I)
_CONCLUSION_TITLE = re.compile(r"\bconclu(?:sion|sions|ding)\b", re.I)
_DISCUSSION_TITLE = re.compile(r"\bdiscussion\b", re.I)
_INTRO_TYPES = {"intro", "introduction", "background"}


class CorpusError(Exception):
    """A file that cannot be read as a JATS article; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


@dataclass(frozen=True)
class Paper:
    """One article's metadata and clean section texts ("" when a section is absent)."""

    id: str
    title: str
    doi: str
    journal: str
    license: str
    license_url: str
    abstract: str
    introduction: str
    conclusion: str
    source: Path


# ---------------------------------------------------------------- text flattening


def _drop(el: etree._Element) -> None:
    """Remove `el` but keep its tail text in the tree."""
    parent = el.getparent()
    if parent is None:
        return
    if el.tail:
        prev = el.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + el.tail
        else:
            parent.text = (parent.text or "") + el.tail
    parent.remove(el)


def _replace_with_text(el: etree._Element, text: str) -> None:
    """Replace `el` (and its content) by plain `text`, keeping its tail."""
    el.tail = text + (el.tail or "")
    _drop(el)


def _strip_non_prose(root: etree._Element) -> None:
    """Remove figures, tables, formulas, footnote markers; turn bibliographic citations into placeholders and
    mark figure/table references."""
    for el in list(root.iter()):
        if not isinstance(el.tag, str):
            continue
        local = etree.QName(el).localname
        if local in _DROPPED_TAGS:
            _drop(el)
        elif local == "xref":
            ref_type = el.get("ref-type", "")
            if ref_type == "bibr":
                _replace_with_text(el, _CITE)
            elif ref_type in _DROPPED_XREF_TYPES:
                _drop(el)
            elif ref_type in _FIGURE_XREF_TYPES:
                _replace_with_text(el, _FIG_OPEN + "".join(el.itertext()) + _FIG_CLOSE)


def _is_reference(item: str) -> bool:
    """True if a bracket item is nothing but figure/table references: "Fig 2", "see Figs 3 and 4B", "S1 Table"."""
    if not _FIGURE_GLUE_RE.sub("", item).strip(" ,;"):
        return _TOKEN_OPEN in item or bool(_FIGURE_WORD_RE.search(item) and re.search(r"\d", item))
    return False


def _drop_references(match: re.Match[str]) -> str:
    """An innermost bracket group without its figure/table reference items; "" when nothing else was in it."""
    space, opening, inner, closing = match[0][: match.start(1) - match.start(0)], match[1], match[2], match[3]
    parts = re.split(r"([,;])", inner)
    items, separators = parts[0::2], [""] + parts[1::2]
    references = [_is_reference(item) for item in items]
    if not any(references):
        return match[0]
    kept = [(sep, item) for sep, item, ref in zip(separators, items, references) if not ref and item.strip()]
    if not kept:
        return ""
    return space + opening + "".join(sep + item for sep, item in kept)[len(kept[0][0]):].strip() + closing


def drop_figure_references(text: str) -> tuple[str, int]:
    """Remove bracketed figure/table references from `text` (marked ones from JATS <xref>, or plain "(Fig 2)");
    references that are part of a sentence ("Figure 2 shows") stay as text. Returns the text and how many
    marked references were removed."""
    originals: list[str] = []

    def tokenize(match: re.Match[str]) -> str:
        ref, lead, trail = match[1], "", ""
        # Brackets some publishers put inside the link ("(<xref>Figure 1)</xref>") belong to the sentence.
        while ref[-1:] in (")", "]") and ref.count(")") + ref.count("]") > ref.count("(") + ref.count("["):
            ref, trail = ref[:-1], ref[-1] + trail
        while ref[:1] in ("(", "[") and ref.count("(") + ref.count("[") > ref.count(")") + ref.count("]"):
            ref, lead = ref[1:], lead + ref[0]
        originals.append(ref)
        return f"{lead}{_TOKEN_OPEN}{len(originals) - 1}{_TOKEN_CLOSE}{trail}"

    text = _FIG_SPAN_RE.sub(tokenize, text)
    text = _INNER_BRACKETS_RE.sub(_drop_references, text)
    kept = _TOKEN_RE.findall(text)
    return _TOKEN_RE.sub(lambda m: originals[int(m[1])], text), len(originals) - len(kept)


def clean_text(text: str) -> str:
    """Remove citation placeholders, bracketed figure/table references and the brackets/separators they leave;
    normalize whitespace."""
    text = _CITE_RE.sub("", text)
    text = text.replace(_CITE, "")
    text = _PLAIN_CITE_RE.sub("", text)
    text, _ = drop_figure_references(text)
    text = _EMPTY_BRACKETS_RE.sub("", text)
    # "(as shown before; [3])" -> "(as shown before;)" -> "(as shown before)"; likewise "([3], p. 1)".
    text = re.sub(r"\s*[,;]\s*([)\]])", r"\1", text)
    text = re.sub(r"([(\[])\s*[,;]\s*", r"\1", text)
    text = re.sub(r"\s+", " ", text).strip()
    # Citations removed next to punctuation leave "word .", "(commonly )", "sequence,," or "et al.." behind.
    text = re.sub(r"\s+([.,;:!?)\]])", r"\1", text)
    text = re.sub(r"([(\[])\s+", r"\1", text)
    text = re.sub(r",(?:\s*,)+", ",", text)
    return re.sub(r"(?<!\.)\.\.(?!\.)", ".", text)


def _gather(el: etree._Element, out: list[str]) -> None:
    """Text of `el` in document order, spaced around block elements ("<p>one</p><p>two</p>" is two words)."""
    block = el.tag in _BLOCK_TAGS
    if block:
        out.append(" ")
    if el.text and isinstance(el.tag, str):
        out.append(el.text)
    for child in el:
        _gather(child, out)
        if child.tail:
            out.append(child.tail)
    if block:
        out.append(" ")


def _flatten(el: etree._Element | None) -> str:
    if el is None:
        return ""
    out: list[str] = []
    _gather(el, out)
    return clean_text("".join(out))


def _inside_p(el: etree._Element, container: etree._Element) -> bool:
    """True if `el` sits in another <p> below `container` (a list inside a paragraph, say)."""
    for ancestor in el.iterancestors():
        if ancestor is container:
            return False
        if ancestor.tag == "p":
            return True
    return False


def _paragraphs(container: etree._Element) -> list[str]:
    """Outermost <p> of `container` and titles of its nested sections, as clean strings in document order."""
    out: list[str] = []
    for el in container.iter("p", "title"):
        if el.tag == "title":
            parent = el.getparent()
            if parent is container or parent is None or parent.tag != "sec":
                continue
        elif _inside_p(el, container):
            continue  # already part of its outer <p>
        text = _flatten(el)
        if text:
            out.append(text)
    return out


def _join(paragraphs: Iterable[str]) -> str:
    return "\n\n".join(p for p in paragraphs if p)


# ---------------------------------------------------------------- section detection


def _title(sec: etree._Element) -> str:
    return _flatten(sec.find("title"))


def _sec_types(sec: etree._Element) -> set[str]:
    # sec-type may combine values, e.g. "materials|methods" or "results discussion".
    return {t for t in re.split(r"[|\s]+", sec.get("sec-type", "").lower()) if t}


def _introduction(body: etree._Element) -> str:
    secs = body.findall("sec")
    for sec in secs:
        if _sec_types(sec) & _INTRO_TYPES or _INTRO_TITLE.match(_title(sec)):
            return _join(_paragraphs(sec))
    # Many articles open with untitled text before their first titled section: that opening is the introduction.
    lead: list[str] = []
    for child in body:
        if child.tag == "sec":
            break
        if child.tag == "p":
            lead.append(_flatten(child))
    titled_after = [s for s in secs if _title(s)]
    if titled_after:
        if any(lead):
            return _join(lead)
        if secs[0] is not titled_after[0]:
            return _join(_paragraphs(secs[0]))
    return ""


def _conclusion(body: etree._Element) -> str:
    """Conclusion(s) section if any, else the Discussion; top-level sections before nested ones."""
    top = body.findall("sec")
    nested = [s for s in body.iter("sec") if s.getparent() is not body]
    rules = [
        lambda s: bool(_CONCLUSION_TITLE.search(_title(s))),
        lambda s: "conclusions" in _sec_types(s) or "conclusion" in _sec_types(s),
        lambda s: "discussion" in _sec_types(s) or bool(_DISCUSSION_TITLE.search(_title(s))),
    ]
    for candidates in (top, nested):
        for rule in rules:
            found = [s for s in candidates if rule(s)]
            if found:
                return _join(_paragraphs(found[-1]))  # the last one: conclusions close the paper
    return ""


def _abstract(meta: etree._Element | None) -> str:
    if meta is None:
        return ""
    abstracts = meta.findall("abstract")
    # Plain <abstract> is the scientific abstract; typed ones are author summaries, TOC blurbs...
    main = next((a for a in abstracts if not a.get("abstract-type")), abstracts[0] if abstracts else None)
    return _join(_paragraphs(main)) if main is not None else ""


def _license(meta: etree._Element | None) -> tuple[str, str]:
    """(licence text, licence URL) from <permissions>: xlink:href, else <ali:license_ref>, else a link in the text."""
    permissions = meta.find("permissions") if meta is not None else None
    if permissions is None:
        return "", ""
    lic = permissions.find("license")
    ali_ref = next(permissions.iter(ALI_LICENSE_REF), None)
    link = next((e for e in permissions.iter("ext-link") if e.get(XLINK_HREF)), None)
    if lic is not None and lic.get(XLINK_HREF):
        url = lic.get(XLINK_HREF, "")
    elif ali_ref is not None:
        url = ali_ref.text or ""
    else:
        url = link.get(XLINK_HREF, "") if link is not None else ""
    text = _join(_flatten(p) for p in permissions.iter("license-p"))
    return text, url.strip()


# ---------------------------------------------------------------- public API


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def _read_capped(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`, or CorpusError (FIFOs, devices, oversized files)."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it would hang forever); regular files ignore it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise CorpusError(path, f"cannot open: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CorpusError(path, f"{_file_kind(info.st_mode)}, not a regular file; skipped")
        if info.st_size > max_bytes:
            raise CorpusError(path, f"{info.st_size} bytes, over the max_bytes={max_bytes} limit")
        data = b""
        while len(data) <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # the file grew while we read it
        raise CorpusError(path, f"more than the max_bytes={max_bytes} limit")
    return data


def _resolve_entities(root: etree._Element, path: Path) -> None:
    """Replace entity references, which the parser leaves unexpanded, by their text; refuse what cannot be.

    Known: HTML/ISO character names (`&nbsp;`, `&lsqb;`: JATS DTDs declare them, and the DTD is never loaded)
    and entities of the document's internal subset whose value is plain text (`<!ENTITY species "E. coli">`).
    Refused (CorpusError): external entities (XXE), entities holding markup or other entities (the billion
    laughs nest them), and undeclared names. Dropping any of them silently would change the text.
    """
    declared = {}
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None:
        declared = {e.name: e for e in dtd.iterentities()}
    for node in list(root.iter(etree.Entity)):
        name = node.name
        entity = declared.get(name)
        if entity is not None:
            if entity.content is None:
                raise CorpusError(path, f"external entity &{name}; ({entity.system_url}) is never loaded")
            if "&" in entity.content or "<" in entity.content:
                raise CorpusError(path, f"entity &{name}; holds markup or other entities "
                                        f"({entity.content[:60]!r}); only plain-text entities are expanded")
            text = entity.content
        elif name + ";" in html.entities.html5:
            text = html.entities.html5[name + ";"]
        else:
            raise CorpusError(path, f"undefined entity &{name}; (no DTD is loaded; only HTML/ISO character "
                                    "names and plain-text entities of the internal subset are known)")
        _replace_with_text(node, text)


def parse_jats_bytes(data: bytes, source: str | Path) -> Paper:
    """Parse JATS XML held in memory (e.g. a download before it is saved); `source` names it in errors."""
    path = Path(source)
    for magic, kind in _COMPRESSED.items():
        if data.startswith(magic):
            raise CorpusError(path, f"{kind}-compressed data, not XML; decompress it first (nothing is "
                                    "decompressed on the fly: a small archive can expand to gigabytes)")
    try:
        root = etree.fromstring(data, etree.XMLParser(**_PARSER_OPTIONS), base_url=str(path))
    except (OSError, ValueError, etree.XMLSyntaxError) as exc:
        raise CorpusError(path, f"{type(exc).__name__}: {exc}") from exc
    qname = etree.QName(root)
    if qname.localname != "article":
        raise CorpusError(path, f"root element is <{root.tag}>, not a JATS <article>")
    if qname.namespace:  # JATS elements have no namespace: every lookup below would find nothing
        raise CorpusError(path, f"<article> is in namespace {qname.namespace!r}; JATS elements have none")
    _resolve_entities(root, path)

    meta = root.find("front/article-meta")
    body = root.find("body")
    if meta is None and body is None:
        raise CorpusError(path, "<article> has neither <front><article-meta> nor <body> (in no namespace)")
    doi = (meta.findtext("article-id[@pub-id-type='doi']") or "").strip() if meta is not None else ""
    title = _flatten(meta.find("title-group/article-title")) if meta is not None else ""
    journal_meta = root.find("front/journal-meta")
    journal = ""
    if journal_meta is not None:
        # Older DTDs put <journal-title> directly in <journal-meta>.
        journal = _flatten(journal_meta.find(".//journal-title"))
    license_text, license_url = _license(meta)

    _strip_non_prose(root)
    paper = Paper(
        id=doi or path.stem,
        title=title,
        doi=doi,
        journal=journal,
        license=license_text,
        license_url=license_url,
        abstract=_abstract(meta),
        introduction=_introduction(body) if body is not None else "",
        conclusion=_conclusion(body) if body is not None else "",
        source=path,
    )
    if not (paper.title or paper.abstract or paper.introduction or paper.conclusion):
        raise CorpusError(path, "no title, abstract, introduction or conclusion text found")
    return paper


def parse_jats(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Paper:
    """Parse one JATS XML file into a `Paper`; raise `CorpusError` naming the file if it cannot be read.

    Only regular files of at most `max_bytes` are read, and never decompressed (see the module docstring).
    """
    path = Path(path)
    return parse_jats_bytes(_read_capped(path, max_bytes), path)


def _xml_files(folder_or_files: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(folder_or_files, (str, Path)):
        folder = Path(folder_or_files)
        if folder.is_dir():
            return sorted(p for p in folder.iterdir() if p.suffix.lower() in {".xml", ".nxml"})
        if not folder.exists():
            raise FileNotFoundError(f"no such corpus folder or file: {folder}")
        return [folder]  # one file; parse_jats reports it if it is not a regular one
    return sorted(Path(p) for p in folder_or_files)


def load_corpus(
    folder_or_files: str | Path | Iterable[str | Path], progress: bool = True, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[list[Paper], list[CorpusError]]:
    """Parse every JATS file of a folder (or a list of files) in sorted order; bad files are collected, not fatal.

    Every error names its file and reason: unreadable or malformed XML, not a regular file (a FIFO would hang
    the reader), over `max_bytes`, compressed, namespaced, undefined or external entities, nothing to read.
    """
    papers: list[Paper] = []
    errors: list[CorpusError] = []
    for path in tqdm(_xml_files(folder_or_files), desc="parsing JATS", unit="file", disable=not progress):
        try:
            papers.append(parse_jats(path, max_bytes))
        except CorpusError as exc:
            errors.append(exc)
    return papers, errors


def _count(text: str) -> int:
    return len(text.split())


def _pack(pieces: Iterable[str], max_words: int, sep: str) -> list[str]:
    """Greedily join pieces (each already <= max_words) into chunks of at most max_words words."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for piece in pieces:
        n = _count(piece)
        if current and size + n > max_words:
            chunks.append(sep.join(current))
            current, size = [], 0
        current.append(piece)
        size += n
    if current:
        chunks.append(sep.join(current))
    return chunks


def _split_paragraph(paragraph: str, max_words: int) -> list[str]:
    """Pieces of an overlong paragraph: whole sentences where possible, else runs of words."""
    pieces: list[str] = []
    for sentence in re.split(r"(?<=[.!?])\s+", paragraph):
        words = sentence.split()
        pieces.extend(" ".join(words[i : i + max_words]) for i in range(0, len(words), max_words))
    return _pack(pieces, max_words, " ")


def chunk_words(text: str, max_words: int = 2000) -> list[str]:
    """Split `text` into chunks of at most `max_words` words, on paragraph boundaries where possible."""
    if max_words < 1:
        raise ValueError(f"max_words must be >= 1, got {max_words}")
    pieces: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        pieces.extend([paragraph] if _count(paragraph) <= max_words else _split_paragraph(paragraph, max_words))
    return _pack(pieces, max_words, "\n\n")


def sample_texts(texts: Sequence[str], n: int, seed: int) -> list[str]:
    """Draw `n` distinct items of `texts` (in the given order) reproducibly from `seed`."""
    texts = list(texts)
    if not 0 <= n <= len(texts):
        raise ValueError(f"cannot sample n={n} texts: only {len(texts)} available")
    return random.Random(seed).sample(texts, n)


def irrelevant_texts(
    source: str | Path | Iterable[str | Path] | Sequence[Paper], n: int, seed: int, max_words: int = 2000
) -> list[str]:
    """`n` introduction chunks drawn by `seed` from a JATS folder/files (or parsed papers): Task 1b's distractors."""
    items = source if isinstance(source, (str, Path)) else list(source)
    if isinstance(items, list) and items and all(isinstance(p, Paper) for p in items):
        papers = sorted(items, key=lambda p: (p.id, str(p.source)))
    elif isinstance(items, (str, Path)):  # a folder or file: parse once per process (sweeps call this per run)
        files = tuple((str(f), f.stat().st_mtime_ns) for f in _xml_files(items))
        return sample_texts(_introduction_chunks(files, max_words), n, seed)
    else:
        papers, _ = load_corpus(items, progress=False)
    chunks = [chunk for p in papers if p.introduction for chunk in chunk_words(p.introduction, max_words)]
    return sample_texts(chunks, n, seed)


@functools.lru_cache(maxsize=8)
def _introduction_chunks(files: tuple[tuple[str, int], ...], max_words: int) -> tuple[str, ...]:
    """Introduction chunks of these files, cached by (path, mtime) so an edited file is parsed again."""
    papers, _ = load_corpus([f for f, _ in files], progress=False)
    return tuple(chunk for p in papers if p.introduction for chunk in chunk_words(p.introduction, max_words))


def split_groups(papers: Sequence[Paper], sizes: Mapping[str, int], seed: int) -> dict[str, list[Paper]]:
    """Disjoint, seeded groups of papers, e.g. {"target": 10, "irrelevant-1": 50}; independent of input order."""
    if any(size < 0 for size in sizes.values()):
        raise ValueError(f"group sizes must be >= 0: {dict(sizes)}")
    total = sum(sizes.values())
    if total > len(papers):
        raise ValueError(f"groups need {total} papers ({dict(sizes)}) but only {len(papers)} available")
    pool = sorted(papers, key=lambda p: (p.id, str(p.source)))
    random.Random(seed).shuffle(pool)
    groups: dict[str, list[Paper]] = {}
    start = 0
    for name, size in sizes.items():
        groups[name] = pool[start : start + size]
        start += size
    return groups
