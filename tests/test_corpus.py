"""Tests for sciknow.corpus: JATS parsing on hand-written snippets and on the shared PLOS starter corpus."""
from __future__ import annotations

import bz2
import gzip
import os
import re
import time
from pathlib import Path

import pytest

from sciknow.corpus import (
    CorpusError,
    Paper,
    chunk_words,
    irrelevant_texts,
    load_corpus,
    parse_jats,
    sample_texts,
    split_groups,
)

PLOS = Path(__file__).parents[1].parent / "shared" / "corpora" / "plos-starter"

# Residue that must never survive cleaning. A bare "<" is legitimate prose ("p<0.01"), a tag is not.
TAG = re.compile(r"</?[A-Za-z][\w:.-]*[\s/>]")
CITATION = re.compile(r"\[\s*\d+(?:\s*[,;–—-]\s*\d+)*\s*\]")
EMPTY_BRACKETS = re.compile(r"\(\s*\)|\[\s*\]|\(\s*[,;]|[,;]\s*\)")
FIGURE_REF = re.compile(
    r"[(\[](?:see |cf\. )?(?:Figs?\.?|Figures?|Tables?)\s*S?\d+[A-Za-z]?(?:\s*[-–,]\s*S?\d*[A-Za-z]?)*[)\]]")


