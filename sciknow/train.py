"""The training loop: causal-LM loss on whole texts, AdamW, a callback per epoch.

The learning rate is constant by default, or decays linearly to 0 within each epoch as in the original study
(`TrainSpec.lr_schedule`). Either way the schedule does not depend on the number of epochs, on purpose: the
model after epoch k of a 10-epoch run is the model a k-epoch run would give, so one run with per-epoch
evaluation yields the whole score-vs-epoch curve.

Throughput levers (`TrainSpec.autocast`, `compile`, `packing`; `levers` says which a run used): bf16 autocast
runs the matmuls in bf16 over fp32 weights, gradients and optimizer state; `torch.compile` compiles the model
for the training steps; packing puts a batch's texts into one sequence whose positions restart at every text,
so attention stays within each text (transformers builds the block-diagonal mask from the positions) and no
compute goes to padding. benchmarks/ (section `levers`) measures each against its numerical check.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import DataCollatorWithFlattening, PreTrainedTokenizerBase

from . import packed_linears
from .config import TrainSpec


class Diverged(RuntimeError):
    """Training broke down: the loss became NaN or infinite, exploded, or collapsed to uniform guessing."""


# A run "explodes" when a step's loss exceeds both EXPLODE_RATIO x the first step's loss and the loss of uniform
# guessing, ln(vocab), plus EXPLODE_MARGIN nats: worse than knowing nothing, and far worse than at the start.
EXPLODE_RATIO = 3.0
EXPLODE_MARGIN = 1.0
# A run "collapses" when every step of an epoch has a loss within COLLAPSE_TOL nats of ln(vocab) although the
# first step was more than COLLAPSE_START nats below it: the model forgot everything and predicts uniformly.
# (A random model starts at ln(vocab); collapse is only defined for a model that knew something.)
COLLAPSE_TOL = 0.02
COLLAPSE_START = 0.5


def divergence(loss: float, first_loss: float | None, vocab: int) -> str | None:
    """Why a step's loss means the run diverged, or None. `first_loss`: the run's first step's loss."""
    if not math.isfinite(loss):
        return f"loss is {loss}"
    uniform = math.log(vocab)
    if first_loss is not None and loss > max(EXPLODE_RATIO * first_loss, uniform + EXPLODE_MARGIN):
        return (f"loss exploded to {loss:.4g} (first step {first_loss:.4g}; uniform guessing ln({vocab}) = "
                f"{uniform:.2f})")
    return None


def collapsed(losses: Sequence[float], first_loss: float, vocab: int) -> str | None:
    """Why an epoch's step losses mean the model collapsed to uniform guessing, or None."""
    uniform = math.log(vocab)
    if first_loss < uniform - COLLAPSE_START and all(abs(x - uniform) < COLLAPSE_TOL for x in losses):
        return (f"loss collapsed to uniform guessing: every step of the epoch within {COLLAPSE_TOL} of "
                f"ln({vocab}) = {uniform:.3f} (first step {first_loss:.4g})")
    return None


@dataclass
class EpochStats:
    epoch: int
    loss: float  # mean training loss over the epoch's steps
    steps: int  # optimizer steps so far in the run (the step-matched axis)
    tokens: int  # training tokens so far in the run
    train_s: float = 0.0  # seconds spent training so far in the run (per-epoch callbacks excluded)


