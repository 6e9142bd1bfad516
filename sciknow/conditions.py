"""The training conditions that separate "more kinds of text" from "more updates" (notebook 08).

Every condition trains one document's texts (batch 1, so one optimizer step per text). With `curve=True` every
run is evaluated after every epoch, so it yields its score at every step count it passes (the score-vs-steps
figure); by default a run is evaluated only where the analysis reads it: after its last epoch, and the
step-matched control also at the step counts where the other conditions end. With `epochs` = E and n in
`n_contents`:

    untrained            no training (the floor)
    n contents           the original plus n-1 style rewrites (C1..Cn), E epochs: n*E steps
    step-matched         the original alone for max(n)*E epochs: at epoch n*E it has taken as many steps
                         (and seen about as many tokens) as n contents after E epochs
    token-matched n      the original repeated n times per epoch, E epochs: the same steps and about the same
                         tokens as n contents, all of them the one text
    fixed order          max(n) contents without reshuffling between epochs (the default reshuffles, as the
                         paper's HF Trainer did): does the order of the texts matter?
    translations         the original plus its three Apertium translations (es, ca, it), E epochs
    machine rewrites     the original plus the writer's rewrites that passed augment's fidelity check
                         (data/knowledge/suite_machine/), E epochs: (1 + kept)*E steps, per document
    machine rewrites+partial   the same, also keeping the rewrites that miss keywords (augment's
                         partial_rewrites="keep"); both are built per document by `machine_rewrites`

No repeated work: training's lr schedule and data order do not depend on the number of epochs (`sciknow.train`),
so a condition whose config differs from a longer one's only in `train.epochs` takes the same steps as that
run's first epochs: "1 contents" is the first E epochs of the step-matched control. `reused` finds such
conditions, the notebook does not run them, and `with_reused` reads their rows from the longer run.

`at_matched_steps` picks the (condition, epoch) pairs that share a step count, for paired differences.
`plateau` adds the dose-response arms (the most contents and the original, trained much longer, answered at the
same step counts), `at_shared_steps` pairs them along the curve.
`choose_documents` turns a notebook's `documents` parameter into the runs of each condition.

The knowledge-forgetting frontier (notebook 11): `frontier_recipes` (full-parameter at five learning rates, LoRA
at two, and replay of general text), `frontier_runs` (each trained run paired with the untrained model on its
document: knowledge gained, MMLU lost, perplexity rise, locality, steps to reach a score), `frontier_table`
(per recipe, means with 95 % CIs over documents, and the Pareto front of knowledge gained vs MMLU lost) and
`frontier_differences` (one recipe minus another, paired by document: what replay buys).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats

from . import experiment, stats
from .config import SHARED_DIR, SUITE_DIR, RunConfig, identity_dict
from .data import MACHINE_SUITE_DIR, KnowledgeSet, load_knowledge_set, load_suite

STYLE_CONTENTS = ("C1", "C2", "C3", "C4", "C5")  # original, qa, article, interview, textbook
TRANSLATION_CONTENTS = ("C1", "C6", "C7", "C8")  # original + es, ca, it
MACHINE_CONDITIONS = {"machine rewrites": "drop", "machine rewrites+partial": "keep"}  # -> augment's partial_rewrites
CONTROLS = ("step-matched", "token-matched", "fixed order", "translations", *MACHINE_CONDITIONS)


def conditions(base: RunConfig, epochs: int, n_contents: Sequence[int] = (1, 3, 5),
               controls: Sequence[str] = CONTROLS, curve: bool = False) -> dict[str, RunConfig]:
    """Condition name -> config (still to be replicated over documents x seeds). Each config's tags carry its
    condition and its number of texts per epoch. `curve`: evaluate every run after every epoch; else only where
    the analysis reads it (see the module docstring)."""
    if not n_contents or not all(1 <= n <= len(STYLE_CONTENTS) for n in n_contents):
        raise ValueError(f"n_contents={list(n_contents)!r}: each must be in 1..{len(STYLE_CONTENTS)}")
    unknown = [c for c in controls if c not in CONTROLS]
    if unknown:
        raise ValueError(f"controls={list(controls)!r}: unknown {unknown} (known: {CONTROLS})")
    top = max(n_contents)

    def make(name: str, contents: Sequence[str], n_epochs: int, **changes) -> RunConfig:
        per_epoch = len(contents) * changes.get("data.repeats", 1)
        return base.replace(**{"data.contents": list(contents), "train.epochs": n_epochs, "eval.every_epoch": curve,
                               "eval.at_epochs": [],
                               "tags": {**base.tags, "condition": name, "texts_per_epoch": per_epoch}, **changes})

    out = {"untrained": make("untrained", ["C1"], 0)}
    for n in n_contents:
        out[f"{n} contents"] = make(f"{n} contents", STYLE_CONTENTS[:n], epochs)
    if "step-matched" in controls:
        out["step-matched"] = make("step-matched", ["C1"], top * epochs)
    if "token-matched" in controls:
        for n in n_contents:
            if n > 1:
                out[f"token-matched {n}"] = make(f"token-matched {n}", ["C1"], epochs, **{"data.repeats": n})
    if "fixed order" in controls and top > 1:
        out["fixed order"] = make("fixed order", STYLE_CONTENTS[:top], epochs, **{"train.shuffle": False})
    if "translations" in controls:
        out["translations"] = make("translations", TRANSLATION_CONTENTS, epochs)
    if "step-matched" in controls and not curve:  # read it where the others end (1 text: an epoch is a step)
        ends = {c.tags["texts_per_epoch"] * c.train.epochs for c in out.values()}
        if any(c in MACHINE_CONDITIONS for c in controls):  # each document ends at its own (1 + kept) x E steps
            ends |= {n * epochs for n in range(1, len(STYLE_CONTENTS) + 1)}
        out["step-matched"] = out["step-matched"].replace(
            **{"eval.at_epochs": sorted(e for e in ends if 0 < e < top * epochs)})
    # The machine conditions' contents differ per document: `machine_rewrites` builds their runs.
    return out


def suite_runs(condition: RunConfig, documents: Sequence[str], seeds: Sequence[int]) -> list[RunConfig]:
    """A condition's runs on suite documents: one per document and seed, each document on its own model (the
    paper's protocol). The untrained model is the same for every document and seed, so one run (the first seed)
    answers every document's questions."""
    if condition.train.epochs == 0:
        return experiment.replicate(condition, documents, seeds[:1], joint=True)
    return experiment.replicate(condition, documents, seeds)


