"""Inference on a CPU with the linear layers' weights prepacked for oneDNN: answering (`evaluate`), log-likelihood
scoring (`loglik`) and perplexity (`probes`) run inside `packed(model)`.

Greedy decoding multiplies a few rows (one per question still answering) by every weight matrix at each step.
torch's default fp32 CPU matmul repacks the weight on every call, so these skinny products stream far below the
memory's bandwidth; oneDNN's matmul on a weight reordered once into its blocked layout streams near it (and also
runs the prefill's wider products faster). The reorder costs one more copy of the linear weights while the
answers are computed, and is redone for every call, as training changes the weights between calls.

Linear layers that read the same input (a layer's query, key and value projections; its MLP's gate and up
projections: `SIBLINGS`) are packed as one matrix: the first of them called computes the one wider product, and
the others take their part of it. Each output column is the same sum as in its own product, so the outputs are
bitwise those of the separate products (tests/test_packed_linears.py), with one call where there were three.

A LoRA layer (peft) is packed as one matrix, its base weight plus its adapters' delta (peft's
`get_delta_weight`): the adapters' two extra small products per layer and step cost more than the one merged
product, and the model's own weights are not touched (unlike peft's `merge_adapter`).

The same sums in another order change logits by float rounding (about 1e-6 relative), so answers and choices are
the same except at a near-tie: tests/test_packed_linears.py compares answers token for token with the default
kernel on the tiny model and on SmolLM2. The README (Performance) gives the speed and the comparison on the suite.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

DECODE_ROWS_HINT = 10  # oneDNN chooses its layout for this many rows; any number of rows is computed
# Children of one module that every family here (Llama, Qwen2, Gemma 3) calls on the same input tensor.
SIBLINGS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def available(model: torch.nn.Module) -> bool:
    """Whether answering `model` here runs on packed weights: plain fp32 linear layers on a CPU with oneDNN
    enabled (`with torch.backends.mkldnn.flags(enabled=False):` answers with torch's default kernel instead).
    Quantized layers subclass nn.Linear and keep their own kernels; GPUs and low precision are left alone."""
    return (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and any(True for _ in _packable(model)))


def _fp32_cpu(layer: torch.nn.Module) -> bool:
    return type(layer) is torch.nn.Linear and layer.weight.device.type == "cpu" and layer.weight.dtype == torch.float32


def _packable(model: torch.nn.Module) -> Iterator[torch.nn.Linear]:
    for module in model.modules():
        if _fp32_cpu(module):
            yield module


def _mergeable_lora(model: torch.nn.Module) -> list[torch.nn.Module]:
    """peft LoRA linear layers in eval mode over an fp32 CPU base, with unmerged plain-LoRA adapters (no variant
    such as DoRA): their output is exactly base(x) + delta-weight products."""
    try:
        from peft.tuners.lora import Linear as LoraLinear
    except ImportError:
        return []
    return [m for m in model.modules()
            if isinstance(m, LoraLinear) and not m.training and not m.merged and not m.disable_adapters
            and _fp32_cpu(m.base_layer) and not any(a in m.lora_variant for a in m.active_adapters)]


@contextlib.contextmanager
def packed(model: torch.nn.Module, enabled: bool = True) -> Iterator[bool]:
    """Within this block (no gradients), `model`'s fp32 CPU linear layers compute with prepacked weights (a LoRA
    layer as its merged weight); their forwards are restored on exit. Yields whether packing is in use."""
    if not (enabled and available(model)):
        yield False
        return
    with torch.no_grad():
        lora = _mergeable_lora(model)
        inside = {id(part) for m in lora for part in m.modules() if part is not m}  # never called while merged
        weights = {m: (m.base_layer.weight + sum((m.get_delta_weight(a) for a in m.active_adapters if a in m.lora_A),
                                                 torch.zeros(())), m.base_layer.bias) for m in lora}
        weights.update((m, (m.weight, m.bias)) for m in _packable(model) if id(m) not in inside)
        forwards = []
        for group in _sibling_groups(model, weights):
            forwards += zip(group, _sibling_forwards([weights.pop(m) for m in group]))
        forwards += [(m, _packed_forward(*weight_bias)) for m, weight_bias in weights.items()]
        for layer, forward in forwards:
            layer.forward = forward  # an instance attribute shadows the class's forward
        try:
            yield True
        finally:
            for layer, _ in forwards:
                del layer.forward


def _sibling_groups(model: torch.nn.Module, weights: dict) -> list[list[torch.nn.Module]]:
    """Groups of packable children of one module named as in a `SIBLINGS` entry, with the same input width and
    all or none of them with a bias (two or more layers each)."""
    groups = []
    for parent in model.modules():
        for names in SIBLINGS:
            group = [layer for name in names if (layer := getattr(parent, name, None)) in weights]
            if (len(group) > 1 and len({weights[m][0].shape[1] for m in group}) == 1
                    and len({weights[m][1] is None for m in group}) == 1):
                groups.append(group)
    return groups


def _packed_forward(weight: torch.Tensor, bias: torch.Tensor | None):
    weight = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), DECODE_ROWS_HINT)
    bias = None if bias is None else bias.detach()

    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [None], "")
    return forward


def _sibling_forwards(weights_biases: list[tuple[torch.Tensor, torch.Tensor | None]]):
    """Forwards of layers that read the same input, sharing one packed product: a call with the input of the last
    product (the same tensor, unchanged since) takes its part of it, any other input computes a new product."""
    weights, biases = zip(*weights_biases)
    sizes = [w.shape[0] for w in weights]
    product = _packed_forward(torch.cat(weights), None if biases[0] is None else torch.cat(biases))
    last: dict = {"input": None}

    def forward_of(part: int):
        def forward(x: torch.Tensor) -> torch.Tensor:
            if last["input"] is not x or last["version"] != x._version:
                last.update(input=x, version=x._version, parts=product(x).split(sizes, dim=-1))
            return last["parts"][part]
        return forward
    return [forward_of(part) for part in range(len(sizes))]
