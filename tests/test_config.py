"""RunConfig: every bad field refused by name before a model loads; frozen; schema-versioned identity."""
from __future__ import annotations

import dataclasses
import json
import pickle

import pytest

from sciknow import experiment
from sciknow.config import (LAYER_GROUPS, SCHEMA_VERSION, DataSpec, EvalSpec, ModelSpec, RunConfig, TrainSpec,
                            field_names, migrate, parse_parameter)

# Each bad input, and the text the error must contain (the field, and the value where there is one).
BAD = [
    ({"train": {"epochs": "5"}}, "train.epochs='5' (expected int, got str)"),
    ({"train": {"lr": "1e-4"}}, "train.lr='1e-4' (expected float, got str)"),
    ({"train": {"epochs": 2.5}}, "train.epochs=2.5 (expected int, got float)"),
    ({"train": {"epochs": True}}, "train.epochs=True (expected int, got bool)"),
    ({"train": None}, "RunConfig.train: expected an object, got NoneType"),
    ({"train": [1]}, "RunConfig.train: expected an object, got list"),
    ({"train": {"lrr": 1e-4}}, "unknown field 'lrr' (did you mean 'lr'?)"),
    ({"trian": {}}, "unknown field 'trian' (did you mean 'train'?)"),
    ({"train": {"max_grad_norm": -1.0}}, "train.max_grad_norm=-1.0"),
    ({"train": {"max_grad_norm": 0.0}}, "train.max_grad_norm=0.0"),
    ({"train": {"lr": 0.0}}, "train.lr=0.0"),
    ({"train": {"lr": float("nan")}}, "train.lr=nan"),
    ({"train": {"lr": float("inf")}}, "train.lr=inf"),
    ({"train": {"epochs": -1}}, "train.epochs=-1"),
    ({"train": {"batch_size": 0}}, "train.batch_size=0"),
    ({"train": {"max_length": 2}}, "train.max_length=2"),
    ({"train": {"weight_decay": -0.1}}, "train.weight_decay=-0.1"),
    ({"train": {"method": "lora", "lora_alpha": 0}}, "train.lora_alpha=0"),
    ({"train": {"method": "lora", "lora_r": 0}}, "train.lora_r=0"),
    ({"train": {"method": "lora", "lora_dropout": 1.0}}, "train.lora_dropout=1.0"),
    ({"train": {"method": "lora", "layer_groups": ["v_proj", "wo"]}}, "train.layer_groups"),
    ({"train": {"method": "lora", "layer_groups": []}}, "train.layer_groups=[]"),
    ({"train": {"method": "sgd"}}, "train.method='sgd'"),
    ({"train": {"layer_groups": "v_proj"}}, "train.layer_groups='v_proj' (expected list[str], got str)"),
    ({"eval": {"max_new_tokens": 0}}, "eval.max_new_tokens=0"),
    ({"eval": {"max_new_tokens": -3}}, "eval.max_new_tokens=-3"),
    ({"eval": {"batch_size": 0}}, "eval.batch_size=0"),
    ({"eval": {"book": "half"}}, "eval.book='half'"),
    ({"eval": {"every_epoch": False, "at_epochs": [0]}}, "eval.at_epochs=[0] (need increasing epochs >= 1)"),
    ({"eval": {"every_epoch": False, "at_epochs": [2, 1]}}, "eval.at_epochs=[2, 1]"),
    ({"eval": {"every_epoch": False, "at_epochs": [99]}}, "eval.at_epochs=[99]"),
    ({"eval": {"at_epochs": [1]}}, "set eval.every_epoch=False"),
    ({"eval": {"probes": ["mmlu", "vibes"]}}, "eval.probes"),
    ({"eval": {"suite": "paper"}}, "eval.suite='paper'"),
    ({"eval": {"judge": {"base_url": "http://x", "api_key": "sk-1"}}}, "eval.judge"),
    ({"eval": {"judge": {"base_url": "http://x", "token": "t"}}}, "eval.judge"),
    ({"data": {"contents": []}}, "data.contents=[]"),
    ({"data": {"contents": "C1"}}, "data.contents='C1' (expected list[str], got str)"),
    ({"data": {"contents": [" C1"]}}, "data.contents=[' C1']"),
    ({"data": {"n_irrelevant": -2}}, "data.n_irrelevant=-2"),
    ({"data": {"repeats": 0}}, "data.repeats=0"),
    ({"data": {"genre_counts": {"abstract-target": 2}}}, "data.genre_counts"),
    ({"data": {"dataset": "runs/06", "genre_counts": {"x": 1}, "n_irrelevant": 3}}, "data.n_irrelevant=3"),
    ({"data": {"dataset": "runs/06"}}, "data.genre_counts={}"),
    ({"model": {"precision": "fp8"}}, "model.precision='fp8'"),
    ({"model": {"precision": "nf4"}, "train": {"method": "full"}}, "model.precision='nf4'"),
    ({"tags": {"x": float("nan")}}, "tags="),
    ({"task": ""}, "task=''"),
]