def _same_run_but_epochs(config: RunConfig) -> str:
    """A config's identity without its length, its evaluation epochs and its labels."""
    d = identity_dict(config)
    for section, name in (("train", "epochs"), ("eval", "every_epoch"), ("eval", "at_epochs")):
        del d[section][name]
    del d["tags"]
    return json.dumps(d, sort_keys=True)


def reused(named: dict[str, RunConfig]) -> dict[str, str]:
    """{condition: longer condition} for each trained condition whose runs are the first epochs of the longer
    condition's runs (same config but `train.epochs`), which evaluates at every epoch the shorter one asks for
    (of several such, the longest)."""
    out = {}
    for name, config in named.items():
        longer = [other for other, c in named.items()
                  if other != name and 0 < config.train.epochs < c.train.epochs
                  and _same_run_but_epochs(config) == _same_run_but_epochs(c)
                  and set(experiment.evaluated_epochs(config)) <= set(experiment.evaluated_epochs(c))]
        if longer:  # the longest: it is run, where a middle one would itself be read from it
            out[name] = max(longer, key=lambda other: named[other].train.epochs)
    return out


def with_reused(scores: pd.DataFrame, named: dict[str, RunConfig]) -> pd.DataFrame:
    """A `question_scores` table of the runs made (`tag.condition` column) plus the rows of each `reused`
    condition, read from the longer run at the epochs the condition evaluates, labelled as that condition (its
    config columns and tags; `read_from` names the run they come from)."""
    parts = [scores]
    for name, longer in reused(named).items():
        config = named[name]
        rows = scores[(scores["tag.condition"] == longer)
                      & scores["epoch"].isin(experiment.evaluated_epochs(config))].copy()
        columns = pd.json_normalize(config.to_dict()).iloc[0].to_dict()
        columns |= {f"tag.{k}": v for k, v in config.tags.items()}
        for column, value in columns.items():
            if column in rows.columns and not isinstance(value, (list, dict)):
                rows[column] = value
        parts.append(rows.assign(read_from=longer))
    return pd.concat(parts, ignore_index=True)


