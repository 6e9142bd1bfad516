"""Append-only results store: one JSON line per run, loaded back as tidy pandas tables.

Each record holds the run's full config next to its results. Appends are a single `write` of one complete
line on an O_APPEND descriptor under an exclusive lock, then fsync: concurrent writers never interleave and
a killed process leaves at most an unterminated last line, which readers skip with a warning.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import pandas as pd


def append(path: str | Path, record: dict[str, Any]) -> None:
    """Atomically append one record (a dict that json can encode) to the JSONL file at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A previous writer killed mid-line would glue our record onto its fragment: start a fresh line.
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock


def read(path: str | Path) -> list[dict[str, Any]]:
    """All complete records in the file (missing file -> empty list)."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            warnings.warn(f"{path}:{number}: skipping an incomplete record (a writer was interrupted)")
    return records


def _flatten(prefix: str, d: dict[str, Any], out: dict[str, Any]) -> None:
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            _flatten(name + ".", value, out)
        elif isinstance(value, list):
            out[name] = ",".join(map(str, value))  # lists (content ids, layer groups) as one readable cell
        else:
            out[name] = value


def _run_columns(record: dict[str, Any]) -> dict[str, Any]:
    row = {k: record.get(k) for k in ("run_id", "config_id", "task", "status", "error", "started_at", "wall_s",
                                      "best_score", "final_score", "n_texts")}
    _flatten("", record.get("config", {}), row)
    _flatten("tag.", record.get("config", {}).get("tags", {}), row)
    return row


def runs_table(path: str | Path) -> pd.DataFrame:
    """One row per run: status, best/final score, wall time and every config field (dotted names)."""
    return pd.DataFrame([_run_columns(r) for r in read(path)])


def epochs_table(path: str | Path) -> pd.DataFrame:
    """One row per run and evaluated epoch: loss, score, steps, tokens, plus the run's columns."""
    rows = []
    for record in read(path):
        for epoch in record.get("per_epoch", []):
            row = _run_columns(record)
            row.update({k: v for k, v in epoch.items() if k != "predictions"})
            rows.append(row)
    return pd.DataFrame(rows)


def predictions_table(path: str | Path) -> pd.DataFrame:
    """One row per run, epoch and question: the prompt, the answer and its score."""
    rows = []
    for record in read(path):
        for epoch in record.get("per_epoch", []):
            for p in epoch.get("predictions", []):
                rows.append({"run_id": record["run_id"], "task": record.get("task"), "epoch": epoch["epoch"], **p})
    return pd.DataFrame(rows)


def finished(path: str | Path) -> list[dict[str, Any]]:
    """Records of runs that completed (ok or diverged), in file order: a resumed sweep skips their configs."""
    return [r for r in read(path) if r.get("status") in ("ok", "diverged")]


def finished_config_ids(path: str | Path) -> set[str]:
    return {r["config_id"] for r in finished(path)}


def clean_float(x: float) -> float | None:
    """NaN/inf are not JSON: store them as null."""
    return None if x is None or not math.isfinite(x) else x
