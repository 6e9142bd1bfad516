"""Crash safety of the append-only results store, with a real process killed by SIGKILL."""
import os
import signal
import subprocess
import sys
import textwrap
import time

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