def plateau(named: dict[str, RunConfig], epochs: int) -> dict[str, RunConfig]:
    """The dose-response arms (notebook 08's `plateau`): the most contents of `named` trained for `epochs` epochs
    and answered after each, and the original alone for as many steps, answered at the same step counts (and
    where the step-matched control of `named` is answered). The shorter runs of `named` that they extend are
    then read from them (`reused`)."""
    top = max(c.tags["texts_per_epoch"] for name, c in named.items() if name.endswith(" contents"))
    contents, control = named[f"{top} contents"], named["step-matched"]
    if epochs <= contents.train.epochs:
        raise ValueError(f"plateau={epochs}: expected more epochs than E = {contents.train.epochs}")
    name, control_name = f"{top} contents, {epochs} epochs", f"original, {top * epochs} steps"
    long_contents = contents.replace(**{"train.epochs": epochs, "eval.every_epoch": True, "eval.at_epochs": [],
                                        "tags": {**contents.tags, "condition": name}})
    answered = ({top * e for e in range(1, epochs)} | set(experiment.evaluated_epochs(control))) - {top * epochs}
    long_control = control.replace(**{"train.epochs": top * epochs,
                                      "eval.at_epochs": [] if control.eval.every_epoch else sorted(answered),
                                      "tags": {**control.tags, "condition": control_name}})
    return {name: long_contents, control_name: long_control}


def at_shared_steps(scores: pd.DataFrame, arm: str, control: str) -> pd.DataFrame:
    """The rows of a `question_scores` table of conditions `arm` and `control` at the step counts where both were
    answered (pair them with `stats.paired_differences(..., by=["variant", "steps"])`)."""
    rows = scores[scores["tag.condition"].isin([arm, control])]
    answered = [set(rows.loc[rows["tag.condition"] == c, "steps"]) for c in (arm, control)]
    return rows[rows["steps"].isin(answered[0] & answered[1])]


def machine_contents(kset: KnowledgeSet, partial: str) -> list[str]:
    """The original and the machine rewrites a condition trains on: those carrying every keyword ("drop"), or every
    stored one ("keep", augment's default)."""
    if partial not in ("drop", "keep"):
        raise ValueError(f"partial={partial!r}: expected 'drop' or 'keep'")
    coverage = kset.keyword_coverage()
    return [cid for cid, (carried, total) in coverage.items() if partial == "keep" or carried == total]


def machine_rewrites(base: RunConfig, epochs: int, names: Sequence[str], seeds: Sequence[int], condition: str,
                     folder: str | Path = MACHINE_SUITE_DIR) -> list[RunConfig]:
    """One run per document and seed of a machine condition (`MACHINE_CONDITIONS`), each on the document's
    machine-written set in `folder` with its own contents, E epochs; the tags carry the texts per epoch and the
    rewrites' mean keyword coverage. A document without a machine set is an error naming it."""
    if condition not in MACHINE_CONDITIONS:
        raise ValueError(f"condition={condition!r}: expected one of {list(MACHINE_CONDITIONS)}")
    missing = [n for n in names if not (Path(folder) / f"{n}.json").is_file()]
    if missing:
        raise ValueError(f"{folder}: no machine-written set for {missing}; write them with "
                         f"python -m sciknow.make.machine_suite --documents {','.join(missing)}")
    runs = []
    for kset in load_suite(folder, list(names), partial_rewrites=True):
        contents = machine_contents(kset, MACHINE_CONDITIONS[condition])
        coverage = [kset.keyword_coverage()[cid] for cid in contents[1:]]
        mean = sum(c / t for c, t in coverage) / len(coverage) if coverage else None
        config = base.replace(**{"data.knowledge_set": str(folder), "data.contents": contents, "train.epochs": epochs,
                                 "tags": {**base.tags, "condition": condition, "texts_per_epoch": len(contents),
                                          "keyword_coverage": None if mean is None else round(mean, 3)}})
        runs += experiment.replicate(config, [kset.name], seeds)
    return runs


