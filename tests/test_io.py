"""sciknow.io: atomic writes and JSONL under real crashes and concurrent writers; HTTP against a local server."""
from __future__ import annotations

import base64
import email.utils
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sciknow import io

# ---------------------------------------------------------------- atomic writes


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "a.txt"
    io.atomic_write_text(path, "old")
    io.atomic_write_text(path, "new ✓")
    assert path.read_text(encoding="utf-8") == "new ✓"
    assert [p.name for p in path.parent.iterdir()] == ["a.txt"]  # no temporary file left


def test_failed_write_leaves_old_file(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    io.atomic_write_text(path, "old")
    with pytest.raises(TypeError):
        io.atomic_write_bytes(path, "not bytes")  # type: ignore[arg-type]  # fails inside the write
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


WRITER = textwrap.dedent("""
    import sys
    from sciknow import io
    for i in range(100_000):
        io.atomic_write_bytes(sys.argv[1], (b"a" if i % 2 else b"b") * 2_000_000)
        print(i, flush=True)
""")


def test_killed_writer_leaves_a_whole_file(tmp_path: Path) -> None:
    """Readers racing a writer, then a SIGKILL mid-write: every read sees one whole version, old or new."""
    path = tmp_path / "big.bin"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and int(proc.stdout.readline()) == 0
        seen = Counter()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            data = path.read_bytes()
            assert len(data) == 2_000_000 and data.count(data[:1]) == len(data)
            seen[data[:1]] += 1
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    data = path.read_bytes()
    assert len(data) == 2_000_000 and data.count(data[:1]) == len(data)
    assert sum(seen.values()) > 1


# ---------------------------------------------------------------- JSON Lines


def test_jsonl_round_trip_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    assert io.read_jsonl(path) == []
    with pytest.raises(FileNotFoundError, match="x.jsonl"):
        io.read_jsonl(path, missing_ok=False)
    io.write_jsonl(path, [{"a": 1}, {"b": "é"}])
    io.append_jsonl(path, {"c": [1, 2]})
    assert io.read_jsonl(path, strict=True) == [{"a": 1}, {"b": "é"}, {"c": [1, 2]}]


@pytest.mark.parametrize("bad_line, problem", [
    (b'{"run_id": "torn", "sta', "an incomplete or invalid JSON"),
    (b"null", "a JSON NoneType, not an object"),
    (b"[1, 2]", "a JSON list, not an object"),
    (b'"text"', "a JSON str, not an object"),
    (b"42", "a JSON int, not an object"),
    (b"\xff\xfe{}", "an incomplete or invalid JSON"),
])
def test_jsonl_bad_lines_skipped_or_strict(tmp_path: Path, bad_line: bytes, problem: str) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"i": 1}\n' + bad_line + b'\n{"i": 2}\n')
    with pytest.warns(UserWarning, match=rf"r\.jsonl:2: skipping {problem}"):
        assert io.read_jsonl(path) == [{"i": 1}, {"i": 2}]
    with pytest.raises(io.JSONLError, match=rf"r\.jsonl:2: {problem}"):
        io.read_jsonl(path, strict=True)


def test_append_after_torn_line_starts_a_fresh_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    io.append_jsonl(path, {"i": 1})
    with open(path, "ab") as f:
        f.write(b'{"i": "torn')
    io.append_jsonl(path, {"i": 2})
    with pytest.warns(UserWarning, match="r.jsonl:2"):
        assert io.read_jsonl(path) == [{"i": 1}, {"i": 2}]


def test_two_processes_append_concurrently(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    script = ("import sys\nfrom sciknow import io\n"
              "[io.append_jsonl(sys.argv[1], {'w': sys.argv[2], 'i': i, 'pad': 'y' * 100_000}) for i in range(50)]")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), w]) for w in "ab"]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    records = io.read_jsonl(path, strict=True)  # strict: an interleaved line would raise
    assert len(records) == 100
    for w in "ab":
        assert [r["i"] for r in records if r["w"] == w] == list(range(50))


# ---------------------------------------------------------------- HTTP


