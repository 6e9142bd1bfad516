"""The two GPU-path fixes of issue 23 that can be measured on the CPU (not a section of benchmarks.run):

    python benchmarks/gpu_path_cpu.py

1. ZeRO-3 answering with small windows (tiny-llama, DeepSpeed's CPU accelerator, in this process): weights
   gathered once per evaluation (`train.gathered_for_evaluation`) vs fetched layer by layer for every token (as
   before), alternating epochs, medians.
2. Peak live tensor bytes of joining 4 prefill chunks' KV caches (tiny-llama, 32 prompts of 100-131 tokens):
   the join before the fix (pad and concatenate everything, then copy into a DynamicCache) vs `join_caches`.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[0] = str(REPO)  # not benchmarks/ itself: its train.py, profile.py ... would shadow modules
sys.path.append(str(REPO / "tests"))

import torch  # noqa: E402
from transformers import DynamicCache  # noqa: E402

from sciknow import evaluate, models  # noqa: E402
from sciknow import train as train_module  # noqa: E402
from sciknow.config import REPO_ROOT, ModelSpec, TrainSpec  # noqa: E402
from test_gpu_path import LiveTensorBytes  # noqa: E402


def zero3_answering(epochs: int = 6) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    ds = json.loads((REPO_ROOT / "configs" / "deepspeed_zero3_offload.json").read_text())
    ds["zero_optimization"].update({"stage3_max_live_parameters": 1000, "stage3_max_reuse_distance": 1000,
                                    "stage3_prefetch_bucket_size": 1000, "stage3_param_persistence_threshold": 10})
    ds_file = Path(tempfile.mkdtemp()) / "ds.json"
    ds_file.write_text(json.dumps(ds))
    loaded = models.load(ModelSpec(name=models.TINY_MODEL), deepspeed=True)
    spec = TrainSpec(method="deepspeed", lr=1e-3, epochs=epochs, max_length=128, deepspeed_config=str(ds_file))
    questions = [f"What is the capital of country number {i}?" for i in range(16)]
    seconds: dict[str, list[float]] = {"gathered": [], "streamed": []}
    gathered = train_module.gathered_for_evaluation

    def on_epoch(stats) -> None:
        start = time.perf_counter()
        evaluate.generate_answers(loaded.model, loaded.tokenizer, questions, max_new_tokens=24, batch_size=16)
        seconds["gathered" if stats.epoch % 2 else "streamed"].append(time.perf_counter() - start)

    # odd epochs gathered, even epochs streamed (the code before the fix)
    train_module.gathered_for_evaluation = lambda engine: (
        gathered(engine) if len(seconds["gathered"]) <= len(seconds["streamed"]) else contextlib.nullcontext())
    try:
        train_module.train(loaded.model, loaded.tokenizer, ["Alpha beta gamma delta. " * 10,
                                                            "One two three four. " * 10], spec, on_epoch=on_epoch,
                           progress=False)
    finally:
        train_module.gathered_for_evaluation = gathered
    g, s = statistics.median(seconds["gathered"]), statistics.median(seconds["streamed"])
    print(f"ZeRO-3 answering, 16 questions x 24 tokens: gathered {g:.2f} s, streamed {s:.2f} s (x{s / g:.1f}); "
          f"all: {seconds}")


def join_before_the_fix(model, caches, masks):
    longest = max(m.shape[1] for m in masks)
    pad = [longest - m.shape[1] for m in masks]

    def join(per_chunk):
        return torch.cat([torch.nn.functional.pad(t, (0, 0, p, 0)) for t, p in zip(per_chunk, pad)])

    layers = [(join([c.layers[i].keys for c in caches]), join([c.layers[i].values for c in caches]))
              for i in range(len(caches[0].layers))]
    mask = torch.cat([torch.nn.functional.pad(m, (p, 0)) for m, p in zip(masks, pad)])
    return DynamicCache(ddp_cache_data=layers, config=model.config), mask


def kv_join_peak() -> None:
    model = models.get(ModelSpec(name=models.TINY_MODEL)).model
    for name, join in (("before", join_before_the_fix), ("after", evaluate.join_caches)):
        torch.manual_seed(0)
        prompts = [torch.randint(5, 1000, (n,)).tolist() for n in range(100, 132)]
        caches, masks = [], []
        with torch.no_grad():
            for start in range(0, len(prompts), evaluate.PREFILL_CHUNK):
                cache, mask, _ = evaluate.prefill(model, prompts[start:start + evaluate.PREFILL_CHUNK], 0)
                caches.append(cache)
                masks.append(mask)
        del cache, mask
        tensors = [t for c in caches for layer in c.layers for t in (layer.keys, layer.values)]
        tracker = LiveTensorBytes(tensors)
        del tensors
        with tracker, torch.no_grad():
            joined, _ = join(model, caches, masks)
        del caches
        size = sum(t.untyped_storage().nbytes() for layer in joined.layers for t in (layer.keys, layer.values))
        print(f"KV join {name} the fix: peak {tracker.peak / 1e6:.2f} MB = {tracker.peak / size:.2f} x the joined "
              f"cache ({size / 1e6:.2f} MB, {len(joined.layers)} layers)")


if __name__ == "__main__":
    kv_join_peak()
    zero3_answering()
