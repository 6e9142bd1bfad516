"""Means with confidence intervals over documents (clusters), and paired differences between conditions.

Input: a DataFrame of per-question scores, one row per (condition..., document, seed, question): columns
`document`, `seed`, `question_id`, `score`, plus condition columns (`condition`, `steps`, `epoch`, `variant`...).
The column names are parameters (`cluster`, `replicate`, `nested`, `value`).

Design choices:

* **Estimand.** The mean over documents of each document's mean score, where a document's score is the mean
  over its questions of the mean over seeds. Every document weighs the same, and every question the same
  within its document, so a document with more questions does not dominate.
* **Seeds are averaged within (document, question) before resampling.** Seeds repeat training on the same
  facts; the population the claim is about is documents (facts), so documents are the resampling unit.
  Resampling only the top level of a nested design carries the variance of every level below it (seed and
  question noise enter through each document's mean); resampling questions or seeds as well would count
  that variance twice (Davison & Hinkley 1997, sec. 3.8; Ren et al. 2010).
* **CI**: by default a t interval on the document means (mean +- t(n-1) x SD / sqrt(n)): on data shaped like
  the suite's it came closest to its 95 % promise, where percentile and BCa bootstrap intervals over 8-24
  documents covered less (coverage table in the README, from `python -m benchmarks.ci_coverage`).
  `method="percentile"`, `"basic"` or `"BCa"` use `scipy.stats.bootstrap` on a `numpy.random.default_rng(seed)`
  Generator instead (the same seed gives the same CI). A sample without spread (every document at 0) gets the
  interval [mean, mean].
* **One document**: there is no between-document spread, so the CI falls back to the questions of that
  document as the units (`unit` says which level). That interval is about this one document's questions, not
  about documents in general. Fewer than two units at both levels: NaN bounds.
* **Paired differences**: a - b on rows with the same (document, seed, question), aggregated as above; the CI
  is the same interval over documents, of the per-document mean differences. The p-value is a two-sided
  sign-flip permutation test over those per-document differences (`scipy.stats.permutation_test`; null: within
  each document the two conditions are exchangeable). It is exact when 2**n_documents <= n_resamples and
  Monte Carlo with the seed otherwise. With n units the smallest possible p is 2 / 2**n, so p < 0.05 needs
  at least 6 documents.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.stats


@dataclass(frozen=True)
class CI:
    """A mean with its confidence interval; `unit` is the column whose values were resampled."""

    mean: float
    low: float
    high: float
    n_documents: int
    n_seeds: int
    n_questions: int  # distinct (document, question) items
    unit: str


@dataclass(frozen=True)
class Difference:
    """Mean of (a - b) over paired rows, its confidence interval and a two-sided p-value."""

    mean: float
    low: float
    high: float
    p_value: float
    n_documents: int
    n_seeds: int
    n_questions: int
    n_pairs: int  # paired rows (document, seed, question) present in both conditions
    unit: str


def _keys(cluster: str, replicate: str | None, nested: str | None) -> list[str]:
    return [c for c in (cluster, replicate, nested) if c is not None]


def _check(df: pd.DataFrame, columns: Sequence[str], value: str, keys: Sequence[str], what: str = "") -> None:
    """Columns present, no NaN in them, and at most one row per key (else conditions were mixed by mistake)."""
    missing = [c for c in [*columns, value] if c not in df.columns]
    if missing:
        raise KeyError(f"sciknow.stats: column(s) {missing} missing; the table has {list(df.columns)}")
    if df.empty:
        raise ValueError(f"sciknow.stats: no rows{what}")
    bad = df[df[[*columns, value]].isna().any(axis=1)]
    if len(bad):
        raise ValueError(f"sciknow.stats: {len(bad)} row(s){what} have NaN in {[*columns, value]}, "
                         f"first: {bad.iloc[0][[*columns, value]].to_dict()}; drop or fill them first")
    duplicated = df[df.duplicated(list(keys), keep=False)]
    if len(duplicated):
        raise ValueError(f"sciknow.stats: {len(duplicated)} rows{what} share a ({', '.join(keys)}) key, first: "
                         f"{duplicated.iloc[0][list(keys)].to_dict()}; select or group by the other columns "
                         f"(e.g. by=['epoch'])")


def _units(df: pd.DataFrame, value: str, cluster: str, nested: str | None) -> tuple[np.ndarray, str, int]:
    """The values to resample: per-document means, or the one document's per-question means; and the
    number of (document, question) items."""
    if nested is None:
        items = df.groupby(cluster)[value].mean()
        return items.to_numpy(float), cluster, len(items)
    items = df.groupby([cluster, nested])[value].mean()  # averages the seeds of each question
    documents = items.groupby(level=0).mean()
    if len(documents) == 1 and len(items) > 1:
        return items.to_numpy(float), nested, len(items)
    return documents.to_numpy(float), cluster, len(items)


CI_METHODS = ("t", "percentile", "basic", "BCa")


def interval(values: np.ndarray, method: str = "t", n_resamples: int = 2000, confidence: float = 0.95,
             seed: int = 0) -> tuple:
    """Confidence interval of the mean of `values` along the last axis: `method` "t" (Student t on the values) or
    a `scipy.stats.bootstrap` method. 1-D values give two floats; 2-D values (one sample per row, as coverage
    simulations use) give two arrays. Fewer than two values: NaN bounds; no spread: [mean, mean]."""
    _check_options(n_resamples, confidence, method)
    values = np.asarray(values, float)
    n = values.shape[-1]
    mean = values.mean(axis=-1)
    if n < 2:
        low = high = np.full_like(mean, np.nan)
    elif method == "t":
        half = scipy.stats.t.ppf((1 + confidence) / 2, n - 1) * values.std(axis=-1, ddof=1) / np.sqrt(n)
        low, high = mean - half, mean + half
    else:
        flat = np.ptp(values, axis=-1) == 0
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)  # flat samples: set just below
            ci = scipy.stats.bootstrap((values,), np.mean, axis=-1, n_resamples=n_resamples,
                                       confidence_level=confidence, method=method,
                                       rng=np.random.default_rng(seed)).confidence_interval
        low, high = np.where(flat, mean, ci.low), np.where(flat, mean, ci.high)
    if values.ndim == 1:
        return float(low), float(high)
    return low, high


def _sign_flip_p(values: np.ndarray, n_resamples: int, seed: int) -> float:
    if len(values) < 2:
        return float("nan")
    result = scipy.stats.permutation_test((values,), np.mean, permutation_type="samples",
                                          n_resamples=n_resamples, alternative="two-sided",
                                          rng=np.random.default_rng(seed))
    return float(min(result.pvalue, 1.0))


def _sorted(column: pd.Series) -> list:
    """Distinct values in natural order (numbers numerically), falling back to text order for mixed types."""
    values = column.dropna().unique().tolist()
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def _check_options(n_resamples: int, confidence: float, method: str = "t") -> None:
    if method not in CI_METHODS:
        raise ValueError(f"sciknow.stats: method must be one of {CI_METHODS}, got {method!r}")
    if not (isinstance(n_resamples, (int, np.integer)) and n_resamples >= 1):
        raise ValueError(f"sciknow.stats: n_resamples must be a positive int, got {n_resamples!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"sciknow.stats: confidence must be in (0, 1), got {confidence!r}")


def cluster_bootstrap(df: pd.DataFrame, value: str = "score", cluster: str = "document",
                      nested: str | None = "question_id", replicate: str | None = "seed",
                      n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0,
                      method: str = "t") -> CI:
    """Mean of `value` (documents weigh equally, questions equally within a document, seeds averaged) with a
    CI over `cluster` (a t interval on the cluster means, or a bootstrap `method`); one cluster falls back to its
    `nested` units (see the module docstring).
    `df` must hold one condition: at most one row per (cluster, replicate, nested)."""
    _check_options(n_resamples, confidence, method)
    keys = _keys(cluster, replicate, nested)
    _check(df, keys, value, keys)
    units, unit, n_items = _units(df, value, cluster, nested)
    low, high = interval(units, method, n_resamples, confidence, seed)
    return CI(mean=float(units.mean()), low=low, high=high, n_documents=int(df[cluster].nunique()),
              n_seeds=int(df[replicate].nunique()) if replicate else 1, n_questions=n_items, unit=unit)


def summarize(df: pd.DataFrame, by: Sequence[str], value: str = "score", cluster: str = "document",
              nested: str | None = "question_id", replicate: str | None = "seed",
              carry: Sequence[str] = ("steps", "tokens"), n_resamples: int = 2000, confidence: float = 0.95,
              seed: int = 0, method: str = "t") -> pd.DataFrame:
    """One row per group of `by`: the `by` values, mean, ci_low, ci_high, n_documents, n_seeds, n_questions,
    unit, and each `carry` column present in `df` (its value if unique in the group, else its median)."""
    by = list(by)
    missing = [c for c in by if c not in df.columns]
    if missing:
        raise KeyError(f"sciknow.stats.summarize: by column(s) {missing} missing; the table has {list(df.columns)}")
    carried = [c for c in carry if c in df.columns and c not in by]
    groups = df.groupby(by, sort=True, dropna=False) if by else [((), df)]
    rows = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        ci = cluster_bootstrap(group, value=value, cluster=cluster, nested=nested, replicate=replicate,
                               n_resamples=n_resamples, confidence=confidence, seed=seed, method=method)
        row = dict(zip(by, key))
        row |= {"mean": ci.mean, "ci_low": ci.low, "ci_high": ci.high, "n_documents": ci.n_documents,
                "n_seeds": ci.n_seeds, "n_questions": ci.n_questions, "unit": ci.unit}
        for column in carried:
            values = group[column].dropna()
            row[column] = values.iloc[0] if values.nunique() == 1 else values.median()
        rows.append(row)
    return pd.DataFrame(rows)


def paired_difference(df: pd.DataFrame, condition_col: str, a: object, b: object, value: str = "score",
                      cluster: str = "document", nested: str | None = "question_id",
                      replicate: str | None = "seed", n_resamples: int = 2000, confidence: float = 0.95,
                      seed: int = 0, method: str = "t") -> Difference:
    """Mean of (a - b) over rows paired on (cluster, replicate, nested), aggregated like `cluster_bootstrap`,
    with a CI over documents and a two-sided sign-flip permutation p-value over documents. Rows
    present in only one of the two conditions are left out (`n_pairs` counts the pairs used)."""
    _check_options(n_resamples, confidence, method)
    if condition_col not in df.columns:
        raise KeyError(f"sciknow.stats: condition column {condition_col!r} missing; the table has "
                       f"{list(df.columns)}")
    keys = _keys(cluster, replicate, nested)
    sides = []
    for name in (a, b):
        side = df[df[condition_col] == name]
        if side.empty:
            raise ValueError(f"sciknow.stats: no rows with {condition_col}={name!r}; values are "
                             f"{_sorted(df[condition_col])}")
        _check(side, keys, value, keys, what=f" with {condition_col}={name!r}")
        sides.append(side.set_index(keys)[value])
    paired = pd.concat(sides, axis=1, keys=["a", "b"], join="inner")
    if paired.empty:
        raise ValueError(f"sciknow.stats: {condition_col}={a!r} and {b!r} share no ({', '.join(keys)}) rows")
    diffs = (paired["a"] - paired["b"]).rename(value).reset_index()
    units, unit, n_items = _units(diffs, value, cluster, nested)
    low, high = interval(units, method, n_resamples, confidence, seed)
    return Difference(mean=float(units.mean()), low=low, high=high, p_value=_sign_flip_p(units, n_resamples, seed),
                      n_documents=int(diffs[cluster].nunique()),
                      n_seeds=int(diffs[replicate].nunique()) if replicate else 1, n_questions=n_items,
                      n_pairs=len(diffs), unit=unit)


def paired_differences(df: pd.DataFrame, condition_col: str, baseline: object, by: Sequence[str] | None = None,
                       value: str = "score", cluster: str = "document", nested: str | None = "question_id",
                       replicate: str | None = "seed", n_resamples: int = 2000, confidence: float = 0.95,
                       seed: int = 0, method: str = "t") -> pd.DataFrame:
    """Every value of `condition_col` minus `baseline`, within each group of `by` (e.g. ["steps"]): one row
    per (group, condition) with the `by` values, `condition_col`, baseline, mean, ci_low, ci_high, p_value,
    p_bh (Benjamini-Hochberg over all rows of the table), n_documents, n_seeds, n_questions, n_pairs, unit.
    Groups without the baseline are skipped."""
    by = list(by or [])
    missing = [c for c in [condition_col, *by] if c not in df.columns]
    if missing:
        raise KeyError(f"sciknow.stats.paired_differences: column(s) {missing} missing; the table has "
                       f"{list(df.columns)}")
    if not (df[condition_col] == baseline).any():
        raise ValueError(f"sciknow.stats: baseline {condition_col}={baseline!r} has no rows; values are "
                         f"{_sorted(df[condition_col])}")
    groups = df.groupby(by, sort=True, dropna=False) if by else [((), df)]
    rows = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        if not (group[condition_col] == baseline).any():
            continue
        for condition in _sorted(group[condition_col]):
            if condition == baseline:
                continue
            d = paired_difference(group, condition_col, condition, baseline, value=value, cluster=cluster,
                                  nested=nested, replicate=replicate, n_resamples=n_resamples,
                                  confidence=confidence, seed=seed, method=method)
            rows.append(dict(zip(by, key)) | {
                condition_col: condition, "baseline": baseline, "mean": d.mean, "ci_low": d.low,
                "ci_high": d.high, "p_value": d.p_value, "n_documents": d.n_documents, "n_seeds": d.n_seeds,
                "n_questions": d.n_questions, "n_pairs": d.n_pairs, "unit": d.unit})
    table = pd.DataFrame(rows)
    if len(table):
        tested = table["p_value"].notna()
        table.insert(table.columns.get_loc("p_value") + 1, "p_bh", np.nan)
        if tested.any():
            table.loc[tested, "p_bh"] = scipy.stats.false_discovery_control(table.loc[tested, "p_value"])
    return table