def at_matched_steps(scores: pd.DataFrame, epochs: int) -> pd.DataFrame:
    """The rows of a `question_scores` table where conditions meet at the same step count: every condition after
    its E epochs, with the step-matched control at the epoch that reaches the same number of steps. Adds a
    `comparison` column ("15 steps") to group paired differences by."""
    condition = scores["tag.condition"]
    final = scores[(scores["epoch"] == epochs) & ~condition.isin(["step-matched", "untrained"])]
    parts = []
    for steps in sorted(final["steps"].unique()):
        control = scores[(condition == "step-matched") & (scores["steps"] == steps)]
        parts.append(pd.concat([final[final["steps"] == steps], control]).assign(comparison=f"{steps} steps"))
    return pd.concat(parts, ignore_index=True) if parts else scores.iloc[:0].assign(comparison=None)


def spread_documents(ksets: Sequence, n: int) -> list[str]:
    """The names of `n` suite documents taken round-robin over fields (in name order within a field), so a small
    sample covers as many fields as it can."""
    if not 1 <= n <= len(ksets):
        raise ValueError(f"documents={n}: the suite has {len(ksets)}")
    by_field: dict[str, list[str]] = {}
    for kset in sorted(ksets, key=lambda k: k.name):
        by_field.setdefault(kset.field or "", []).append(kset.name)
    order = [names[i] for i in range(max(map(len, by_field.values())))
             for _, names in sorted(by_field.items()) if i < len(names)]
    return order[:n]


@dataclass(frozen=True)
class Documents:
    """What a notebook's `documents` parameter chose: the one knowledge-set file, or suite documents."""

    knowledge_set: str  # DataSpec.knowledge_set of every run: the file, or the suite folder
    names: list[str]  # the suite documents, each trained on its own model ([] = the one file)
    ksets: list[KnowledgeSet]

    def order(self, styles: Sequence[str]) -> list[str]:
        """The content ids of `styles`, the same in every document (or an error naming the parameter)."""
        order = self.ksets[0].ids_by_style(list(styles))
        if any(k.ids_by_style(list(styles)) != order for k in self.ksets):
            raise ValueError(f"content_styles={list(styles)}: the documents number their contents differently")
        return order

    def runs(self, condition: RunConfig, seeds: Sequence[int]) -> list[RunConfig]:
        """One run per document (each on its own model) and seed; the seed sets the data order."""
        if self.names:
            return experiment.replicate(condition, self.names, seeds)
        return [condition.replace(**{"train.seed": s, "data.irrelevant_seed": s}) for s in seeds]


def choose_documents(documents: int | list[str], knowledge_set: str | Path, suite: str | Path = SUITE_DIR
                     ) -> Documents:
    """A notebook's `documents` parameter: [] = the `knowledge_set` file; n = n suite documents spread over
    fields (`spread_documents`); a list = those suite documents (an unknown name fails, with the nearest one)."""
    if documents == []:
        kset = load_knowledge_set(knowledge_set)
        return Documents(kset.path, [], [kset])
    chosen = load_suite(suite, documents if isinstance(documents, list) else ())
    names = documents if isinstance(documents, list) else spread_documents(chosen, documents)
    return Documents(str(suite), list(names), [k for k in chosen if k.name in names])


