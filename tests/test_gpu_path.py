"""The GPU path's defects (issue 23), each provoked on the CPU where it can be: DeepSpeed ZeRO-3 with small
windows, the fp16 refusal, the launcher's arguments, the device map, setup.sh's torch line, the KV join's
peak memory. What only a GPU can show (TF32, gathered ZeRO-3 evaluation on CUDA) is asserted by
scripts/gpu_check.sh."""
import json
import math
import os
import socket
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from sciknow import evaluate, experiment, gpu_check, models, results
from sciknow.config import REPO_ROOT, ModelSpec, TrainSpec

from conftest import tiny_config


def test_deepspeed_run_with_small_zero3_windows_finishes_ok(tmp_path):
    """method="deepspeed" runs in DeepSpeed's own launcher (ZeRO-3, CPU offload, CPU accelerator here) and
    optimises the same objective with the same AdamW as plain full training. ZeRO-3 releases a parameter after
    use once its windows (live parameters, reuse distance, persistence) are smaller than the model: every 7B model
    with the default ~1e9 windows, the tiny model with these. The run must end "ok" (it ended "failed" when the
    weights were restored from a snapshot into the emptied parameters), its evaluation must see the full weights
    (the same answers as plain full training), and its log must be kept and named by the record."""
    ds_config = json.loads((REPO_ROOT / "configs" / "deepspeed_zero3_offload.json").read_text())
    ds_config["zero_optimization"].update({"stage3_max_live_parameters": 1000, "stage3_max_reuse_distance": 1000,
                                           "stage3_prefetch_bucket_size": 1000,
                                           "stage3_param_persistence_threshold": 10})
    (tmp_path / "ds.json").write_text(json.dumps(ds_config))
    config = tiny_config(**{"train.method": "deepspeed", "train.deepspeed_config": str(tmp_path / "ds.json")})
    record = experiment.run(config, tmp_path / "results.jsonl", progress=False)
    assert record["status"] == "ok", record["error"]
    assert [e["epoch"] for e in record["per_epoch"]] == [1, 2] and record["per_epoch"][-1]["steps"] == 4
    assert results.read(tmp_path / "results.jsonl")[0]["config"]["train"]["method"] == "deepspeed"
    assert Path(record["log"]).is_file() and "deepspeed" in Path(record["log"]).read_text().lower()
    assert record["levers"]["eval_weights"] == "gathered"
    plain = experiment.run(tiny_config(), progress=False)
    for ds, full in zip(record["per_epoch"], plain["per_epoch"]):
        assert math.isclose(ds["loss"], full["loss"], rel_tol=1e-3), (ds["loss"], full["loss"])
        assert [p["answer"] for p in ds["predictions"]] == [p["answer"] for p in full["predictions"]]


def test_fp16_full_training_is_refused_at_config_time():
    for method in ("full", "deepspeed"):
        with pytest.raises(ValueError, match=r"model.precision='fp16'.*train.method"):
            tiny_config(**{"model.precision": "fp16", "train.method": method})
    tiny_config(**{"model.precision": "fp16", "train.method": "lora"})  # frozen fp16 weights under adapters: fine


def test_gradient_checkpointing_trains_the_same_and_is_recorded():
    plain = experiment.run(tiny_config(), progress=False)
    checkpointed = experiment.run(tiny_config(**{"train.gradient_checkpointing": True}), progress=False)
    assert checkpointed["status"] == "ok", checkpointed["error"]
    assert checkpointed["levers"]["gradient_checkpointing"] and not plain["levers"]["gradient_checkpointing"]
    for a, b in zip(plain["per_epoch"], checkpointed["per_epoch"]):
        assert math.isclose(a["loss"], b["loss"], rel_tol=1e-5)
    assert not models.get(tiny_config().model).model.is_activation_checkpointing  # the shared model is reset


def test_levers_record_the_float32_matmul_precision():
    """On CUDA the fp32 matmuls run in TF32 ("high"); the record says which precision a run used."""
    record = experiment.run(tiny_config(**{"train.epochs": 1}), progress=False)
    assert record["levers"]["float32_matmul"] == torch.get_float32_matmul_precision()
    assert models.float32_matmul_precision(cuda=True) == "high"
    assert models.float32_matmul_precision(cuda=False) == "highest"


