"""Append-only results store: one JSON line per run, loaded back as tidy pandas tables.

Each record holds the run's full config next to its results. Writing and reading go through `sciknow.io`:
an append is a single `write` of one complete line on an O_APPEND descriptor under an exclusive lock, then
fsync, so concurrent writers never interleave and a killed process leaves at most an unterminated last line.
Readers skip such torn lines, lines that are not JSON objects, and records whose fields have the wrong shape,
each with a warning naming the file. Every record is redacted (`sciknow.secrets.redact`) before it is written.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from sciknow import io, secrets


def append(path: str | Path, record: dict[str, Any]) -> None:
    """Atomically append one record (a dict that json can encode) to the JSONL file at `path`, secrets masked."""
    io.append_jsonl(path, secrets.redact(record))


def _shape_problem(record: dict[str, Any]) -> str | None:
    """Why the tables below cannot use `record` (None if they can)."""
    for name, kind in (("config", dict), ("per_epoch", list)):
        if record.get(name) is not None and not isinstance(record[name], kind):
            return f"{name} is a JSON {type(record[name]).__name__}, not an {'object' if kind is dict else 'array'}"
    if "config_id" in record and not isinstance(record["config_id"], str):
        return f"config_id must be a string, got {record['config_id']!r}"
    for i, epoch in enumerate(record.get("per_epoch") or []):
        if not isinstance(epoch, dict):
            return f"per_epoch[{i}] is a JSON {type(epoch).__name__}, not an object"
        predictions = epoch.get("predictions")
        if predictions is not None and not (isinstance(predictions, list)
                                            and all(isinstance(p, dict) for p in predictions)):
            return f"per_epoch[{i}].predictions is not an array of objects"
    return None


def read(path: str | Path) -> list[dict[str, Any]]:
    """All complete records in the file (missing file -> empty list); unusable lines are skipped with a warning."""
    records = []
    for record in io.read_jsonl(path):
        problem = _shape_problem(record)
        if problem:
            warnings.warn(f"{path}: skipping the record of run_id={record.get('run_id')!r}: {problem}", stacklevel=2)
            continue
        records.append(record)
    return records


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with dotted keys ({"train": {"lr": 1}} -> {"train.lr": 1}); an empty dict stays
    a value."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        out |= flatten(value, f"{prefix}{key}.") if isinstance(value, dict) and value else {f"{prefix}{key}": value}
    return out


def _add_cells(prefix: str, d: dict[str, Any], out: dict[str, Any]) -> None:
    """Table cells: `d` flattened into `out`, lists (content ids, layer groups) as one readable cell."""
    for name, value in flatten(d, prefix).items():
        if value != {}:
            out[name] = ",".join(map(str, value)) if isinstance(value, list) else value


def _run_columns(record: dict[str, Any]) -> dict[str, Any]:
    row = {k: record.get(k) for k in ("run_id", "config_id", "task", "status", "error", "started_at", "wall_s",
                                      "load_s", "answer_s", "best_score", "final_score", "n_texts")}
    config = record.get("config") or {}
    _add_cells("", config, row)
    if isinstance(config.get("tags"), dict):
        _add_cells("tag.", config["tags"], row)
    return row


def runs_table(path: str | Path) -> pd.DataFrame:
    """One row per run: status, best/final score, wall time and every config field (dotted names)."""
    return pd.DataFrame([_run_columns(r) for r in read(path)])


def epochs_table(path: str | Path) -> pd.DataFrame:
    """One row per run and evaluated epoch: loss, score, steps, tokens, each metric (paraphrase and open-book
    scores, recall@k, probes) as its own column, the untrained model's probes as `before.*`, plus the run's
    columns."""
    rows = []
    for record in read(path):
        for epoch in record.get("per_epoch") or []:
            row = _run_columns(record)
            _add_cells("before.", record.get("metrics_before") or {}, row)
            row.update({k: v for k, v in epoch.items() if k not in ("predictions", "metrics")})
            _add_cells("", epoch.get("metrics") or {}, row)
            rows.append(row)
    return pd.DataFrame(rows)


def predictions_table(path: str | Path) -> pd.DataFrame:
    """One row per run, epoch and question: the prompt, the answer and its score."""
    rows = []
    for record in read(path):
        for epoch in record.get("per_epoch") or []:
            for p in epoch.get("predictions") or []:
                rows.append({"run_id": record.get("run_id"), "task": record.get("task"), "epoch": epoch.get("epoch"),
                             **p})
    return pd.DataFrame(rows)


# A run that ended on its own terms: done, broken down (a property of its settings), or stopped by a sweep's
# pruner. "failed" runs (a configuration or program error) are re-run once fixed.
FINISHED = ("ok", "diverged", "pruned")


def finished(path: str | Path) -> list[dict[str, Any]]:
    """Records of runs that finished (`FINISHED`), in file order: a resumed job skips their configs
    (`experiment.finished_ids` compares them under today's config schema)."""
    return [r for r in read(path) if r.get("status") in FINISHED]


def clean_float(x: float) -> float | None:
    """NaN/inf are not JSON: store them as null."""
    return None if x is None or not math.isfinite(x) else x
