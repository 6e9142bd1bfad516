"""The machine-augmented suite (sciknow.make.machine_suite) and the notebook-08 conditions built on it.

A scripted writer answers augment's rewrite prompts with texts that carry every keyword, miss one, are too short
or copy the source, so that the driver's keep/drop bookkeeping and the conditions' per-document texts can be
checked exactly; notebook 08 trains on such a folder in tests/test_notebook_08.py.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sciknow import conditions
from sciknow.make import augment
from sciknow.config import SUITE_DIR, DataSpec, ModelSpec, RunConfig
from sciknow.data import PARTIAL_REWRITES_MARKER, KnowledgeSetError, load_suite, training_texts
from sciknow.io import atomic_write_text, read_jsonl
from sciknow.make import machine_suite


class ScriptedRewriter:
    """Answers a rewrite prompt by `plan[(document, style)]`: "full" (every keyword), "partial" (all but the last),
    "short" or "copy"; the retry answers the same (so a partial rewrite stays partial)."""

    def __init__(self, ksets, plan: dict[tuple[str, str], str]) -> None:
        self.by_text = {k.content("C1").text: k for k in ksets}
        self.plan = plan
        self.prompts: list[str] = []
        self.calls: list[int] = []  # prompts per call

    def complete(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        self.prompts += prompts
        self.calls.append(len(prompts))
        return [self.reply(p) for p in prompts]

    def reply(self, prompt: str) -> str:
        style = next(s for s, instruction in augment.STYLE_PROMPTS.items() if prompt.startswith(instruction))
        text = prompt.rsplit("\nText:\n", 1)[1]
        kset = self.by_text[text]
        kind = self.plan.get((kset.name, style), "full")
        keywords = machine_suite.suite_keywords(kset)
        if kind == "short":
            return "Nothing to say."
        if kind == "copy":
            return text
        kept = keywords if kind == "full" else keywords[:-1]
        return f"{style.title()} notes on {kset.name}.\n" + "\n".join(f"One fact is {k}." for k in kept)


def machine_folder(folder: Path, plan: dict[tuple[str, str], str], names: list[str], translate_to=(),
                   together: bool = False) -> dict[str, dict]:
    """A machine suite folder for `names` written by the scripted writer (no translations unless asked: the
    conditions under test train English texts), the documents' writer calls batched `together` or not; the reports
    by document and the writer."""
    ksets = {k.name: k for k in load_suite(SUITE_DIR, names)}
    writer = ScriptedRewriter(ksets.values(), plan)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / PARTIAL_REWRITES_MARKER, machine_suite.MARKER_TEXT)
    if together:
        machine_suite.write_together(list(ksets.values()), folder, writer, "scripted", batch_size=8)
    reports = {n: machine_suite.machine_document(ksets[n], folder, writer, "scripted", translate_to=translate_to)
               for n in names}
    return reports, writer


NAMES = ["astro-sevrinne", "chem-borivane"]
PLAN = {("astro-sevrinne", "article"): "partial", ("astro-sevrinne", "interview"): "copy",
        ("astro-sevrinne", "textbook"): "short",
        ("chem-borivane", "qa"): "partial", ("chem-borivane", "article"): "short",
        ("chem-borivane", "interview"): "short", ("chem-borivane", "textbook"): "copy"}


@pytest.mark.skipif(shutil.which("apertium") is None, reason="apertium not installed (scripts/setup.sh as root)")
def test_machine_document_records_every_attempt_and_writes_a_relaxed_set(tmp_path):
    folder = tmp_path / "machine"
    reports, writer = machine_folder(folder, PLAN, NAMES, translate_to=augment.TRANSLATIONS)
    assert writer.calls == [4, 3, 4, 4]  # one document at a time: its 4 styles, then its retries
    first = reports["astro-sevrinne"]
    n = first["keywords"]
    assert n == 10 and first["writer"] == "scripted"
    assert (first["kept"], first["kept_partial"]) == (["qa"], ["article"])
    article = first["rewrites"]["article"]
    assert [a["keywords_carried"] for a in article["attempts"]] == [n - 1, n - 1] and article["keywords_carried"] == n - 1
    interview = first["rewrites"]["interview"]
    assert not interview["stored"] and interview["attempts"][0]["other_problem"] == "a copy of the source text"
    assert first["rewrites"]["qa"]["attempts"] == [
        {"problem": None, "other_problem": None, "keywords_carried": n, "missing": []}]  # no retry needed
    # 4 first attempts + 3 retries + 3 translations, every one recorded in the sidecar
    steps = [r["step"] for r in read_jsonl(folder / "astro-sevrinne.json.steps.jsonl")]
    assert steps == [f"rewrite:{s}" for s in augment.STYLES] + [
        f"rewrite:{s}:retry" for s in ("article", "interview", "textbook")] + ["translate:es", "translate:ca",
                                                                                "translate:it"]
    machine = load_suite(folder, partial_rewrites=True)
    assert [[(c.id, c.style) for c in k.contents] for k in machine] == [
        [("C1", "original"), ("C2", "qa"), ("C3", "article"), ("C6", "translation"), ("C7", "translation"),
         ("C8", "translation")],
        [("C1", "original"), ("C2", "qa"), ("C6", "translation"), ("C7", "translation"), ("C8", "translation")]]
    assert machine[0].keyword_coverage() == {"C1": (n, n), "C2": (n, n), "C3": (n - 1, n)}
    with pytest.raises(KnowledgeSetError, match=r"content C3 \(article\): the rule that every rewrite carries every"):
        load_suite(folder)
    # resumed from the sidecar alone: no writer, the same set and report
    before = (folder / "astro-sevrinne.json").read_text()
    again = machine_suite.machine_document(load_suite(SUITE_DIR, NAMES[:1])[0], folder, None, "scripted")
    assert (folder / "astro-sevrinne.json").read_text() == before
    assert again["steps_run"] == 0 and again["steps_resumed"] == 10 and again["rewrites"] == first["rewrites"]


def test_machine_conditions_train_each_documents_own_texts(tmp_path):
    folder = tmp_path / "machine"
    reports, writer = machine_folder(folder, PLAN, NAMES, together=True)
    # both documents' first attempts in one writer call, then all their retries (3 + 4) in another; the sets are
    # then written from the records alone
    assert writer.calls == [8, 7] and [r["steps_run"] for r in reports.values()] == [0, 0]
    summary = machine_suite.summarize(folder)  # keep rates over the documents done
    assert (summary["documents"], summary["rewrites"], summary["kept"], summary["kept_partial"]) == (NAMES, 8, 1, 2)
    assert summary["by_style"]["qa"] == {"kept": 1, "kept_partial": 1, "unusable": 0,
                                         "mean_coverage_of_attempts": round((1 + 2 * 10 / 11) / 3, 3)}
    base = RunConfig(task="08", model=ModelSpec(name="tiny-llama"), data=DataSpec(knowledge_set=str(SUITE_DIR)))
    named = conditions.conditions(base, 2, [1, 3], ["step-matched", *conditions.MACHINE_CONDITIONS])
    assert "machine rewrites" not in named  # built per document below
    machine = {k.name: k for k in load_suite(folder, partial_rewrites=True)}
    expected = {"machine rewrites": {"astro-sevrinne": ["C1", "C2"], "chem-borivane": ["C1"]},
                "machine rewrites+partial": {"astro-sevrinne": ["C1", "C2", "C3"], "chem-borivane": ["C1", "C2"]}}
    for name, contents in expected.items():
        runs = conditions.machine_rewrites(base, 2, NAMES, [0, 1], name, folder)
        assert [(r.data.documents, r.train.seed) for r in runs] == [
            ((d,), s) for d in NAMES for s in (0, 1)]
        for run in runs:
            document = run.data.documents[0]
            assert list(run.data.contents) == contents[document] and run.train.epochs == 2
            assert run.tags["condition"] == name and run.tags["texts_per_epoch"] == len(contents[document])
            # the texts a run trains on: loaded through load_sets (the folder's marker relaxes the keyword rule)
            texts = training_texts(run.data)
            assert texts == [machine[document].content(c).text for c in contents[document]]
            assert texts[0] == load_suite(SUITE_DIR, [document])[0].content("C1").text
        coverage = {r.data.documents[0]: r.tags["keyword_coverage"] for r in runs}
        if name == "machine rewrites":
            assert coverage == {"astro-sevrinne": 1.0, "chem-borivane": None}
        else:
            assert coverage["astro-sevrinne"] == 0.95 and 0 < coverage["chem-borivane"] < 1
    with pytest.raises(ValueError, match=r"no machine-written set for \['comp-pellucid'\]; write them with python "
                                         r"-m sciknow.make.machine_suite --documents comp-pellucid"):
        conditions.machine_rewrites(base, 2, ["comp-pellucid"], [0], "machine rewrites", folder)
    with pytest.raises(ValueError, match="condition='machine'"):
        conditions.machine_rewrites(base, 2, NAMES, [0], "machine", folder)


class NoWriter:
    """A writer that must not be asked: every text has to come from the sidecar."""

    def complete(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        raise AssertionError(f"the writer was called for {len(prompts)} prompt(s)")


def test_a_committed_sidecar_resumes_without_a_writer_call(tmp_path):
    """A sidecar written by the real run (committed in data/knowledge/suite_machine) is read back whole: no writer
    or translator call, nothing appended, and the same knowledge set and rewrite report as the committed ones."""
    name = "astro-sevrinne"
    committed = machine_suite.OUT_DIR
    sidecar = tmp_path / f"{name}.json.steps.jsonl"
    shutil.copyfile(committed / sidecar.name, sidecar)
    before = sidecar.read_bytes()
    old_report = json.loads((committed / "reports" / f"{name}.json").read_text())
    report = machine_suite.machine_document(load_suite(SUITE_DIR, [name])[0], tmp_path, NoWriter(),
                                            old_report["writer"], translate_to=augment.TRANSLATIONS)
    assert sidecar.read_bytes() == before
    assert (report["steps_run"], report["steps_resumed"]) == (0, len(before.splitlines()))
    assert (tmp_path / f"{name}.json").read_text() == (committed / f"{name}.json").read_text()
    for field in ("rewrites", "kept", "kept_partial", "writer_seconds"):
        assert report[field] == old_report[field], field