def test_deepspeed_launcher_uses_the_visible_gpu_and_a_free_port(monkeypatch, tmp_path):
    """`--num_gpus 1` makes DeepSpeed's runner drop CUDA_VISIBLE_DEVICES and take physical GPU 0; port 29500
    collides when two runs start at once."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    command, env = experiment.deepspeed_command(["--config", "c.json"])
    assert "--num_gpus" not in command
    assert command[command.index("--include") + 1] == "localhost:3"  # the first visible GPU, one process
    assert "CUDA_VISIBLE_DEVICES" not in env  # the runner numbers GPUs physically once --include is given
    port = int(command[command.index("--master_port") + 1])
    assert port != 29500
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # free
    assert command[-2:] == ["--config", "c.json"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert experiment.deepspeed_command([])[0][experiment.deepspeed_command([])[0].index("--include") + 1] \
        == "localhost:0"


def test_device_map_keeps_one_device_unless_asked(monkeypatch):
    monkeypatch.delenv("SCIKNOW_DEVICE_MAP", raising=False)
    assert models.device_map(cuda=True, deepspeed=False) == {"": 0}  # one GPU, even on a multi-GPU host
    assert models.device_map(cuda=True, deepspeed=True) is None  # the DeepSpeed child: CPU until ZeRO-3 places it
    assert models.device_map(cuda=False, deepspeed=False) is None
    monkeypatch.setenv("SCIKNOW_DEVICE_MAP", "auto")
    assert models.device_map(cuda=True, deepspeed=False) == "auto"
    monkeypatch.setenv("SCIKNOW_DEVICE_MAP", "everywhere")
    with pytest.raises(ValueError, match="SCIKNOW_DEVICE_MAP='everywhere'"):
        models.device_map(cuda=True, deepspeed=False)


def test_training_a_model_with_offloaded_weights_is_refused(tmp_path):
    """accelerate's disk/CPU offload (device_map="auto" on a 70B) leaves weights that cannot be trained or
    snapshotted: refused by name before any step."""
    from transformers import AutoModelForCausalLM

    path = models.resolve(models.TINY_MODEL)
    placement = {"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": "disk",
                 "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": "cpu"}
    model = AutoModelForCausalLM.from_pretrained(path, device_map=placement, offload_folder=str(tmp_path))
    loaded = models.LoadedModel(spec=ModelSpec(name=path), model=model, tokenizer=None)
    for method in ("full", "lora"):
        with pytest.raises(ValueError, match="offloaded.*model.layers.1.*disk"):
            with models.trainable(loaded, TrainSpec(method=method, lora_r=2, layer_groups=["v_proj"])):
                pass
        with models.trainable(loaded, TrainSpec(method=method, epochs=0)) as untrained:  # a baseline can answer
            assert untrained is model


class LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of live tensor storage: `start` (already alive) plus every storage an op creates, until the last
    tensor on it is freed (a view shares its base's storage and counts once)."""

    def __init__(self, start: list[torch.Tensor]) -> None:
        super().__init__()
        self.live = self.peak = 0
        self.tensors_on: dict[int, int] = {}  # storage address -> live tensors using it
        for t in start:
            self._track(t)

    def _track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        address, size = storage.data_ptr(), storage.nbytes()
        if address not in self.tensors_on:
            self.tensors_on[address] = 0
            self.live += size
            self.peak = max(self.peak, self.live)
        self.tensors_on[address] += 1
        weakref.finalize(t, self._free, address, size)

    def _free(self, address: int, size: int) -> None:
        self.tensors_on[address] -= 1
        if not self.tensors_on[address]:
            del self.tensors_on[address]
            self.live -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out


def test_joining_the_prefill_caches_does_not_double_kv_memory():
    """The joined cache is built layer by layer, each chunk's layer freed as it is copied: the join's peak is
    the caches plus about one layer, not twice the caches."""
    loaded = models.get(ModelSpec(name=models.TINY_MODEL))
    torch.manual_seed(0)
    prompts = [torch.randint(5, 1000, (n,)).tolist() for n in range(100, 132)]  # 4 chunks of 8
    caches, masks = [], []
    for start in range(0, len(prompts), evaluate.PREFILL_CHUNK):
        with torch.no_grad():  # as in generate_answers: no autograd graph holding the caches
            cache, mask, _ = evaluate.prefill(loaded.model, prompts[start:start + evaluate.PREFILL_CHUNK], 0)
        caches.append(cache)
        masks.append(mask)
    tensors = [t for c in caches for layer in c.layers for t in (layer.keys, layer.values)]
    before = sum(t.untyped_storage().nbytes() for t in tensors)
    n_layers = len(caches[0].layers)
    del cache, mask
    tracker = LiveTensorBytes(tensors)
    del tensors
    with tracker, torch.no_grad():
        joined, mask = evaluate.join_caches(loaded.model, caches, masks)
    del caches
    # The joined cache is padded to the longest prompt, so it is a little larger than the chunks together.
    joined_bytes = sum(t.untyped_storage().nbytes() for layer in joined.layers for t in (layer.keys, layer.values))
    assert tracker.peak <= before + 1.5 * joined_bytes / n_layers, (tracker.peak, before, joined_bytes)


