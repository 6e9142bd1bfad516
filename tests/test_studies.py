"""Study definitions (studies.py): search spaces validated at creation, suggest functions, baselines, objectives."""
from __future__ import annotations

import optuna
import pytest

from sciknow import studies
from sciknow.config import LAYER_GROUPS, DataSpec, EvalSpec, RunConfig, TrainSpec
from sciknow.paper_datasets import GENRES, DatasetError
from test_paper_datasets import FILES, build_small

BASE = RunConfig(task="2b", train=TrainSpec(method="lora"))
CONTENTS = studies.content_ids(BASE)
needs_plos = pytest.mark.skipif(len(FILES) < 14, reason="shared PLOS corpus not available")


@pytest.mark.parametrize("fields, message", [
    ({"epochs": [3, 1]}, "space.epochs=(3, 1) (low > high)"),
    ({"lr": [0, 1e-3]}, "space.lr=(0.0, 0.001) (must be > 0 (log scale))"),
    ({"lora_r": [0, 8]}, "space.lora_r=(0, 8) (must be >= 1 (log scale))"),
    ({"epochs": [1.0, 3]}, "space.epochs=(1.0, 3) (expected two ints)"),
    ({"epochs": [True, 3]}, "expected two ints"),
    ({"lr": 0.001}, "space.lr=0.001 (expected [low, high])"),
    ({"lr": [1e-4, float("inf")]}, "bounds must be finite"),
    ({"layer_groups": ["v_prj"]}, "space.layer_groups: unknown name 'v_prj' (did you mean 'v_proj'?)"),
    ({"layer_groups": []}, "space.layer_groups: empty"),
    ({"layer_groups": ["v_proj", "v_proj"]}, "repeats a name"),
    ({"epoch": [1, 2]}, "space: unknown field 'epoch' (did you mean 'epochs'?)"),
])
def test_task2_space_refuses_bad_fields_by_name(fields, message):
    with pytest.raises(studies.SpaceError) as err:
        studies.SearchSpace.from_dict(fields)
    assert message in str(err.value)


def test_every_problem_is_reported_at_once_and_good_values_round_trip():
    with pytest.raises(studies.SpaceError) as err:
        studies.SearchSpace(epochs=(3, 1), lr=(0.0, 1e-3))
    assert "space.epochs" in str(err.value) and "space.lr" in str(err.value)
    space = studies.SearchSpace.from_dict({"epochs": [1, 5], "lr": [1, 2]})  # JSON lists and ints for floats
    assert space.epochs == (1, 5) and space.lr == (1.0, 2.0) and isinstance(space.lr[0], float)
    assert studies.SearchSpace.from_dict(space.to_dict()) == space and space.lora_r == studies.LORA_R


@pytest.mark.parametrize("fields, message", [
    ({"genres": ["abstract-targt"]}, "unknown name 'abstract-targt' (did you mean 'abstract-target'?)"),
    ({"adapter_sets": ["partial", "al"]}, "unknown name 'al' (did you mean 'all'?)"),
    ({"max_per_genre": 0}, "space.max_per_genre=0 (expected an int >= 1)"),
    ({"max_per_genre": 2.5}, "space.max_per_genre=2.5"),
    ({"epochs": [2, 1]}, "space.epochs=(2, 1) (low > high)"),
    ({"max_genre": 3}, "did you mean 'max_per_genre'?"),
])
def test_task4_space_refuses_bad_fields_by_name(fields, message):
    with pytest.raises(studies.SpaceError) as err:
        studies.Task4Space.from_dict(fields)
    assert message in str(err.value)


def test_unknown_task_names_the_nearest():
    with pytest.raises(ValueError, match="unknown study task '2c' \\(expected one of 2a, 2b, 4"):
        studies.get("2c")
    assert set(studies.STUDIES) >= {"2a", "2b", "4"}


def test_task2_suggest_bounds_types_and_at_least_one_rules():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = studies.SearchSpace()
    # A trial switching everything off: C1 and v_proj are forced on, and the config's tags say so.
    study.enqueue_trial({**{f"content_{c}": False for c in CONTENTS}, **{f"layer_{g}": False for g in LAYER_GROUPS}})
    n_low = 0
    for i in range(300):
        trial = study.ask()
        config = studies.suggest_lora(trial, BASE, space)
        d, t = config.data, config.train
        assert t.method == "lora" and config.tags["trial"] == trial.number
        assert d.contents and set(d.contents) <= set(CONTENTS)
        assert d.contents == tuple(c for c in CONTENTS if c in d.contents)  # file order = training order
        assert t.layer_groups and set(t.layer_groups) <= set(LAYER_GROUPS)
        assert isinstance(d.n_irrelevant, int) and 1 <= d.n_irrelevant <= 5000
        assert isinstance(t.lora_r, int) and 1 <= t.lora_r <= 1024
        assert 1 <= t.lora_alpha <= 1024
        assert isinstance(t.lr, float) and 1e-5 <= t.lr <= 1e-2
        assert isinstance(t.epochs, int) and 1 <= t.epochs <= 30
        if i == 0:
            assert d.contents == ("C1",) and t.layer_groups == (studies.FALLBACK_GROUP,)
            assert config.tags["forced_content"] == "C1" and config.tags["forced_layer_group"] == "v_proj"
        else:
            assert "forced_content" not in config.tags or d.contents == ("C1",)
        n_low += d.n_irrelevant <= 71
        study.tell(trial, 0.0)
    assert 0.35 < n_low / 300 < 0.65  # log-scale sampling: about half the draws of N lie below sqrt(5000) ~ 71


