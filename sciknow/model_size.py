"""Model size on the suite (notebook 10): the paper's Task 3 question, with CIs over documents.

For each model of a size ladder and each of its precisions (fp32; nf4 QLoRA for the larger ones), each suite
document is trained under three conditions of `sciknow.conditions`: untrained, 5 contents (the original and its
four style rewrites, E epochs) and the step-matched control (the original alone for 5 x E epochs: as many
steps). Every run trains LoRA adapters with the same settings, so only the model (and its precision) changes.
The runs are scored once, after their last epoch, on the original questions and their paraphrases.

The analyses take `experiment.question_scores` of those runs (one row per run and question) and answer:
- `size_table`: each model, precision and condition, with 95 % CIs over documents;
- `between_sizes`: does the score after the same training grow with size? (each model minus the smallest, paired
  on document and question);
- `augmentation_advantage` and `advantage_between_sizes`: 5 contents minus step-matched per model, and whether
  that advantage grows or shrinks with size;
- `quantization_cost`: nf4 minus fp32 per model.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from . import conditions, stats
from .config import RunConfig

# The 11x ladder that loads offline here (registered in sciknow.models; the Qwen writers need
# `scripts/setup.sh --writers`), smallest first.
LADDER = ("smollm2-135m-instruct", "gemma3-270m", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")
CONDITIONS = ("untrained", "5 contents", "step-matched")
TRAINED = CONDITIONS[1:]


def configs(base: RunConfig, models: Sequence[str], nf4_models: Sequence[str], epochs: int,
            documents: Mapping[str, Sequence[str]], seeds: Sequence[int],
            parameters: Mapping[str, int]) -> list[RunConfig]:
    """Every run, grouped by model and precision (each is loaded once): fp32 for every model, nf4 too for
    `nf4_models`; the three conditions over `documents[model]` x `seeds` (`conditions.suite_runs`: the untrained
    model in one run). Tags carry model, precision, parameters and condition."""
    unknown = [m for m in nf4_models if m not in models]
    if unknown:
        raise ValueError(f"nf4_models={list(nf4_models)!r}: {unknown} not in models={list(models)!r}")
    if base.train.method != "lora":
        raise ValueError(f"train.method={base.train.method!r}: the ladder trains LoRA adapters on every model "
                         "(nf4 weights are frozen, and the 1.5B does not fit full-parameter in 24 GiB)")
    out = []
    for model in models:
        for precision in ("fp32", "nf4") if model in nf4_models else ("fp32",):
            sized = base.replace(**{"model.name": model, "model.precision": precision, "tags": {
                **base.tags, "model": model, "precision": precision, "parameters": parameters[model]}})
            named = conditions.conditions(sized, epochs, n_contents=[5], controls=["step-matched"])
            for name, condition in named.items():
                out += conditions.suite_runs(condition, documents[model], seeds)
    return out


def tidy(scores: pd.DataFrame) -> pd.DataFrame:
    """The closed-book rows of a `question_scores` table with plain column names (model, precision, parameters,
    condition) and a `setting` label ("gemma3-270m fp32")."""
    table = scores[scores["book"] == "closed"].rename(columns={
        "tag.model": "model", "tag.precision": "precision", "tag.parameters": "parameters",
        "tag.condition": "condition"})
    return table.assign(setting=table["model"] + " " + table["precision"]).reset_index(drop=True)


def size_table(scores: pd.DataFrame, n_resamples: int = 2000) -> pd.DataFrame:
    """One row per (model, precision, condition), smallest model first: the mean score on the original questions
    and on the paraphrases with 95 % CIs over documents, n_documents, n_seeds, steps and tokens."""
    summary = stats.summarize(scores, by=["parameters", "model", "precision", "condition", "variant"],
                              n_resamples=n_resamples)
    keys = ["parameters", "model", "precision", "condition"]
    table = summary.pivot(index=keys, columns="variant", values=["mean", "ci_low", "ci_high"])
    table.columns = [f"{variant}_{statistic}" for statistic, variant in table.columns]
    counts = summary[summary["variant"] == "original"].set_index(keys)[["n_documents", "n_seeds", "steps", "tokens"]]
    table = table.join(counts).reset_index()
    table["order"] = table["condition"].map(CONDITIONS.index)
    return table.sort_values(["parameters", "precision", "order"]).drop(columns="order").reset_index(drop=True)


def _smallest_first(scores: pd.DataFrame) -> list[str]:
    return list(scores.sort_values("parameters")["model"].drop_duplicates())


def _against_smallest(scores: pd.DataFrame, by: Sequence[str], n_resamples: int) -> pd.DataFrame:
    """Each model minus the smallest model of the same precision, paired on (document, seed, question), within
    each group of `by`; Benjamini-Hochberg over the whole table."""
    parts = []
    for precision, rows in scores.groupby("precision", sort=True):
        ladder = _smallest_first(rows)
        if len(ladder) > 1:
            diffs = stats.paired_differences(rows, "model", baseline=ladder[0], by=list(by), n_resamples=n_resamples)
            diffs.insert(0, "precision", precision)  # first: the forest plot labels rows by the leading columns
            parts.append(diffs)
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, ignore_index=True)
    return _adjust(table)


def _adjust(table: pd.DataFrame) -> pd.DataFrame:
    """Benjamini-Hochberg over every row of a table assembled from several `paired_differences` calls."""
    import scipy.stats

    tested = table["p_value"].notna()
    table["p_bh"] = float("nan")
    if tested.any():
        table.loc[tested, "p_bh"] = scipy.stats.false_discovery_control(table.loc[tested, "p_value"])
    return table


def between_sizes(scores: pd.DataFrame, n_resamples: int = 2000) -> pd.DataFrame:
    """Does the score after the same training grow with size? Per condition and question form, each model minus
    the smallest model at the same precision."""
    trained = scores[scores["condition"].isin(TRAINED)]
    return _against_smallest(trained, ["condition", "variant"], n_resamples)


def advantages(scores: pd.DataFrame) -> pd.DataFrame:
    """Per (model, precision, document, seed, question, variant): 5 contents minus step-matched, as `score`."""
    keys = ["parameters", "model", "precision", "setting", "document", "seed", "question_id", "variant"]
    wide = scores[scores["condition"].isin(TRAINED)].pivot_table(index=keys, columns="condition", values="score")
    wide = wide.dropna(subset=list(TRAINED))
    return (wide["5 contents"] - wide["step-matched"]).rename("score").reset_index()


def augmentation_advantage(scores: pd.DataFrame, n_resamples: int = 2000) -> pd.DataFrame:
    """5 contents minus the step-matched control (same steps), per model, precision and question form."""
    trained = scores[scores["condition"].isin(TRAINED)]
    return stats.paired_differences(trained, "condition", baseline="step-matched",
                                    by=["parameters", "model", "precision", "variant"], n_resamples=n_resamples)


def advantage_between_sizes(scores: pd.DataFrame, n_resamples: int = 2000) -> pd.DataFrame:
    """Does augmentation's advantage over repetition grow or shrink with size? Each model's advantage minus the
    smallest model's, paired on document and question, per question form."""
    return _against_smallest(advantages(scores), ["variant"], n_resamples)


def quantization_cost(scores: pd.DataFrame, n_resamples: int = 2000) -> pd.DataFrame:
    """What 4-bit costs at each size: nf4 minus fp32, per model with both, condition and question form."""
    quantized = scores.groupby("model")["precision"].transform(lambda p: {"fp32", "nf4"} <= set(p))
    rows = scores[quantized & scores["condition"].isin(TRAINED)]
    if rows.empty:
        return pd.DataFrame()
    return stats.paired_differences(rows, "precision", baseline="fp32",
                                    by=["parameters", "model", "condition", "variant"], n_resamples=n_resamples)
