"""What each sweep searches and optimises: one small definition per study (Tasks 2a, 2b, 4, and any added later).

A study is a search space (a frozen dataclass, validated on creation), a suggest function (an Optuna trial and
the base RunConfig -> the trial's RunConfig) and an objective (the run's score, its config and the floor ->
the value to maximise). `sciknow.sweep` runs every study the same way; this module never imports it.

* Task 2a (random search, Fig. S1): LoRA settings, contents C1..Cn, N irrelevant texts; value = keyword score.
* Task 2b (TPE, Fig. 3): the same space; value = (score - floor) x log10(N). As in the paper (floor 0), N = 1
  gives log10(1) = 0, so every N = 1 trial is worth 0 whatever its score: the search is pushed towards
  configurations that survive many irrelevant texts. A floor (the untrained score) makes learning nothing
  earn nothing.
* Task 4 (TPE, Fig. 6): the adapter set, LoRA settings and how many texts of each genre of a built paper
  dataset; value = (score - untrained score) x log10(total texts), the paper's formula (score = ROUGE-2).

A trial that switches everything off still needs something to train: C1 and v_proj (Task 2) or one target
introduction (Task 4) are forced on, and the run's config tags say so ("forced_*").

A new study: write its space, suggest, baseline, objective and columns, then `register(StudyDef(...))`;
`python -m sciknow.sweep worker --task NAME` runs it.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import optuna

from .config import LAYER_GROUPS, DataSpec, EvalSpec, RunConfig, TrainSpec, did_you_mean
from .data import load_sets
from .paper_datasets import GENRES, INSTRUCTION_GENRES, genre_sizes


class SpaceError(ValueError):
    """A search space is invalid; the message names every bad field and its value."""


@dataclass(frozen=True)
class Space:
    """Base of the search spaces: bounds are inclusive [low, high] pairs, checked on creation.

    `RANGES` maps a field to (int or float, log scale); every range must be positive (ints >= 1, floats > 0):
    counts, ranks, learning rates and epochs all are. `CHOICES` maps a field to its valid names: the space
    holds a non-empty subset of them.
    """

    RANGES: ClassVar[dict[str, tuple[type, bool]]] = {}
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __post_init__(self) -> None:
        problems = []
        for name, (kind, log) in self.RANGES.items():
            value, problem = _check_range(getattr(self, name), kind, log)
            object.__setattr__(self, name, value)
            if problem:
                problems.append(f"space.{name}={getattr(self, name)!r} ({problem})")
        for name, valid in self.CHOICES.items():
            value = getattr(self, name)
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, name, value)
            problems += [f"space.{name}: {p}" for p in _check_choices(value, valid)]
        problems += self.problems()
        if problems:
            raise SpaceError(f"invalid {type(self).__name__}: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """Checks beyond ranges and choices (subclasses)."""
        return []

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Any, where: str = "space") -> Space:
        """A space from JSON data; fields not given keep their defaults, unknown fields are refused by name."""
        if not isinstance(d, dict):
            raise SpaceError(f"{where}: expected a JSON object, got {type(d).__name__} {d!r}")
        names = tuple(f.name for f in dataclasses.fields(cls))
        unknown = [f"{where}: unknown field {k!r}{did_you_mean(str(k), names, list_valid=True)}"
                   for k in d if k not in names]
        if unknown:
            raise SpaceError("; ".join(unknown))
        return cls(**d)


def _check_range(value: Any, kind: type, log: bool) -> tuple[Any, str | None]:
    """(the range as a tuple, the problem or None). Nothing is coerced but list -> tuple and int -> float."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return value, "expected [low, high]"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return value, f"expected two {kind.__name__}s"
    if kind is int and not all(isinstance(v, int) for v in value):
        return tuple(value), "expected two ints"
    low, high = (float(v) for v in value) if kind is float else value
    if not (math.isfinite(low) and math.isfinite(high)):
        return (low, high), "bounds must be finite"
    if low > high:
        return (low, high), "low > high"
    if kind is int and low < 1:
        return (low, high), "must be >= 1" + (" (log scale)" if log else "")
    if low <= 0:
        return (low, high), "must be > 0" + (" (log scale)" if log else "")
    return (low, high), None


