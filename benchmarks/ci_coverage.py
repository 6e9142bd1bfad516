"""Do `sciknow.stats` intervals keep their 95 % promise? Coverage by simulation, on data shaped like the suite's.

    python -m benchmarks.ci_coverage [--reps 2000] [--documents 8 24]

Each simulated study has n documents with 5 questions each. A document has its own recall level p_d (a Beta
draw around the scenario's mean), each question its own p_dq (a Beta draw around p_d), and the question's
keyword score is Binomial(k, p_dq) / k with k keywords drawn from the suite's counts (104 questions with 2, 16
with 3), so scores take the suite's values 0, 1/3, 1/2, 2/3, 1. The true mean over documents is then exactly
the scenario's mean. Paired scenarios draw two conditions per document with correlated levels (a Gaussian
copula, rho 0.6) and score their difference. The scenarios follow the README's 8-document table: a floor
condition, a low one, a mid one, and the two paired differences it reports (+0.13 and -0.20).

Coverage = the share of simulated studies whose interval (from `stats.interval`, the function the tables use,
on the document means) contains the true mean; its Monte Carlo standard error is sqrt(0.95 x 0.05 / reps),
0.005 at 2000 reps. Bootstrap methods use 2000 resamples, as the notebooks do. About 20 s on one core.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import scipy.stats

from sciknow import stats

KEYWORD_COUNTS = np.array([2] * 104 + [3] * 16)  # keywords per question in data/knowledge/suite
QUESTIONS = 5
METHODS = ("percentile", "BCa", "t")


@dataclass(frozen=True)
class Scenario:
    """One condition (b=None) or a paired difference a - b; each level's mean and spread (Beta concentrations:
    higher = documents / questions closer to the mean)."""

    name: str
    a: float
    b: float | None = None
    documents_concentration: float = 3.0
    questions_concentration: float = 3.0

    @property
    def truth(self) -> float:
        return self.a - (self.b or 0.0)


SCENARIOS = (
    Scenario("floor: mean 0.05, most documents at 0", 0.05),
    Scenario("low: mean 0.08, documents alike", 0.08, documents_concentration=20, questions_concentration=10),
    Scenario("mid: mean 0.40", 0.40),
    Scenario("paired: 0.46 - 0.33 = +0.13", 0.46, 0.33),
    Scenario("paired: 0.06 - 0.26 = -0.20", 0.06, 0.26),
)


def document_means(scenario: Scenario, n_documents: int, reps: int, rng: np.random.Generator) -> np.ndarray:
    """(reps, n_documents) per-document mean scores (of a - b for a paired scenario)."""
    shared = rng.normal(size=(reps, n_documents, 1))  # what makes a document easy in both conditions
    rho = 0.6

    def condition(mean: float) -> np.ndarray:
        z = rho * shared + np.sqrt(1 - rho ** 2) * rng.normal(size=shared.shape)
        c = scenario.documents_concentration
        level = scipy.stats.beta.ppf(scipy.stats.norm.cdf(z), mean * c, (1 - mean) * c)
        q = scenario.questions_concentration
        per_question = rng.beta(level * q + 1e-9, (1 - level) * q + 1e-9, size=(reps, n_documents, QUESTIONS))
        keywords = rng.choice(KEYWORD_COUNTS, size=per_question.shape)
        return (rng.binomial(keywords, per_question) / keywords).mean(axis=-1)

    means = condition(scenario.a)
    return means - condition(scenario.b) if scenario.b is not None else means


def coverage(scenario: Scenario, n_documents: int, method: str, reps: int, seed: int = 0,
             chunk: int = 100) -> float:
    """Share of `reps` simulated studies whose `method` interval contains the scenario's true mean."""
    values = document_means(scenario, n_documents, reps, np.random.default_rng(seed))
    hits = 0
    for start in range(0, reps, chunk):  # chunks keep the bootstrap's (rows x resamples x documents) array small
        low, high = stats.interval(values[start:start + chunk], method=method, seed=seed)
        hits += int(np.sum((low <= scenario.truth) & (scenario.truth <= high)))
    return hits / reps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=2000, help="simulated studies per cell (default 2000)")
    parser.add_argument("--documents", type=int, nargs="+", default=[8, 24])
    args = parser.parse_args(argv)
    start = time.perf_counter()
    print(f"95 % CI coverage, {args.reps} simulated studies per cell (Monte Carlo SE "
          f"{np.sqrt(0.95 * 0.05 / args.reps):.3f})\n")
    print("| scenario | documents | " + " | ".join(METHODS) + " |")
    print("|---|---|" + "---|" * len(METHODS))
    for scenario in SCENARIOS:
        for n in args.documents:
            cells = [f"{coverage(scenario, n, method, args.reps):.3f}" for method in METHODS]
            print(f"| {scenario.name} | {n} | " + " | ".join(cells) + " |", flush=True)
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
