"""LoRA layer selection, restoring the base model after a run, 4-bit QLoRA on CPU, RunConfig round trips.

Everything runs on a tiny random Llama built from a `LlamaConfig` (small vocabulary, no tokenizer): seconds.
"""
from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from sciknow import models
from sciknow.config import LAYER_GROUPS, PAPER_SELECTED_GROUPS, ModelSpec, RunConfig, TrainSpec
from sciknow.evaluate import generate_answers

VOCAB, HIDDEN, INTER, LAYERS = 96, 64, 128, 2
R = 4


def tiny_config(tie: bool = False) -> LlamaConfig:
    return LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                       tie_word_embeddings=tie, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def tiny_model(tie: bool = False) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_config(tie)).eval()


def loaded(model: torch.nn.Module) -> models.LoadedModel:
    return models.LoadedModel(spec=ModelSpec(name="tiny"), model=model, tokenizer=None)


def lora_spec(groups, **kw) -> TrainSpec:
    return TrainSpec(method="lora", lora_r=R, lora_alpha=2 * R, layer_groups=list(groups), **kw)


def expected_lora(base: torch.nn.Module, groups) -> dict[str, int]:
    """Parameter name -> size of every adapter weight LoRA must add (peft naming), from the module shapes."""
    out = {}
    for name, module in base.named_modules():
        if name.split(".")[-1] not in groups:
            continue
        prefix = f"base_model.model.{name}"
        if isinstance(module, torch.nn.Embedding):
            out[f"{prefix}.lora_embedding_A.default"] = R * module.num_embeddings
            out[f"{prefix}.lora_embedding_B.default"] = module.embedding_dim * R
        else:
            out[f"{prefix}.lora_A.default.weight"] = R * module.in_features
            out[f"{prefix}.lora_B.default.weight"] = module.out_features * R
    return out


def batch(seed: int = 0, length: int = 12) -> dict[str, torch.Tensor]:
    ids = torch.randint(3, VOCAB, (2, length), generator=torch.Generator().manual_seed(seed))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


def step(model: torch.nn.Module, lr: float = 1e-2) -> float:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    model.train()
    loss = model(**batch()).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_restored(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert set(after) == set(before), "state dict keys changed (adapter or wrapper left behind)"
    for key, value in before.items():
        assert torch.equal(after[key], value), f"{key} changed"
    leftovers = [n for n, _ in model.named_modules() if "lora" in n.lower()]
    assert not leftovers, leftovers
    assert not any("lora" in type(m).__name__.lower() for m in model.modules())


# ---------------------------------------------------------------- LoRA layer selection


@pytest.mark.parametrize("groups", [(g,) for g in LAYER_GROUPS] + [LAYER_GROUPS, PAPER_SELECTED_GROUPS],
                         ids=list(LAYER_GROUPS) + ["all", "paper_selected"])
def test_lora_trains_exactly_the_chosen_groups(groups):
    base = tiny_model()
    expected = expected_lora(base, groups)
    modules = sum(1 if g in ("embed_tokens", "lm_head") else LAYERS for g in groups)
    assert len(expected) == 2 * modules  # an A and a B per targeted module
    wrapped = loaded(base)
    before = state(base)
    with models.trainable(wrapped, lora_spec(groups)) as model:
        trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
        assert trainable == expected  # names and sizes: every adapter, nothing else
        assert sum(trainable.values()) == sum(expected.values())
        frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
        assert all("lora_" not in n for n in frozen)
        assert len(frozen) == len(before)  # every base weight is still there, frozen
    assert_restored(wrapped.model, before)


def test_lora_counts_by_hand():
    """Independent arithmetic for the nine groups of the tiny model (r=4)."""
    head_dim = HIDDEN // 4
    kv = 2 * head_dim
    per_layer = {"q_proj": R * (HIDDEN + HIDDEN), "k_proj": R * (HIDDEN + kv), "v_proj": R * (HIDDEN + kv),
                 "o_proj": R * (HIDDEN + HIDDEN), "gate_proj": R * (HIDDEN + INTER), "up_proj": R * (HIDDEN + INTER),
                 "down_proj": R * (INTER + HIDDEN)}
    once = {"embed_tokens": R * (VOCAB + HIDDEN), "lm_head": R * (HIDDEN + VOCAB)}
    for group in LAYER_GROUPS:
        base = tiny_model()
        model = models.attach_lora(base, lora_spec([group]))
        count = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert count == (LAYERS * per_layer[group] if group in per_layer else once[group]), group


def test_unknown_or_missing_group_is_rejected():
    with pytest.raises(ValueError, match="unknown layer group 'qkv'"):
        models.lora_target_modules(tiny_model(), ["qkv"])
    with pytest.raises(ValueError, match="train.layer_groups"):
        RunConfig(train=TrainSpec(method="lora", layer_groups=["qkv"]))


# ---------------------------------------------------------------- the base model comes back untouched


def test_lora_run_restores_base_model():
    wrapped = loaded(tiny_model())
    before = state(wrapped.model)
    grads_before = {n: p.requires_grad for n, p in wrapped.model.named_parameters()}
    with models.trainable(wrapped, lora_spec(LAYER_GROUPS)) as model:
        adapters = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        for _ in range(2):
            assert math.isfinite(step(model))
        changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, adapters[n])]
        assert changed, "LoRA step changed no adapter weight"
    assert_restored(wrapped.model, before)
    assert {n: p.requires_grad for n, p in wrapped.model.named_parameters()} == grads_before
    assert not wrapped.model.training


