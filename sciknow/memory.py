"""Will a run fit in memory? Counted from the model's config, before any weight is loaded.

Full-parameter training keeps, per parameter: the weight, its gradient and AdamW's two moment estimates, all
in the weights' dtype (torch's AdamW keeps its state like the parameter), plus on CPU the snapshot that
`models.LoadedModel` takes to restore the weights after the run. On top of that come the activations that
backpropagation keeps: per layer about tokens x (34 hidden + 5 heads x seq) bytes at 2 bytes per value
(Korthikanti et al. 2022, "Reducing activation recomputation", eq. 1, without sequence parallelism), scaled to
the compute dtype, and the logits (fp32 logits, their log-softmax and its gradient: 3 x tokens x vocab x 4 bytes),
plus a fixed margin for the interpreter, torch and the tokenizer. The budget is the machine's RAM on CPU, or
the summed memory of the visible GPUs on CUDA (the snapshot then lives in RAM and is not counted against it).

The parameter count comes from the model's config: the converted folder of a registered model, else its GGUF
header (registered models not converted yet: `AutoConfig` reads the GGUF metadata), a local folder or a hub id.
The model is built on the meta device, which allocates nothing, and its distinct parameters are counted (tied
embeddings once).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from . import models
from .config import ModelSpec, RunConfig, TrainSpec

GIB = 1 << 30
RUNTIME_MARGIN = 1 * GIB  # interpreter, torch, tokenizer, evaluation's KV cache for short answers
BYTES_PER_VALUE = {"fp32": 4, "fp16": 2, "bf16": 2}  # full-parameter training needs unquantized weights


class DoesNotFit(ValueError):
    """A full-parameter run needs more memory than the machine has; the message carries the estimate."""


def model_config(name: str, trust_remote_code: bool = False):
    """The transformers config of `name` without loading weights (see the module docstring for the sources)."""
    from transformers import AutoConfig

    if name in models.GGUF_MODELS or name == models.TINY_MODEL:
        converted = models.cache_dir() / "models" / name
        if (converted / "config.json").exists():
            return AutoConfig.from_pretrained(converted)
        if name == models.TINY_MODEL:
            return AutoConfig.from_pretrained(models.resolve(name))  # built in a second, no download
        folder, gguf_file = models.GGUF_MODELS[name]()
        return AutoConfig.from_pretrained(folder, gguf_file=gguf_file)
    return AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)


def parameter_count(name: str, trust_remote_code: bool = False) -> int:
    """Distinct parameters of the model `name` (tied weights once), counted on the meta device."""
    from transformers import AutoModelForCausalLM

    config = model_config(name, trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once


@dataclass(frozen=True)
class Estimate:
    """Bytes of a full-parameter training run, by part, against the memory it must fit in."""

    parameters: int
    weights: int
    gradients: int
    adamw: int
    snapshot: int
    activations: int
    margin: int
    budget: int
    budget_source: str  # "RAM" or "GPU memory (n GPUs)"

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.adamw + self.snapshot + self.activations + self.margin

    @property
    def fits(self) -> bool:
        return self.total <= self.budget

    def describe(self) -> str:
        parts = [("weights", self.weights), ("gradients", self.gradients), ("AdamW state", self.adamw)]
        parts += [("restore snapshot", self.snapshot)] if self.snapshot else []
        parts += [("activations", self.activations), ("runtime margin", self.margin)]
        detail = " + ".join(f"{what} {n / GIB:.1f}" for what, n in parts)
        return (f"{self.parameters / 1e6:,.0f}M parameters: about {self.total / GIB:.1f} GiB ({detail} GiB) "
                f"against {self.budget / GIB:.1f} GiB of {self.budget_source}")


def machine_budget() -> tuple[int, str]:
    """The memory a run may use: the summed memory of the visible GPUs, else the machine's physical RAM."""
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        total = sum(torch.cuda.get_device_properties(i).total_memory for i in range(n))
        return total, f"GPU memory ({n} GPU{'s' if n > 1 else ''})"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "RAM"


def full_training_estimate(model: ModelSpec, train: TrainSpec, budget: tuple[int, str] | None = None) -> Estimate:
    """What full-parameter training of `model` with `train` needs (module docstring); `budget` defaults to this
    machine's (`machine_budget`)."""
    if model.precision not in BYTES_PER_VALUE:
        raise ValueError(f"model.precision={model.precision!r}: full-parameter training needs one of "
                         f"{tuple(BYTES_PER_VALUE)} (quantized weights are frozen)")
    config = model_config(model.name, model.trust_remote_code)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    n = parameter_count(model.name, model.trust_remote_code)
    value = BYTES_PER_VALUE[model.precision]
    compute = 2 if train.autocast == "bf16" else value  # autocast "auto" may stay fp32: count the larger
    tokens, seq = train.batch_size * train.max_length, train.max_length
    per_layer = tokens * (34 * text.hidden_size + 5 * text.num_attention_heads * seq) * compute / 2
    activations = int(text.num_hidden_layers * per_layer + 3 * tokens * text.vocab_size * 4)
    budget_bytes, source = budget or machine_budget()
    on_gpu = torch.cuda.is_available()
    return Estimate(parameters=n, weights=n * value, gradients=n * value, adamw=2 * n * value,
                    snapshot=0 if on_gpu else n * value, activations=activations, margin=RUNTIME_MARGIN,
                    budget=budget_bytes, budget_source=source)


def full_training_fits(model: ModelSpec, train: TrainSpec, budget: tuple[int, str] | None = None) -> bool:
    """Can `model` train full-parameter here (or within `budget`)? Never with quantized (frozen) weights: those
    train LoRA adapters only."""
    return model.precision in BYTES_PER_VALUE and full_training_estimate(model, train, budget).fits


def check_fits(config: RunConfig, budget: tuple[int, str] | None = None) -> Estimate | None:
    """Refuse a full-parameter run that cannot fit, before its model loads (`DoesNotFit` with the estimate).
    LoRA and DeepSpeed runs (adapters only; ZeRO-3 offload) are not checked: returns None for them."""
    if config.train.method != "full":
        return None
    estimate = full_training_estimate(config.model, config.train, budget)
    if not estimate.fits:
        raise DoesNotFit(f"model.name={config.model.name!r} with train.method='full' does not fit: "
                         f"{estimate.describe()}. Use train.method='lora' (or 'deepspeed' with offload), or a "
                         "machine with more memory.")
    return estimate