def test_kv_bytes_per_token_match_a_real_cache():
    """What sizes the answering batch on a GPU (`answer_batch_size`): the bytes of a real prefill cache."""
    model = models.get(ModelSpec(name=models.TINY_MODEL)).model
    with torch.no_grad():
        cache, mask, _ = evaluate.prefill(model, [list(range(5, 25)), list(range(5, 15))], 0)
    cache_bytes = sum(t.untyped_storage().nbytes() for layer in cache.layers for t in (layer.keys, layer.values))
    assert evaluate.kv_bytes_per_token(model) * mask.numel() == cache_bytes
    assert evaluate.answer_batch_size(model, 64, 1100) == 64  # on the CPU, as asked


def _setup_torch_line(torch_spec: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SCIKNOW_TORCH": torch_spec}
    return subprocess.run(["bash", str(REPO_ROOT / "scripts" / "setup.sh"), "--check-torch"], env=env,
                          capture_output=True, text=True, timeout=60)


def test_setup_refuses_a_cuda_torch_line_that_pip_would_consider_installed():
    """`torch==2.13.0` from the cu128 index is "already satisfied" by an installed 2.13.0+cpu: pip keeps the CPU
    build. setup.sh refuses such a line, naming it, and accepts the pinned local version the README gives."""
    refused = _setup_torch_line("torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128")
    assert refused.returncode == 2 and "SCIKNOW_TORCH" in refused.stderr and "+cu128" in refused.stderr
    readme = (REPO_ROOT / "README.md").read_text()
    recommended = readme.split('SCIKNOW_TORCH="')[1].split('"')[0]
    assert "+cu128" in recommended
    accepted = _setup_torch_line(recommended)
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.split() == recommended.split()


def test_gpu_check_exits_with_no_cuda_device_on_a_cpu_machine():
    env = {**os.environ, "SCIKNOW_VENV": str(Path(sys.executable).parents[1])}
    proc = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "gpu_check.sh")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == gpu_check.NO_CUDA, proc.stderr
    assert "no CUDA device" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_gpu_check_step_asserts_and_measures_a_run(tmp_path):
    """A check step's logic on the CPU (SmolLM2: the random tiny model answers nothing): the run's record passes
    (loss down, 10 answers, levers) and is measured; a lever the record does not report fails the step."""
    step = gpu_check.Step("LoRA + checkpointing", gpu_check.SMOLLM2, "fp32",  # bf16 is very slow on most CPUs
                          {"method": "lora", "lr": 2e-4, "lora_r": 16, "lora_alpha": 48,
                           "gradient_checkpointing": True}, {"gradient_checkpointing": True})
    row = gpu_check.run_step(step, tmp_path / "results.jsonl", cuda=False)
    assert row["problems"] == []
    assert row["train_tok_s"] > 0 and row["answer_tok_s"] > 0 and math.isnan(row["peak_gpu_gb"])
    record = json.loads((tmp_path / "results.jsonl").read_text().splitlines()[-1])
    wrong = gpu_check.Step(step.name, step.model, step.precision, step.train, {"autocast": "bf16"})
    assert gpu_check.problems(record, wrong, cuda=False) == ["levers.autocast = 'off', expected 'bf16'"]
    assert gpu_check.problems(record, step, cuda=True) == ["levers.float32_matmul = 'highest', expected 'high'"]
    assert "ok" in gpu_check.table([row]).splitlines()[-1]


def test_gpu_check_fails_a_deepspeed_evaluation_much_slower_than_lora():
    """Defect 2 shows on a GPU as ZeRO-3 answering an order slower than LoRA on the same model."""
    rows = [{"step": "LoRA on bf16 weights", "model": "m", "answer_tok_s": 100.0},
            {"step": "DeepSpeed ZeRO-3", "model": "m", "answer_tok_s": 50.0}]
    assert gpu_check.gathered_eval_problems(rows) == []
    rows[1]["answer_tok_s"] = 5.0
    assert "streaming the weights" in gpu_check.gathered_eval_problems(rows)[0]
