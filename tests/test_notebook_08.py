"""Notebook 08 (the suite study) under papermill with smoke parameters; asserts on the table it writes."""
import json

import pandas as pd
import papermill

from benchmarks import suite_compare
from conftest import REPO


def test_notebook_08_writes_a_table_with_cis_and_steps_per_condition(tmp_path):
    out = tmp_path / "run"
    papermill.execute_notebook(
        str(REPO / "notebooks/08_what_makes_knowledge_stick.ipynb"), str(tmp_path / "08.ipynb"),
        parameters={"model": "tiny-llama", "documents": 2, "epochs": 1, "n_contents": "[1, 2]",
                    "controls": '["step-matched", "token-matched"]', "max_new_tokens": 6, "max_length": 64,
                    "lr": 1e-3, "bootstrap_resamples": 200, "out_dir": str(out)},
        cwd=str(REPO / "notebooks"), progress_bar=False,
    )
    table = pd.read_csv(out / "table_08.csv", index_col=0)
    assert list(table.index) == ["untrained", "1 contents", "2 contents", "step-matched", "token-matched 2"]
    for variant in ("original", "paraphrase"):
        low, mean, high = (table[f"{variant}_{c}"] for c in ("ci_low", "mean", "ci_high"))
        assert ((low <= mean + 1e-12) & (mean <= high + 1e-12)).all()
    assert list(table["steps"]) == [0, 1, 2, 2, 2] and (table["n_documents"] == 2).all()
    untrained = [json.loads(line)["config"]["data"]["documents"] for line in (out / "results.jsonl").open()
                 if '"condition": "untrained"' in line]
    assert len(untrained) == 1 and len(untrained[0]) == 2  # one run answers both documents' questions
    diffs = pd.read_csv(out / "differences_08.csv")
    assert set(diffs["tag.condition"]) == {"2 contents", "token-matched 2"}
    for name in ("fig08_steps.png", "fig08_forest.png", "fig08_paraphrase.png"):
        assert (out / name).stat().st_size > 10_000

    # A second run that differs on one document of one condition: suite_compare finds that difference, no other.
    changed = tmp_path / "changed"
    changed.mkdir()
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    document = records[-1]["config"]["data"]["documents"][0]
    for r in records:
        if r["config"]["tags"]["condition"] == "2 contents" and r["config"]["data"]["documents"] == [document]:
            for p in r["per_epoch"][-1]["predictions"]:
                p.update(answer="changed", score=1.0)
    (changed / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    scores, wall = suite_compare.compare(out, changed, n_resamples=200)
    scores = scores.set_index(["condition", "variant"])
    hit = scores.loc["2 contents"]  # both variants: every answer of that document changed
    assert (hit["difference"] > 0).all() and ((hit["second"] - hit["first"] - hit["difference"]).abs() < 1e-9).all()
    assert (hit["identical_answers"] == 0.5).all()
    others = scores.drop(index="2 contents")
    assert (others["difference"] == 0).all() and (others["identical_answers"] == 1).all()
    assert (wall["speedup"] == 1).all() and list(wall["condition"])[-1] == "all"


def test_notebook_08_machine_rewrites_rows_and_paired_differences(tmp_path):
    """The machine conditions on a scripted machine-written folder: their rows in the table, their differences
    against the step-matched control at each document's own steps and against hand-written contents. With
    `plateau`, the dose-response arms: their figure and their paired differences along the curve."""
    from test_machine_suite import machine_folder

    from sciknow.conditions import spread_documents
    from sciknow.config import SUITE_DIR
    from sciknow.data import load_suite

    names = spread_documents(load_suite(SUITE_DIR), 2)
    # first document: qa kept, article partial (2 / 3 texts); second: qa partial only (1 / 2 texts)
    plan = {(names[0], "article"): "partial", (names[0], "interview"): "short", (names[0], "textbook"): "short",
            (names[1], "qa"): "partial", (names[1], "article"): "short", (names[1], "interview"): "short",
            (names[1], "textbook"): "short"}
    machine_folder(tmp_path / "machine", plan, names, together=True)
    out = tmp_path / "run"
    papermill.execute_notebook(
        str(REPO / "notebooks/08_what_makes_knowledge_stick.ipynb"), str(tmp_path / "08.ipynb"),
        parameters={"model": "tiny-llama", "documents": 2, "epochs": 1, "n_contents": "[1, 3]",
                    "controls": '["step-matched", "machine rewrites", "machine rewrites+partial"]',
                    "machine_suite": str(tmp_path / "machine"), "max_new_tokens": 6, "max_length": 64, "lr": 1e-3,
                    "plateau": 2, "bootstrap_resamples": 200, "out_dir": str(out)},
        cwd=str(REPO / "notebooks"), progress_bar=False,
    )
    table = pd.read_csv(out / "table_08.csv", index_col=0)
    assert list(table.index) == ["untrained", "1 contents", "3 contents", "step-matched", "machine rewrites",
                                 "machine rewrites+partial"]
    assert (table["n_documents"] == 2).all()
    per_document = pd.read_csv(out / "machine_documents_08.csv")
    texts = per_document[per_document["variant"] == "original"].set_index(["condition", "document"])["texts"]
    assert texts.to_dict() == {("machine rewrites", names[0]): 2, ("machine rewrites", names[1]): 1,
                               ("machine rewrites+partial", names[0]): 3, ("machine rewrites+partial", names[1]): 2}
    diffs = pd.read_csv(out / "machine_differences_08.csv")
    rows = {(r["comparison"], r["tag.condition"], r["baseline"], r["variant"]): r["n_documents"]
            for _, r in diffs.iterrows()}
    # against step-matched: both documents at their own steps; against hand-written: where the count of texts
    # is one of n_contents (1 text: the second document; 3 texts: the first document with its partial article)
    assert rows == {(f"{c}, own steps", c, baseline, v): n for c, baseline, n in (
        ("machine rewrites", "step-matched", 2), ("machine rewrites", "hand-written", 1),
        ("machine rewrites+partial", "step-matched", 2), ("machine rewrites+partial", "hand-written", 1))
        for v in ("original", "paraphrase")}
    plateau = pd.read_csv(out / "plateau_differences_08.csv")
    assert set(plateau["tag.condition"]) == {"3 contents, 2 epochs"} and set(plateau["baseline"]) == {"original, 6 steps"}
    assert list(plateau["steps"]) == [3, 6, 3, 6] and (plateau["n_documents"] == 2).all()
    keep_vs_drop = pd.read_csv(out / "machine_keep_vs_drop_08.csv")
    assert set(keep_vs_drop["tag.condition"]) == {"machine rewrites+partial"}
    assert list(keep_vs_drop["variant"]) == ["original", "paraphrase"] and (keep_vs_drop["n_documents"] == 2).all()
    for name in ("fig08_plateau.png", "fig08_machine.png", "fig08_machine_coverage.png"):
        assert (out / name).stat().st_size > 10_000