def _check_choices(value: Any, valid: tuple[str, ...]) -> list[str]:
    if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
        return [f"{value!r} (expected a list of names)"]
    problems = [f"unknown name {v!r}{did_you_mean(v, valid, list_valid=True)}" for v in value if v not in valid]
    if not value:
        problems.append("empty (choose at least one)")
    if len(set(value)) != len(value):
        problems.append(f"{list(value)!r} repeats a name")
    return problems


def _clamp(value: float, bounds: tuple[Any, Any]) -> Any:
    return type(bounds[0])(min(max(value, bounds[0]), bounds[1]))


def gain_value(score: float, floor: float, count: int) -> float:
    """(score - floor) x log10(count), count clipped at 1: 0 for a single text however much was learned."""
    return (score - floor) * math.log10(max(int(count), 1))


@dataclass(frozen=True)
class StudyDef:
    """One kind of study: what it searches, how a trial becomes a RunConfig, and what it maximises."""

    task: str
    title: str
    space: type[Space]
    sampler: str  # the default: "random" or "tpe"
    # Check the base against the space and return the space this base can search (e.g. N capped by the pool);
    # runs at startup, before any study is opened, so a bad setup fails in seconds.
    fit: Callable[[RunConfig, Any], Any]
    suggest: Callable[[optuna.Trial, RunConfig, Any], RunConfig]
    baseline: Callable[[RunConfig, Any], dict[str, Any]]  # the base configuration as trial params
    objective: Callable[[float, RunConfig, float], float]  # (score, config, floor) -> value
    columns: Callable[[Mapping[str, Any]], dict[str, Any]]  # trials-frame columns derived from a record's config
    default_base: Callable[[str | None], RunConfig]  # (dataset) -> the base when none is given
    default_floor: float | str = 0.0  # a number, or "untrained": the base's untrained score
    metrics: tuple[str, ...] = ()  # the suite's metrics (a record's final_metrics) the trials frame always has


STUDIES: dict[str, StudyDef] = {}


def register(study: StudyDef) -> StudyDef:
    STUDIES[study.task] = study
    return study


def get(task: str) -> StudyDef:
    if task not in STUDIES:
        raise ValueError(f"unknown study task {task!r}{did_you_mean(str(task), tuple(STUDIES), list_valid=True)}")
    return STUDIES[task]


# --- Tasks 2a and 2b: LoRA on a knowledge set ---------------------------------------------------------------

# The paper's search space. Notebooks narrow these for CPU runs.
N_IRRELEVANT = (1, 5000)  # int, log scale
LORA_R = (1, 1024)  # int, log scale
LORA_ALPHA = (1, 1024)  # int, log scale
LR = (1e-5, 1e-2)  # float, log scale
EPOCHS = (1, 30)  # int
FALLBACK_CONTENT_INDEX = 0  # C1, the original text
FALLBACK_GROUP = "v_proj"  # the classic LoRA target


@dataclass(frozen=True)
class SearchSpace(Space):
    """Tasks 2a/2b: bounds of the LoRA search (inclusive); the defaults are the paper's."""

    RANGES: ClassVar[dict[str, tuple[type, bool]]] = {
        "n_irrelevant": (int, True), "lora_r": (int, True), "lora_alpha": (int, True), "lr": (float, True),
        "epochs": (int, False)}
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"layer_groups": LAYER_GROUPS}

    n_irrelevant: tuple[int, int] = N_IRRELEVANT
    lora_r: tuple[int, int] = LORA_R
    lora_alpha: tuple[int, int] = LORA_ALPHA
    lr: tuple[float, float] = LR
    epochs: tuple[int, int] = EPOCHS
    layer_groups: tuple[str, ...] = LAYER_GROUPS

    def capped(self, pool_size: int) -> SearchSpace:
        """The space with N capped at the number of irrelevant texts the pool actually holds."""
        low, high = self.n_irrelevant
        if pool_size < low:
            raise SpaceError(f"space.n_irrelevant={list(self.n_irrelevant)}: the irrelevant-text pool holds "
                             f"{pool_size} texts (need N >= {low})")
        if pool_size < high:
            print(f"sciknow.studies: N irrelevant capped at {pool_size} (the pool size; requested up to {high})")
        return dataclasses.replace(self, n_irrelevant=(low, min(high, pool_size)))