def jats(body: str = "", front: str = "", back: str = "") -> str:
    """A minimal JATS article around the given <body> content."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<article xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:mml="http://www.w3.org/1998/Math/MathML" article-type="research-article">
<front><journal-meta><journal-title-group><journal-title>Test Journal</journal-title></journal-title-group></journal-meta>
<article-meta><article-id pub-id-type="doi">10.1000/test.1</article-id>
<title-group><article-title>A <italic>test</italic> article</article-title></title-group>
<permissions><license xlink:href="https://creativecommons.org/licenses/by/4.0/"><license-p>CC BY 4.0</license-p></license></permissions>
<abstract><p>Short abstract.</p></abstract>{front}</article-meta></front>
<body>{body}</body><back>{back}</back></article>"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def parse(tmp_path: Path, body: str) -> Paper:
    return parse_jats(write(tmp_path, "a.xml", jats(body)))


# ---------------------------------------------------------------- hand-written snippets


def test_metadata(tmp_path: Path) -> None:
    paper = parse(tmp_path, "<sec><title>Introduction</title><p>Intro.</p></sec>")
    assert paper.id == paper.doi == "10.1000/test.1"
    assert paper.title == "A test article"
    assert paper.journal == "Test Journal"
    assert (paper.license, paper.license_url) == ("CC BY 4.0", "https://creativecommons.org/licenses/by/4.0/")
    assert paper.abstract == "Short abstract."
    assert paper.source.name == "a.xml"


def test_id_falls_back_to_file_stem(tmp_path: Path) -> None:
    path = write(tmp_path, "journal.x.001.xml", jats("<p>Text.</p>").replace("10.1000/test.1", ""))
    assert parse_jats(path).id == "journal.x.001"


def test_sections_by_sec_type_and_title(tmp_path: Path) -> None:
    by_type = parse(tmp_path, """
        <sec sec-type="intro"><title>Why this matters</title><p>Opening.</p></sec>
        <sec sec-type="results"><title>Results</title><p>Data.</p></sec>
        <sec sec-type="conclusions"><title>What we learned</title><p>Closing.</p></sec>""")
    assert (by_type.introduction, by_type.conclusion) == ("Opening.", "Closing.")

    by_title = parse(tmp_path, """
        <sec><title>BACKGROUND</title><p>Opening.</p></sec>
        <sec><title>Discussion</title><p>Closing.</p></sec>""")
    assert (by_title.introduction, by_title.conclusion) == ("Opening.", "Closing.")


@pytest.mark.parametrize("intro_title", ["1. Introduction", "1 Introduction", "I. INTRODUCTION", "2) Background"])
@pytest.mark.parametrize("end_title", ["4. Conclusions", "5 Conclusion", "Discussion and conclusions"])
def test_numbered_titles(tmp_path: Path, intro_title: str, end_title: str) -> None:
    paper = parse(tmp_path, f"""
        <sec><title>{intro_title}</title><p>Opening.</p></sec>
        <sec><title>3. Methods</title><p>How.</p></sec>
        <sec><title>{end_title}</title><p>Closing.</p></sec>""")
    assert (paper.introduction, paper.conclusion) == ("Opening.", "Closing.")


def test_conclusions_preferred_over_discussion(tmp_path: Path) -> None:
    paper = parse(tmp_path, """
        <sec><title>Introduction</title><p>Opening.</p></sec>
        <sec sec-type="discussion"><title>Discussion</title><p>Talk.</p></sec>
        <sec><title>Conclusions</title><p>Closing.</p></sec>""")
    assert paper.conclusion == "Closing."


def test_absent_sections_are_empty(tmp_path: Path) -> None:
    paper = parse(tmp_path, "<sec><title>Methods</title><p>How.</p></sec><sec><title>Results</title><p>Data.</p></sec>")
    assert (paper.introduction, paper.conclusion) == ("", "")


def test_untitled_opening_is_the_introduction(tmp_path: Path) -> None:
    paper = parse(tmp_path, "<p>Opening text.</p><sec><title>Results</title><p>Data.</p></sec>")
    assert paper.introduction == "Opening text."


@pytest.mark.parametrize(
    "marked_up, expected",
    [
        ('Known before [<xref ref-type="bibr" rid="b1">1</xref>].', "Known before."),
        ('Known [<xref ref-type="bibr" rid="b1">1</xref>,<xref ref-type="bibr" rid="b2">2</xref>] well.', "Known well."),
        ('Known (<xref ref-type="bibr" rid="b3">3</xref>–<xref ref-type="bibr" rid="b5">5</xref>).', "Known."),
        ('Known <xref ref-type="bibr" rid="b1">[1]</xref>, <xref ref-type="bibr" rid="b2">[2]</xref> well.', "Known well."),
        ('Known<sup><xref ref-type="bibr" rid="b1">1</xref>,<xref ref-type="bibr" rid="b2">2</xref></sup>.', "Known."),
        ('Known (<xref ref-type="bibr" rid="b1">Smith 2000</xref>; <xref ref-type="bibr" rid="b2">Doe 2001</xref>).', "Known."),
        ('Known [<xref ref-type="bibr">1</xref>, <xref ref-type="bibr">2</xref>, and <xref ref-type="bibr">4</xref>].', "Known."),
        ('Known (see <xref ref-type="bibr" rid="b1">1</xref>).', "Known."),
        ('Known (mostly; [<xref ref-type="bibr" rid="b1">1</xref>]).', "Known (mostly)."),
        ("Plain-text citations [4, 6–8] too.", "Plain-text citations too."),
        ('Fig. <xref ref-type="fig" rid="f1">1</xref> stays, as does [95% CI 1.2–3.4].', "Fig. 1 stays, as does [95% CI 1.2–3.4]."),
    ],
)
def test_citation_removal(tmp_path: Path, marked_up: str, expected: str) -> None:
    paper = parse(tmp_path, f"<sec><title>Introduction</title><p>{marked_up}</p></sec>")
    assert paper.introduction == expected


def test_markup_flattened_and_non_prose_removed(tmp_path: Path) -> None:
    paper = parse(tmp_path, """<sec sec-type="intro"><title>Intro</title>
        <p>H<sub>2</sub>O and <italic>E. coli</italic>,   <bold>bold</bold>
           at <ext-link ext-link-type="uri" xlink:href="https://x.org">x.org</ext-link>.</p>
        <fig id="f1"><label>Figure 1</label><caption><p>FIGURE CAPTION</p></caption><graphic xlink:href="f1"/></fig>
        <table-wrap id="t1"><caption><p>TABLE CAPTION</p></caption><table><tr><td>CELL</td></tr></table></table-wrap>
        <disp-formula id="e1"><mml:math><mml:mi>FORMULA</mml:mi></mml:math></disp-formula>
        <p>Second paragraph<xref ref-type="fn" rid="n1">a</xref> with a list:
           <list><list-item><p>one</p></list-item><list-item><p>two</p></list-item></list></p>
        <sec><title>1.1 Sub-part</title><p>Nested.</p></sec></sec>""")
    assert paper.introduction == (
        "H2O and E. coli, bold at x.org.\n\nSecond paragraph with a list: one two\n\n1.1 Sub-part\n\nNested."
    )


def test_malformed_xml_raises_corpus_error_naming_file(tmp_path: Path) -> None:
    bad = write(tmp_path, "broken-paper.xml", jats("<sec><p>unclosed</sec>"))
    with pytest.raises(CorpusError, match="broken-paper.xml") as info:
        parse_jats(bad)
    assert info.value.path == bad and info.value.reason


def test_non_jats_and_missing_files_raise_corpus_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="not a JATS"):
        parse_jats(write(tmp_path, "other.xml", "<html><body/></html>"))
    with pytest.raises(CorpusError, match="missing.xml"):
        parse_jats(tmp_path / "missing.xml")


# ---------------------------------------------------------------- bad inputs: refused, naming the file

ARTICLE = jats("<sec><title>Introduction</title><p>Opening.</p></sec>")
DOCTYPE = '<!DOCTYPE article PUBLIC "-//NLM//DTD JATS (Z39.96) Journal Publishing DTD v1.2 20190208//EN" "JATS.dtd">'
LAUGHS = ('<!DOCTYPE article [<!ENTITY lol "lol"><!ENTITY lol1 "' + "&lol;" * 10 + '"><!ENTITY lol2 "' + "&lol1;" * 10
          + '"><!ENTITY lol3 "' + "&lol2;" * 10 + '">]>')


def with_doctype(doctype: str, body: str) -> bytes:
    return jats(body).replace("<article ", doctype + "<article ", 1).encode()


def make_fifo(path: Path) -> None:
    os.mkfifo(path)


def make_dir(path: Path) -> None:
    path.mkdir()


def make_device(path: Path) -> None:
    path.symlink_to("/dev/zero")  # endless bytes: would fill memory without the regular-file check


@pytest.mark.parametrize("content, reason", [
    (gzip.compress(ARTICLE.encode()), "gzip-compressed data, not XML; decompress it first"),
    (bz2.compress(ARTICLE.encode()), "bzip2-compressed data"),
    (ARTICLE.encode() + b" " * 2000, r"\d+ bytes, over the max_bytes=2000 limit"),
    (make_fifo, "a FIFO, not a regular file; skipped"),
    (make_dir, "a directory, not a regular file"),
    (make_device, "a character device, not a regular file"),
    (None, "cannot open: No such file or directory"),
    (ARTICLE.replace("<article ", '<article xmlns="http://example.org/other" ', 1).encode(),
     "<article> is in namespace 'http://example.org/other'; JATS elements have none"),
    (ARTICLE.replace("<article ", '<j:article xmlns:j="http://jats.nlm.nih.gov" ', 1)
     .replace("</article>", "</j:article>").encode(), "namespace 'http://jats.nlm.nih.gov'"),
    (with_doctype(DOCTYPE, "<p>In &species; we</p>"), "undefined entity &species;"),
    (b"<article><body><p>a&nbsp;b</p></body></article>", "Entity 'nbsp' not defined"),  # no DTD named at all
    (with_doctype('<!DOCTYPE article [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', "<p>In &xxe; we</p>"),
     r"external entity &xxe; \(file:///etc/passwd\) is never loaded"),
    (with_doctype(LAUGHS, "<p>&lol3;</p>"), "entity &lol3; holds markup or other entities"),
    (with_doctype('<!DOCTYPE article [<!ENTITY sp "<italic>E. coli</italic>">]>', "<p>In &sp; we</p>"),
     "entity &sp; holds markup"),
    (b'<?xml version="1.0"?><article/>', "neither <front><article-meta> nor <body>"),
    (b"<article><front><article-meta/></front><body><sec><title>Methods</title></sec></body></article>",
     "no title, abstract, introduction or conclusion text found"),
    (b"<html><body/></html>", "root element is <html>, not a JATS <article>"),
    (b"", "XMLSyntaxError"),
    (ARTICLE.encode()[:300], "XMLSyntaxError"),
])
def test_bad_files_are_refused_naming_the_file(tmp_path: Path, content: object, reason: str) -> None:
    path = tmp_path / "bad-paper.xml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        content(path)
    (tmp_path / "good.xml").write_text(ARTICLE, encoding="utf-8")
    with pytest.raises(CorpusError, match=reason) as info:
        parse_jats(path, max_bytes=2000)
    assert str(info.value).startswith(f"{path}: ") and info.value.path == path
    files = tmp_path if content is not None else [path, tmp_path / "good.xml"]
    papers, errors = load_corpus(files, progress=False, max_bytes=2000)  # the rest of the corpus still loads
    assert [p.source.name for p in papers] == ["good.xml"]
    assert [e.path for e in errors] == [path] and re.search(reason, errors[0].reason)
    assert "root:" not in str(info.value)  # nothing of /etc/passwd leaked into the message


def test_size_cap_is_configurable(tmp_path: Path) -> None:
    path = write(tmp_path, "a.xml", ARTICLE)
    with pytest.raises(CorpusError, match="over the max_bytes=100 limit"):
        parse_jats(path, max_bytes=100)
    assert parse_jats(path).introduction == "Opening."  # the default cap is far larger
    assert parse_jats(path, max_bytes=path.stat().st_size).introduction == "Opening."


@pytest.mark.timeout(20)
def test_fifo_does_not_hang_load_corpus(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.xml")  # nobody ever writes to it: an open() without O_NONBLOCK waits forever
    write(tmp_path, "a.xml", ARTICLE)
    papers, errors = load_corpus(tmp_path, progress=False)
    assert [p.source.name for p in papers] == ["a.xml"] and "a FIFO" in str(errors[0])
    papers, errors = load_corpus(tmp_path / "pipe.xml", progress=False)  # the FIFO named alone
    assert papers == [] and str(errors[0]).endswith("pipe.xml: a FIFO, not a regular file; skipped")


@pytest.mark.parametrize("doctype, body, expected", [
    (DOCTYPE, "<p>a&nbsp;b &ndash; c&hellip; &lsqb;x&rsqb; &alpha;&#946;</p>", "a b – c… [x] αβ"),
    (DOCTYPE, "<p>Known &lsqb;<xref ref-type='bibr' rid='b1'>1</xref>&rsqb; well.</p>", "Known well."),
    ('<!DOCTYPE article [<!ENTITY species "E. coli">]>', "<p>In &species; we</p>", "In E. coli we"),
    ('<!DOCTYPE article [<!ENTITY nbsp "~">]>', "<p>a&nbsp;b</p>", "a~b"),  # the document's own value wins
    ('<!DOCTYPE article [<!ENTITY amp2 "&#38;">]>', "<p>R&amp;D &lt;3</p>", "R&D <3"),
    ("", '<p>Safe<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="/etc/passwd" parse="text"/>.</p>',
     "Safe."),  # XInclude is never processed
])
def test_entities_are_resolved(tmp_path: Path, doctype: str, body: str, expected: str) -> None:
    path = tmp_path / "a.xml"
    path.write_bytes(with_doctype(doctype, f"<sec><title>Introduction</title>{body}</sec>"))
    assert parse_jats(path).introduction == expected


def test_billion_laughs_is_refused_quickly(tmp_path: Path) -> None:
    deep = ('<!DOCTYPE article [<!ENTITY a "aaaaaaaaaa">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9)) + "]>")
    path = tmp_path / "lol.xml"
    path.write_bytes(with_doctype(deep, "<p>&j;</p>"))  # 10^10 characters if expanded
    start = time.monotonic()
    # libxml2 itself refuses this many nested references; a shallower nest reaches our own check (above).
    with pytest.raises(CorpusError, match="lol.xml: (XMLSyntaxError: Maximum entity amplification factor exceeded"
                                          "|entity &j; holds markup or other entities)"):
        parse_jats(path)
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("marked_up, expected", [
    ('Cells grow (<xref ref-type="fig" rid="f1">Figure 1A</xref>, <xref ref-type="fig" rid="f1s1">Figure 1—figure '
     "supplement 1</xref>).", "Cells grow."),
    ('Cells grow (<xref ref-type="fig" rid="f2">Fig 2</xref>) fast.', "Cells grow fast."),
    ("Cells grow (Fig 2) fast, as do (Table 1) others.", "Cells grow fast, as do others."),  # plain text, no link
    ('Seen (<xref ref-type="fig" rid="f3">Figure 3</xref>G and <xref ref-type="fig" rid="f4">Figure 4</xref>H).',
     "Seen."),
    ('Seen (Figs. <xref ref-type="fig" rid="f3">3b</xref> and <xref ref-type="fig" rid="f5">5b</xref>).', "Seen."),
    ('High (84%, <xref ref-type="fig" rid="f2">Fig. 2a,c,e</xref>).', "High (84%)."),
    ('Odd (data not shown; cf. <xref ref-type="fig" rid="f4">Fig. 4A</xref>).', "Odd (data not shown)."),
    ('Both (<xref ref-type="table" rid="t1">Table 1</xref>; <xref ref-type="bibr" rid="b3">3</xref>).', "Both."),
    ('See (<xref ref-type="supplementary-material" rid="s1">S1 Table</xref>, S4 Fig, and S5 Fig).', "See."),
    ('Also (see <xref ref-type="fig" rid="f1">Fig. S6</xref> in <xref ref-type="supplementary-material" rid="s1">'
     "File S1</xref>).", "Also."),
    ('Blebs (<xref ref-type="fig" rid="f1">Figure 1)</xref> and bodies.', "Blebs and bodies."),  # ")" in the link
    ('Panels (<xref ref-type="fig" rid="f1">Fig. 1(a)</xref>) differ.', "Panels differ."),
    # References that carry the sentence stay, and so do brackets with other content.
    ('As shown in <xref ref-type="fig" rid="f2">Figure 2</xref>, rates rise.', "As shown in Figure 2, rates rise."),
    ('Curved (top panels in <xref ref-type="fig" rid="f1">Fig 1</xref>).', "Curved (top panels in Fig 1)."),
    ("Groups (A and B) of size (n = 3) in step (1).", "Groups (A and B) of size (n = 3) in step (1)."),
    ("Rates (Figures are not shown) vary.", "Rates (Figures are not shown) vary."),
])
def test_figure_references_removed(tmp_path: Path, marked_up: str, expected: str) -> None:
    paper = parse(tmp_path, f"<sec><title>Introduction</title><p>{marked_up}</p></sec>")
    assert paper.introduction == expected


def test_load_corpus_continues_past_bad_file(tmp_path: Path) -> None:
    write(tmp_path, "c.xml", jats("<sec><title>Introduction</title><p>C.</p></sec>"))
    write(tmp_path, "b.xml", "<article><front>")
    write(tmp_path, "a.xml", jats("<sec><title>Introduction</title><p>A.</p></sec>"))
    write(tmp_path, "notes.txt", "not a paper")
    papers, errors = load_corpus(tmp_path, progress=False)
    assert [p.source.name for p in papers] == ["a.xml", "c.xml"]
    assert [e.path.name for e in errors] == ["b.xml"] and "b.xml" in str(errors[0])


# ---------------------------------------------------------------- chunking and sampling


def words(n: int, start: int = 0) -> str:
    return " ".join(f"w{i}" for i in range(start, start + n))


def test_chunk_words_packs_paragraphs() -> None:
    text = "\n\n".join([words(3), words(3, 3), words(3, 6)])
    assert chunk_words(text, max_words=6) == [words(3) + "\n\n" + words(3, 3), words(3, 6)]
    assert chunk_words("", 10) == [] and chunk_words("short", 10) == ["short"]


def test_chunk_words_splits_long_paragraph_by_sentence_then_word() -> None:
    long_sentence = words(25) + "."
    text = "One two three. Four five six seven. " + long_sentence
    chunks = chunk_words(text, max_words=10)
    assert chunks[0] == "One two three. Four five six seven."
    assert all(len(c.split()) <= 10 for c in chunks)
    assert " ".join(chunks).split() == text.split()  # nothing lost, nothing reordered
    with pytest.raises(ValueError):
        chunk_words(text, max_words=0)


def test_sample_texts_is_deterministic() -> None:
    texts = [f"text {i}" for i in range(50)]
    assert sample_texts(texts, 10, seed=3) == sample_texts(texts, 10, seed=3)
    assert sample_texts(texts, 10, seed=3) != sample_texts(texts, 10, seed=4)
    assert len(set(sample_texts(texts, 50, seed=0))) == 50
    with pytest.raises(ValueError, match=r"n=51.*only 50"):
        sample_texts(texts, 51, seed=0)


def fake_paper(i: int) -> Paper:
    return Paper(f"id{i:02d}", "", "", "", "", "", "", f"intro {i}", "", Path(f"{i}.xml"))


def test_split_groups_disjoint_and_deterministic() -> None:
    papers = [fake_paper(i) for i in range(20)]
    sizes = {"target": 5, "irrelevant-1": 8, "irrelevant-2": 4}
    groups = split_groups(papers, sizes, seed=7)
    assert {name: len(g) for name, g in groups.items()} == sizes
    ids = [p.id for g in groups.values() for p in g]
    assert len(ids) == len(set(ids)) == 17
    assert split_groups(list(reversed(papers)), sizes, seed=7) == groups  # input order does not matter
    assert split_groups(papers, sizes, seed=8) != groups
    with pytest.raises(ValueError, match="21 papers"):
        split_groups(papers, {"a": 11, "b": 10}, seed=0)


# ---------------------------------------------------------------- shared PLOS starter corpus

needs_plos = pytest.mark.skipif(not PLOS.is_dir(), reason=f"shared PLOS corpus not found at {PLOS}")


@pytest.fixture(scope="module")
def plos() -> list[Paper]:
    papers, errors = load_corpus(PLOS, progress=False)
    assert errors == []
    return papers


@needs_plos
def test_plos_section_counts(plos: list[Paper]) -> None:
    assert len(plos) == 122
    # Measured on the starter corpus: 105 have an explicit Introduction/Background section and 4 an untitled
    # opening; the rest are letters, corrections, retractions and commentaries without one.
    assert sum(bool(p.introduction) for p in plos) == 109
    assert sum(bool(p.abstract) for p in plos) == 111
    assert sum(bool(p.conclusion) for p in plos) == 105


@needs_plos
def test_plos_texts_are_clean(plos: list[Paper]) -> None:
    for paper in plos:
        for field in ("title", "abstract", "introduction", "conclusion"):
            text = getattr(paper, field)
            where = f"{paper.source.name} {field}"
            assert not TAG.search(text), f"{where}: markup {TAG.search(text)}"
            assert "xref" not in text and not re.search("[\ue000-\ue004]", text), where
            assert not FIGURE_REF.search(text), f"{where}: figure reference {FIGURE_REF.search(text)}"
            assert not CITATION.search(text), f"{where}: citation {CITATION.search(text)}"
            assert not EMPTY_BRACKETS.search(text), f"{where}: {EMPTY_BRACKETS.search(text)}"
            assert "  " not in text and text == text.strip(), where


@needs_plos
def test_plos_licence_and_ids(plos: list[Paper]) -> None:
    assert all(p.license for p in plos)
    assert all(p.doi.startswith("10.1371/journal.") and p.id == p.doi for p in plos)
    assert sum(p.license_url.startswith("http") for p in plos) == 42  # older PLOS articles give only the text


@needs_plos
def test_plos_chunks_within_limit(plos: list[Paper]) -> None:
    for paper in plos:
        for text in (paper.abstract, paper.introduction, paper.conclusion):
            chunks = chunk_words(text, max_words=2000)
            assert all(len(c.split()) <= 2000 for c in chunks)
            assert " ".join(chunks).split() == text.split()


@needs_plos
def test_plos_irrelevant_texts_deterministic(plos: list[Paper]) -> None:
    first = irrelevant_texts(plos, n=30, seed=11)
    assert len(first) == 30 and all(len(t.split()) <= 2000 for t in first)
    assert irrelevant_texts(list(reversed(plos)), n=30, seed=11) == first
    assert irrelevant_texts(PLOS, n=30, seed=11) == first  # from the folder itself
    assert irrelevant_texts(plos, n=30, seed=12) != first
    intros = {p.introduction for p in plos}
    assert all(any(t in intro for intro in intros) for t in first)
    with pytest.raises(ValueError, match="only 110 available"):  # 109 introductions, one of them in 2 chunks
        irrelevant_texts(plos, n=1000, seed=0)