@pytest.mark.parametrize("d, message", BAD)
def test_bad_fields_are_refused_by_name(d, message):
    with pytest.raises(ValueError) as err:
        RunConfig.from_dict(d)
    assert message in str(err.value)


def test_sections_must_be_specs_not_dicts():
    with pytest.raises(ValueError, match=r"train=\{'lr': 0.1\} \(expected a TrainSpec"):
        RunConfig(train={"lr": 0.1})


def test_configs_are_frozen_all_the_way_down():
    """Lists are kept as tuples and dicts frozen, so a checked config stays checked: run() needs no second check."""
    config = RunConfig.from_dict({"data": {"dataset": "runs/06", "genre_counts": {"a": 1}},
                                  "eval": {"suite": "paper", "judge": {"base_url": "http://x"}},
                                  "tags": {"docs": ["d1"], "n": {"x": 1}}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.lr = -5
    assert config.train.layer_groups == LAYER_GROUPS and isinstance(config.data.contents, tuple)
    for change in (lambda: config.data.genre_counts.update(a=-7), lambda: config.eval.judge.pop("base_url"),
                   lambda: config.tags.__setitem__("n", 2), lambda: config.tags["n"].clear()):
        with pytest.raises(TypeError, match="frozen"):
            change()
    with pytest.raises(AttributeError):
        config.tags["docs"].append("d2")  # a tuple
    assert RunConfig.from_dict(json.loads(config.to_json())) == config
    assert config.to_dict()["tags"] == {"docs": ["d1"], "n": {"x": 1}} and type(config.to_dict()["tags"]) is dict
    assert pickle.loads(pickle.dumps(config)) == config


def test_each_section_checks_itself_before_any_runconfig_exists():
    with pytest.raises(ValueError, match=r"invalid TrainSpec: train.lr=-1"):
        TrainSpec(lr=-1)
    with pytest.raises(ValueError, match=r"invalid DataSpec: data.contents=\[\]"):
        DataSpec(contents=[])
    with pytest.raises(ValueError, match=r"invalid EvalSpec: eval.book='half'"):
        EvalSpec(book="half")
    with pytest.raises(ValueError, match=r"data.contents='C1' \(expected list\[str\], got str\)"):
        DataSpec(contents="C1")  # a string is not a list of ids: refused, not split into characters
    assert DataSpec(contents=["C1", "C2"]).contents == ("C1", "C2")


def test_rules_across_sections_stay_in_runconfig():
    lora_nf4 = RunConfig(model=ModelSpec(precision="nf4"), train=TrainSpec(method="lora"))  # each section is fine
    with pytest.raises(ValueError, match=r"invalid RunConfig: model.precision='nf4'"):
        lora_nf4.replace(**{"train.method": "full"})
    with pytest.raises(ValueError, match=r"invalid RunConfig: eval.suite='paper'"):
        RunConfig(eval=EvalSpec(suite="paper"))


def test_replace_checks_and_names_unknown_fields():
    assert RunConfig().replace(**{"train.lr": 3e-4}).train.lr == 3e-4
    with pytest.raises(ValueError, match=r"train.lrr.*did you mean 'train.lr'"):
        RunConfig().replace(**{"train.lrr": 1})
    with pytest.raises(ValueError, match="train.epochs=2.5"):
        RunConfig().replace(**{"train.epochs": 2.5})


def test_ints_are_floats_but_nothing_else_is_coerced():
    assert RunConfig(train=TrainSpec(lr=1, max_grad_norm=2)).train.lr == 1
    assert RunConfig.from_dict(json.loads(RunConfig().to_json())) == RunConfig()


@pytest.mark.parametrize("value, expected, result", [
    ("[0, 10, 30]", list, [0, 10, 30]), ([1, 2], list, [1, 2]), ('{"a": 1}', dict, {"a": 1}), (5, int, 5),
    ("text", str, "text"),
])
def test_notebook_parameters_given_as_text_are_parsed(value, expected, result):
    assert parse_parameter("n_irrelevant", value, expected) == result


@pytest.mark.parametrize("value, expected, message", [
    ("[0, 10,", list, "not valid JSON"), ("5", list, "expected list, got int"), (True, int, "expected int, got bool"),
    ("[1]", dict, "expected dict, got list"),
])
def test_bad_notebook_parameters_are_refused_by_name(value, expected, message):
    with pytest.raises(ValueError, match=f"notebook parameter n_irrelevant=.*{message}"):
        parse_parameter("n_irrelevant", value, expected)


# The fields of each schema version. Adding a field must bump SCHEMA_VERSION, add a migration in
# sciknow.config.MIGRATIONS and add the new version's field list here: this test fails until all three happen.
SCHEMA_FIELDS = {
    2: ['task', 'model.name', 'model.precision', 'model.trust_remote_code', 'data.knowledge_set', 'data.documents',
        'data.contents', 'data.repeats', 'data.n_irrelevant', 'data.irrelevant_source', 'data.irrelevant_seed',
        'data.dataset', 'data.genre_counts', 'train.method', 'train.lr', 'train.lr_schedule', 'train.epochs',
        'train.batch_size', 'train.max_length', 'train.seed', 'train.shuffle', 'train.weight_decay',
        'train.max_grad_norm', 'train.lora_r', 'train.lora_alpha', 'train.lora_dropout', 'train.layer_groups',
        'train.deepspeed_config', 'eval.prompt_style', 'eval.max_new_tokens', 'eval.batch_size', 'eval.every_epoch',
        'eval.suite', 'eval.paraphrases', 'eval.book', 'eval.retrieval_k', 'eval.retrieval_distractors',
        'eval.probes', 'eval.probe_every_epoch', 'eval.n_probe_mmlu', 'eval.n_probe_texts', 'eval.n_probe_locality',
        'eval.probe_seed', 'eval.n_qa', 'eval.n_mc', 'eval.n_mmlu', 'eval.mc_max_new_tokens', 'eval.judge', 'tags'],
}
SCHEMA_FIELDS[3] = ['task', 'model.name', 'model.precision', 'model.trust_remote_code', 'data.knowledge_set',
    'data.documents', 'data.contents', 'data.repeats', 'data.n_irrelevant', 'data.irrelevant_source',
    'data.irrelevant_seed', 'data.dataset', 'data.genre_counts', 'train.method', 'train.lr', 'train.lr_schedule',
    'train.epochs', 'train.batch_size', 'train.max_length', 'train.seed', 'train.shuffle', 'train.weight_decay',
    'train.max_grad_norm', 'train.lora_r', 'train.lora_alpha', 'train.lora_dropout', 'train.layer_groups',
    'train.deepspeed_config', 'train.autocast', 'train.compile', 'train.packing', 'eval.prompt_style',
    'eval.max_new_tokens', 'eval.batch_size', 'eval.every_epoch', 'eval.suite', 'eval.paraphrases', 'eval.book',
    'eval.retrieval_k', 'eval.retrieval_distractors', 'eval.probes', 'eval.probe_every_epoch', 'eval.n_probe_mmlu',
    'eval.n_probe_texts', 'eval.n_probe_locality', 'eval.probe_seed', 'eval.n_qa', 'eval.n_mc', 'eval.n_mmlu',
    'eval.mc_max_new_tokens', 'eval.judge', 'tags']
# Schema 4: schema 3 plus gradient checkpointing, evaluation at chosen epochs and the MMLU probe's form and draw.
_ADDED_AFTER = {"train.packing": ["train.gradient_checkpointing"], "eval.every_epoch": ["eval.at_epochs"],
                "eval.n_probe_mmlu": ["eval.probe_mmlu_metrics", "eval.probe_mmlu_draw"]}
SCHEMA_FIELDS[4] = [f for name in SCHEMA_FIELDS[3] for f in [name, *_ADDED_AFTER.get(name, [])]]
# A config as the first recorded results stored it (schema 1, before lr_schedule and the paper suite existed).
SCHEMA_1_RECORD = {"config": {
    "task": "1a", "tags": {"n_contents": 2},
    "model": {"name": "smollm2-135m-instruct", "precision": "fp32", "trust_remote_code": False},
    "data": {"knowledge_set": "/x/zephyrite.json", "contents": ["C1", "C2"], "n_irrelevant": 0,
             "irrelevant_source": "knowledge_set", "irrelevant_seed": 0},
    "train": {"method": "full", "lr": 1e-4, "epochs": 5, "batch_size": 1, "max_length": 512, "seed": 0,
              "weight_decay": 0.0, "max_grad_norm": 1.0, "lora_r": 100, "lora_alpha": 300, "lora_dropout": 0.0,
              "layer_groups": ["v_proj"], "deepspeed_config": None},
    "eval": {"prompt_style": "auto", "max_new_tokens": 100, "batch_size": 8, "every_epoch": True}}}


def test_every_field_belongs_to_a_schema_version_with_a_migration():
    assert field_names() == SCHEMA_FIELDS[SCHEMA_VERSION], (
        "RunConfig's fields changed: bump config.SCHEMA_VERSION, add a migration to config.MIGRATIONS that fills "
        "the new field with the value reproducing older runs, and record the new field list in SCHEMA_FIELDS")
    config = RunConfig.from_record(SCHEMA_1_RECORD)  # every migration step runs
    assert config.train.lr_schedule == "constant" and config.eval.book == "closed" and config.data.repeats == 1


def test_an_old_record_and_the_same_run_today_share_one_id():
    today = RunConfig(task="1a", tags={"n_contents": 2}, data=DataSpec(knowledge_set="/x/zephyrite.json",
                      contents=["C1", "C2"]), train=TrainSpec(layer_groups=["v_proj"]))
    assert experiment.recorded_config_id(SCHEMA_1_RECORD) == experiment.config_id(today)
    # The evaluation batch changes speed, not answers: it never changes an id.
    assert experiment.config_id(today.replace(**{"eval.batch_size": 3})) == experiment.config_id(today)
    assert experiment.config_id(today.replace(**{"eval.paraphrases": True})) != experiment.config_id(today)
    with pytest.raises(ValueError, match="schema version 9"):
        migrate(SCHEMA_1_RECORD["config"], 9)


def test_schema_3_mmlu_probe_records_keep_the_generated_digit_rule():
    old = json.loads(json.dumps(SCHEMA_1_RECORD["config"]))
    old["eval"] |= {"probes": ["mmlu"], "n_probe_mmlu": 50}
    config = RunConfig.from_dict(migrate(old, 1))
    assert config.eval.probe_mmlu_metrics == ("generated_digit",) and config.eval.probe_mmlu_draw == "random"
    assert RunConfig().eval.probe_mmlu_metrics == ("mmlu_continuation",)  # today's default: the cloze form
    with pytest.raises(ValueError, match=r"eval.probe_mmlu_metrics.*'mmlu_cloze'"):
        RunConfig().replace(**{"eval.probe_mmlu_metrics": ["mmlu_cloze"]})
    with pytest.raises(ValueError, match=r"eval.probe_mmlu_draw"):
        RunConfig().replace(**{"eval.probe_mmlu_draw": "Stratified"})
