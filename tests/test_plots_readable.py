"""Figures a reader understands without the code: every text on them in words (no `tag.n_contents`, no
`variant=original`, no `mmlu_acc`), titles inside the figure, and short runs not hidden under longer ones.
The tables are synthetic, shaped like notebooks 01, 08 and 09's."""
from __future__ import annotations

import re

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import pytest

from sciknow import plots

matplotlib.use("Agg")
RAW = re.compile(r"tag\.|\w=\w|\w_\w")  # a column name or a `key=value` label


def texts(fig: plt.Figure) -> list[str]:
    """Every visible text of a figure: titles, axis labels, tick labels, legend entries and titles."""
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]


def assert_readable(fig: plt.Figure) -> None:
    fig.canvas.draw()
    raw = [t for t in texts(fig) if RAW.search(t)]
    assert not raw, f"internal names on screen: {raw}"
    box = fig.bbox
    for ax in fig.axes:
        for title in (ax.title, ax._left_title, ax._right_title):
            if title.get_text():
                extent = title.get_window_extent()
                assert box.x0 - 1 <= extent.x0 and extent.x1 <= box.x1 + 1, f"title cut off: {title.get_text()!r}"
    plt.close(fig)


def steps_table() -> pd.DataFrame:
    rows = []
    for condition, steps, top in [("1 contents", range(1, 4), 0.0), ("5 contents", range(5, 16, 5), 0.46),
                                  ("step-matched", range(1, 16), 0.33)]:
        rows += [{"condition": condition, "steps": s, "mean": top * s / 15, "ci_low": 0.0, "ci_high": top}
                 for s in steps]
    return pd.DataFrame(rows)


def test_score_lines_name_the_groups_in_words_and_keep_the_shortest_run_on_top():
    per_epoch = pd.DataFrame([{"tag.n_contents": n, "epoch": e, "score": 0.1 * n * e / 5}
                              for n in (1, 3, 5) for e in (1, 2, 3)])
    ax = plots.score_lines(per_epoch, x="epoch", group="tag.n_contents", baseline=0.0, title="Score vs epochs")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["1", "3", "5", "untrained"]
    assert ax.get_legend().get_title().get_text() == "contents"
    assert_readable(ax.figure)


def test_ci_lines_draw_the_one_content_line_above_the_others():
    ax = plots.ci_lines(steps_table(), x="steps", group="condition", baseline=0.0, xlabel="optimizer steps",
                        ylabel="keyword score", title="Score vs steps, 95 % CI over documents")
    lines = {line.get_label(): line for line in ax.lines}
    assert set(lines) == {"1 content", "5 contents", "step-matched", "untrained"}
    assert lines["1 content"].get_zorder() > max(lines[k].get_zorder() for k in lines if k != "1 content")
    assert len({line.get_marker() for line in ax.lines if line.get_label() != "untrained"}) == 3
    assert_readable(ax.figure)


def test_ci_bars_say_question_form_in_words():
    final = pd.DataFrame([{"condition": c, "variant": v, "mean": 0.3, "ci_low": 0.2, "ci_high": 0.4}
                          for c in ("1 contents", "5 contents") for v in ("original", "paraphrase")])
    ax = plots.ci_bars(final, x="condition", group="variant", ylabel="keyword score", title="Original vs paraphrased")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["original questions", "paraphrased questions"]
    assert_readable(ax.figure)


@pytest.mark.parametrize("own_figure", [True, False])
def test_forest_rows_in_words_and_its_long_title_inside_the_figure(own_figure):
    diffs = pd.DataFrame([{"variant": v, "comparison": f"{n} steps", "tag.condition": c, "baseline": "step-matched",
                           "mean": m, "ci_low": m - 0.1, "ci_high": m + 0.1, "p_value": 0.016}
                          for v in ("original", "paraphrase")
                          for n, c, m in [(12, "translations", -0.2), (15, "5 contents", 0.13)]])
    ax = None if own_figure else plt.subplots(figsize=(9, 2.6))[1]
    ax = plots.forest(diffs, ax=ax, title="Minus the step-matched control, at matched steps")
    ax.figure.tight_layout()
    assert ax.get_yticklabels()[0].get_text() == \
        "original questions, 12 steps: translations minus step-matched (p = 0.016)"
    assert_readable(ax.figure)


def test_coverage_scatter_one_point_per_document_and_condition():
    documents = pd.DataFrame([{"condition": c, "document": d, "variant": v, "score": 0.1 * i, "texts": 2,
                               "keyword_coverage": 0.5 + 0.1 * i}
                              for c in ("machine rewrites", "machine rewrites+partial")
                              for i, d in enumerate(("astro-sevrinne", "chem-borivane"))
                              for v in ("original", "paraphrase")])
    ax = plots.coverage_scatter(documents)
    assert [len(c.get_offsets()) for c in ax.collections] == [2, 2]  # the original questions only
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["machine rewrites", "machine rewrites+partial"]
    assert_readable(ax.figure)
    with pytest.raises(ValueError, match="coverage_scatter: 2 rows share"):
        plots.coverage_scatter(pd.concat([documents, documents.iloc[:1]]))