def content_ids(base: RunConfig) -> list[str]:
    """The contents C1..Cn every document of the base has, in file order (the training order)."""
    sets = load_sets(base.data)
    common = set.intersection(*({c.id for c in k.contents} for k in sets))
    return [c.id for c in sets[0].contents if c.id in common]


def irrelevant_pool_size(base: RunConfig) -> int:
    """How many irrelevant texts `base.data.irrelevant_source` can supply (the cap on N)."""
    if base.data.irrelevant_source == "knowledge_set":
        return sum(len(k.irrelevant_texts) for k in load_sets(base.data))
    from . import corpus

    papers, _ = corpus.load_corpus(base.data.irrelevant_source, progress=False)
    return sum(len(corpus.chunk_words(p.introduction)) for p in papers if p.introduction)


def _require_kind(base: RunConfig, kind: str, study: str) -> None:
    if base.data.kind != kind:
        raise ValueError(f"{study} search{'es' if study.startswith('Task ') else ''} {kind} runs: the base is a "
                         f"{base.data.kind} run (data.dataset={base.data.dataset!r}, eval.suite={base.eval.suite!r})")


def fit_lora_space(base: RunConfig, space: SearchSpace) -> SearchSpace:
    _require_kind(base, "knowledge set", "Tasks 2a/2b")
    if not content_ids(base):
        raise ValueError(f"{base.data.knowledge_set}: its documents share no content id to search over")
    return space.capped(irrelevant_pool_size(base))


def suggest_lora(trial: optuna.Trial, base: RunConfig, space: SearchSpace) -> RunConfig:
    """Sample one LoRA configuration; `base` supplies everything the search does not touch."""
    contents = content_ids(base)
    used = [cid for cid in contents if trial.suggest_categorical(f"content_{cid}", [True, False])]
    groups = [g for g in space.layer_groups if trial.suggest_categorical(f"layer_{g}", [True, False])]
    n_irrelevant = trial.suggest_int("n_irrelevant", *space.n_irrelevant, log=True)
    r = trial.suggest_int("lora_r", *space.lora_r, log=True)
    alpha = trial.suggest_int("lora_alpha", *space.lora_alpha, log=True)
    lr = trial.suggest_float("lr", *space.lr, log=True)
    epochs = trial.suggest_int("epochs", *space.epochs)
    tags: dict[str, Any] = {**base.tags, "trial": trial.number}
    if not used:
        used = [contents[FALLBACK_CONTENT_INDEX]]
        tags["forced_content"] = used[0]
    if not groups:
        groups = [FALLBACK_GROUP]
        tags["forced_layer_group"] = FALLBACK_GROUP
    return base.replace(**{
        "data.contents": used, "data.n_irrelevant": n_irrelevant, "train.method": "lora",
        "train.layer_groups": groups, "train.lora_r": r, "train.lora_alpha": alpha, "train.lr": lr,
        "train.epochs": epochs, "tags": tags,
    })


def baseline_lora(base: RunConfig, space: SearchSpace) -> dict[str, Any]:
    """The base configuration as trial params (clamped into the space): every content, the base's adapters."""
    t = base.train
    params: dict[str, Any] = {f"content_{cid}": True for cid in content_ids(base)}
    params |= {f"layer_{g}": g in t.layer_groups for g in space.layer_groups}
    params |= {"n_irrelevant": _clamp(max(base.data.n_irrelevant, 1), space.n_irrelevant),
               "lora_r": _clamp(t.lora_r, space.lora_r), "lora_alpha": _clamp(t.lora_alpha, space.lora_alpha),
               "lr": _clamp(t.lr, space.lr), "epochs": _clamp(t.epochs, space.epochs)}
    return params


