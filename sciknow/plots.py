"""The paper's figures, drawn from results tables (pandas DataFrames from `sciknow.results`).

Every figure is a set of lines: the mean score over seeds against some x (epochs, steps, N irrelevant texts),
one line per group, with a band of +-1 standard deviation when there are several seeds and the untrained
model's score as a dashed line. The functions only draw; they never train or evaluate.
"""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt  # headless (no display) matplotlib falls back to Agg by itself
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator


# What a reader sees instead of the results tables' column names and values.
WORDS = {"tag.n_contents": "contents", "tag.n_irrelevant": "N irrelevant texts", "n_irrelevant": "N irrelevant texts",
         "total_texts": "total texts", "n_instruction_texts": "instruction-format texts", "lr": "learning rate",
         "tag.lr": "learning rate", "lora_r": "LoRA rank", "lora_alpha": "LoRA alpha", "score": "score",
         "mmlu_acc": "MMLU accuracy", "mmlu_continuation_acc": "MMLU accuracy (cloze form)",
         "generated_digit_mmlu_acc": "MMLU accuracy (generated digit)", "mmlu": "MMLU", "mc": "multiple choice", "perplexity": "perplexity",
         "locality": "locality", "variant": "question form", "original": "original questions",
         "paraphrase": "paraphrased questions", "condition": "condition", "1 contents": "1 content",
         "mean": "mean", "log10_lr": "learning rate (log10)", "log10_lora_r": "LoRA rank (log10)",
         "log10_lora_alpha": "LoRA alpha (log10)", "log10_n_irrelevant": "N irrelevant texts (log10)"}


def words(name) -> str:
    """A column name or value as words: the WORDS entry, else without `tag.` and underscores."""
    text = str(name)
    return WORDS.get(text, text.removeprefix("tag.").replace("_", " "))


def _label(ax: plt.Axes, xlabel: str, ylabel: str, title: str | None, legend_title: str | None = None) -> plt.Axes:
    """Axis labels, a 0-1 range for scores, legend and grid: the finish every line/scatter figure shares."""
    ax.set_xlabel(words(xlabel))
    ax.set_ylabel(words(ylabel))
    if ylabel == "score":
        ax.set_ylim(-0.02, 1.02)
    ax.set_title(title or "")
    ax.legend(fontsize=7, title=words(legend_title) if legend_title else None, title_fontsize=7)
    ax.grid(alpha=0.3)
    return ax


def _style(index: int, count: int) -> dict:
    """One marker per line, and the first lines drawn on top: short runs (1 content: 3 steps, all at 0) would
    otherwise hide under the longer ones and the untrained line."""
    return {"marker": "osD^vP*X"[index % 8], "zorder": 3 + count - index}


def score_lines(
    table: pd.DataFrame,
    x: str,
    group: str,
    y: str = "score",
    baseline: float | None = None,
    ax: plt.Axes | None = None,
    xlabel: str | None = None,
    group_label: str | None = None,
    logx: bool = False,
    title: str | None = None,
) -> plt.Axes:
    """Mean `y` vs `x`, one line per value of `group`, with a +-1 sd band over repeated seeds."""
    ax = ax or plt.subplots(figsize=(5, 3.6))[1]
    stats = table.groupby([group, x])[y].agg(["mean", "std", "count"]).reset_index()
    groups = list(stats.groupby(group))
    for i, (value, rows) in enumerate(groups):
        rows = rows.sort_values(x)
        (line,) = ax.plot(rows[x], rows["mean"], label=words(value), **_style(i, len(groups)))
        if (rows["count"] > 1).any():
            ax.fill_between(rows[x], rows["mean"] - rows["std"].fillna(0), rows["mean"] + rows["std"].fillna(0),
                            color=line.get_color(), alpha=0.15)
    if baseline is not None:
        ax.axhline(baseline, color="grey", linestyle="--", label="untrained", zorder=2)
    if logx:
        _log_x(ax, table[x])
    elif pd.api.types.is_integer_dtype(table[x]):  # epochs, steps, counts: no 2.5 ticks
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _label(ax, xlabel or x, y, title, legend_title=group_label or group)


def score_table(table: pd.DataFrame, index: str, columns: str, y: str = "score") -> pd.DataFrame:
    """Mean `y` over seeds as an `index` x `columns` grid (e.g. number of contents x epoch)."""
    return table.pivot_table(index=index, columns=columns, values=y, aggfunc="mean").round(3)


