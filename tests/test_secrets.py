"""sciknow.secrets: masking rules, and a key planted in every place a secret could reach disk or a log."""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sciknow import results
from sciknow.generate import BackendError, OpenAICompatibleBackend
from sciknow.secrets import MASK, is_secret_key, redact, redact_text

KEY = "sk-planted-5a7c9e1b"


@pytest.mark.parametrize("name, secret", [
    ("token", True), ("api_key", True), ("key", True), ("secret", True), ("password", True), ("passwd", True),
    ("authorization", True), ("Authorization", True), ("auth", True), ("credentials", True), ("credential", True),
    ("apiKey", True), ("APIKey", True), ("X-Api-Key", True), ("OPENAI_API_KEY", True), ("hf_token", True),
    ("accessToken", True), ("client_secret", True), ("db.password", True), ("cookie", True),
    ("api_key_env", False), ("token_env", False), ("tokens", False), ("max_tokens", False),
    ("bos_token_id", False), ("keywords", False), ("author", False), ("authors", False), ("monkey", False),
    ("tokenizer", False), ("password_file", False), ("", False),
])
def test_secret_key_names(name: str, secret: bool) -> None:
    assert is_secret_key(name) is secret


@pytest.mark.parametrize("text, secrets, expected", [
    ("https://user:pw@host.org/v1", (), "https://***@host.org/v1"),
    ("postgresql://optuna:s3cr@t@db:5432/x and more", (), "postgresql://***@db:5432/x and more"),
    ("https://ghp_token123@github.com/a/b", (), "https://***@github.com/a/b"),
    ("mail me at a@b.org", (), "mail me at a@b.org"),  # no scheme: not URL userinfo
    ("GET /v1?api_key=abc123&q=ok", (), "GET /v1?api_key=***&q=ok"),
    ("GET /v1?keywords=abc&page=2", (), "GET /v1?keywords=abc&page=2"),
    ("Authorization: Bearer sk-abc123def456", (), "Authorization: Bearer ***"),
    ("the Bearer bonds and the bearer of news", (), "the Bearer bonds and the bearer of news"),
    (f"Incorrect API key provided: {KEY}.", (KEY,), "Incorrect API key provided: ***."),
    (f"{KEY} and {KEY[:-3]}", (KEY[:-3], KEY), "*** and ***"),  # the longer secret first
    ("nothing to hide", ("",), "nothing to hide"),
])
def test_redact_text(text: str, secrets: tuple[str, ...], expected: str) -> None:
    assert redact_text(text, secrets) == expected


def test_redact_structure() -> None:
    config = {
        "model": {"name": "m", "token": "hf_abcdef123"},
        "judge": {"base_url": "https://bob:pw9@api.example/v1", "api_key": KEY, "api_key_env": "JUDGE_KEY",
                  "headers": {"Authorization": f"Bearer {KEY}", "Accept": "application/json"}},
        "runs": [{"tokens": 1200, "max_tokens": 64, "note": f"called with Bearer {KEY}"}, ("https://u:p@h/", 3)],
        "auth": None, "password": "", "secret": 42, "credentials": ["user", "pw"],
    }
    before = json.dumps(config)
    out = redact(config)
    assert json.dumps(config) == before  # a copy: the input is untouched
    assert out["model"] == {"name": "m", "token": MASK}
    assert out["judge"] == {"base_url": "https://***@api.example/v1", "api_key": MASK, "api_key_env": "JUDGE_KEY",
                            "headers": {"Authorization": MASK, "Accept": "application/json"}}
    assert out["runs"] == [{"tokens": 1200, "max_tokens": 64, "note": "called with Bearer ***"}, ("https://***@h/", 3)]
    assert (out["auth"], out["password"], out["secret"], out["credentials"]) == (None, "", 42, MASK)
    assert KEY not in json.dumps(out) and "pw9" not in json.dumps(out)
    assert redact(KEY, [KEY]) == MASK and redact(7) == 7


class EchoHandler(BaseHTTPRequestHandler):
    """A chat server that answers 503 once (a logged retry), then a 200 of the wrong shape echoing the key."""

    hits = 0

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        EchoHandler.hits += 1
        status = 503 if EchoHandler.hits == 1 else 200
        body = json.dumps({"status": "odd", "you_sent": self.headers.get("Authorization"),
                           "api_key": self.headers.get("Authorization", "").split()[-1]}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def echo_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_planted_key_reaches_no_record_log_or_error(echo_server: str, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A key in the environment, a password in base_url, a token in the config: none reaches disk or a log."""
    monkeypatch.setenv("PLANTED_KEY", KEY)
    base_url = f"http://dora:url-pw-31337@{echo_server}/v1"
    client = OpenAICompatibleBackend(base_url, "m", api_key_env="PLANTED_KEY", backoff=0.01)
    with caplog.at_level(logging.DEBUG), pytest.raises(BackendError, match="unexpected response shape") as info:
        client.complete(["hi"], 5)
    logging.getLogger("sciknow.test").warning("config was %s", redact({"base_url": base_url, "token": KEY}))
    record = {"run_id": "r", "status": "failed", "error": str(info.value),
              "config": {"judge": {"base_url": base_url, "token": KEY, "api_key_env": "PLANTED_KEY"}}}
    results.append(tmp_path / "results.jsonl", record)
    stored = (tmp_path / "results.jsonl").read_text()
    assert EchoHandler.hits == 2 and "retry 1 of 3" in caplog.text
    for text in (str(info.value), repr(info.value), repr(client), caplog.text, stored):
        assert KEY not in text and "url-pw-31337" not in text
    assert '"api_key_env": "PLANTED_KEY"' in stored and "http://***@" in stored