def keyword_value(score: float, config: RunConfig, floor: float = 0.0) -> float:
    """Task 2a: the score itself."""
    return score


def robustness_value(score: float, config: RunConfig, floor: float = 0.0) -> float:
    """Task 2b: (score - floor) x log10(N irrelevant texts)."""
    return gain_value(score, floor, config.data.n_irrelevant)


def lora_columns(config: Mapping[str, Any]) -> dict[str, Any]:
    tags = config.get("tags", {})
    return {"n_contents": len(config["data"]["contents"]), "n_layer_groups": len(config["train"]["layer_groups"]),
            "forced_content": tags.get("forced_content"), "forced_layer_group": tags.get("forced_layer_group")}


def lora_base(task: str) -> Callable[[str | None], RunConfig]:
    def base(dataset: str | None = None) -> RunConfig:
        if dataset:
            raise ValueError(f"task {task} trains on a knowledge set, not a dataset (got dataset={dataset!r})")
        return RunConfig(task=task, train=TrainSpec(method="lora"))

    return base


register(StudyDef("2a", "LoRA random search (Fig. S1)", SearchSpace, "random", fit_lora_space, suggest_lora,
                  baseline_lora, keyword_value, lora_columns, lora_base("2a")))
register(StudyDef("2b", "LoRA TPE on score x log10(N) (Fig. 3)", SearchSpace, "tpe", fit_lora_space, suggest_lora,
                  baseline_lora, robustness_value, lora_columns, lora_base("2b")))


# --- Task 4: what to train on real papers -------------------------------------------------------------------

# The paper's partial adapter set for Task 4 (Fig. 6) vs every layer group.
PARTIAL_GROUPS: tuple[str, ...] = ("lm_head", "v_proj", "o_proj", "gate_proj", "up_proj")
ADAPTER_SETS: dict[str, tuple[str, ...]] = {"partial": PARTIAL_GROUPS, "all": LAYER_GROUPS}
FORCED_GENRE = "introduction-target"


@dataclass(frozen=True)
class Task4Space(Space):
    """Task 4: bounds (inclusive) of the search; each genre's count is searched in [0, min(max_per_genre,
    texts available)]."""

    RANGES: ClassVar[dict[str, tuple[type, bool]]] = {
        "lora_r": (int, True), "lora_alpha": (int, True), "lr": (float, True), "epochs": (int, False)}
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"adapter_sets": tuple(ADAPTER_SETS), "genres": GENRES}

    lora_r: tuple[int, int] = (4, 128)
    lora_alpha: tuple[int, int] = (4, 256)
    lr: tuple[float, float] = (1e-4, 3e-3)
    epochs: tuple[int, int] = (1, 3)
    max_per_genre: int = 10
    adapter_sets: tuple[str, ...] = tuple(ADAPTER_SETS)
    genres: tuple[str, ...] = GENRES

    def problems(self) -> list[str]:
        m = self.max_per_genre
        ok = isinstance(m, int) and not isinstance(m, bool) and m >= 1
        return [] if ok else [f"space.max_per_genre={m!r} (expected an int >= 1)"]


def fit_paper_space(base: RunConfig, space: Task4Space) -> Task4Space:
    _require_kind(base, "paper dataset", "Task 4")  # a dataset built by notebook 06, asked by the paper suite
    available = genre_sizes(base.data.dataset)  # a missing dataset fails here, before any study is opened
    if not any(available.get(g, 0) for g in space.genres):
        raise ValueError(f"{base.data.dataset}: none of the searched genres {list(space.genres)} has a text")
    return space


