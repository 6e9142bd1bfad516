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