def tokenize(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> list[torch.Tensor]:
    """Each text becomes one training example: BOS (if the model uses one) + text + EOS, cut at max_length."""
    examples = []
    special = len(tokenizer("", add_special_tokens=True).input_ids)  # BOS, if the model uses one
    for i, text in enumerate(texts):
        if not text.strip():
            raise ValueError(f"training text {i} is empty")
        ids = tokenizer(text, add_special_tokens=True, truncation=True, max_length=max_length - 1).input_ids
        if len(ids) <= special:  # a configuration error, not a divergence: the run is recorded as failed
            raise ValueError(f"train.max_length={max_length} leaves no room for any token of training text {i}")
        examples.append(torch.tensor(ids + [tokenizer.eos_token_id]))
    return examples


def collate(examples: list[torch.Tensor], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padding is masked out of attention and loss."""
    length = max(len(e) for e in examples)
    input_ids = torch.full((len(examples), length), pad_id)
    attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
    for row, e in enumerate(examples):
        input_ids[row, : len(e)] = e
        attention_mask[row, : len(e)] = 1
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def pack(examples: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """A batch as one sequence: texts end to end, positions restarting at each text, and no label on each text's
    first token (as in a padded batch, where nothing predicts a row's first token). The model must be called
    without a cache (`use_cache=False`): transformers only builds the per-text mask from the positions then."""
    return DataCollatorWithFlattening(return_tensors="pt")([{"input_ids": e.tolist()} for e in examples])


def bf16_is_fast(device: torch.device) -> bool:
    """Whether this device has native bf16 matmuls: a GPU with bf16, or a CPU with AVX512-BF16 or AMX-BF16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    capabilities = torch.cpu.get_capabilities()
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def levers(model: torch.nn.Module, spec: TrainSpec) -> dict[str, object]:
    """The throughput levers a run with `spec` uses on `model` here, as stored in its record.

    Autocast applies to fp32 weights only (bf16/fp16 weights already compute in low precision, quantized ones in
    their own compute dtype) and not under DeepSpeed, whose engine owns precision."""
    all_fp32 = all(p.dtype == torch.float32 for p in model.parameters())
    device = next(model.parameters()).device
    wanted = spec.autocast == "bf16" or (spec.autocast == "auto" and bf16_is_fast(device))
    return {"autocast": "bf16" if wanted and all_fp32 and spec.method != "deepspeed" else "off",
            "compile": spec.compile and spec.method != "deepspeed",
            "packing": spec.packing and spec.batch_size > 1,
            "gradient_checkpointing": spec.gradient_checkpointing,
            "float32_matmul": torch.get_float32_matmul_precision(),  # "high" = TF32 on CUDA (models.load)
            # ZeRO-3 evaluates on weights gathered once per evaluation, not streamed in for every token
            "eval_weights": "gathered" if spec.method == "deepspeed" else "resident",
            "answer_matmul": "onednn-packed" if packed_linears.available(model) else "default"}


def adamw(params: list[torch.nn.Parameter], spec: TrainSpec) -> torch.optim.AdamW:
    """AdamW, fused: one kernel for all parameters. On this CPU a full-parameter SmolLM2 step spent ~1.5 s in the
    default per-tensor loop; the fused step is ~5x faster (benchmarks/, section `optim`)."""
    return torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay, fused=True)


def _deepspeed_engine(model: torch.nn.Module, spec: TrainSpec):
    """A ZeRO engine from the repo's JSON config (ZeRO-3, CPU offload) with this run's lr, batch and clipping."""
    import json

    import deepspeed

    from .config import REPO_ROOT

    path = spec.deepspeed_config or REPO_ROOT / "configs" / "deepspeed_zero3_offload.json"
    ds_config = json.loads(open(path).read())
    ds_config.update({"train_micro_batch_size_per_gpu": spec.batch_size, "gradient_accumulation_steps": 1,
                      "gradient_clipping": spec.max_grad_norm})
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = None
    if torch.cuda.is_available():
        # GPU: DeepSpeed's own CPU-offloaded AdamW, as in the paper.
        ds_config.setdefault("optimizer", {"type": "AdamW", "params": {}})["params"].update(
            {"lr": spec.lr, "weight_decay": spec.weight_decay})
    else:
        # CPU accelerator: "offload to CPU" is where the weights already are, and DeepSpeedCPUAdam would first
        # compile a C++ extension (minutes); torch's AdamW does the same update.
        ds_config.pop("optimizer", None)
        ds_config["zero_force_ds_cpu_optimizer"] = False
        optimizer = adamw(params, spec)
    engine, *_ = deepspeed.initialize(model=model, model_parameters=params, optimizer=optimizer, config=ds_config)
    return engine


@contextmanager
def gathered_for_evaluation(engine) -> Iterator[None]:
    """ZeRO-3's weights gathered once for an evaluation. Otherwise every generated token's forward fetches every
    layer again (from pageable host memory with parameter offload) and releases it. The engine's fetch/release
    hooks come off meanwhile (they would release the gathered weights after each layer), as in TRL's
    `unwrap_model_for_generation`."""
    if engine is None or engine.zero_optimization_stage() != 3:
        yield
        return
    import deepspeed
    from deepspeed.runtime.zero.partitioned_param_coordinator import iter_params

    offload = engine.optimizer.parameter_offload
    with deepspeed.zero.GatheredParameters(list(engine.module.parameters())):
        for param in iter_params(offload.module, recurse=True):
            param.ds_active_sub_modules.clear()
        for hook in offload.forward_hooks + offload.backward_hooks:
            hook.remove()
        offload.forward_hooks, offload.backward_hooks = [], []
        try:
            yield
        finally:
            offload._register_deepspeed_module(offload.module)


def step_lr(spec: TrainSpec, step_in_epoch: int, steps_per_epoch: int) -> float:
    """The learning rate of an epoch's step `step_in_epoch` (0-based). "linear_per_epoch" is HF's linear
    schedule without warm-up over one epoch: lr * (n - i) / n, as in the original study's Trainer.train() calls."""
    if spec.lr_schedule == "linear_per_epoch":
        return spec.lr * (steps_per_epoch - step_in_epoch) / steps_per_epoch
    return spec.lr


def train(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    spec: TrainSpec,
    on_epoch: Callable[[EpochStats], None] | None = None,
    progress: bool = True,
) -> list[EpochStats]:
    """Train `model` in place on `texts` for `spec.epochs` epochs; raises `Diverged` when the loss becomes
    non-finite, explodes or collapses (`divergence`, `collapsed`).

    `on_epoch` runs after every epoch (per-epoch evaluation); its side effects survive a later divergence.
    """
    torch.manual_seed(spec.seed)
    examples = tokenize(tokenizer, texts, spec.max_length)
    order_rng = torch.Generator().manual_seed(spec.seed)  # data order depends only on the seed
    engine = _deepspeed_engine(model, spec) if spec.method == "deepspeed" else None
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = None if engine else adamw(params, spec)
    dev = engine.device if engine else next(model.parameters()).device
    active = levers(model, spec)
    if spec.gradient_checkpointing:  # undone by models.trainable when the run ends
        model.activation_checkpointing_enable()
    forward = engine or (torch.compile(model, dynamic=True) if active["compile"] else model)

    history: list[EpochStats] = []
    steps = tokens = 0
    first_loss: float | None = None
    n_batches = math.ceil(len(examples) / spec.batch_size)
    bar = tqdm(total=spec.epochs * n_batches, desc="training", disable=not progress, leave=False)
    param_groups = (engine.optimizer if engine else optimizer).param_groups
    model.train()
    started, in_callbacks = time.perf_counter(), 0.0
    for epoch in range(1, spec.epochs + 1):
        order = (torch.randperm(len(examples), generator=order_rng).tolist() if spec.shuffle
                 else list(range(len(examples))))
        losses = []
        for i, start in enumerate(range(0, len(order), spec.batch_size)):
            for group in param_groups:
                group["lr"] = step_lr(spec, i, n_batches)
            texts_in_batch = [examples[j] for j in order[start:start + spec.batch_size]]
            batch = pack(texts_in_batch) if active["packing"] else collate(texts_in_batch, tokenizer.pad_token_id)
            batch = {k: v.to(dev) for k, v in batch.items()}
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=active["autocast"] == "bf16"):
                out = forward(**batch, use_cache=False)  # a KV cache is useless here and turns off packing's mask
            loss, vocab = out.loss, out.logits.shape[-1]
            value = loss.item()
            first_loss = value if first_loss is None else first_loss
            reason = divergence(value, first_loss, vocab)
            if reason:
                bar.close()
                raise Diverged(f"{reason} at epoch {epoch}, step {steps + 1}")
            if engine:
                engine.backward(loss)
                engine.step()
            else:
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, spec.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            steps += 1
            tokens += sum(len(e) for e in texts_in_batch)
            losses.append(value)
            bar.update()
            bar.set_postfix(epoch=epoch, loss=f"{value:.3f}")
        reason = collapsed(losses, first_loss, vocab)
        if reason:
            bar.close()
            raise Diverged(f"{reason} at epoch {epoch}")
        stats = EpochStats(epoch=epoch, loss=sum(losses) / len(losses), steps=steps, tokens=tokens,
                           train_s=time.perf_counter() - started - in_callbacks)
        history.append(stats)
        if on_epoch:
            callback_start = time.perf_counter()
            with gathered_for_evaluation(engine):
                on_epoch(stats)
            in_callbacks += time.perf_counter() - callback_start
            model.train()  # the callback may have switched to eval mode for generation
    bar.close()
    model.eval()
    return history