def test_task2_fit_caps_n_by_the_pool_and_checks_the_base():
    assert studies.irrelevant_pool_size(BASE) == 10  # the default knowledge set's own irrelevant texts
    assert studies.fit_lora_space(BASE, studies.SearchSpace()).n_irrelevant == (1, 10)
    assert studies.SearchSpace(n_irrelevant=(1, 5)).capped(10).n_irrelevant == (1, 5)
    with pytest.raises(studies.SpaceError, match="pool holds 10 texts"):
        studies.SearchSpace(n_irrelevant=(20, 30)).capped(10)
    with pytest.raises(ValueError, match="Tasks 2a/2b search knowledge set runs: the base is a paper dataset run"):
        studies.fit_lora_space(RunConfig(data=DataSpec(dataset="x", genre_counts={"abstract-target": 1}),
                                         eval=EvalSpec(suite="paper")),
                               studies.SearchSpace())


def test_task2_baseline_params_clamped_into_space():
    space = studies.SearchSpace(lora_r=(1, 64), lora_alpha=(1, 256), epochs=(1, 3))
    p = studies.baseline_lora(BASE, space)
    assert p["lora_r"] == 64 and p["lora_alpha"] == 256 and p["epochs"] == 3 and p["n_irrelevant"] == 1
    assert all(p[f"content_{c}"] for c in CONTENTS) and all(p[f"layer_{g}"] for g in LAYER_GROUPS)


def test_objective_values():
    at = lambda n: BASE.replace(**{"data.n_irrelevant": n})  # noqa: E731
    assert studies.keyword_value(0.6, at(1)) == 0.6
    assert studies.keyword_value(0.64, at(100), floor=0.14) == 0.64  # Task 2a ignores the floor
    assert studies.robustness_value(0.6, at(1)) == 0.0  # N = 1 is worth nothing, whatever the score
    assert studies.robustness_value(0.6, at(10)) == pytest.approx(0.6)
    assert studies.robustness_value(0.5, at(1000)) == pytest.approx(1.5)
    assert studies.robustness_value(0.14, at(100), floor=0.14) == 0.0  # learning nothing earns nothing
    assert studies.robustness_value(0.64, at(100), floor=0.14) == pytest.approx(1.0)
    counts = lambda c: RunConfig(data=DataSpec(dataset="d", genre_counts=c), eval=EvalSpec(suite="paper"))  # noqa: E731
    assert studies.paper_value(0.5, counts({"abstract-target": 1}), 0.2) == 0.0  # log10(1) = 0
    assert studies.paper_value(0.3, counts({"abstract-target": 60, "instructions": 40}), 0.1) == pytest.approx(0.4)
    assert studies.paper_value(0.1, counts({"instructions": 10}), 0.3) == pytest.approx(-0.2)
    assert studies.gain_value(0.5, 0.2, 0) == 0.0  # clipped to 1


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    if len(FILES) < 14:
        pytest.skip("shared PLOS corpus not available")
    out = tmp_path_factory.mktemp("studies_dataset")
    build_small(out)
    return out


def paper_base(dataset) -> RunConfig:
    return studies.paper_base(str(dataset))


@needs_plos
def test_task4_suggest_bounds_and_forced_text(dataset):
    base = paper_base(dataset)
    available = studies.genre_sizes(dataset)
    space = studies.Task4Space(max_per_genre=3)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial({f"n_{g}": 0 for g in GENRES})
    for i in range(60):
        trial = study.ask()
        config = studies.suggest_paper(trial, base, space)
        counts = config.data.genre_counts
        assert counts and all(1 <= n <= min(3, available[g]) for g, n in counts.items())
        assert config.train.layer_groups in (tuple(studies.PARTIAL_GROUPS), tuple(LAYER_GROUPS))
        assert 4 <= config.train.lora_r <= 128 and 1 <= config.train.epochs <= 3
        if i == 0:
            assert counts == {"introduction-target": 1} and config.tags["forced_text"] == "introduction-target"
        columns = studies.paper_columns(config.to_dict())
        assert columns["total_texts"] == sum(counts.values())
        assert columns["n_instruction_texts"] == counts.get("instructions", 0) + counts.get("mmlu-instructions", 0)
        study.tell(trial, 0.0)
    assert not any(p.startswith("n_") and available[p[2:]] == 0 for p in study.trials[-1].params)


@needs_plos
def test_task4_baseline_and_fit(dataset, tmp_path):
    base = paper_base(dataset)  # every genre in full, the partial adapter set
    space = studies.Task4Space(max_per_genre=2, lora_r=(4, 16))
    available = studies.genre_sizes(dataset)
    p = studies.baseline_paper(base, space)
    assert p["adapters"] == "partial" and p["lora_r"] == 16 and p["epochs"] == 3
    assert {k: v for k, v in p.items() if k.startswith("n_")} == {
        f"n_{g}": min(2, n) for g, n in available.items() if n > 0}
    assert studies.fit_paper_space(base, space) == space
    with pytest.raises(DatasetError, match="run notebook 06 first"):
        studies.fit_paper_space(paper_base(tmp_path / "nowhere"), space)
    with pytest.raises(ValueError, match="Task 4 searches paper dataset runs: the base is a knowledge set run"):
        studies.fit_paper_space(RunConfig(train=TrainSpec(method="lora"), eval=EvalSpec()), space)
    with pytest.raises(ValueError, match="--dataset"):
        studies.paper_base(None)
