"""Does a training setting change what notebook 08 finds? Two notebook-08 runs over the same documents and seeds
that differ in one setting (e.g. `-p autocast bf16`), compared condition by condition.

    python -m benchmarks.suite_compare runs/08_default runs/08_bf16 [--out FILE.md]

Per condition, after its last epoch, on the original questions and on their paraphrases: each side's mean keyword
score, the paired difference (second - first) with its 95 % CI over documents and a sign-flip p (`sciknow.stats`),
and the share of greedy answers that are word for word the same. Per condition and in all: each side's summed run
time (`wall_s` of the runs both sides have) and the ratio. Runs are matched on (condition, document, seed).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from sciknow import experiment, results, stats
from sciknow.config import RunConfig
from sciknow.io import atomic_write_text


RUN_KEY = ["condition", "document", "seed"]


def final_answers(out_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-question rows after each condition's last epoch, per-run wall times) of one notebook-08 folder."""
    path = Path(out_dir) / "results.jsonl"
    if not path.is_file():
        raise SystemExit(f"suite_compare: {path} not found (a notebook-08 out_dir holds results.jsonl)")
    records = results.finished(path)
    scores = experiment.question_scores([RunConfig.from_record(r) for r in records], path)
    scores = scores[scores["book"] == "closed"].rename(columns={"tag.condition": "condition"})
    last = scores[scores["epoch"] == scores.groupby("condition")["epoch"].transform("max")]
    runs = pd.DataFrame([{"condition": r["config"]["tags"].get("condition"),
                          "document": ",".join(r["config"]["data"]["documents"]),
                          "seed": r["config"]["train"]["seed"], "wall_s": r["wall_s"]} for r in records])
    return last, runs.drop_duplicates(RUN_KEY, keep="last")  # a run recorded twice counts once


def compare(first: str | Path, second: str | Path, n_resamples: int = 2000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(score table, time table); see the module docstring."""
    (a, a_runs), (b, b_runs) = final_answers(first), final_answers(second)
    key = ["condition", "variant", "document", "seed", "question_id"]
    both = pd.concat([a.assign(side="first"), b.assign(side="second")], ignore_index=True)
    diffs = stats.paired_differences(both, "side", baseline="first", by=["condition", "variant"],
                                     n_resamples=n_resamples)
    means = both.groupby(["condition", "variant", "side"])["score"].mean().unstack("side")
    same = a.merge(b, on=key, suffixes=("_a", "_b"))
    same = same.assign(same=same["answer_a"] == same["answer_b"]).groupby(["condition", "variant"])["same"].mean()
    table = diffs.set_index(["condition", "variant"])[["mean", "ci_low", "ci_high", "p_value", "n_documents"]]
    table = means.join(table.rename(columns={"mean": "difference"})).join(same.rename("identical_answers"))
    table = table.dropna(subset=["first", "second"])  # a condition only one side ran has nothing to pair
    table["n_documents"] = table["n_documents"].astype(int)
    runs = a_runs.merge(b_runs, on=RUN_KEY, suffixes=("_first", "_second"))  # the runs both sides have
    wall = runs.groupby("condition")[["wall_s_first", "wall_s_second"]].sum()
    wall.columns = ["first_s", "second_s"]
    wall.loc["all"] = wall.sum()
    wall["speedup"] = wall["first_s"] / wall["second_s"]
    return table.reset_index(), wall.reset_index()


def _markdown(df: pd.DataFrame, digits: int) -> str:
    cell = lambda x: f"{x:.{digits}f}" if isinstance(x, float) else str(x)  # noqa: E731
    return "\n".join(["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
                     + ["| " + " | ".join(map(cell, row)) + " |" for row in df.itertuples(index=False)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.suite_compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("first", help="notebook-08 out_dir of the reference run")
    parser.add_argument("second", help="notebook-08 out_dir of the run with the changed setting")
    parser.add_argument("--out", help="also write the two tables to this markdown file")
    args = parser.parse_args(argv)
    table, wall = compare(args.first, args.second)
    text = f"first: {args.first}; second: {args.second}\n\n{_markdown(table, 3)}\n\n{_markdown(wall, 2)}\n"
    print(text)
    if args.out:
        atomic_write_text(Path(args.out), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