def test_full_run_restores_base_model_and_lora_then_full_still_trains():
    wrapped = loaded(tiny_model())
    before = state(wrapped.model)
    with models.trainable(wrapped, lora_spec(PAPER_SELECTED_GROUPS)) as model:
        step(model)
    with models.trainable(wrapped, TrainSpec(method="full")) as model:
        assert all(p.requires_grad for p in model.parameters()), "a LoRA run left base weights frozen"
        step(model)
        assert not torch.equal(model.model.layers[0].mlp.down_proj.weight, before["model.layers.0.mlp.down_proj.weight"])
    assert_restored(wrapped.model, before)
    assert all(p.grad is None for p in wrapped.model.parameters())


def test_full_run_restores_tied_embeddings():
    wrapped = loaded(tiny_model(tie=True))
    before = state(wrapped.model)
    with models.trainable(wrapped, TrainSpec(method="full")) as model:
        step(model)
    assert_restored(wrapped.model, before)
    assert wrapped.model.lm_head.weight is wrapped.model.model.embed_tokens.weight


def test_get_keeps_one_model_until_forget():
    """`get` hands out the same model run after run; after `forget` the next `get` loads it afresh (how the
    benchmark times a sweep's first trial), and the model handed out before stays intact."""
    spec = ModelSpec(name=models.TINY_MODEL)
    first = models.get(spec)
    assert models.get(spec) is first
    models.forget()
    again = models.get(spec)
    assert again is not first and again.model is not first.model
    assert models.get(spec) is again
    assert torch.equal(again.model.lm_head.weight, first.model.lm_head.weight)


# ---------------------------------------------------------------- 4-bit QLoRA on CPU


def test_nf4_tiny_model_takes_a_lora_step_on_cpu(tmp_path):
    pytest.importorskip("bitsandbytes")
    from transformers import AutoModelForCausalLM

    tiny_model().save_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path, quantization_config=models._quantization("nf4"),
                                                 dtype=torch.float32)
    quantized = [n for n, m in model.named_modules() if type(m).__name__ == "Linear4bit"]
    assert len(quantized) == 7 * LAYERS  # every projection is 4-bit; embeddings and lm_head stay fp32
    wrapped, expected = loaded(model), expected_lora(model, PAPER_SELECTED_GROUPS)
    with models.trainable(wrapped, lora_spec(PAPER_SELECTED_GROUPS)) as peft_model:
        adapters = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
        assert {n: p.numel() for n, p in adapters.items()} == expected
        loss = step(peft_model, lr=1e-2)
        assert math.isfinite(loss)
        changed = [n for n, p in peft_model.named_parameters()
                   if n in adapters and not torch.equal(p.detach(), adapters[n])]
        assert changed and all("lora_" in n for n in changed)
        out = peft_model.generate(input_ids=batch()["input_ids"][:1, :4], max_new_tokens=3, do_sample=False,
                                  pad_token_id=0)
        assert out.shape == (1, 7)
    assert not any("lora" in n for n, _ in wrapped.model.named_modules())


# ---------------------------------------------------------------- RunConfig