def machine_at_own_steps(scores: pd.DataFrame, epochs: int) -> pd.DataFrame:
    """For paired differences of the machine conditions: each one's rows after its E epochs, beside, on each
    document, the step-matched control at that document's own step count and the hand-written n contents with as
    many texts (relabelled "hand-written"; present where n is one of the run's `n_contents`). The `comparison`
    column names the machine condition."""
    condition = scores["tag.condition"]
    final = scores["epoch"] == epochs
    parts = []
    for name in MACHINE_CONDITIONS:
        machine = scores[(condition == name) & final]
        if machine.empty:
            continue
        own_steps = scores["steps"] == scores["document"].map(machine.groupby("document")["steps"].first())
        control = scores[(condition == "step-matched") & own_steps]
        hand = scores[condition.str.fullmatch(r"\d+ contents") & final & own_steps].assign(
            **{"tag.condition": "hand-written"})
        parts.append(pd.concat([machine, control, hand]).assign(comparison=f"{name}, own steps"))
    return pd.concat(parts, ignore_index=True) if parts else scores.iloc[:0].assign(comparison=None)


def machine_tables(scores: pd.DataFrame, epochs: int, n_resamples: int = 2000) -> dict[str, pd.DataFrame]:
    """Notebook 08's machine-condition tables, from `scores` (question scores tagged with `tag.condition`):
    "differences": each machine condition minus the step-matched control and minus the hand-written contents of as
    many texts, at each document's own steps (`machine_at_own_steps`); "keep_vs_drop" (when both machine
    conditions ran): keeping the rewrites that miss keywords minus dropping them, each after its E epochs;
    "documents": per document and condition, the score, the texts trained on and the rewrites' keyword coverage."""
    own = machine_at_own_steps(scores, epochs)
    machine = list(MACHINE_CONDITIONS)
    differences = pd.concat([
        stats.paired_differences(own, "tag.condition", baseline=baseline, by=["variant", "comparison"],
                                 n_resamples=n_resamples)
        for baseline in ("step-matched", "hand-written") if (own["tag.condition"] == baseline).any()])
    tables = {"differences": differences[differences["tag.condition"].isin(machine)]}
    final = scores[scores["tag.condition"].isin(machine) & (scores["epoch"] == epochs)]
    if final["tag.condition"].nunique() == len(machine):
        tables["keep_vs_drop"] = stats.paired_differences(final, "tag.condition", baseline="machine rewrites",
                                                          by=["variant"], n_resamples=n_resamples)
    tables["documents"] = (final.groupby(["tag.condition", "document", "variant"])
                           .agg(score=("score", "mean"), texts=("tag.texts_per_epoch", "first"),
                                keyword_coverage=("tag.keyword_coverage", "first"))
                           .reset_index().rename(columns={"tag.condition": "condition"}))
    return tables


# ---------------------------------------------------------------- the knowledge-forgetting frontier (notebook 11)

FULL_LRS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)  # full-parameter learning rates
LORA_LRS = (1e-4, 1e-3)  # LoRA (the paper's r 100, alpha 300) learning rates
REPLAY_LR = 1e-4  # the full-parameter rate the replay recipe uses


