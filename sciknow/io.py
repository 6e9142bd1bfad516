"""Small file helpers, written once: atomic writes, JSON Lines read/write/append.

* `atomic_write_bytes` / `atomic_write_text`: write to a temporary file beside the target, fsync, rename over
  it. A reader sees the old file or the new one, never half of one.
* `write_jsonl`: a whole JSONL file, atomically.
* `append_jsonl`: one record appended as a single `write` of a complete line on an O_APPEND descriptor under an
  exclusive lock, then fsync. Concurrent writers never interleave; a process killed mid-write leaves at most
  an unterminated last line, which `read_jsonl` skips with a warning (and the next append starts a new line).
* `read_jsonl`: every complete JSON object in a file. Torn lines and lines that are valid JSON but not an
  object (`null`, `[1]`) are skipped with a warning naming the file and line, or raise with `strict=True`.
* `http_request`: one HTTP request with an overall deadline, a response size cap, and retries of 429/5xx and
  connection errors (one Retry-After rule, `retry_delay`, with exponential backoff); credentials masked in
  every message. Standard library only (urllib): urllib3's `Retry` has the retry rule but neither a deadline
  over all attempts nor a body size cap, and those two are most of this code.
"""
from __future__ import annotations

import base64
import email.utils
import fcntl
import http.client
import json
import logging
import math
import os
import socket
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sciknow import secrets