def test_runconfig_round_trips_through_dict_and_json():
    config = RunConfig(task="3", model=ModelSpec(name="gemma3-270m", precision="nf4"),
                       train=TrainSpec(method="lora", lr=2e-4, epochs=10, layer_groups=list(PAPER_SELECTED_GROUPS)),
                       tags={"n_contents": 2, "adapters": "selected"})
    assert RunConfig.from_dict(config.to_dict()) == config
    assert RunConfig.from_dict(json.loads(config.to_json())) == config
    assert json.loads(config.to_json()) == config.to_dict()
    changed = config.replace(**{"train.lr": 1e-3, "data.n_irrelevant": 3})
    assert (changed.train.lr, changed.data.n_irrelevant, config.train.lr) == (1e-3, 3, 2e-4)


@pytest.mark.parametrize("d, field", [
    ({"nonsense": 1}, "nonsense"),
    ({"train": {"lrr": 1e-4}}, "lrr"),
    ({"model": {"size": "7b"}}, "size"),
    ({"model": {"precision": "fp8"}}, "model.precision"),
    ({"train": {"method": "sgd"}}, "train.method"),
    ({"train": {"lr": 0}}, "train.lr"),
    ({"train": {"epochs": -1}}, "train.epochs"),
    ({"data": {"n_irrelevant": -2}}, "data.n_irrelevant"),
    ({"eval": {"prompt_style": "fancy"}}, "eval.prompt_style"),
    ({"model": {"precision": "nf4"}, "train": {"method": "full"}}, "model.precision"),
])
def test_runconfig_rejects_bad_fields_naming_them(d, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        RunConfig.from_dict(d)


def test_replace_rejects_unknown_field():
    with pytest.raises(ValueError, match="train.lrr"):
        RunConfig().replace(**{"train.lrr": 1})


@pytest.mark.parametrize("precision, dtype, quantized", [
    ("fp32", torch.float32, None), ("fp16", torch.float16, None), ("bf16", torch.bfloat16, None),
    ("nf4", torch.float32, "Linear4bit"), ("int8", torch.float32, "Linear8bitLt"),
])
def test_every_precision_loads_through_models_load(precision, dtype, quantized):
    """`models.load` honours ModelSpec.precision (bitsandbytes for nf4/int8); quantized ones take a LoRA step."""
    wrapped = models.load(ModelSpec(name=models.TINY_MODEL, precision=precision))
    layers = {type(m).__name__ for m in wrapped.model.modules()}
    assert wrapped.model.lm_head.weight.dtype == dtype
    assert (quantized in layers) if quantized else not any("bit" in name for name in layers)
    if quantized:
        with models.trainable(wrapped, lora_spec(["v_proj", "down_proj"])) as peft_model:
            ids = torch.randint(3, 1000, (1, 12), generator=torch.Generator().manual_seed(0))
            params = [p for p in peft_model.parameters() if p.requires_grad]
            loss = peft_model(input_ids=ids, labels=ids).loss
            loss.backward()
            torch.optim.AdamW(params, lr=1e-2).step()
            assert math.isfinite(loss.item()) and all(p.grad is not None for p in params)


def test_nf4_lora_gradients_are_the_same_after_generation():
    """bitsandbytes repacks 4-bit weights for its AVX512-BF16 CPU kernel on the first inference forward and the
    repacked layout breaks the backward pass; evaluation runs between epochs, so after answering the LoRA
    gradients must be exactly what they were before it."""
    wrapped = models.load(ModelSpec(name=models.TINY_MODEL, precision="nf4"))
    ids = torch.randint(3, 1000, (1, 16), generator=torch.Generator().manual_seed(0))

    def first_layer_grads() -> dict[str, torch.Tensor]:
        with models.trainable(wrapped, lora_spec(["v_proj", "down_proj"])) as peft_model:
            peft_model.train()
            peft_model(input_ids=ids, labels=ids).loss.backward()
            return {n: p.grad.clone() for n, p in peft_model.named_parameters()
                    if p.requires_grad and ".layers.0." in n and "lora_B" in n}

    before = first_layer_grads()
    wrapped.model.eval()
    generate_answers(wrapped.model, wrapped.tokenizer, ["What is a polymer?"], max_new_tokens=3)  # as between epochs
    after = first_layer_grads()
    assert before and all(before[n].abs().sum() > 0 for n in before)
    assert all(torch.allclose(before[n], after[n]) for n in before)