def frontier_recipes(base: RunConfig, epochs: int, full_lrs: Sequence[float] = FULL_LRS,
                     lora_lrs: Sequence[float] = LORA_LRS, replay_texts: int = 10, replay_source: str = "",
                     replay_lr: float = REPLAY_LR) -> dict[str, RunConfig]:
    """Recipe name -> config: the untrained model, full-parameter training at each of `full_lrs`, LoRA at each of
    `lora_lrs` (r and alpha from `base`, the paper's 100 and 300 by default), and replay: full-parameter at
    `replay_lr` with `replay_texts` general texts (PLOS introductions, Task 1b's irrelevant texts, from the JATS
    folder `replay_source`, "" = the shared PLOS corpus) mixed into every epoch. Every recipe trains `epochs`
    epochs of `base`'s contents (a fixed budget; the scores after each epoch give the steps to reach a score).
    Tags carry the recipe, its method and lr. The untrained model runs without probes: each trained run measures
    them on it before training (`sciknow.probes`, computed once per process and model)."""
    if epochs < 1 or not full_lrs and not lora_lrs:
        raise ValueError(f"frontier_recipes: epochs={epochs!r} (>= 1) and at least one learning rate")
    per_epoch = len(base.data.contents) * base.data.repeats

    def make(name: str, method: str, lr: float, n_epochs: int, **changes) -> RunConfig:
        texts = per_epoch + changes.get("data.n_irrelevant", 0)
        tags = {**base.tags, "recipe": name, "method": method, "lr": lr, "texts_per_epoch": texts}
        return base.replace(**{"train.method": method, "train.lr": lr, "train.epochs": n_epochs, "tags": tags,
                               **changes})

    # The untrained model's probe numbers are every trained run's `before.*`: its own run answers questions only.
    out = {"untrained": make("untrained", "full", full_lrs[0] if full_lrs else lora_lrs[0], 0,
                             **{"eval.probes": []})}
    for lr in full_lrs:
        out[f"full {lr:g}"] = make(f"full {lr:g}", "full", lr, epochs)
    for lr in lora_lrs:
        out[f"LoRA {lr:g}"] = make(f"LoRA {lr:g}", "lora", lr, epochs)
    if replay_texts:
        source = replay_source or str(SHARED_DIR / "corpora" / "plos-starter")
        out[f"full {replay_lr:g} + replay"] = make(f"full {replay_lr:g} + replay", "full", replay_lr, epochs, **{
            "data.n_irrelevant": replay_texts, "data.irrelevant_source": source})
    return out


def frontier_runs(configs: Sequence[RunConfig], results_path: str | Path, reach: float = 0.5) -> pd.DataFrame:
    """One row per trained run (recipe x document x seed), paired with the untrained model on the same document:
    `gain` and `paraphrase_gain` (keyword score after training - untrained), `mmlu_loss` (MMLU accuracy before -
    after, the first MMLU metric of the run's probes) and `mmlu_p_loss` (mean probability of the right answer,
    before - after), `perplexity_rise` (after - before), `locality` (after; 1 = unchanged), and the first
    `steps_to_reach` / `seconds_to_reach` at which the keyword score reached `reach` (NaN if it never did).
    The untrained model is the same for every seed, and its run may answer every document at once
    (`suite_runs`): its score on a document is the mean over that document's closed-book questions."""
    from .probes import accuracy_key

    untrained_configs = [c for c in configs if c.tags.get("recipe") == "untrained"]
    table = experiment.epochs_for([c for c in configs if c not in untrained_configs], results_path)
    answers = experiment.question_scores(untrained_configs, results_path)
    if not len(table) or not len(answers):
        raise ValueError(f"frontier_runs: no finished {'untrained' if len(table) else 'trained'} runs of these "
                         f"configs in {results_path}")
    # The results table holds list fields joined by commas ("data.documents", "eval.probe_mmlu_metrics").
    table = table.assign(document=table["data.documents"], recipe=table["tag.recipe"], seed=table["train.seed"])
    closed = answers[answers["book"] == "closed"]
    untrained = closed.pivot_table(index="document", columns="variant", values="score", aggfunc="mean")
    rows = []
    for (recipe, document, seed), run in table.groupby(["recipe", "document", "seed"], sort=False):
        run = run.sort_values("epoch")
        last, base = run.iloc[-1], untrained.loc[document]
        metric = last["eval.probe_mmlu_metrics"].split(",")[0]
        acc, p = accuracy_key(metric), f"{metric}_p"
        reached = run[run["score"] >= reach]
        row = {"recipe": recipe, "document": document, "seed": seed, "method": last["tag.method"],
               "lr": last["tag.lr"], "steps": last["steps"], "wall_s": last["wall_s"],
               "score": last["score"], "gain": last["score"] - base["original"],
               "steps_to_reach": reached["steps"].iloc[0] if len(reached) else np.nan,
               "seconds_to_reach": reached["elapsed_s"].iloc[0] if len(reached) else np.nan}
        if "paraphrase_score" in run:
            row["paraphrase_gain"] = last["paraphrase_score"] - base["paraphrase"]
        if acc in run:
            row["mmlu_loss"] = last[f"before.{acc}"] - last[acc]
            row["mmlu_p_loss"] = last[f"before.{p}"] - last[p] if p in run else np.nan
        if "perplexity" in run:
            row["perplexity_rise"] = last["perplexity"] - last["before.perplexity"]
        if "locality" in run:
            row["locality"] = last["locality"]
        rows.append(row)
    return pd.DataFrame(rows)