def correlation_bars(correlations: pd.Series, ax: plt.Axes | None = None, title: str | None = None) -> plt.Axes:
    """Horizontal bars of each parameter's correlation with the score (Fig. S1a / Fig. 6a)."""
    ax = ax or plt.subplots(figsize=(5, 0.3 * len(correlations) + 1))[1]
    correlations = correlations.dropna().sort_values()
    ax.barh([words(c) for c in correlations.index], correlations.values,
            color=np.where(correlations.values > 0, "tab:blue", "tab:red"))
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("Pearson r with score")
    ax.set_title(title or "")
    return ax


def trial_heatmap(trials: pd.DataFrame, columns: Sequence[str], score: str = "score",
                  ax: plt.Axes | None = None, title: str | None = None) -> plt.Axes:
    """Trials (rows, sorted by score) x parameters, each column min-max scaled, score as the last column."""
    data = trials.sort_values(score, ascending=False)[list(columns) + [score]].astype(float)
    scaled = (data - data.min()) / (data.max() - data.min()).replace(0, 1)
    ax = ax or plt.subplots(figsize=(0.45 * len(data.columns) + 2, 4))[1]
    image = ax.imshow(scaled.values, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xticks(range(len(data.columns)), [words(c) for c in data.columns], rotation=90, fontsize=7)
    ax.set_ylabel("trials (best first)")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title or "")
    plt.colorbar(image, ax=ax, label="scaled value")
    return ax


def _log_x(ax: plt.Axes, values: pd.Series) -> None:
    """Log x scale labelled with plain numbers (1, 10, 100) rather than 10^k; few distinct values (CPU runs,
    often within one decade) are each labelled. With a 0 among the values, linear up to 1 (symlog)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    if values.min() <= 0:
        ax.set_xscale("symlog", linthresh=1)
    else:
        ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if 0 < values.nunique() <= 12:
        ax.set_xticks(_apart(ax, sorted(values.unique())))


def _apart(ax: plt.Axes, ticks: list[float]) -> list[float]:
    """The ticks, smallest first, without those whose label would touch a kept one (34 and 37 on a 19-66 log axis a
    few inches wide), judged from the axes' width and the tick label font size. The smallest and the largest value
    keep their labels (both, wherever the two fit apart): they say where the axis ends."""
    from matplotlib.font_manager import FontProperties

    position = ax.xaxis.get_transform().transform(np.asarray(ticks, float))
    span = position[-1] - position[0]
    if span <= 0:
        return ticks
    points_per_unit = ax.get_position().width * ax.figure.get_figwidth() * 72 / span / (1 + 2 * ax.margins()[0])
    size = FontProperties(size=plt.rcParams["xtick.labelsize"]).get_size_in_points()
    half_width = lambda tick: 0.3 * size * len(f"{tick:g}")  # about 0.6 em per digit
    apart = lambda i, j: ((position[j] - position[i]) * points_per_unit
                          >= half_width(ticks[i]) + half_width(ticks[j]) + 0.5 * size)
    last = len(ticks) - 1
    kept = [0]
    for i in range(1, last):
        if apart(kept[-1], i):
            kept.append(i)
    while len(kept) > 1 and not apart(kept[-1], last):  # the largest value's label displaces its neighbours
        kept.pop()
    if last and apart(kept[-1], last):
        kept.append(last)
    return [ticks[i] for i in kept]


def score_vs_n(trials: pd.DataFrame, score: str = "score", n: str = "n_irrelevant", best_line: bool = True,
               ax: plt.Axes | None = None, title: str | None = None) -> plt.Axes:
    """Each trial's score against its number of irrelevant texts N (log x), with the best score per N as a line
    (Fig. S1 score-vs-N / Fig. 3a)."""
    ax = ax or plt.subplots(figsize=(5, 3.6))[1]
    data = trials.dropna(subset=[score])
    ax.scatter(data[n], data[score], alpha=0.6, label="trials", zorder=3)
    if best_line and len(data):
        best = data.groupby(n)[score].max().sort_index()
        ax.plot(best.index, best.values, color="tab:red", marker="o", label="best per N")
    _log_x(ax, data[n])
    return _label(ax, "N irrelevant texts", score, title)


def top_lr_vs_n(trials: pd.DataFrame, min_score: float = 0.5, score: str = "score", n: str = "n_irrelevant",
                ax: plt.Axes | None = None, title: str | None = None) -> plt.Axes:
    """Learning rate of the trials scoring >= `min_score` against N, both log (Fig. 3c); says so when none pass."""
    ax = ax or plt.subplots(figsize=(5, 3.6))[1]
    top = trials[trials[score].astype(float) >= min_score] if len(trials) else trials
    if len(top):
        points = ax.scatter(top[n], top["lr"], c=top[score].astype(float), cmap="viridis", vmin=min_score, vmax=1)
        plt.colorbar(points, ax=ax, label=words(score))
        _log_x(ax, top[n])
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, f"no trial reached {score} >= {min_score}", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("N irrelevant texts")
    ax.set_ylabel("learning rate")
    ax.set_title(title or f"lr of trials with {score} >= {min_score}")
    ax.grid(alpha=0.3)
    return ax


def trials_scatter(trials: pd.DataFrame, x: str, y: str, baseline: float | None = None, color: str | None = None,
                   logx: bool = False, ax: plt.Axes | None = None, xlabel: str | None = None,
                   ylabel: str | None = None, title: str | None = None) -> plt.Axes:
    """Each trial's `y` against `x` (e.g. a metric vs total texts, Fig. 6b-d / Fig. S4), optionally coloured by a
    column, with the untrained model's value as a dashed line."""
    ax = ax or plt.subplots(figsize=(5, 3.6))[1]
    data = trials.dropna(subset=[y])
    points = ax.scatter(data[x], data[y].astype(float), c=data[color] if color else None,
                        cmap="viridis" if color else None, label="trials", zorder=3)
    if color and len(data):
        bar = plt.colorbar(points, ax=ax, label=words(color))
        if (data[color] == data[color].round()).all():  # counts (epochs): no 1.2 on the scale
            bar.locator = MaxNLocator(integer=True)
            bar.update_ticks()
    if baseline is not None:
        ax.axhline(baseline, color="grey", linestyle="--", label="untrained")
    if logx:
        _log_x(ax, data[x])
    return _label(ax, xlabel or x, ylabel or y, title)


