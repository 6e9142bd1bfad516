"""Shared test helpers. Models come from `sciknow.models`: `tiny-llama` (random, 2 layers) for most tests,
the embedded SmolLM2 for the few end-to-end ones (marked slow). Nothing is downloaded."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from sciknow.config import DataSpec, EvalSpec, ModelSpec, RunConfig, TrainSpec

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def tiny_config(**changes) -> RunConfig:
    """A fast run on the random tiny model: 2 texts, 2 epochs, short answers."""
    config = RunConfig(
        task="test", model=ModelSpec(name="tiny-llama"), data=DataSpec(contents=["C1", "C2"]),
        train=TrainSpec(method="full", lr=1e-3, epochs=2, max_length=128), eval=EvalSpec(max_new_tokens=6),
    )
    return config.replace(**changes) if changes else config


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.exists():
        pytest.skip(f"{SHARED} is absent (CI has it)")
    return SHARED


def tiny_with_large_weights(seed: int = 1):
    """The tiny random Llama with weights of std 0.3: as built it answers every prompt with the same newline
    token (and scores every choice alike), which would let comparisons of answers pass whatever the code did."""
    import torch

    from sciknow import models

    loaded = models.load(ModelSpec(name=models.TINY_MODEL))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in loaded.model.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return loaded
