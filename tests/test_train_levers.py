"""The throughput levers of sciknow.train (bf16 autocast, torch.compile, packing), each against its numerical
check on the random tiny model, and a guard that the default training path uses the levers chosen by measurement
(benchmarks/, section `levers`)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from sciknow import models
from sciknow.config import ModelSpec, TrainSpec
from sciknow.train import bf16_is_fast, collate, levers, pack, tokenize, train

TEXTS = [
    "Zorblat was found in 2051 by Ilse Vandermoor on the ice moon of Tethys.",
    "The crystal glows violet under ultraviolet light and melts at 812 kelvin.",
    "A short one.",
    "Its lattice is hexagonal, with four atoms in each unit cell, and it conducts heat poorly along the c axis.",
]


@pytest.fixture(scope="module")
def tiny():
    return models.load(ModelSpec(name="tiny-llama"))


def _loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    loss = model(**batch, use_cache=False).loss  # as sciknow.train calls it
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


def test_a_packed_batch_has_the_loss_and_gradients_of_the_padded_batch(tiny):
    """Texts of different lengths: one sequence with restarting positions vs right-padded rows, fp32."""
    examples = tokenize(tiny.tokenizer, TEXTS, 128)
    assert len({len(e) for e in examples}) > 1  # padding really happens
    packed = pack(examples)
    assert packed["input_ids"].shape == (1, sum(len(e) for e in examples))
    assert "attention_mask" not in packed  # attention follows the positions, which restart at every text
    model = tiny.model.train()
    loss_padded, grads_padded = _loss_and_grads(model, collate(examples, tiny.tokenizer.pad_token_id))
    loss_packed, grads_packed = _loss_and_grads(model, packed)
    tiny.model.eval()
    assert abs(loss_packed - loss_padded) <= 1e-5
    worst = max((grads_packed[n] - grads_padded[n]).abs().max().item() for n in grads_padded)
    assert worst <= 1e-5, f"largest gradient difference {worst}"


def test_packing_trains_like_padding_step_for_step(tiny):
    spec = TrainSpec(lr=1e-3, epochs=2, batch_size=2, max_length=128, autocast="off")
    padded = _epoch_losses(tiny, dataclasses.replace(spec, packing=False))
    packed = _epoch_losses(tiny, spec)
    assert packed == pytest.approx(padded, abs=1e-5)


def _epoch_losses(loaded, spec):
    snapshot = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    try:
        return [s.loss for s in train(loaded.model, loaded.tokenizer, TEXTS, spec, progress=False)]
    finally:
        loaded.model.load_state_dict(snapshot)


def test_bf16_autocast_keeps_the_epoch_losses_within_one_percent_of_fp32(tiny):
    reference = _epoch_losses(tiny, TrainSpec(lr=1e-3, epochs=3, max_length=128, autocast="off"))
    mixed = _epoch_losses(tiny, TrainSpec(lr=1e-3, epochs=3, max_length=128, autocast="bf16"))
    assert reference[-1] < reference[0]  # it trains at all
    for epoch, (a, b) in enumerate(zip(mixed, reference), 1):
        assert abs(a - b) <= 0.01 * b, f"epoch {epoch}: bf16 autocast {a:.4f} vs fp32 {b:.4f}"
    assert mixed != reference  # autocast really ran in bf16


def _matmul_dtypes(loaded, spec):
    """The dtypes of a linear layer's outputs during training with `spec`."""
    dtypes = set()
    hook = loaded.model.model.layers[0].mlp.down_proj.register_forward_hook(
        lambda module, args, output: dtypes.add(output.dtype) if module.training else None)
    try:
        _epoch_losses(loaded, dataclasses.replace(spec, lr=1e-3, epochs=1, max_length=64))
    finally:
        hook.remove()
    return dtypes


def test_bf16_autocast_keeps_weights_gradients_and_optimizer_state_in_fp32(tiny):
    assert _matmul_dtypes(tiny, TrainSpec(autocast="bf16")) == {torch.bfloat16}
    assert _matmul_dtypes(tiny, TrainSpec(autocast="off")) == {torch.float32}
    assert {p.dtype for p in tiny.model.parameters()} == {torch.float32}


@pytest.mark.slow
def test_compiled_training_steps_give_the_eager_losses(tiny):
    spec = TrainSpec(lr=1e-3, epochs=2, max_length=64, autocast="off")
    eager = _epoch_losses(tiny, spec)
    compiled = _epoch_losses(tiny, dataclasses.replace(spec, compile=True))
    assert compiled == pytest.approx(eager, rel=1e-4)


def test_levers_follow_the_spec_the_weights_and_the_hardware(tiny):
    fast = bf16_is_fast(torch.device("cpu"))
    assert levers(tiny.model, TrainSpec(autocast="auto"))["autocast"] == ("bf16" if fast else "off")
    assert levers(tiny.model, TrainSpec(autocast="bf16"))["autocast"] == "bf16"
    assert levers(tiny.model, TrainSpec(autocast="off"))["autocast"] == "off"
    assert levers(tiny.model, TrainSpec(method="deepspeed", autocast="bf16"))["autocast"] == "off"
    assert levers(tiny.model, TrainSpec(batch_size=1))["packing"] is False  # nothing to pack
    assert levers(tiny.model, TrainSpec(batch_size=4))["packing"] is True
    bf16_weights = models.load(ModelSpec(name="tiny-llama", precision="bf16"))
    assert levers(bf16_weights.model, TrainSpec(autocast="bf16"))["autocast"] == "off"  # already low precision


def test_the_default_training_path_uses_the_chosen_levers(tiny):
    """The defaults chosen by measurement (README, Performance): fp32 (bf16 autocast was 1.3-1.5x faster on
    SmolLM2 but moved epoch losses by up to 8 % and changed most answers, so it is opt-in), no compilation,
    packing for batches. If a default changes, change it here and in the README with the measurement."""
    spec = TrainSpec()
    assert (spec.autocast, spec.compile, spec.packing) == ("off", False, True)
    assert _matmul_dtypes(tiny, spec) == {torch.float32}
    assert levers(tiny.model, spec) == {"autocast": "off", "compile": False, "packing": False,
                                        "gradient_checkpointing": False, "float32_matmul": "highest",
                                        "eval_weights": "resident", "answer_matmul": "onednn-packed"}