def _genre_high(space: Task4Space, available: Mapping[str, int], genre: str) -> int:
    return min(space.max_per_genre, available.get(genre, 0))


def suggest_paper(trial: optuna.Trial, base: RunConfig, space: Task4Space) -> RunConfig:
    """Sample adapters, r, alpha, lr, epochs and a count per genre; at least one text is always trained."""
    available = genre_sizes(base.data.dataset)
    adapters = trial.suggest_categorical("adapters", list(space.adapter_sets))
    r = trial.suggest_int("lora_r", *space.lora_r, log=True)
    alpha = trial.suggest_int("lora_alpha", *space.lora_alpha, log=True)
    lr = trial.suggest_float("lr", *space.lr, log=True)
    epochs = trial.suggest_int("epochs", *space.epochs)
    counts = {}
    for genre in space.genres:
        high = _genre_high(space, available, genre)
        counts[genre] = trial.suggest_int(f"n_{genre}", 0, high) if high > 0 else 0
    tags: dict[str, Any] = {**base.tags, "trial": trial.number}
    if sum(counts.values()) == 0:  # nothing to train on
        counts[FORCED_GENRE] = 1
        tags["forced_text"] = FORCED_GENRE
    return base.replace(**{
        "data.genre_counts": {g: n for g, n in counts.items() if n}, "train.method": "lora",
        "train.layer_groups": list(ADAPTER_SETS[adapters]), "train.lora_r": r, "train.lora_alpha": alpha,
        "train.lr": lr, "train.epochs": epochs, "tags": tags,
    })


def baseline_paper(base: RunConfig, space: Task4Space) -> dict[str, Any]:
    """The base configuration as trial params: its adapter set (when it is one of the space's, else the first),
    r, alpha, lr, epochs and genre counts clamped into the space (-1 = all = the genre's upper bound)."""
    available = genre_sizes(base.data.dataset)
    t = base.train
    adapters = next((a for a in space.adapter_sets if set(ADAPTER_SETS[a]) == set(t.layer_groups)),
                    space.adapter_sets[0])
    params: dict[str, Any] = {"adapters": adapters, "lora_r": _clamp(t.lora_r, space.lora_r),
                              "lora_alpha": _clamp(t.lora_alpha, space.lora_alpha), "lr": _clamp(t.lr, space.lr),
                              "epochs": _clamp(t.epochs, space.epochs)}
    for genre in space.genres:
        high = _genre_high(space, available, genre)
        if high > 0:
            n = base.data.genre_counts.get(genre, 0)
            params[f"n_{genre}"] = high if n < 0 else min(n, high)
    return params


def paper_value(score: float, config: RunConfig, floor: float = 0.0) -> float:
    """Task 4: (score - untrained score) x log10(total texts)."""
    return gain_value(score, floor, sum(config.data.genre_counts.values()))


def paper_columns(config: Mapping[str, Any]) -> dict[str, Any]:
    counts = config["data"].get("genre_counts") or {}
    return {"total_texts": sum(counts.values()),
            "n_instruction_texts": sum(counts.get(g, 0) for g in INSTRUCTION_GENRES),
            "forced_text": config.get("tags", {}).get("forced_text")}


def paper_base(dataset: str | None = None) -> RunConfig:
    """Every genre (all texts), the partial adapter set, the paper suite; the search picks the counts."""
    if not dataset:
        raise ValueError("task 4 needs a dataset folder built by notebook 06 (--dataset), or a --base config")
    return RunConfig(task="4", data=DataSpec(dataset=dataset, genre_counts={g: -1 for g in GENRES}),
                     train=TrainSpec(method="lora", layer_groups=list(PARTIAL_GROUPS)), eval=EvalSpec(suite="paper"))


register(StudyDef("4", "what to train on real papers (Fig. 6)", Task4Space, "tpe", fit_paper_space, suggest_paper,
                  baseline_paper, paper_value, paper_columns, paper_base, default_floor="untrained",
                  metrics=("rouge2", "mc", "mmlu", "judge")))
