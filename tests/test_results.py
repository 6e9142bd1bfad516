"""The append-only results store: crash safety with a real process killed by SIGKILL, unusable lines skipped
with a warning, secrets masked on append."""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

from sciknow import results

WRITER = textwrap.dedent("""
    import sys
    from sciknow import results
    path = sys.argv[1]
    big = "x" * 200_000  # large records make a kill mid-write likely
    for i in range(100_000):
        results.append(path, {"run_id": str(i), "status": "ok", "payload": big})
        print(i, flush=True)
""")


def test_killed_writer_leaves_every_completed_record(tmp_path):
    path = tmp_path / "results.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    acknowledged = -1
    deadline = time.time() + 60
    while acknowledged < 20 and time.time() < deadline:
        acknowledged = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    records = results.read(path)
    ids = [int(r["run_id"]) for r in records]
    assert ids == list(range(len(ids)))  # in order, nothing corrupt in between
    assert len(ids) >= acknowledged + 1  # every append that returned is there
    # A later writer continues the file cleanly even if the kill left half a line.
    results.append(path, {"run_id": "after", "status": "ok"})
    assert results.read(path)[-1]["run_id"] == "after"


def test_torn_last_line_is_skipped_and_next_append_starts_fresh(tmp_path):
    path = tmp_path / "results.jsonl"
    results.append(path, {"run_id": "a"})
    with open(path, "ab") as f:
        f.write(b'{"run_id": "torn", "sta')  # what a crash mid-write could leave
    results.append(path, {"run_id": "b"})
    with pytest.warns(UserWarning, match=r"results.jsonl:2: skipping an incomplete or invalid JSON line"):
        assert [r["run_id"] for r in results.read(path)] == ["a", "b"]


def test_concurrent_writers_never_interleave(tmp_path):
    path = tmp_path / "results.jsonl"
    script = "import sys\nfrom sciknow import results\n" \
             "[results.append(sys.argv[1], {'w': sys.argv[2], 'i': i, 'pad': 'y' * 50_000}) for i in range(40)]"
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), str(w)]) for w in range(3)]
    assert all(p.wait() == 0 for p in procs)
    records = results.read(path)
    assert len(records) == 120
    for w in "012":
        assert [r["i"] for r in records if r["w"] == w] == list(range(40))


# ---------------------------------------------------------------- bad lines and records: skipped with a warning
GOOD = {"run_id": "r1", "config_id": "c1", "task": "t", "status": "ok", "config": {"train": {"lr": 0.1}},
        "per_epoch": [{"epoch": 1, "score": 0.5, "predictions": [{"question": "q", "answer": "a"}]}]}


@pytest.mark.parametrize("bad_line, message", [
    ("null", r"results.jsonl:2: skipping a JSON NoneType, not an object"),
    ("[1, 2]", r"results.jsonl:2: skipping a JSON list, not an object"),
    ('"ok"', r"results.jsonl:2: skipping a JSON str, not an object"),
    ('{"run_id": "torn", "sta', r"results.jsonl:2: skipping an incomplete or invalid JSON line"),
    (json.dumps({**GOOD, "run_id": "r2", "config": None, "per_epoch": None}), None),  # null = absent: kept
    (json.dumps({**GOOD, "run_id": "r2", "config": [1]}), r"run_id='r2': config is a JSON list, not an object"),
    (json.dumps({**GOOD, "run_id": "r2", "per_epoch": {"epoch": 1}}), r"run_id='r2': per_epoch is a JSON dict"),
    (json.dumps({**GOOD, "run_id": "r2", "per_epoch": [None]}), r"per_epoch\[0\] is a JSON NoneType"),
    (json.dumps({**GOOD, "run_id": "r2", "per_epoch": [{"epoch": 1, "predictions": "x"}]}),
     r"per_epoch\[0\].predictions is not an array of objects"),
    (json.dumps({**GOOD, "run_id": "r2", "config_id": None}), r"run_id='r2': config_id must be a string, got None"),
])
def test_unusable_lines_are_skipped_with_a_warning(tmp_path, bad_line, message):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + bad_line + "\n" + json.dumps({**GOOD, "run_id": "r3"}) + "\n")
    readers = (results.read, results.finished, results.runs_table,
               results.epochs_table, results.predictions_table)
    for reader in readers:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reader(path)
        assert [str(w.message) for w in caught if not re.search(message or "^$", str(w.message))] == []
        assert len(caught) == (0 if message is None else 1), reader.__name__
    expected = ["r1", "r2", "r3"] if message is None else ["r1", "r3"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert list(results.runs_table(path)["run_id"]) == expected
        assert {r["config_id"] for r in results.finished(path)} == {"c1"}
        assert len(results.predictions_table(path)) == 2  # r2's epochs are null, or r2 is skipped


def test_append_redacts_secrets(tmp_path):
    path = tmp_path / "results.jsonl"
    record = {**GOOD, "config": {"eval": {"judge": {"base_url": "https://bob:hunter2x@api.example/v1",
                                                    "api_key": "sk-planted-0001", "api_key_env": "JUDGE_KEY"}}},
              "error": "HTTP 401: Incorrect API key provided: Bearer sk-planted-0002",
              "per_epoch": [{"epoch": 1, "tokens": 1234, "predictions": []}]}
    results.append(path, record)
    text = path.read_text()
    for secret in ("hunter2x", "bob:", "sk-planted-0001", "sk-planted-0002"):
        assert secret not in text
    (stored,) = results.read(path)
    judge = stored["config"]["eval"]["judge"]
    assert judge == {"base_url": "https://***@api.example/v1", "api_key": "***", "api_key_env": "JUDGE_KEY"}
    assert stored["error"] == "HTTP 401: Incorrect API key provided: Bearer ***"
    assert stored["per_epoch"][0]["tokens"] == 1234  # a token count is not a secret
    assert record["config"]["eval"]["judge"]["api_key"] == "sk-planted-0001"  # the caller's dict is untouched
