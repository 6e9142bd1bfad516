"""Inference on a CPU with the linear layers' weights prepacked for oneDNN: answering (`evaluate`), log-likelihood
scoring (`loglik`) and perplexity (`probes`) run inside `packed(model)`.

Greedy decoding multiplies a few rows (one per question still answering) by every weight matrix at each step.
torch's default fp32 CPU matmul repacks the weight on every call, so these skinny products stream far below the
memory's bandwidth; oneDNN's matmul on a weight reordered once into its blocked layout streams near it (and also
runs the prefill's wider products faster). The reorder costs one more copy of the linear weights while the
answers are computed, and is redone for every call, as training changes the weights between calls.

The same sums in another order change logits by float rounding (about 1e-6 relative), so answers and choices are
the same except at a near-tie: tests/test_packed_linears.py compares answers token for token with the default
kernel on the tiny model and on SmolLM2. The README (Performance) gives the speed and the comparison on the suite.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

DECODE_ROWS_HINT = 10  # oneDNN chooses its layout for this many rows; any number of rows is computed


def available(model: torch.nn.Module) -> bool:
    """Whether answering `model` here runs on packed weights: plain fp32 linear layers on a CPU with oneDNN
    enabled (`with torch.backends.mkldnn.flags(enabled=False):` answers with torch's default kernel instead).
    Quantized layers subclass nn.Linear and keep their own kernels; GPUs and low precision are left alone."""
    return (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and any(True for _ in _packable(model)))


def _packable(model: torch.nn.Module) -> Iterator[torch.nn.Linear]:
    for module in model.modules():
        if type(module) is torch.nn.Linear and module.weight.device.type == "cpu" \
                and module.weight.dtype == torch.float32:
            yield module


@contextlib.contextmanager
def packed(model: torch.nn.Module, enabled: bool = True) -> Iterator[bool]:
    """Within this block (no gradients), `model`'s fp32 CPU linear layers compute with prepacked weights; their
    forwards are restored on exit. Yields whether packing is in use."""
    if not (enabled and available(model)):
        yield False
        return
    layers = list(_packable(model))
    with torch.no_grad():
        for layer in layers:
            layer.forward = _packed_forward(layer)  # an instance attribute shadows the class's forward
        try:
            yield True
        finally:
            for layer in layers:
                del layer.forward


def _packed_forward(layer: torch.nn.Linear):
    weight = torch.ops.mkldnn._reorder_linear_weight(layer.weight.detach(), DECODE_ROWS_HINT)
    bias = None if layer.bias is None else layer.bias.detach()

    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [None], "")
    return forward