FRONTIER_METRICS = ("gain", "paraphrase_gain", "mmlu_loss", "mmlu_p_loss", "perplexity_rise", "locality",
                    "steps_to_reach", "seconds_to_reach")


def frontier_table(runs: pd.DataFrame, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per recipe: each metric of `frontier_runs` as its mean over documents with a 95 % t interval over
    documents (`sciknow.stats`; seeds averaged within a document), columns `<metric>`, `<metric>_low`,
    `<metric>_high`; `reached` = the share of runs that reached the score; and `pareto` = no other recipe gains
    at least as much knowledge with at most as much MMLU loss, and is strictly better in one of the two."""
    rows = []
    for recipe, group in runs.groupby("recipe", sort=False):
        row = {"recipe": recipe, "method": group["method"].iloc[0], "lr": group["lr"].iloc[0],
               "documents": group["document"].nunique(), "reached": float(group["steps_to_reach"].notna().mean())}
        for metric in (m for m in FRONTIER_METRICS if m in group):
            values = group.dropna(subset=[metric])
            if values.empty:
                row |= {metric: np.nan, f"{metric}_low": np.nan, f"{metric}_high": np.nan}
                continue
            ci = stats.cluster_bootstrap(values, value=metric, nested=None, n_resamples=n_resamples, seed=seed)
            row |= {metric: ci.mean, f"{metric}_low": ci.low, f"{metric}_high": ci.high}
        rows.append(row)
    table = pd.DataFrame(rows)
    table["pareto"] = pareto_front(table["gain"].to_numpy(), table["mmlu_loss"].to_numpy()) \
        if "mmlu_loss" in table else True
    return table


def frontier_differences(runs: pd.DataFrame, recipe: str, baseline: str, n_resamples: int = 2000,
                         seed: int = 0) -> pd.DataFrame:
    """`recipe` minus `baseline` on each metric of `frontier_runs`, paired by document and seed (e.g. what replay
    buys over the same training without it): one row per metric with the mean difference, its 95 % t interval over
    documents, the sign-flip p-value and `p_bh` (Benjamini-Hochberg over the metrics; `sciknow.stats`). A metric
    counts the documents where both recipes have a value (steps to reach: where both reached the score)."""
    both = runs[runs["recipe"].isin([recipe, baseline])]
    rows = []
    for metric in (m for m in FRONTIER_METRICS if m in both):
        values = both.dropna(subset=[metric])
        if set(values["recipe"]) != {recipe, baseline}:
            continue
        d = stats.paired_difference(values, "recipe", recipe, baseline, value=metric, nested=None,
                                    n_resamples=n_resamples, seed=seed)
        rows.append({"metric": metric, "recipe": recipe, "baseline": baseline, "mean": d.mean, "ci_low": d.low,
                     "ci_high": d.high, "p_value": d.p_value, "n_documents": d.n_documents})
    table = pd.DataFrame(rows)
    if len(table):
        table["p_bh"] = scipy.stats.false_discovery_control(table["p_value"])
    return table


def pareto_front(gain: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """True where no other point has gain >= and loss <= with one of them strict (more gain, less loss is better)."""
    n = len(gain)
    return np.array([not any(gain[j] >= gain[i] and loss[j] <= loss[i] and (gain[j] > gain[i] or loss[j] < loss[i])
                             for j in range(n) if j != i) for i in range(n)])
