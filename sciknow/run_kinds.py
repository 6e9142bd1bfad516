"""The two kinds of run. Each owns what a run trains on, what it is asked, and the files it reads:

* `KnowledgeSetRun` (Tasks 1-3, the suite study): the contents of one or more knowledge sets (+ irrelevant
  texts); asked their questions by the keyword suite, closed and/or open book.
* `PaperDatasetRun` (Task 4): texts of each genre of a dataset built by notebook 06; asked its held-out test
  sets by the paper suite.

`run_kind(config)` picks the kind `config.data.kind` names and reads its files, so their errors come before a
model loads. The config rules of each kind are checked when the config is made (`DataSpec`, `RunConfig`).
"""
from __future__ import annotations

from . import paper_datasets
from .config import RunConfig
from .data import load_sets, training_texts
from .suites import KeywordSuite, PaperSuite, Suite, make_judge


class KnowledgeSetRun:
    kind = "knowledge set"

    def __init__(self, config: RunConfig) -> None:
        d, e = config.data, config.eval
        self.data = d
        self.ksets = load_sets(d)
        index = None
        if e.book != "closed":
            from . import retrieval

            # Distractors come from data.irrelevant_source when it is a JATS folder, else the shared PLOS corpus.
            source = None if d.irrelevant_source == "knowledge_set" else d.irrelevant_source
            passages = retrieval.passages_from_suite(self.ksets)
            if e.retrieval_distractors:
                passages += retrieval.distractor_passages(e.retrieval_distractors, d.irrelevant_seed, source)
            index = retrieval.build_index(passages)
        self.suite: Suite = KeywordSuite(self.ksets, e, index)

    def training_texts(self) -> list[str]:
        return training_texts(self.data, self.ksets)


class PaperDatasetRun:
    kind = "paper dataset"

    def __init__(self, config: RunConfig) -> None:
        self.data = config.data
        self.suite: Suite = PaperSuite(config.data.dataset, config.eval, make_judge(config.eval.judge))

    def training_texts(self) -> list[str]:
        d = self.data
        return paper_datasets.training_texts(d.dataset, d.genre_counts, d.irrelevant_seed)


RUN_KINDS = {k.kind: k for k in (KnowledgeSetRun, PaperDatasetRun)}


def run_kind(config: RunConfig) -> KnowledgeSetRun | PaperDatasetRun:
    """The run's kind, its files read and its suite made."""
    return RUN_KINDS[config.data.kind](config)
