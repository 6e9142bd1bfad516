"""Notebook 00 (teach your own document) executed headless by papermill with smoke parameters: a scripted writer
behind a real loopback chat-completions server (the notebook's `base_url` path), the tiny random trainee."""
from __future__ import annotations

import json

import pandas as pd
import papermill

from conftest import REPO
from sciknow.data import load_knowledge_set
from test_augment import TEXT, server  # noqa: F401  (server is a fixture)


def test_notebook_00_augments_trains_and_compares(tmp_path, server):  # noqa: F811
    out = tmp_path / "run"
    papermill.execute_notebook(
        str(REPO / "notebooks/00_teach_your_own_document.ipynb"), str(tmp_path / "00.ipynb"),
        parameters={"text": TEXT, "base_url": server.url, "server_model": "scripted", "translate_to": [],
                    "model": "tiny-llama", "epochs": 2, "lr": 1e-3, "max_new_tokens": 6, "out_dir": str(out)},
        cwd=str(REPO / "notebooks"), progress_bar=False,
    )
    kset = load_knowledge_set(out / "knowledge_set.json", strict=True)
    assert [c.style for c in kset.contents] == ["original", "qa", "article", "interview", "textbook"]
    assert len(kset.questions) == 4 and all(q.paraphrase for q in kset.questions)

    table = pd.read_csv(out / "table_00.csv")
    assert list(table.columns) == ["question_id", "variant", "question", "untrained answer", "trained answer",
                                   "untrained score", "trained score"]
    assert sorted(zip(table.question_id, table.variant)) == sorted(
        (f"Q{i}", v) for i in range(1, 5) for v in ("original", "paraphrase"))
    assert table[["untrained score", "trained score"]].stack().between(0, 1).all()
    assert table.loc[table.variant == "paraphrase", "question"].str.startswith("Could you tell me: ").all()
    records = [json.loads(line) for line in open(out / "results.jsonl")]
    assert [r["config"]["train"]["epochs"] for r in records] == [0, 2]  # untrained baseline + trained run
    assert [len(r["per_epoch"]) for r in records] == [1, 2]
    assert (out / "fig00_scores.png").stat().st_size > 10_000  # the learning curve
