"""Shared test helpers. Models come from `sciknow.models`: `tiny-llama` (random, 2 layers) for most tests,
the embedded SmolLM2 for the few end-to-end ones (marked slow). Nothing is downloaded."""
from __future__ import annotations

import os
import threading
import time
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


def take_for_dead_when_running(study, store) -> threading.Thread:
    """A thread doing what another worker's stale check does to a trial whose heartbeat is late: as soon as a
    trial of `study` is running (its objective has started), fail it and let the storage's callback retry it."""
    from optuna.trial import TrialState

    def take_for_dead() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                       if "worker" in t.user_attrs]
            if running:
                store.set_trial_state_values(running[0]._trial_id, TrialState.FAIL)
                store.heartbeat_stale_trial_callback(study, store.get_trial(running[0]._trial_id))
                return
            time.sleep(0.02)

    thread = threading.Thread(target=take_for_dead)
    thread.start()
    return thread