class Handler(BaseHTTPRequestHandler):
    """Behaviour by path; `hits` counts requests per path so a test can make the first N fail."""

    hits: Counter = Counter()
    seen_headers: dict[str, dict[str, str]] = {}

    def log_message(self, *args: object) -> None:
        pass

    def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        key = url.path + "?" + url.query
        Handler.hits[key] += 1
        hits = Handler.hits[key]
        Handler.seen_headers[url.path] = dict(self.headers)
        failing = hits <= int(query.get("fail", 0))
        if url.path == "/ok":
            self.reply(200, b"hello")
        elif url.path == "/status":
            if failing:
                header = query.get("header", "Retry-After")
                self.reply(int(query["code"]), b"busy", {header: query.get("retry_after", "")})
            else:
                self.reply(200, b"done")
        elif url.path == "/reset":  # the connection is reset before any answer, `fail` times
            if failing:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                return
            self.reply(200, b"after reset")
        elif url.path == "/drip":  # a valid answer, one byte every 0.1 s: each read is quick, the whole is not
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):  # bounded: stops by itself after 10 s, or when the client hangs up
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.1)
        elif url.path == "/big":  # `size` bytes, announced or not
            body = b"z" * int(query["size"])
            if query.get("length") == "no":
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True
            else:
                self.reply(200, body)
        elif url.path == "/sleep":  # no answer for `s` seconds
            time.sleep(float(query["s"]))
            self.reply(200, b"late")
        elif url.path == "/echo-auth":  # like OpenAI: an error that quotes the credentials it received
            self.reply(401, f"bad credentials: {self.headers.get('Authorization')}".encode())
        elif url.path == "/redirect":
            self.reply(302, b"", {"Location": "/ok"})
        else:
            self.reply(404, b"no such path")


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the reset scenario closes sockets under the handler's feet on purpose


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def fresh_hits() -> None:
    Handler.hits.clear()


FAST = dict(backoff=0.01, max_delay=0.05, timeout=2.0, deadline=5.0)


def test_ok_and_redirect(base: str) -> None:
    response = io.http_request(f"{base}/ok", headers={"User-Agent": "sciknow-test"})
    assert (response.status, response.body) == (200, b"hello")
    assert Handler.seen_headers["/ok"]["User-Agent"] == "sciknow-test"
    assert io.http_request(f"{base}/redirect").url == f"{base}/ok"


@pytest.mark.parametrize("retry_after, backoff, max_delay, waited", [
    ("0.4", 0.01, 5.0, 0.4 + 0.4),   # seconds: honoured
    ("3600", 0.01, 0.3, 0.3 + 0.3),  # capped at max_delay
    ("", 0.2, 5.0, 0.2 + 0.4),       # absent: exponential backoff
    ("soon", 0.2, 5.0, 0.2 + 0.4),   # unreadable: exponential backoff
    ("", 0.2, 0.25, 0.2 + 0.25),     # backoff capped too
    ("0.4&header=retry-after", 0.01, 5.0, 0.4 + 0.4),  # header names are case-insensitive
])
def test_retry_after_honoured_and_capped(base: str, retry_after: str, backoff: float, max_delay: float,
                                         waited: float) -> None:
    start = time.monotonic()
    url = f"{base}/status?code=503&fail=2&retry_after={retry_after}"
    response = io.http_request(url, backoff=backoff, max_delay=max_delay)
    elapsed = time.monotonic() - start
    assert response.body == b"done" and Handler.hits.total() == 3
    assert waited <= elapsed <= waited + 1.5  # generous: the machine may be busy


def test_retry_delay_rule() -> None:
    date = email.utils.format_datetime(email.utils.localtime(), usegmt=False)
    assert io.retry_delay(0, None, 1.0, 30.0) == 1.0 and io.retry_delay(3, None, 1.0, 30.0) == 8.0
    assert io.retry_delay(10, None, 1.0, 30.0) == 30.0
    assert io.retry_delay(0, "7", 1.0, 30.0) == 7.0 and io.retry_delay(0, " 2.5 ", 1.0, 30.0) == 2.5
    assert io.retry_delay(0, "3600", 1.0, 30.0) == 30.0
    assert io.retry_delay(0, "-5", 1.0, 30.0) == 0.0
    assert io.retry_delay(1, "nan", 1.0, 30.0) == 2.0 and io.retry_delay(1, "inf", 1.0, 30.0) == 2.0
    assert io.retry_delay(2, "Wed, 21 Oct 2015 07:28:00 GMT", 1.0, 30.0) == 0.0  # a date in the past: go now
    assert 0.0 <= io.retry_delay(2, date, 1.0, 30.0) <= 1.0  # now, in local time with an offset
    future = email.utils.formatdate(time.time() + 20, usegmt=True)
    assert 18.0 <= io.retry_delay(0, future, 1.0, 30.0) <= 20.0
    assert io.retry_delay(0, email.utils.formatdate(time.time() + 3600, usegmt=True), 1.0, 30.0) == 30.0