def test_training_cost_labels_its_metrics_and_the_scatter():
    cost = pd.DataFrame([{"tag.lr": lr, "epoch": e, "score": float("nan") if e == 0 else 0.1 * e * i,
                          "mmlu_continuation_acc": 0.3 - 0.02 * e * i, "mmlu_continuation_acc_se": 0.03, "perplexity": 25 + 10 * e * i,
                          "locality": 1 - 0.3 * e} for i, lr in enumerate((1e-5, 1e-4, 1e-3)) for e in (0, 1, 2)])
    last = plots.training_cost(cost, lr="tag.lr")
    fig = last.figure
    assert [ax.get_title() for ax in fig.axes] == ["MMLU accuracy (cloze form) while training", "perplexity while training",
                                                   "locality while training", "knowledge gained vs MMLU lost"]
    assert [t.get_text() for t in last.get_legend().get_texts()] == [
        "learning rate 1e-05", "learning rate 0.0001", "learning rate 0.001"]  # the scatter says which point is which
    assert all(tick == int(tick) for tick in fig.axes[0].get_xticks())  # epochs, not 0.5 steps
    assert_readable(fig)


def test_sweep_figures_name_parameters_in_words():
    trials = pd.DataFrame({"log10_lora_r": [0.0, 1.0, 2.0], "log10_lr": [-4.0, -3.5, -3.0],
                           "content_C3": [0, 1, 1], "n_irrelevant": [1, 3, 10], "score": [0.1, 0.4, 0.2]})
    correlations = trials.drop(columns="score").corrwith(trials["score"])
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    plots.correlation_bars(correlations, ax=axes[0], title="Correlation with score")
    plots.trial_heatmap(trials, ["log10_lora_r", "log10_lr", "content_C3", "n_irrelevant"], ax=axes[1],
                        title="Trials: parameters vs score")
    plots.score_vs_n(trials, ax=axes[2], title="Score vs N irrelevant texts")
    fig.tight_layout()
    assert "LoRA rank (log10)" in [t.get_text() for t in axes[0].get_yticklabels()]
    assert_readable(fig)


@pytest.mark.parametrize("xs, scale", [([135, 268, 630], "log"), ([0, 10, 100, 1000], "symlog")])
def test_a_log_x_axis_is_labelled_at_the_data_in_plain_numbers(xs, scale):
    """Model sizes within one decade (notebook 10) or counts from 0 (notebook 02's N irrelevant texts): each
    value is a labelled tick, written as a number (no 10^k), on both line plots that take `logx`."""
    summary = pd.DataFrame({"x": xs, "mean": 0.3, "ci_low": 0.2, "ci_high": 0.4, "run": "5 contents"})
    seeds = summary.rename(columns={"mean": "score"}).assign(seed=0)
    for draw in (lambda ax: plots.ci_lines(summary, x="x", group="run", ax=ax, logx=True, xlabel="parameters"),
                 lambda ax: plots.score_lines(seeds, x="x", group="run", y="score", ax=ax, logx=True)):
        fig, ax = plt.subplots()
        draw(ax)
        fig.canvas.draw()
        assert ax.get_xscale() == scale
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(x) for x in xs]
        plt.close(fig)


def test_log_x_tick_labels_close_together_are_thinned_not_overlapping():
    """Notebook 07's trials at 19, 29, 34, 37 and 66 texts, on one of four panels: 34 and 37 would print as
    '3437'. Every kept label is apart from the next; the extreme values stay labelled."""
    trials = pd.DataFrame({"total_texts": [19, 29, 34, 37, 66], "score": [0.16, 0.17, 0.165, 0.161, 0.162],
                           "epochs": [1, 1, 2, 2, 2]})
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    ax = plots.trials_scatter(trials, "total_texts", "score", color="epochs", logx=True, ax=axes[1])
    fig.tight_layout()
    fig.canvas.draw()
    colorbar = fig.axes[-1]  # epochs are counts: whole numbers on its scale
    assert {t.get_text() for t in colorbar.get_yticklabels() if t.get_text()} == {"1", "2"}
    labels = [t for t in ax.get_xticklabels() if t.get_text()]
    assert [t.get_text() for t in labels][0] == "19" and [t.get_text() for t in labels][-1] == "66"
    assert len(labels) in (3, 4)
    boxes = [t.get_window_extent() for t in labels]
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:])), [(t.get_text(), b.x0, b.x1) for t, b in zip(labels, boxes)]
    plt.close(fig)


def test_the_largest_value_keeps_its_label_when_its_neighbour_would_touch_it():
    """19, 64 and 66 texts: 64 and 66 would touch, and the label that goes is 64's, not the axis end's."""
    trials = pd.DataFrame({"total_texts": [19, 64, 66], "score": [0.16, 0.17, 0.165], "epochs": [1, 1, 2]})
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    ax = plots.trials_scatter(trials, "total_texts", "score", color="epochs", logx=True, ax=axes[1])
    fig.tight_layout()
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels() if t.get_text()] == ["19", "66"]
    plt.close(fig)