class JSONLError(ValueError):
    """A JSON Lines file has a line that is not a JSON object (strict reading); the message names file:line."""


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Replace `path` with `data` atomically (temporary file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _line(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write all `rows` as a JSONL file, atomically."""
    return atomic_write_bytes(path, b"".join(_line(r) for r in rows))


def append_jsonl(path: str | Path, record: Mapping[str, Any]) -> None:
    """Append one record as one complete line, under an exclusive lock, then fsync (crash-safe, multi-writer)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = _line(record)
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


def read_jsonl(path: str | Path, strict: bool = False, missing_ok: bool = True) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, in order. A missing file is empty (or FileNotFoundError).

    A line that is not a complete JSON object is skipped with a warning naming `file:line`; with `strict=True`
    it raises `JSONLError` instead (for files this package wrote in one piece, where a bad line is corruption).
    """
    path = Path(path)
    if not path.exists():
        if missing_ok:
            return []
        raise FileNotFoundError(f"{path}: file not found")
    records = []
    for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
            problem = None if isinstance(value, dict) else f"a JSON {type(value).__name__}, not an object"
        except (json.JSONDecodeError, UnicodeDecodeError):
            problem = "an incomplete or invalid JSON line (a writer was interrupted?)"
        if problem:
            if strict:
                raise JSONLError(f"{path}:{number}: {problem}")
            warnings.warn(f"{path}:{number}: skipping {problem}", stacklevel=2)
            continue
        records.append(value)
    return records


# ---------------------------------------------------------------- HTTP

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_MAX_BYTES = 64 * 2**20  # a JATS article or a chat completion is far smaller
_ERROR_BODY_BYTES = 64 * 2**10  # enough for any server's error explanation
_CHUNK = 2**16

log = logging.getLogger(__name__)


class HTTPRequestError(Exception):
    """An HTTP request that failed for good. The message names the method and URL (credentials masked), the
    problem, and how many attempts were made."""

    def __init__(self, what: str, problem: str, retryable: bool = False) -> None:
        super().__init__(f"{what}: {problem}")
        self.what = what
        self.problem = problem
        self.retryable = retryable
        self.attempts = 1

    def _gave_up(self, attempts: int, note: str = "") -> HTTPRequestError:
        self.attempts = attempts
        tries = f" failed after {attempts} attempts" if attempts > 1 else ""
        self.args = (f"{self.what}{tries}: {self.problem}{note}",)
        return self


class HTTPStatusError(HTTPRequestError):
    """The server answered with an error status. `body` is its explanation (text, credentials masked)."""

    def __init__(self, what: str, status: int, reason: str, body: str, retry_after: str | None,
                 retryable: bool) -> None:
        super().__init__(what, f"HTTP {status} {reason}".rstrip(), retryable)
        self.status = status
        self.reason = reason
        self.body = body
        self.retry_after = retry_after


class HTTPTimeoutError(HTTPRequestError):
    """No answer within `timeout` (one socket operation) or no complete answer within `deadline` (the request)."""


class HTTPConnectionError(HTTPRequestError):
    """The server could not be reached, or it dropped the connection."""


class HTTPResponseTooLarge(HTTPRequestError):
    """The answer is larger than `max_bytes`."""


@dataclass(frozen=True)
class HTTPResponse:
    url: str  # after redirects
    status: int
    headers: dict[str, str]
    body: bytes


def retry_delay(attempt: int, retry_after: str | None, backoff: float, max_delay: float) -> float:
    """Seconds to wait after failed attempt `attempt` (0-based): the server's Retry-After when it is readable
    (delta-seconds or an HTTP date), else `backoff * 2**attempt`; never below 0, never above `max_delay`."""
    delay = backoff * 2**attempt
    if retry_after and retry_after.strip():
        value = retry_after.strip()
        seconds: float | None
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
                if when.tzinfo is None:
                    when = when.replace(tzinfo=timezone.utc)
                seconds = (when - datetime.now(timezone.utc)).total_seconds()
            except (TypeError, ValueError, IndexError, OverflowError):
                seconds = None  # unreadable header: keep the exponential delay
        if seconds is not None and math.isfinite(seconds):
            delay = seconds
    return min(max(delay, 0.0), max_delay)


class _Watchdog:
    """Shuts the request's sockets down when the deadline passes, so a server dripping bytes slower than the
    socket timeout cannot hold the caller past it (a socket timeout bounds one read, not the whole answer)."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True

    def wrap(self, create_connection: Callable[..., socket.socket]) -> Callable[..., socket.socket]:
        def create(*args: Any, **kwargs: Any) -> socket.socket:
            sock = create_connection(*args, **kwargs)
            with self._lock:
                # A handle of our own: TLS wrapping detaches the original socket object from its descriptor.
                self._sockets.append(sock.dup())
                if self.fired:
                    self._shutdown(self._sockets[-1])
            return sock

        return create

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by the peer

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._sockets:
                self._shutdown(sock)

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()


class _WatchedHandler(urllib.request.AbstractHTTPHandler):
    """Mixin for urllib's HTTP(S) handlers: every connection they open registers its socket with the watchdog."""

    watchdog: _Watchdog

    def do_open(self, http_class: Any, req: urllib.request.Request, **kwargs: Any) -> Any:
        def connection(host: str, **conn_kwargs: Any) -> http.client.HTTPConnection:
            conn = http_class(host, **conn_kwargs)
            conn._create_connection = self.watchdog.wrap(conn._create_connection)
            return conn

        return super().do_open(connection, req, **kwargs)


class _HTTPHandler(_WatchedHandler, urllib.request.HTTPHandler):
    pass


class _HTTPSHandler(_WatchedHandler, urllib.request.HTTPSHandler):
    pass


def _read_capped(response: Any, max_bytes: int, what: str, truncate: bool = False) -> bytes:
    """The body, refused (or, with `truncate`, cut) beyond `max_bytes`; read in chunks, never allocated whole."""
    length = response.headers.get("Content-Length", "")
    if not truncate and length.strip().isdigit() and int(length) > max_bytes:
        raise HTTPResponseTooLarge(what, f"the answer has Content-Length {int(length)}, over max_bytes={max_bytes}")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = response.read(min(_CHUNK, max_bytes + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            if truncate:
                return b"".join(chunks)[:max_bytes]
            raise HTTPResponseTooLarge(what, f"the answer is larger than max_bytes={max_bytes}")
    return b"".join(chunks)


def _move_userinfo(url: str, headers: dict[str, str]) -> tuple[str, list[str]]:
    """Take `user:password@` out of the URL (urllib would send it as part of the host name) into a Basic
    Authorization header, unless one is set; returns the bare URL and the secret values seen."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, []
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    user, password = urllib.parse.unquote(user), urllib.parse.unquote(password)
    if not any(name.lower() == "authorization" for name in headers):
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    # Without a password the user name is the credential (https://TOKEN@host).
    return urllib.parse.urlunsplit(parts._replace(netloc=host)), [userinfo, password or user]


def _attempt(request: urllib.request.Request, timeout: float, remaining: float, deadline: float, max_bytes: int,
             what: str, hidden: list[str], retry_statuses: Collection[int]) -> HTTPResponse:
    with _Watchdog(remaining) as watchdog:
        handlers = [_HTTPHandler(), _HTTPSHandler()]
        for handler in handlers:
            handler.watchdog = watchdog
        opener = urllib.request.build_opener(*handlers)
        late = HTTPTimeoutError(what, f"no complete answer within deadline={deadline:g}s")
        try:
            with opener.open(request, timeout=timeout) as response:
                body = _read_capped(response, max_bytes, what)
                if watchdog.fired:  # a body read to EOF after the shutdown is cut short
                    raise late
                return HTTPResponse(response.geturl(), response.status, dict(response.headers), body)
        except urllib.error.HTTPError as err:
            with err:
                text = _read_capped(err, _ERROR_BODY_BYTES, what, truncate=True).decode("utf-8", "replace")
            if watchdog.fired:
                raise late from None
            raise HTTPStatusError(what, err.code, secrets.redact_text(str(err.reason), hidden),
                                  secrets.redact_text(text, hidden), err.headers.get("Retry-After"),
                                  retryable=err.code in retry_statuses) from None
        except (HTTPRequestError, ValueError):
            raise
        except Exception as err:  # noqa: BLE001 (urllib and http.client raise many kinds; classified here)
            if watchdog.fired:
                raise late from None
            reason = err.reason if isinstance(err, urllib.error.URLError) else err
            kind = f"{type(reason).__name__}: " if isinstance(reason, BaseException) else ""
            problem = secrets.redact_text(f"{kind}{reason}", hidden)
            if isinstance(reason, TimeoutError):
                raise HTTPTimeoutError(what, f"no answer within timeout={timeout:g}s") from None
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise HTTPConnectionError(what, problem) from None  # retrying cannot fix a certificate
            if isinstance(reason, (OSError, http.client.HTTPException)):
                raise HTTPConnectionError(what, problem, retryable=True) from None
            if isinstance(err, urllib.error.URLError):  # e.g. "unknown url type"
                raise HTTPConnectionError(what, problem) from None
            raise


def http_request(url: str, *, method: str = "GET", data: bytes | None = None,
                 headers: Mapping[str, str] | None = None, timeout: float = 60.0, deadline: float = 300.0,
                 max_bytes: int = DEFAULT_MAX_BYTES, max_retries: int = 3, backoff: float = 1.0,
                 max_delay: float = 60.0, retry_statuses: Collection[int] = RETRY_STATUSES,
                 before_attempt: Callable[[], None] | None = None) -> HTTPResponse:
    """One HTTP request with a deadline, a size cap and retries; a 2xx answer, or an `HTTPRequestError`.

    * `timeout` bounds each socket operation; `deadline` bounds the whole call, retries and waits included
      (a server dripping one byte per second is cut off).
    * Answers larger than `max_bytes` are refused (`HTTPResponseTooLarge`), by Content-Length before reading.
    * `retry_statuses` (429, 5xx) and connection errors (refused, reset, dropped) are retried up to
      `max_retries` times, waiting `retry_delay`: the server's Retry-After (seconds or an HTTP date), else
      exponential backoff from `backoff`, both capped at `max_delay`. A wait that would pass the deadline is
      not started. Timeouts are not retried: a request that ran past `timeout` will most likely do so again.
    * Credentials never appear in messages or logs: URL userinfo (sent as Basic auth), the values of secret
      headers such as Authorization, and anything a server echoes of them are masked.
    * `before_attempt` runs before each attempt (a client's rate limiter, say).
    """
    for name, value, zero_ok in (("timeout", timeout, False), ("deadline", deadline, False),
                                 ("backoff", backoff, True), ("max_delay", max_delay, True)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and (value > 0 or zero_ok and value == 0)):
            raise ValueError(f"http_request: {name} must be a finite number of seconds "
                             f"{'>= 0' if zero_ok else '> 0'}, got {value!r}")
    if not (isinstance(max_bytes, int) and max_bytes >= 0):
        raise ValueError(f"http_request: max_bytes must be an int >= 0, got {max_bytes!r}")
    if not (isinstance(max_retries, int) and max_retries >= 0):
        raise ValueError(f"http_request: max_retries must be an int >= 0, got {max_retries!r}")
    headers = dict(headers or {})
    url, hidden = _move_userinfo(url, headers)
    for name, value in headers.items():
        if secrets.is_secret_key(name):
            hidden += [value, value.partition(" ")[2]]  # "Bearer sk-..." and the bare key
    what = f"{method} {secrets.redact_text(url, hidden)}"
    try:
        request = urllib.request.Request(url, data=data, method=method)
    except ValueError as err:
        raise ValueError(f"http_request: url={secrets.redact_text(url, hidden)!r}: {err}") from None
    for name, value in headers.items():
        # Secret headers are not forwarded to whatever host a redirect points at.
        add = request.add_unredirected_header if secrets.is_secret_key(name) else request.add_header
        add(name, value)
    end = time.monotonic() + deadline
    for attempt in range(max_retries + 1):
        if before_attempt is not None:
            before_attempt()
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise HTTPTimeoutError(what, f"no complete answer within deadline={deadline:g}s")._gave_up(attempt)
        try:
            return _attempt(request, min(timeout, remaining), remaining, deadline, max_bytes, what, hidden,
                            retry_statuses)
        except HTTPRequestError as err:
            if not err.retryable or attempt == max_retries:
                raise err._gave_up(attempt + 1) from None
            retry_after = err.retry_after if isinstance(err, HTTPStatusError) else None
            delay = retry_delay(attempt, retry_after, backoff, max_delay)
            if time.monotonic() + delay >= end:
                note = f" (the next retry, in {delay:.1f}s, would pass deadline={deadline:g}s)"
                raise err._gave_up(attempt + 1, note) from None
            log.warning("%s: %s; retry %d of %d in %.1fs", what, err.problem, attempt + 1, max_retries, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")