@pytest.mark.parametrize("path, error, match, hits", [
    ("/status?code=503&fail=9", io.HTTPStatusError, r"GET http://\S+/status\S* failed after 3 attempts: HTTP 503", 3),
    ("/status?code=429&fail=9", io.HTTPStatusError, "failed after 3 attempts: HTTP 429", 3),
    ("/status?code=404&fail=9", io.HTTPStatusError, r"/status\?code=404&fail=9: HTTP 404 Not Found$", 1),
    ("/status?code=400&fail=9", io.HTTPStatusError, "HTTP 400", 1),
    ("/reset?fail=9", io.HTTPConnectionError, "failed after 3 attempts: (ConnectionResetError|RemoteDisconn)", 3),
    ("/big?size=1001", io.HTTPResponseTooLarge, "Content-Length 1001, over max_bytes=1000", 1),
    ("/big?size=1001&length=no", io.HTTPResponseTooLarge, "larger than max_bytes=1000", 1),
])
def test_bad_answers_refused(base: str, path: str, error: type, match: str, hits: int) -> None:
    with pytest.raises(error, match=match) as info:
        io.http_request(base + path, max_retries=2, max_bytes=1000, **FAST)
    assert Handler.hits.total() == hits and info.value.attempts == hits
    if isinstance(info.value, io.HTTPStatusError):
        assert info.value.status == int(path.split("code=")[1][:3]) and info.value.body == "busy"


def test_exact_size_cap_is_accepted(base: str) -> None:
    assert len(io.http_request(f"{base}/big?size=1000&length=no", max_bytes=1000).body) == 1000


def test_connection_reset_is_retried(base: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sciknow.io"):
        assert io.http_request(f"{base}/reset?fail=2", **FAST).body == b"after reset"
    assert Handler.hits.total() == 3
    assert "/reset?fail=2: ConnectionResetError" in caplog.text or "RemoteDisconnected" in caplog.text
    assert "retry 2 of 3" in caplog.text


def test_refused_connection_is_retried_then_fails() -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(io.HTTPConnectionError, match="failed after 2 attempts: ConnectionRefusedError"):
        io.http_request(f"http://127.0.0.1:{port}/x", max_retries=1, **FAST)


def test_deadline_cuts_a_slow_drip(base: str) -> None:
    """Each byte arrives well within `timeout`; the whole answer would take 10 s; `deadline` stops it."""
    start = time.monotonic()
    with pytest.raises(io.HTTPTimeoutError, match=r"GET \S+/drip: no complete answer within deadline=0.6s$"):
        io.http_request(f"{base}/drip", timeout=1.0, deadline=0.6)
    assert time.monotonic() - start < 3.0  # the whole answer would take 10 s


def test_deadline_is_not_passed_by_a_retry_wait(base: str) -> None:
    start = time.monotonic()
    with pytest.raises(io.HTTPStatusError, match=r"HTTP 503.*next retry, in 30.0s, would pass deadline=2s"):
        io.http_request(f"{base}/status?code=503&fail=9&retry_after=30", deadline=2, max_delay=60)
    assert time.monotonic() - start < 3.0 and Handler.hits.total() == 1


def test_socket_timeout_is_not_retried(base: str) -> None:
    with pytest.raises(io.HTTPTimeoutError, match="no answer within timeout=0.2s"):
        io.http_request(f"{base}/sleep?s=1", timeout=0.2, deadline=5)
    assert Handler.hits.total() == 1


def test_credentials_never_in_messages_or_logs(base: str, caplog: pytest.LogCaptureFixture) -> None:
    host = base.removeprefix("http://")
    with pytest.raises(io.HTTPStatusError) as info:
        io.http_request(f"{base}/echo-auth", headers={"Authorization": "Bearer sk-live-12345678"}, **FAST)
    assert info.value.status == 401 and info.value.body == "bad credentials: ***"
    with caplog.at_level(logging.WARNING, logger="sciknow.io"), pytest.raises(io.HTTPStatusError) as info:
        io.http_request(f"http://alice:pw-s3cret@{host}/status?code=503&fail=9", max_retries=1, **FAST)
    sent = Handler.seen_headers["/status"]["Authorization"]  # userinfo goes out as Basic auth, not in the host
    assert sent == "Basic " + base64.b64encode(b"alice:pw-s3cret").decode()
    for text in (str(info.value), repr(info.value), caplog.text):
        assert "pw-s3cret" not in text and "alice" not in text and sent.split()[1] not in text
    assert f"GET {base}/status?code=503&fail=9 failed after 2 attempts: HTTP 503" in str(info.value)


@pytest.mark.parametrize("field, value", [("timeout", 0), ("deadline", -1), ("deadline", float("inf")),
                                          ("max_bytes", -1), ("max_retries", 1.5), ("backoff", -0.1)])
def test_bad_arguments_refused(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"{field} must be .*got {value!r}"):
        io.http_request("http://127.0.0.1:9/", **{field: value})


def test_bad_url_refused() -> None:
    with pytest.raises(ValueError, match="url='no-scheme/x'"):
        io.http_request("no-scheme/x")
    with pytest.raises(io.HTTPConnectionError, match="GET gopher://127.0.0.1/x: unknown url type: gopher"):
        io.http_request("gopher://127.0.0.1/x")


def test_responses_are_json_safe(base: str) -> None:
    response = io.http_request(f"{base}/ok")
    assert json.loads(json.dumps(response.headers))["Content-Length"] == "5"
