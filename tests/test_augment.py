"""sciknow.make.augment: text -> validated knowledge set.

The pipeline's control flow runs against a scripted writer (hand-written outputs that keep or break each rule);
the CLI's resumability against a real loopback chat-completions server and a SIGKILLed subprocess; one slow test
runs the real offline 0.5B writer end to end.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import REPO
from sciknow import writers
from sciknow.make import augment
from sciknow.make.augment import AugmentError, DraftQuestion
from sciknow.config import DataSpec
from sciknow.data import load_knowledge_set, load_sets
from sciknow.io import read_jsonl

TEXT = ("In 2038, the marine biologist Dr. Amara Oyelaran-Fitch of the Kessling Ocean Station described the glass "
        "squid Vitrellus nocturnus, found only in the Merrow Trench at depths between 2,300 and 2,650 meters. The "
        "squid is 14 centimeters long and its body is almost entirely transparent, except for a ring of 36 blue "
        "photophores around each eye. Oyelaran-Fitch showed that the photophores flash in a fixed rhythm of 3 "
        "pulses per second when the squid is hunting. The species feeds mainly on the copepod Calanus merrowi, and "
        "each adult eats about 4,000 copepods per night.")
QUESTIONS = """Q1: Which marine biologist described the glass squid Vitrellus nocturnus?
A1: Dr. Amara Oyelaran-Fitch of the Kessling Ocean Station.
K1: Amara Oyelaran-Fitch | Kessling Ocean Station
Q2: How long is the glass squid?
A2: It is 14 centimeters long.
K2: 14 centimeters
Q3: How many photophores ring each eye of the squid?
A3: 36 blue photophores.
K3: 36 blue photophores
Q4: How fast do the photophores flash when the squid hunts?
A4: 3 pulses per second.
K4: 3 pulses per second"""
KEYWORDS = ["Amara Oyelaran-Fitch", "Kessling Ocean Station", "14 centimeters", "36 blue photophores",
            "3 pulses per second"]
FAITHFUL = ("Deep-sea news. Amara Oyelaran-Fitch, who works at the Kessling Ocean Station, has named a new animal. "
            "Her glass squid measures 14 centimeters, has 36 blue photophores around each eye, and while hunting "
            "its lights blink at 3 pulses per second.")


def kind(prompt: str) -> str:
    """Which pipeline step a prompt belongs to: questions, paraphrase, rewrite:<style>[:retry], translate."""
    if augment.QUESTIONS_PROMPT.split("}")[1][:30] in prompt:  # the text right after "Write {n}"
        return "questions"
    if prompt.startswith(augment.PARAPHRASE_PROMPT.split("{")[0]):
        return "paraphrase"
    for style, instruction in augment.STYLE_PROMPTS.items():
        if prompt.startswith(instruction):
            retry = "phrases exactly as written here" in prompt or augment.RETRY_COPY in prompt
            return f"rewrite:{style}" + (":retry" if retry else "")
    if prompt.startswith("Translate"):
        return "translate"
    raise AssertionError(f"unexpected prompt: {prompt[:80]!r}")


def paraphrase_of(prompt: str) -> str:
    question = prompt.rsplit("Question: ", 1)[1]
    return "Could you tell me: " + question[0].lower() + question[1:]


DEFAULT_REPLIES: dict[str, str | Callable[[str], str]] = {
    "questions": QUESTIONS, "paraphrase": paraphrase_of, "translate": "Traducción: " + TEXT,
    **{f"rewrite:{s}": f"{s.title()}.\n{FAITHFUL}" for s in augment.STYLES},
    **{f"rewrite:{s}:retry": f"{s.title()} (second try).\n{FAITHFUL}" for s in augment.STYLES},
}


def reply(prompt: str, replies: dict) -> str:
    answer = replies[kind(prompt)]
    return answer(prompt) if callable(answer) else answer


class ScriptedWriter:
    """A writer that answers each step with a hand-written output (only the pipeline is under test here)."""

    def __init__(self, **overrides: str | Callable[[str], str]) -> None:
        self.replies = {**DEFAULT_REPLIES, **{k.replace("__", ":").replace("_", ":"): v for k, v in overrides.items()}}
        self.prompts: list[str] = []

    def complete(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        self.prompts += prompts
        return [reply(p, self.replies) for p in prompts]

    def kinds(self) -> list[str]:
        return [kind(p) for p in self.prompts]


def run(tmp_path: Path, writer: ScriptedWriter | None, **kw) -> augment.AugmentResult:
    kw.setdefault("translator", "none")
    return augment.augment(kw.pop("text", TEXT), tmp_path / "set.json", writer, "scripted", progress=False, **kw)


# ---------------------------------------------------------------- parsing and the rules, one at a time


def test_parse_questions_tolerates_numbering_and_markup():
    output = ("Sure! Here are the questions:\n\n**Q1:** Who found it?\n**A1:** Dr. Amara\nOyelaran-Fitch.\n"
              "K1: `Amara Oyelaran-Fitch`\n\nQ2: How long is it?\nA1: 14 centimeters\nK1: 14 centimeters; 14\n"
              "Question 3: No answer here?\nQ4) What does it eat?\nAnswer 4: copepods\n")
    drafts = augment.parse_questions(output)
    assert drafts == [
        DraftQuestion("Who found it?", "Dr. Amara Oyelaran-Fitch.", ["Amara Oyelaran-Fitch"]),
        DraftQuestion("How long is it?", "14 centimeters", ["14 centimeters", "14"]),
        DraftQuestion("What does it eat?", "copepods", []),
    ]


def test_keyword_rules():
    draft = DraftQuestion(
        question="How many BLUE photophores ring each eye?",
        answer="36 blue photophores, found by Amara Oyelaran-Fitch at 2,300 meters in the merrow trench.",
        keywords=["36", "36 blue photophores", "15 centimeters", "blue photophores", "2,300 meters", "merrow trench",
                  "Calanus merrowi", "Amara Oyelaran-Fitch"])
    kept, rejected = augment.check_keywords(draft, TEXT)
    # "36" sits inside the kept "36 blue photophores"; "merrow trench" takes the source's spelling
    assert kept == ["36 blue photophores", "Merrow Trench", "Amara Oyelaran-Fitch"]
    assert rejected == [
        "'15 centimeters': not in the source text",
        "'blue photophores': leaks into its question",  # case ignored: "BLUE photophores"
        "'2,300 meters': not in the source text",  # the source says "2,300 and 2,650 meters"
        "'Calanus merrowi': not in the reference answer",
    ]
    long = DraftQuestion("What about it?", "The squid is 14 centimeters long and its body is transparent.",
                         ["squid is 14 centimeters long and its body"])
    assert augment.check_keywords(long, TEXT)[1] == [
        "'squid is 14 centimeters long and its body': longer than 6 words"]


def test_a_short_answer_copied_from_the_text_is_the_fallback_keyword():
    garbled = DraftQuestion("How many photophores ring each eye?", "36", ["36 photophores"])
    assert augment.check_keywords(garbled, TEXT) == (["36"], ["'36 photophores': not in the source text"])
    for answer in ("about 36", "transparent", "14"):  # not in the text / no number or name / leaks into the question
        draft = DraftQuestion("Is it 14 cm?" if answer == "14" else "What?", answer, ["x y"])
        assert augment.check_keywords(draft, TEXT)[0] == []


def test_paraphrase_rules():
    question, keywords = "How long is the glass squid?", ["14 centimeters"]
    assert augment.check_paraphrase("What is the length of the glass squid?", question, keywords) == (
        "What is the length of the glass squid?", "")
    assert augment.check_paraphrase("Question: how long is the glass squid", question, keywords) == (
        None, "same as the question")
    assert augment.check_paraphrase("Is it 14 Centimeters long?", question, keywords) == (
        None, "leaks keyword(s) ['14 centimeters']")
    assert augment.check_paraphrase("  \n", question, keywords) == (None, "empty or too short")
    # a small writer answering with the prompt's example instead
    assert augment.check_paraphrase("What is the length of the Corvane Bridge?", question, keywords) == (
        None, "asks something else: 'What is the length of the Corvane Bridge?'")


def test_rewrite_rules():
    assert augment.check_rewrite(FAITHFUL, TEXT, KEYWORDS) == ([], "")
    missing = FAITHFUL.replace("14 centimeters", "fourteen centimetres")
    assert augment.check_rewrite(missing, TEXT, KEYWORDS) == (["14 centimeters"],
                                                              "misses keyword(s) ['14 centimeters']")
    assert augment.check_rewrite(TEXT.replace(".", "!"), TEXT, KEYWORDS) == ([], "a copy of the source text")
    assert augment.check_rewrite("Nope.", TEXT, KEYWORDS)[1] == "empty or too short"
    echoed = FAITHFUL + " Like the Corvane Bridge over the river Edde, it is 412 meters long."  # the prompt's example
    assert augment.check_rewrite(echoed, TEXT, KEYWORDS)[1] == "copies the prompt's example"
    for style in augment.STYLES:  # every style shows its worked example, and a retry says what went wrong
        prompt = augment.rewrite_prompt(style, TEXT, augment.RETRY_COPY)
        assert prompt.startswith(augment.STYLE_PROMPTS[style]) and augment.STYLE_EXAMPLES[style] in prompt
        assert augment.RETRY_COPY in prompt and prompt.endswith(TEXT)
        assert augment.RETRY_COPY not in augment.rewrite_prompt(style, TEXT)
    assert augment.clean_output("Sure, here is the article:\n```markdown\nHeadline\nBody\n```") == "Headline\nBody"
    stuck = "Title\nBody text.\n- [Ref, 2038](https://example.org/2038/08/01100801000000000000000000000000000000"
    assert augment.clean_output(stuck) == "Title\nBody text."
    assert augment.clean_output("A table:\n|---|---|\nnumbers 1,000,000") == "A table:\n|---|---|\nnumbers 1,000,000"


# ---------------------------------------------------------------- the pipeline with a scripted writer


def test_augment_writes_a_valid_set(tmp_path):
    writer = ScriptedWriter()
    result = run(tmp_path, writer, name="squid")
    kset = load_knowledge_set(tmp_path / "set.json")
    assert kset.name == "squid" and result.knowledge_set == kset
    assert [(c.id, c.style, c.lang) for c in kset.contents] == [
        ("C1", "original", "en"), ("C2", "qa", "en"), ("C3", "article", "en"), ("C4", "interview", "en"),
        ("C5", "textbook", "en")]
    assert kset.contents[0].text == TEXT
    assert [list(q.keywords) for q in kset.questions] == [KEYWORDS[:2], [KEYWORDS[2]], [KEYWORDS[3]], [KEYWORDS[4]]]
    assert kset.leaked_keywords() == {}
    raw = json.loads((tmp_path / "set.json").read_text())
    assert set(raw) <= {"name", "field", "description", "source", "license", "notes", "contents",
                        "extra_translations", "questions", "irrelevant_texts"}
    for q in raw["questions"]:
        assert set(q) <= {"id", "question", "paraphrase", "reference_answer", "keywords", "content_ids"}
        assert q["paraphrase"].startswith("Could you tell me: ")
    assert writer.kinds() == ["questions"] + ["paraphrase"] * 4 + [f"rewrite:{s}" for s in augment.STYLES]
    report = result.report
    assert (report.questions_kept, report.paraphrases_kept, report.rewrites_kept) == (4, 4, list(augment.STYLES))
    assert report.steps_run == 9 and report.steps_resumed == 0
    assert "4 of 4 questions kept" in raw["notes"]


def test_fidelity_retry_once_then_drop(tmp_path):
    missing = FAITHFUL.replace("3 pulses per second", "three flashes a second")
    writer = ScriptedWriter(
        rewrite_qa=missing,  # retried, the retry is faithful: kept
        rewrite_article=missing, rewrite_article_retry=missing,  # retried, still unfaithful: dropped
        rewrite_interview=TEXT,  # a copy of the source: retried with the no-copy instruction, still a copy
        rewrite_interview_retry=TEXT,
    )
    result = run(tmp_path, writer, partial_rewrites="drop")
    retries = [p for p in writer.prompts if kind(p).endswith(":retry")]
    assert [kind(p) for p in retries] == ["rewrite:qa:retry", "rewrite:article:retry", "rewrite:interview:retry"]
    assert "phrases exactly as written here: 3 pulses per second." in retries[0]
    assert augment.RETRY_COPY in retries[2]
    report = result.report
    assert report.rewrites_kept == ["qa", "textbook"]
    assert report.rewrites_retried == ["qa", "article", "interview"]
    assert report.dropped_rewrites == [
        "article: first attempt misses keyword(s) ['3 pulses per second']; retry misses keyword(s) "
        "['3 pulses per second']",
        "interview: first attempt a copy of the source text; retry a copy of the source text"]
    styles = [c.style for c in result.knowledge_set.contents]
    assert styles == ["original", "qa", "textbook"]
    assert "(second try)" in result.knowledge_set.contents[1].text
    assert "dropped rewrites:" in json.loads((tmp_path / "set.json").read_text())["notes"]


def test_partial_rewrites_keep_the_best_attempt_with_its_coverage(tmp_path):
    one_missing = FAITHFUL.replace("3 pulses per second", "three flashes a second")
    two_missing = one_missing.replace("14 centimeters", "fourteen centimetres")
    writer = lambda: ScriptedWriter(  # noqa: E731
        rewrite_qa=two_missing, rewrite_qa_retry=one_missing,  # the retry carries more: it is kept
        rewrite_article=one_missing, rewrite_article_retry=two_missing,  # the first attempt carries more
        rewrite_interview=TEXT, rewrite_interview_retry=TEXT.replace("14 centimeters", "14 cm"),  # copies: dropped
    )
    dropped = run(tmp_path / "drop", writer(), partial_rewrites="drop")
    assert dropped.report.rewrites_kept == ["textbook"] and dropped.report.rewrites_partial == []
    kept = run(tmp_path / "keep", writer())  # the default: keeping them taught more (README, machine suite)
    report = kept.report
    assert report.rewrites_kept == ["qa", "article", "textbook"]
    assert report.rewrites_partial == ["qa: 4 of 5 keywords (missing ['3 pulses per second'])",
                                       "article: 4 of 5 keywords (missing ['3 pulses per second'])"]
    assert report.dropped_rewrites == ["interview: first attempt a copy of the source text; retry misses keyword(s) "
                                       "['14 centimeters']"]
    kset = kept.knowledge_set
    assert [c.style for c in kset.contents] == ["original", "qa", "article", "textbook"]
    assert kset.partial_rewrites and kset.keyword_coverage() == {"C1": (5, 5), "C2": (4, 5), "C3": (4, 5),
                                                                 "C4": (5, 5)}
    assert "rewrites kept with missing keywords:" in json.loads((tmp_path / "keep" / "set.json").read_text())["notes"]
    with pytest.raises(ValueError, match=r"keyword '3 pulses per second' is missing from content C2 \(qa\): the rule "
                                         r"that every rewrite carries every keyword"):
        load_knowledge_set(tmp_path / "keep" / "set.json", strict=True)
    # a run trains on it as on any set (notebook 00's path): all four contents
    trained_on = load_sets(DataSpec(knowledge_set=str(tmp_path / "keep" / "set.json")))
    assert [c.id for c in trained_on[0].contents] == ["C1", "C2", "C3", "C4"]
    with pytest.raises(AugmentError, match=r"partial_rewrites='some': expected one of \['drop', 'keep'\]"):
        run(tmp_path / "bad", ScriptedWriter(), partial_rewrites="some")


def test_leaks_duplicates_and_bad_keywords_are_dropped(tmp_path):
    questions = (QUESTIONS + "\nQ5: What ring of 36 BLUE PHOTOPHORES surrounds each eye?\nA5: 36 blue photophores\n"
                 "K5: 36 blue photophores\nQ6: How long is the glass squid?\nA6: 14 centimeters\nK6: 14 centimeters\n"
                 "Q7: How many copepods does an adult eat per night?\nA7: 5,000\nK7: 5,000\n"
                 "Q8: What is the body length of Vitrellus nocturnus?\nA8: 14 centimeters.\nK8: 14 centimeters\n"
                 "Q9: Where does Amara Oyelaran-Fitch work?\nA9: Kessling Ocean Station\nK9: Kessling Ocean Station\n"
                 "Q10: How long is the Corvane Bridge?\nA10: 14 centimeters.\nK10: 14 centimeters")
    writer = ScriptedWriter(questions=questions, paraphrase=lambda p: (
        "What is the size of the 14 centimeters squid?" if "long is the glass squid" in p else paraphrase_of(p)))
    result = run(tmp_path, writer)
    report = result.report
    assert (report.questions_written, report.questions_kept, report.duplicate_questions) == (10, 5, 2)
    assert report.dropped_questions == [
        "question 5 'What ring of 36 BLUE PHOTOPHORES surrounds each eye?': no valid keyword",
        "question 6 'How long is the glass squid?': repeats an earlier question",
        "question 7 'How many copepods does an adult eat per night?': no valid keyword",
        "question 8 'What is the body length of Vitrellus nocturnus?': repeats an earlier question",
        "question 10 'How long is the Corvane Bridge?': copies the prompt's example"]
    assert report.dropped_keywords == ["question 5: '36 blue photophores': leaks into its question",
                                       "question 7: '5,000': not in the source text",
                                       # Q9 asks with Q1's keyword: Q1 keeps only its other keyword
                                       "question 1: 'Amara Oyelaran-Fitch': occurs in another question"]
    assert [list(q.keywords) for q in result.knowledge_set.questions][::4] == [["Kessling Ocean Station"]] * 2
    assert report.dropped_paraphrases == ["Q2: leaks keyword(s) ['14 centimeters']"]
    questions = json.loads((tmp_path / "set.json").read_text())["questions"]
    assert "paraphrase" not in questions[1] and all("paraphrase" in questions[i] for i in (0, 2, 3))
    asked = [q.question.lower() for q in result.knowledge_set.questions]
    for q in result.knowledge_set.questions:  # the rules, checked on the written set
        assert not any(k.lower() in text for k in q.keywords for text in asked)
        assert all(k in TEXT for k in q.keywords)


def test_garbage_writer_is_an_error_and_writes_no_set(tmp_path):
    writer = ScriptedWriter(questions="I am a helpful assistant. 1. 2. 3.")
    with pytest.raises(AugmentError, match=r"writer scripted wrote no usable question \(0 parsed; none in the "
                                           r"Q1:/A1:/K1: format\); its output began: 'I am a helpful"):
        run(tmp_path / "a", writer)
    assert not (tmp_path / "a" / "set.json").exists()
    only_bad_keywords = ScriptedWriter(questions="Q1: How long is it?\nA1: 15 cm\nK1: 15 cm")
    with pytest.raises(AugmentError, match=r"1 parsed; question 1 'How long is it\?': no valid keyword"):
        run(tmp_path / "b", only_bad_keywords)
    assert not (tmp_path / "b" / "set.json").exists()


def test_text_whitespace_is_normalised_within_paragraphs():
    wrapped = "  In 2038 the squid was 14\ncentimeters\tlong,  said the   team.\r\n\r\n\n Second  paragraph here.\n"
    assert augment.check_text(wrapped) == ("In 2038 the squid was 14 centimeters long, said the team.\n\n"
                                           "Second paragraph here.")


def test_bad_input_is_a_clear_error(tmp_path):
    for text, message in (("", "text: empty text"), ("   \n", "text: empty text"),
                          ("Zephyrite is violet.", r"text: 3 word\(s\); need at least one full sentence")):
        with pytest.raises(AugmentError, match=message):
            run(tmp_path, ScriptedWriter(), text=text)
    latin1 = tmp_path / "doc.txt"
    latin1.write_bytes("Der Kristall wurde in Köln gefunden und ist violett.".encode("latin-1"))
    with pytest.raises(AugmentError, match=r"doc.txt: not UTF-8 \(invalid start byte at byte 23\)"):
        augment.read_text(latin1)
    with pytest.raises(AugmentError, match="nothing.txt: file not found"):
        augment.read_text(tmp_path / "nothing.txt")
    with pytest.raises(AugmentError, match=r"styles: unknown style\(s\) \['poem'\]"):
        run(tmp_path, ScriptedWriter(), styles=["qa", "poem"])
    assert not (tmp_path / "set.json").exists()


def test_jats_section_input():
    article = REPO / "tests/fixtures/europepmc/PMC9900001.xml"
    text, meta = augment.read_text(article, "abstract")
    assert len(text.split()) >= augment.MIN_WORDS and meta["source"]
    with pytest.raises(AugmentError, match="section='methods'"):
        augment.read_text(article, "methods")


def test_rerun_reuses_every_recorded_step(tmp_path):
    first = run(tmp_path, ScriptedWriter(rewrite_qa=FAITHFUL.replace("14 centimeters", "14 cm")))
    before = json.loads((tmp_path / "set.json").read_text())
    again = run(tmp_path, None)  # no writer at all: everything must come from the sidecar
    assert (again.report.steps_run, again.report.steps_resumed) == (0, first.report.steps_run) == (0, 10)
    after = json.loads((tmp_path / "set.json").read_text())
    assert (after["contents"], after["questions"]) == (before["contents"], before["questions"])
    # A different text is a different key: nothing recorded applies
    with pytest.raises(AugmentError, match="no writer given, and these steps are not recorded yet: questions"):
        run(tmp_path, None, text=TEXT + " It glows.")


@pytest.mark.skipif(not Path("/usr/bin/apertium").exists(), reason="apertium not installed (scripts/setup.sh as root)")
def test_apertium_translations(tmp_path):
    result = run(tmp_path, ScriptedWriter(), translator="apertium", translate_to=["es", "ca"], styles=["qa"])
    translated = [c for c in result.knowledge_set.contents if c.style == "translation"]
    assert [c.lang for c in translated] == ["es", "ca"]
    assert "Oyelaran-Fitch" in translated[0].text and "calamar" in translated[0].text
    assert result.report.translations == ["es", "ca"]


def test_writer_translations(tmp_path):
    writer = ScriptedWriter()
    result = run(tmp_path, writer, translator="writer", translate_to=["es"], styles=[])
    assert writer.kinds()[-1] == "translate"
    assert [(c.style, c.lang) for c in result.knowledge_set.contents] == [("original", "en"), ("translation", "es")]


# ---------------------------------------------------------------- the CLI: a server writer, killed and resumed


class ScriptedServer(BaseHTTPRequestHandler):
    """/v1/chat/completions answering with the scripted outputs; request number `block_at` hangs (until killed)."""

    prompts: list[str] = []
    block_at = 0
    blocked = threading.Event()
    lock = threading.Lock()

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        prompt = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["messages"][-1]["content"]
        with self.lock:
            self.prompts.append(prompt)
            number = len(self.prompts)
        if number == self.block_at:
            self.blocked.set()
            time.sleep(60)  # the client is killed meanwhile; this reply goes nowhere
            return
        body = json.dumps({"choices": [{"message": {"content": reply(prompt, DEFAULT_REPLIES)}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[type[ScriptedServer]]:
    ScriptedServer.prompts, ScriptedServer.block_at = [], 0
    ScriptedServer.blocked = threading.Event()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedServer)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    ScriptedServer.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield ScriptedServer
    httpd.shutdown()
    httpd.server_close()


def cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "sciknow.make.augment", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_cli_killed_mid_run_resumes_without_redoing_steps(tmp_path, server):
    doc, out = tmp_path / "doc.txt", tmp_path / "squid.json"
    doc.write_text(TEXT)
    args = [str(doc), "-o", str(out), "--base-url", server.url, "--model", "scripted", "--translate", "",
            "--no-progress"]
    server.block_at = 4  # questions, 2 paraphrases answered; the third paraphrase hangs
    proc = cli(args)
    assert server.blocked.wait(60), proc.communicate(timeout=5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    recorded = read_jsonl(augment.sidecar_path(out))
    assert [r["step"] for r in recorded] == ["questions", "paraphrase:Q1", "paraphrase:Q2"]
    assert not out.exists()
    first_run = list(server.prompts)

    server.block_at = 0
    done = cli(args)
    stdout, stderr = done.communicate(timeout=120)
    assert done.returncode == 0, stderr
    second_run = server.prompts[len(first_run):]
    assert not set(first_run[:3]) & set(second_run)  # nothing recorded is asked again
    assert [kind(p) for p in second_run] == ["paraphrase"] * 2 + [f"rewrite:{s}" for s in augment.STYLES]
    steps = [r["step"] for r in read_jsonl(augment.sidecar_path(out))]
    assert len(steps) == len(set(steps)) == 9  # every step recorded exactly once: nothing lost
    kset = load_knowledge_set(out)
    assert len(kset.questions) == 4 and len(kset.contents) == 5
    assert "3 resumed" in stdout and "4 questions" in stdout


def test_cli_reports_errors_and_exits_2(tmp_path, server):
    short = tmp_path / "short.txt"
    short.write_text("Too short.")
    proc = cli([str(short), "-o", str(tmp_path / "x.json"), "--base-url", server.url, "--model", "m"])
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "sciknow.make.augment: error: " in stderr and "short.txt: 2 word(s)" in stderr
    doc = tmp_path / "doc.txt"
    doc.write_text(TEXT)
    proc = cli([str(doc), "-o", str(tmp_path / "x.json"), "--base-url", server.url])
    assert proc.communicate(timeout=60)[1].strip().endswith("--base-url needs --model (the model name the server "
                                                             "serves)") and proc.returncode == 2
    assert not (tmp_path / "x.json").exists()


# ---------------------------------------------------------------- the real offline writer


@pytest.mark.slow
def test_real_05b_writer_end_to_end(tmp_path):
    spec = writers.QWEN_CODER_05B
    if not writers.installed(spec):
        pytest.skip(f"writer {spec.name} is not installed: run bash scripts/setup.sh --writers")
    backend, writer_id = augment.make_backend(spec.name, precision="fp32")
    text = ("In 2039, the chemist Dr. Lena Sorvik of the Brantholm Institute made borazite, a white ceramic that "
            "melts at 3,140 °C. It is made by pressing boron nitride powder at 8 gigapascals for 40 minutes.")
    result = augment.augment(text, tmp_path / "borazite.json", backend, writer_id, n_questions=5,
                             styles=["article"], translator="none", progress=False)
    kset = load_knowledge_set(tmp_path / "borazite.json")
    assert len(kset.questions) >= 3, result.report.summary()
    for q in kset.questions:
        assert all(k in text and k.lower() not in q.question.lower() for k in q.keywords)
