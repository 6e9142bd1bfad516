"""`sciknow.stats` on constructed per-question scores with known answers, and the CI plots drawn from its tables."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import scipy.stats  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from benchmarks import ci_coverage  # noqa: E402
from sciknow import plots, stats  # noqa: E402


def scores(n_documents: int = 8, n_seeds: int = 3, n_questions: int = 5, shifts: dict | None = None,
           noise: float = 0.1, data_seed: int = 0) -> pd.DataFrame:
    """Per-question scores: each document has its own level (the between-document spread the CI is about),
    each condition adds its shift, and every (condition, document, seed, question) gets independent noise."""
    rng = np.random.default_rng(data_seed)
    shifts = shifts or {"base": 0.0}
    rows = []
    for d in range(n_documents):
        level = rng.uniform(0.3, 0.7)
        for seed in range(n_seeds):
            for q in range(n_questions):
                for condition, shift in shifts.items():
                    rows.append({"condition": condition, "document": f"doc{d}", "seed": seed,
                                 "question_id": f"q{q}", "steps": 10 * (seed + 1),
                                 "score": level + shift + rng.normal(0, noise)})
    return pd.DataFrame(rows)


def test_mean_is_documents_then_questions_then_seeds_with_unequal_question_counts():
    df = pd.DataFrame([
        # doc A: two questions, two seeds; q1 averages to 0.75, q2 to 0, so A = 0.375
        ("A", 0, "q1", 1.0), ("A", 1, "q1", 0.5), ("A", 0, "q2", 0.0), ("A", 1, "q2", 0.0),
        # doc B: three questions, one seed: B = 2/3
        ("B", 0, "q1", 1.0), ("B", 0, "q2", 1.0), ("B", 0, "q3", 0.0),
    ], columns=["document", "seed", "question_id", "score"])
    ci = stats.cluster_bootstrap(df, method="percentile")
    assert ci.mean == pytest.approx((0.375 + 2 / 3) / 2)  # not the row mean 3.5 / 7
    assert (ci.n_documents, ci.n_seeds, ci.n_questions, ci.unit) == (2, 2, 5, "document")
    # questions move with their document: a resample is A,A / A,B / B,B, so the bounds are the two document means
    assert (ci.low, ci.high) == pytest.approx((0.375, 2 / 3))
    # the default t interval is on the same two document means
    t = scipy.stats.ttest_1samp([0.375, 2 / 3], 0).confidence_interval(0.95)
    assert (stats.cluster_bootstrap(df).low, stats.cluster_bootstrap(df).high) == pytest.approx((t.low, t.high))


def test_identical_conditions_give_zero_difference():
    base = scores()
    same = base.assign(condition="same")
    d = stats.paired_difference(pd.concat([base, same]), "condition", "same", "base")
    assert (d.mean, d.low, d.high, d.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert (d.n_documents, d.n_seeds, d.n_questions, d.n_pairs) == (8, 3, 40, 120)


def test_same_distribution_covers_zero_and_a_shift_excludes_it():
    df = scores(shifts={"base": 0.0, "same": 0.0, "better": 0.1})
    same = stats.paired_difference(df, "condition", "same", "base")
    assert same.low < 0 < same.high
    assert same.p_value > 0.2
    better = stats.paired_difference(df, "condition", "better", "base")
    wide = df.pivot_table(index=["document", "seed", "question_id"], columns="condition", values="score")
    assert better.mean == pytest.approx((wide["better"] - wide["base"]).mean())  # balanced: the plain mean
    assert 0 < better.low < better.mean < better.high
    assert better.p_value < 0.05
    assert better.p_value == pytest.approx(2 / 2 ** 8)  # exact test: all 8 documents differ in the same direction


def test_ci_narrows_as_documents_are_added():
    # every block of 4 documents has the same four levels, so the spread stays put and only n changes
    df = scores(n_documents=64, n_seeds=1, noise=0.0)
    df["score"] = df["document"].str[3:].astype(int).map(lambda d: [0.3, 0.45, 0.55, 0.7][d % 4])
    widths = []
    for n in (4, 16, 64):
        ci = stats.cluster_bootstrap(df[df["document"].isin([f"doc{d}" for d in range(n)])])
        assert ci.n_documents == n and ci.mean == pytest.approx(0.5)
        widths.append(ci.high - ci.low)
    assert widths[0] > 1.5 * widths[1] > 2.25 * widths[2]  # roughly halves per 4x documents (1 / sqrt(n))


def test_same_seed_same_ci_other_seed_slightly_different():
    df = scores(n_documents=20)
    assert stats.cluster_bootstrap(df, seed=0) == stats.cluster_bootstrap(df, seed=1)  # the t interval draws nothing
    first, again, other = (stats.cluster_bootstrap(df, seed=s, method="percentile") for s in (0, 0, 1))
    assert first == again
    assert (first.low, first.high) != (other.low, other.high)
    assert first.low == pytest.approx(other.low, abs=0.02) and first.high == pytest.approx(other.high, abs=0.02)
    # 20 documents: 2**20 sign flips exceed n_resamples, so the p-value is Monte Carlo and follows the seed too
    pair = scores(n_documents=20, shifts={"base": 0.0, "same": 0.0})
    p0, p0_again, p1 = (stats.paired_difference(pair, "condition", "same", "base", seed=s).p_value for s in (0, 0, 1))
    assert p0 == p0_again and p0 != p1 and abs(p0 - p1) < 0.05


def test_one_document_resamples_its_questions_and_one_question_gives_nan():
    df = scores(n_documents=1, shifts={"base": 0.0, "better": 0.2})
    table = stats.summarize(df, by=["condition"])
    assert list(table["unit"]) == ["question_id", "question_id"]
    assert (table["ci_low"] < table["mean"]).all() and (table["mean"] < table["ci_high"]).all()
    d = stats.paired_difference(df, "condition", "better", "base")
    assert d.unit == "question_id" and d.low > 0 and d.p_value == pytest.approx(2 / 2 ** 5)
    single = stats.cluster_bootstrap(df[(df["condition"] == "base") & (df["question_id"] == "q0")])
    assert single.n_questions == 1 and math.isnan(single.low) and math.isnan(single.high)
    assert not math.isnan(single.mean)


def test_summarize_groups_counts_and_carried_columns():
    df = scores(n_documents=4, n_seeds=2, shifts={"base": 0.0, "better": 0.2})
    df["tokens"] = df["steps"] * 100
    table = stats.summarize(df, by=["condition"])
    assert list(table["condition"]) == ["base", "better"]
    assert list(table.columns) == ["condition", "mean", "ci_low", "ci_high", "n_documents", "n_seeds", "n_questions",
                                   "unit", "steps", "tokens"]
    assert table[["n_documents", "n_seeds", "n_questions"]].values.tolist() == [[4, 2, 20], [4, 2, 20]]
    assert table["steps"].tolist() == [15.0, 15.0] and table["tokens"].tolist() == [1500.0, 1500.0]  # medians
    base = stats.cluster_bootstrap(df[df["condition"] == "base"])
    assert table.iloc[0][["mean", "ci_low", "ci_high"]].tolist() == [base.mean, base.low, base.high]
    by_seed = stats.summarize(df, by=["condition", "seed"])
    assert len(by_seed) == 4 and (by_seed["n_seeds"] == 1).all() and by_seed["steps"].tolist() == [10, 20, 10, 20]


def test_paired_differences_table_every_condition_vs_baseline():
    df = scores(shifts={"base": 0.0, "same": 0.0, "better": 0.2})
    df = pd.concat([df.assign(epoch=1), df.assign(epoch=2, score=df["score"] + 0.05)])
    table = stats.paired_differences(df, "condition", "base", by=["epoch"])
    assert table[["epoch", "condition"]].values.tolist() == [[1, "better"], [1, "same"], [2, "better"], [2, "same"]]
    assert (table["baseline"] == "base").all() and (table["n_pairs"] == 120).all()
    assert (table["p_bh"] >= table["p_value"]).all()
    better = table[table["condition"] == "better"]
    assert (better["ci_low"] > 0).all()
    # rows of one condition only in one of the two conditions are left out of the pairs
    partial = df[(df["epoch"] == 1) & ~((df["condition"] == "better") & (df["seed"] == 2))]
    assert stats.paired_difference(partial, "condition", "better", "base").n_pairs == 80


def test_errors_name_the_column_and_the_value():
    df = scores(n_documents=2)
    with pytest.raises(KeyError, match="question"):
        stats.cluster_bootstrap(df.drop(columns="question_id"))
    with pytest.raises(ValueError, match=r"share a \(document, seed, question_id\) key"):
        stats.cluster_bootstrap(pd.concat([df, df]))
    with pytest.raises(ValueError, match="NaN"):
        stats.cluster_bootstrap(df.assign(score=np.where(df.index == 3, np.nan, df["score"])))
    with pytest.raises(ValueError, match="'worse'"):
        stats.paired_difference(df, "condition", "worse", "base")
    with pytest.raises(ValueError, match="confidence"):
        stats.cluster_bootstrap(df, confidence=95)
    with pytest.raises(ValueError, match="method must be one of .* got 'bca'"):
        stats.summarize(df, by=["condition"], method="bca")


def test_default_interval_keeps_its_95_percent_promise_where_the_percentile_bootstrap_does_not():
    # 8 documents shaped like the suite's (benchmarks/ci_coverage.py); 1000 studies: Monte Carlo SE 0.007
    mid, paired = ci_coverage.SCENARIOS[2], ci_coverage.SCENARIOS[3]
    for scenario in (mid, paired):
        assert ci_coverage.coverage(scenario, 8, "t", reps=1000) >= 0.93, scenario.name
    assert ci_coverage.coverage(paired, 8, "percentile", reps=1000) < 0.915


def test_interval_methods_on_flat_and_tiny_samples():
    for method in stats.CI_METHODS:
        assert stats.interval(np.zeros(8), method) == (0.0, 0.0)  # every document at 0: no spread, no NaN
        assert all(math.isnan(b) for b in stats.interval(np.array([0.5]), method))
        low, high = stats.interval(np.array([[0.1, 0.3, 0.2], [0.4, 0.4, 0.4]]), method)
        assert low[0] < 0.2 < high[0] and (low[1], high[1]) == pytest.approx((0.4, 0.4))


def test_plots_draw_one_line_bar_and_row_per_entry(tmp_path):
    df = scores(n_documents=6, shifts={"base": 0.0, "same": 0.0, "better": 0.2})
    df["variant"] = np.where(df["question_id"].isin(["q0", "q1"]), "paraphrase", "original")

    ax = plots.ci_lines(stats.summarize(df, by=["condition", "steps"]), x="steps", group="condition", baseline=0.0)
    assert len(ax.lines) == 3 + 1  # a line per condition and the untrained line
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 3  # a CI band per condition
    ax.figure.savefig(tmp_path / "lines.png")

    ax = plots.ci_bars(stats.summarize(df, by=["condition", "variant"]), x="condition", group="variant")
    assert len(ax.patches) == 6 and len(ax.containers) == 2 * 2  # 3 conditions x 2 variants, each bar set with CIs
    ax.figure.savefig(tmp_path / "bars.png")

    diffs = stats.paired_differences(df, "condition", "base", by=["variant"])
    ax = plots.forest(diffs)
    assert len(ax.containers) == 4 and len(ax.get_yticklabels()) == 4
    assert "original questions: better minus base (p = " in ax.get_yticklabels()[0].get_text()
    ax.figure.savefig(tmp_path / "forest.png")

    one = stats.summarize(df[(df["document"] == "doc0") & (df["question_id"] == "q0")], by=["condition"])
    ax = plots.ci_bars(one, x="condition")  # NaN bounds: bars without error bars, no crash
    ax.figure.savefig(tmp_path / "nan.png")
    assert all((tmp_path / f"{name}.png").stat().st_size > 0 for name in ("lines", "bars", "forest", "nan"))
    plt.close("all")