# Figures with confidence intervals, drawn from `sciknow.stats.summarize` / `paired_differences` tables.
def _ci_err(rows: pd.DataFrame, y: str, low: str, high: str) -> np.ndarray:
    """Error-bar lengths [below, above] from CI bounds; NaN bounds (fewer than two units) draw no bar."""
    mean = rows[y].to_numpy(float)
    return np.clip(np.vstack([mean - rows[low].to_numpy(float), rows[high].to_numpy(float) - mean]), 0, None)


def _one_row_each(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Two rows for the same point would draw a zigzag line or stacked bars: name the duplicate instead."""
    duplicated = table[table.duplicated(list(columns), keep=False)]
    if len(duplicated):
        raise ValueError(f"sciknow.plots.{what}: {len(duplicated)} rows share ({', '.join(columns)}), first: "
                         f"{duplicated.iloc[0][list(columns)].to_dict()}; summarize by these columns only")


def ci_lines(summary: pd.DataFrame, x: str, group: str | None = None, y: str = "mean", low: str = "ci_low",
             high: str = "ci_high", baseline: float | None = None, ax: plt.Axes | None = None,
             xlabel: str | None = None, ylabel: str = "score", group_label: str | None = None, logx: bool = False,
             title: str | None = None) -> plt.Axes:
    """Mean `y` vs `x` with its confidence band, one line per value of `group`; `summary` comes from
    `sciknow.stats.summarize(df, by=[group, x])`."""
    _one_row_each(summary, [c for c in (group, x) if c], "ci_lines")
    ax = ax or plt.subplots(figsize=(5, 3.6))[1]
    groups = list(summary.groupby(group, sort=True)) if group else [(None, summary)]
    for i, (value, rows) in enumerate(groups):
        rows = rows.sort_values(x)
        label = words(value) if group else "mean with 95 % CI"
        (line,) = ax.plot(rows[x], rows[y], label=label, **_style(i, len(groups)))
        ax.fill_between(rows[x], rows[low].astype(float), rows[high].astype(float), color=line.get_color(),
                        alpha=0.15)
    if baseline is not None:
        ax.axhline(baseline, color="grey", linestyle="--", label="untrained", zorder=2)
    if logx:
        _log_x(ax, summary[x])
    elif pd.api.types.is_integer_dtype(summary[x]):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _label(ax, xlabel or x, ylabel, title, legend_title=group_label or group)


def ci_bars(summary: pd.DataFrame, x: str, group: str | None = None, y: str = "mean", low: str = "ci_low",
            high: str = "ci_high", baseline: float | None = None, ax: plt.Axes | None = None,
            xlabel: str | None = None, ylabel: str = "score", title: str | None = None) -> plt.Axes:
    """One bar per value of `x` (e.g. condition) with CI error bars, side by side per value of `group` (e.g.
    variant: original vs paraphrase); `summary` comes from `sciknow.stats.summarize(df, by=[x, group])`."""
    _one_row_each(summary, [c for c in (x, group) if c], "ci_bars")
    categories = list(dict.fromkeys(summary[x]))
    groups = list(summary.groupby(group, sort=True)) if group else [(None, summary)]
    ax = ax or plt.subplots(figsize=(max(4.0, 0.5 * len(summary) + 2), 3.6))[1]
    width = 0.8 / len(groups)
    for i, (value, rows) in enumerate(groups):
        positions = np.array([categories.index(v) for v in rows[x]]) + (i - (len(groups) - 1) / 2) * width
        ax.bar(positions, rows[y].astype(float), width=width, yerr=_ci_err(rows, y, low, high), capsize=3,
               alpha=0.85, label=words(value) if group else "mean with 95 % CI")
    tilt = max(len(words(c)) for c in categories) > 8  # long condition names would overlap
    ax.set_xticks(range(len(categories)), [words(c) for c in categories], rotation=30 if tilt else 0,
                  ha="right" if tilt else "center")
    if baseline is not None:
        ax.axhline(baseline, color="grey", linestyle="--", label="untrained")
    return _label(ax, xlabel or x, ylabel, title, legend_title=group)


def forest(diffs: pd.DataFrame, y: str = "mean", low: str = "ci_low", high: str = "ci_high",
           ax: plt.Axes | None = None, xlabel: str = "difference in score", title: str | None = None) -> plt.Axes:
    """Paired differences with their CIs, one row per comparison (first at the top), and a zero line; `diffs`
    comes from `sciknow.stats.paired_differences`. Rows are labelled from the columns before `baseline`
    (`by` values, then the condition) and the p-value; intervals that exclude 0 are drawn black, others grey."""
    if "baseline" not in diffs.columns:
        raise KeyError(f"sciknow.plots.forest: no 'baseline' column; expected a paired_differences table, got "
                       f"{list(diffs.columns)}")
    keys = list(diffs.columns[:diffs.columns.get_loc("baseline")])
    own_figure = ax is None
    ax = ax or plt.subplots(figsize=(5.5, 0.35 * len(diffs) + 1.4))[1]
    labels = []
    for i, (_, row) in enumerate(diffs.iterrows()):
        position = len(diffs) - 1 - i
        excludes_zero = row[low] > 0 or row[high] < 0
        ax.errorbar([row[y]], [position], xerr=_ci_err(row.to_frame().T, y, low, high), fmt="o", capsize=3,
                    color="black" if excludes_zero else "grey")
        context = ", ".join(words(row[k]) for k in keys[:-1])
        p = f" (p = {row['p_value']:.2g})" if "p_value" in diffs.columns and pd.notna(row["p_value"]) else ""
        compared = f"{words(row[keys[-1]])} minus {words(row['baseline'])}" if keys else f"minus {row['baseline']}"
        labels.append(f"{context + ': ' if context else ''}{compared}{p}")
    ax.set_yticks(range(len(diffs))[::-1], labels, fontsize=8)
    ax.set_ylim(-0.7, len(diffs) - 0.3)
    ax.axvline(0, color="black", linewidth=0.8, linestyle="--", label="no difference")
    _label(ax, xlabel, "", None)
    # Right-aligned over the plot, a title longer than the plot runs over the (empty) space above the row labels
    # instead of past the figure's edge.
    ax.set_title(title or "", loc="right")
    if own_figure:
        ax.figure.tight_layout()  # the row labels are long: keep them inside the saved figure
    return ax


def qa_funnel(qa_counts: dict, held_out: dict, ax: plt.Axes | None = None, title: str | None = None) -> plt.Axes:
    """Where the generated questions went (notebook 06): pairs parsed, repeats removed (same text, same meaning),
    training pairs, held-out descriptive and multiple-choice items. `qa_counts` is a dataset manifest's "qa",
    `held_out` its counts["tests"] (the items written, after the leak check)."""
    steps = {"pairs written": qa_counts["pairs"], "same text as earlier": qa_counts["duplicate_questions"],
             "same meaning as earlier": qa_counts.get("similar_questions", 0),
             "training pairs": qa_counts["train_pairs"], "held-out Q&A": held_out["qa"],
             "held-out multiple choice": held_out["mc"]}
    ax = ax or plt.subplots(figsize=(5.5, 2.8))[1]
    names = list(steps)[::-1]
    bars = ax.barh(names, [steps[n] for n in names],
                   color=["tab:green", "tab:green", "tab:blue", "tab:red", "tab:red", "tab:grey"])
    ax.bar_label(bars, padding=2, fontsize=8)
    ax.set_xlabel("items")
    ax.set_title(title or "")
    ax.grid(axis="x", alpha=0.3)
    return ax


def training_cost(cost: pd.DataFrame, lr: str = "lr", axes: Sequence[plt.Axes] | None = None,
                  acc: str = "mmlu_continuation_acc") -> plt.Axes:
    """What training cost, per learning rate and epoch (notebook 09's cost table: `lr`, epoch, score and the probes
    MMLU accuracy `acc` (+ `acc`_se), perplexity, locality, epoch 0 = before training), and a last panel of each
    trained epoch's keyword score against its change in MMLU accuracy. Returns the last axes."""
    metrics = [m for m in (acc, "perplexity", "locality") if m in cost]
    if axes is None:
        axes = plt.subplots(1, len(metrics) + 1, figsize=(4 * (len(metrics) + 1), 3.6))[1]
    rates = sorted(cost[lr].unique())
    for ax, metric in zip(axes, metrics):
        for i, (rate, rows) in enumerate(cost.groupby(lr)):
            err = rows[f"{acc}_se"] if metric == acc and f"{acc}_se" in rows else None
            ax.errorbar(rows["epoch"], rows[metric], yerr=err, capsize=3, label=f"learning rate {rate:g}",
                        **_style(i, len(rates)))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="epoch (0 = before training)", ylabel=words(metric), title=f"{words(metric)} while training")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    last = axes[-1]
    if acc in cost:
        before = cost[cost["epoch"] == 0].set_index(lr)[acc]
        for i, (rate, rows) in enumerate(cost[cost["epoch"] > 0].groupby(lr)):
            last.scatter(rows[acc] - before[rate], rows["score"], label=f"learning rate {rate:g}",
                         marker=_style(i, len(rates))["marker"])
        last.axvline(0, color="grey", linewidth=0.8, linestyle="--")
        last.set(xlabel="change in MMLU accuracy", ylabel="keyword score", title="knowledge gained vs MMLU lost")
        last.legend(fontsize=7)
        last.grid(alpha=0.3)
    last.figure.tight_layout()
    return last


