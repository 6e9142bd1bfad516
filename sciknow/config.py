"""Run configuration as plain dataclasses that round-trip to JSON.

One `RunConfig` fully describes one experiment: which model, which training texts, how to train, how to
evaluate. It is stored verbatim in every result record, so any row of any results table can be re-run.
"""
from __future__ import annotations

import dataclasses
import json
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
# Fields added after results were first recorded: left out of config ids while at their defaults, so the ids
# (and the resumability of older results files) stay unchanged.
LATER_DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {"dataset": None, "genre_counts": {}},
    "eval": {"suite": "keywords", "n_qa": 0, "n_mc": 0, "n_mmlu": 0, "mc_max_new_tokens": 8, "judge": None},
    "train": {"lr_schedule": "constant"},
}
# Fields that change how fast a run goes, not its result (greedy answers do not depend on the evaluation batch):
# they enter config ids at the value older results were recorded with, so changing them never forces a re-run.
SPEED_ONLY: dict[str, dict[str, Any]] = {"eval": {"batch_size": 8}}

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_KNOWLEDGE_SET = REPO_ROOT / "data" / "knowledge" / "zephyrite.json"
SHARED_DIR = REPO_ROOT.parent / "shared"
POLYAI_SET = SHARED_DIR / "reference" / "polyai" / "polyai.json"


@dataclass
class ModelSpec:
    name: str = "smollm2-135m-instruct"  # a registered name, a hub id or a local folder
    precision: str = "fp32"
    trust_remote_code: bool = False


@dataclass
class DataSpec:
    knowledge_set: str = str(DEFAULT_KNOWLEDGE_SET)
    contents: list[str] = field(default_factory=lambda: ["C1"])  # content ids, in training order
    n_irrelevant: int = 0
    # Where irrelevant texts come from: "knowledge_set" (its own irrelevant_texts) or a folder of JATS XML.
    irrelevant_source: str = "knowledge_set"
    irrelevant_seed: int = 0
    # Task 4: a folder written by `paperqa.build_datasets`. When set, the training texts are `genre_counts[g]`
    # texts of each genre g drawn with `irrelevant_seed` (knowledge_set/contents/n_irrelevant are then unused).
    dataset: str | None = None
    genre_counts: dict[str, int] = field(default_factory=dict)


@dataclass
class TrainSpec:
    method: str = "full"
    lr: float = 1e-4
    lr_schedule: str = "constant"  # or "linear_per_epoch" (LR_SCHEDULES)
    epochs: int = 5
    batch_size: int = 1
    max_length: int = 512
    seed: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # LoRA only
    lora_r: int = 100
    lora_alpha: int = 300
    lora_dropout: float = 0.0
    layer_groups: list[str] = field(default_factory=lambda: list(LAYER_GROUPS))
    # DeepSpeed only: path to a ZeRO config JSON (default: configs/deepspeed_zero3_offload.json)
    deepspeed_config: str | None = None


@dataclass
class EvalSpec:
    prompt_style: str = "auto"  # "chat" uses the tokenizer's chat template; "plain" a Question/Answer prompt
    max_new_tokens: int = 100
    # Questions decoded together. Rows leave the batch as they finish; the KV cache holds at most batch_size x
    # (prompt + max_new_tokens) tokens: lower it for 7B+ models on a small GPU.
    batch_size: int = 64
    every_epoch: bool = True  # evaluate after each epoch (one run = whole score-vs-epoch curve)
    # "keywords": keyword recall on the knowledge set's questions; "paper" (Task 4, needs data.dataset): ROUGE-2
    # on held-out descriptive Q&A (= score) plus multiple-choice and MMLU accuracy (+ judge) in `metrics`.
    suite: str = "keywords"
    n_qa: int = 0  # paper suite: first n held-out items of each test set (0 = all)
    n_mc: int = 0
    n_mmlu: int = 0
    mc_max_new_tokens: int = 8
    judge: dict[str, Any] | None = None  # OpenAICompatibleBackend kwargs (base_url, model, api_key_env); no keys


@dataclass
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
        """A copy with some fields changed; nested fields by dotted name: `replace(**{"train.lr": 1e-4})`."""
        d = self.to_dict()
        for key, value in changes.items():
            section, _, name = key.rpartition(".")
            target = d[section] if section else d
            if name not in target:
                raise ValueError(f"RunConfig.replace: unknown field {key!r}")
            target[name] = value
        return RunConfig.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        sections = {"model": ModelSpec, "data": DataSpec, "train": TrainSpec, "eval": EvalSpec}
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"RunConfig: unknown field(s) {sorted(unknown)}")
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            if key in sections:
                spec = sections[key]
                bad = set(value) - {f.name for f in dataclasses.fields(spec)}
                if bad:
                    raise ValueError(f"RunConfig.{key}: unknown field(s) {sorted(bad)}")
                kwargs[key] = spec(**value)
            else:
                kwargs[key] = value
        return cls(**kwargs)


def check(config: RunConfig) -> None:
    """Reject impossible settings early, naming the field, instead of failing mid-run."""
    t, m, e = config.train, config.model, config.eval
    problems = []
    if m.precision not in PRECISIONS:
        problems.append(f"model.precision={m.precision!r} (expected one of {PRECISIONS})")
    if t.method not in METHODS:
        problems.append(f"train.method={t.method!r} (expected one of {METHODS})")
    if t.lr_schedule not in LR_SCHEDULES:
        problems.append(f"train.lr_schedule={t.lr_schedule!r} (expected one of {LR_SCHEDULES})")
    if e.prompt_style not in PROMPT_STYLES:
        problems.append(f"eval.prompt_style={e.prompt_style!r} (expected one of {PROMPT_STYLES})")
    if t.method == "lora":
        bad = [g for g in t.layer_groups if g not in LAYER_GROUPS]
        if bad or not t.layer_groups:
            problems.append(f"train.layer_groups={t.layer_groups!r} (need a non-empty subset of {LAYER_GROUPS})")
    if t.method != "lora" and m.precision in ("nf4", "int8"):
        problems.append(f"model.precision={m.precision!r} needs train.method='lora' (quantized weights are frozen)")
    for name in ("lr", "batch_size", "max_length"):
        if not getattr(t, name) > 0:
            problems.append(f"train.{name}={getattr(t, name)!r} (must be > 0)")
    if t.epochs < 0:
        problems.append(f"train.epochs={t.epochs} (0 = evaluate the untrained model; must be >= 0)")
    if e.suite not in SUITES:
        problems.append(f"eval.suite={e.suite!r} (expected one of {SUITES})")
    if e.suite == "paper" and not config.data.dataset:
        problems.append("eval.suite='paper' needs data.dataset (a folder from paperqa.build_datasets)")
    if any((not isinstance(n, int)) or n < -1 for n in config.data.genre_counts.values()):
        problems.append(f"data.genre_counts={config.data.genre_counts!r} (counts must be ints >= 0, or -1 = all)")
    if e.judge is not None and any("key" in k.lower() and k != "api_key_env" for k in e.judge):
        problems.append("eval.judge must not hold secrets: name the environment variable with api_key_env")
    if config.data.n_irrelevant < 0:
        problems.append(f"data.n_irrelevant={config.data.n_irrelevant} (must be >= 0)")
    if problems:
        raise ValueError("invalid RunConfig: " + "; ".join(problems))
