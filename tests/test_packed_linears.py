"""Answering with prepacked oneDNN weights (`sciknow.packed_linears`) gives the default kernel's answers, token for
token, and leaves the model as it was."""
from __future__ import annotations

import pytest
import torch

from sciknow import models, packed_linears
from sciknow.config import ModelSpec, SUITE_DIR
from sciknow.data import load_suite
from sciknow.evaluate import generate_answers

from conftest import tiny_with_large_weights
from test_batching import QUESTIONS

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")


@pytest.fixture(scope="module")
def tiny():
    """The tiny random Llama with weights of std 0.3 (as built, it answers every prompt with one token)."""
    torch.set_num_threads(1)
    return tiny_with_large_weights(1)


def _default_kernel_answers(model, tokenizer, questions, max_new_tokens):
    with torch.backends.mkldnn.flags(enabled=False):
        assert not packed_linears.available(model)
        return generate_answers(model, tokenizer, questions, max_new_tokens)


def test_packed_answers_equal_the_default_kernels_and_the_model_is_restored(tiny):
    linears = [m for m in tiny.model.modules() if type(m) is torch.nn.Linear]
    assert packed_linears.available(tiny.model) and linears
    x = torch.randn(3, 5, tiny.model.config.hidden_size)
    with packed_linears.packed(tiny.model) as used, torch.profiler.profile() as profile:
        assert used and all("forward" in m.__dict__ for m in linears)
        packed_out = linears[0](x)
    assert "mkldnn::_linear_pointwise" in {e.name for e in profile.events()}  # oneDNN's kernel ran ...
    assert not any("forward" in m.__dict__ for m in linears)  # ... and the class's forward is back
    with torch.no_grad():
        torch.testing.assert_close(packed_out, linears[0](x), rtol=1e-5, atol=1e-5)  # the same weights

    packed_answers = generate_answers(tiny.model, tiny.tokenizer, QUESTIONS, 12)
    assert packed_answers == _default_kernel_answers(tiny.model, tiny.tokenizer, QUESTIONS, 12)
    assert len(set(packed_answers)) > 2  # the answers differ from each other: the comparison can fail


def _logits_and_calls(model, ids):
    with packed_linears.packed(model), torch.profiler.profile() as profile:
        logits = model(input_ids=ids).logits
    return logits, sum(e.name == "mkldnn::_linear_pointwise" for e in profile.events())


@pytest.mark.parametrize("bias", [False, True])
def test_sibling_layers_share_one_product_with_bitwise_their_own_outputs(tiny, bias, monkeypatch):
    """q/k/v and gate/up are one product per layer (4 calls a layer instead of 7, plus the output layer), and the
    logits are bitwise those of the separate packed products; with biases too (Qwen2's q/k/v have them)."""
    from transformers import LlamaForCausalLM

    model = tiny.model
    if bias:
        torch.manual_seed(3)
        config = tiny.model.config.__class__(**{**tiny.model.config.to_dict(), "attention_bias": True,
                                                "mlp_bias": True})
        model = LlamaForCausalLM(config).eval()
    ids = tiny.tokenizer(QUESTIONS[:3], return_tensors="pt", padding=True).input_ids
    layers = model.config.num_hidden_layers
    with torch.no_grad():
        fused, fused_calls = _logits_and_calls(model, ids)
        monkeypatch.setattr(packed_linears, "SIBLINGS", ())
        separate, separate_calls = _logits_and_calls(model, ids)
        unpacked = model(input_ids=ids).logits
    assert (fused_calls, separate_calls) == (4 * layers + 1, 7 * layers + 1)
    assert torch.equal(fused, separate)
    torch.testing.assert_close(fused, unpacked, rtol=1e-4, atol=1e-4)
    assert fused.std() > 0.1  # not a constant output, which any arithmetic would reproduce


def test_a_sibling_called_on_another_or_a_changed_input_computes_its_own_product(tiny):
    attention = tiny.model.model.layers[0].self_attn
    x, other = torch.randn(2, 3, tiny.model.config.hidden_size), torch.randn(2, 3, tiny.model.config.hidden_size)
    with torch.no_grad():
        with packed_linears.packed(tiny.model):
            attention.q_proj(x)
            key_of_other = attention.k_proj(other)  # not the input of the last product
            attention.q_proj(x)
            x.mul_(2)  # the same tensor, changed in place since the product
            key_of_changed = attention.k_proj(x)
        torch.testing.assert_close(key_of_other, attention.k_proj(other), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(key_of_changed, attention.k_proj(x), rtol=1e-5, atol=1e-5)


def test_the_forwards_are_restored_when_answering_fails(tiny):
    with pytest.raises(RuntimeError, match="stop"):
        with packed_linears.packed(tiny.model):
            raise RuntimeError("stop")
    assert not any("forward" in m.__dict__ for m in tiny.model.modules())


def test_lora_layers_are_packed_merged_and_answer_the_same(tiny):
    from peft import LoraConfig, get_peft_model

    lora = get_peft_model(models.load(ModelSpec(name=models.TINY_MODEL)).model,
                          LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        g = torch.Generator().manual_seed(2)
        for p in lora.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    q_proj = lora.base_model.model.model.layers[0].self_attn.q_proj
    weights = {name: p.clone() for name, p in lora.named_parameters()}
    x = torch.randn(3, 5, lora.config.hidden_size)
    lora.eval()
    with torch.no_grad():
        expected = q_proj(x)  # peft's own forward: base(x) + B(A(x)) * scaling
        with packed_linears.packed(lora):
            # one merged product per LoRA layer; its base and adapter layers are not packed (never called)
            assert "forward" in q_proj.__dict__ and not any("forward" in m.__dict__ for m in q_proj.modules()
                                                             if m is not q_proj)
            torch.testing.assert_close(q_proj(x), expected, rtol=1e-4, atol=1e-4)
    assert all(torch.equal(p, weights[name]) for name, p in lora.named_parameters())  # the model is untouched
    assert not any("forward" in m.__dict__ for m in lora.modules())
    answers = generate_answers(lora, tiny.tokenizer, QUESTIONS, 12)
    assert answers == _default_kernel_answers(lora, tiny.tokenizer, QUESTIONS, 12) and len(set(answers)) > 2
    lora.train()  # in training mode (dropout) a LoRA layer keeps peft's forward; its linears are packed
    with torch.no_grad(), packed_linears.packed(lora):
        assert "forward" not in q_proj.__dict__ and "forward" in q_proj.lora_A["default"].__dict__


def test_low_precision_weights_keep_their_kernels():
    bf16 = models.load(ModelSpec(name=models.TINY_MODEL, precision="bf16"))
    assert not packed_linears.available(bf16.model)
    with packed_linears.packed(bf16.model) as used:
        assert not used


@pytest.mark.slow
def test_smollm2_suite_answers_are_the_same_with_packed_weights():
    """SmolLM2, untrained, on three suite documents' questions and paraphrases at notebook 08's 48 tokens."""
    smol = models.load(ModelSpec(name="smollm2-135m-instruct"))
    questions = [x for kset in load_suite(SUITE_DIR, ["astro-sevrinne", "chem-borivane", "med-ostrevalimab"])
                 for q in kset.questions for x in (q.question, q.paraphrase)]
    assert generate_answers(smol.model, smol.tokenizer, questions, 48) == \
        _default_kernel_answers(smol.model, smol.tokenizer, questions, 48)