def frontier(table: pd.DataFrame, x: str = "gain", y: str = "mmlu_loss", ax: plt.Axes | None = None,
             xlabel: str = "knowledge gained (keyword score, trained - untrained)",
             ylabel: str = "MMLU accuracy lost (untrained - trained)", title: str | None = None) -> plt.Axes:
    """Knowledge gained (x) against general ability lost (y): one point per recipe (a `conditions.frontier_table`
    row) with 95 % CI whiskers on both axes, and the Pareto front (column `pareto`: the recipes no other recipe
    beats on both) joined by a line. Good recipes sit bottom right."""
    _one_row_each(table, ["recipe"], "frontier")
    ax = ax or plt.subplots(figsize=(6.5, 4.5))[1]
    for _, row in table.iterrows():
        ax.errorbar(row[x], row[y], xerr=_ci_err(table.loc[[row.name]], x, f"{x}_low", f"{x}_high"),
                    yerr=_ci_err(table.loc[[row.name]], y, f"{y}_low", f"{y}_high"), fmt="o", capsize=3,
                    label=row["recipe"], markeredgecolor="black" if row.get("pareto") else None)
    front = table[table["pareto"]].sort_values(x) if "pareto" in table else table.iloc[:0]
    if len(front):
        ax.plot(front[x], front[y], "k--", lw=1, zorder=0, label="Pareto front")
    ax.axhline(0, color="grey", lw=0.8)
    return _label(ax, xlabel, ylabel, title)


def coverage_scatter(documents: pd.DataFrame, ax: plt.Axes | None = None, variant: str = "original",
                     title: str | None = "Per document: keyword coverage vs score") -> plt.Axes:
    """Does what the rewrites carry explain the score? One point per document and condition (a
    `conditions.machine_tables(...)["documents"]` table): the rewrites' keyword coverage against the score."""
    _one_row_each(documents[documents["variant"] == variant], ["condition", "document"], "coverage_scatter")
    ax = ax or plt.subplots(figsize=(5.5, 4))[1]
    for i, (name, rows) in enumerate(documents[documents["variant"] == variant].groupby("condition")):
        ax.scatter(rows["keyword_coverage"], rows["score"], label=name, marker="os"[i % 2], alpha=0.8)
    return _label(ax, "share of the question keywords the rewrites carry", f"keyword score, {variant} questions",
                  title, legend_title="condition")
