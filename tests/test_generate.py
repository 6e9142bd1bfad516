"""Generation backends against a real local chat-completions server, and offline translation."""
from __future__ import annotations

import json
import logging
import shutil
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sciknow.generate import (
    ApertiumTranslator,
    BackendError,
    BackendHTTPError,
    BackendTimeout,
    CallableTranslator,
    LLMTranslator,
    LocalBackend,
    OpenAICompatibleBackend,
    strip_apertium_marks,
)

KEY = "sk-test-secret-4f9a2c"
KEY_ENV = "SCIKNOW_TEST_API_KEY"


class ChatHandler(BaseHTTPRequestHandler):
    """Speaks /chat/completions; the first path segment picks a behaviour (ok, flaky, slow)."""

    hits: Counter = Counter()
    lock = threading.Lock()

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _bad_answer(self, scenario: str, hits: int) -> None:
        if scenario in ("reset-once", "reset-always") and (hits == 1 or scenario == "reset-always"):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()  # a TCP reset, before any answer
            return
        if scenario == "busy-once" and hits == 1:
            data = b'{"error": {"message": "rate limited"}}'
            self.send_response(429)
            self.send_header("Retry-After", "0.2")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if scenario == "drip":  # a valid start, then one byte every 0.1 s (bounded: 10 s at most)
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.1)
            return
        data = BAD_ANSWERS[scenario](self.headers.get("Authorization", ""))
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        scenario = self.path.split("/")[1]
        with self.lock:
            self.hits[scenario] += 1
            hits = self.hits[scenario]
        if not self.path.endswith("/v1/chat/completions"):
            return self._reply(404, {"error": {"message": f"no route {self.path}"}})
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            # Like OpenAI, echo (part of) the key back: the client must redact it.
            return self._reply(401, {"error": {"message": f"Incorrect API key provided: "
                                                          f"{self.headers.get('Authorization')}"}})
        if scenario == "flaky" and hits == 1:
            return self._reply(503, {"error": {"message": "overloaded"}})
        if scenario in BAD_ANSWERS:
            return self._bad_answer(scenario, hits)
        if scenario == "slow":
            time.sleep(1.5)
        if request.get("max_tokens", 0) > 1000:
            return self._reply(400, {"error": {"message": "max_tokens is too large", "type": "invalid_request_error"}})
        prompt = request["messages"][-1]["content"]
        content = f"echo[{request['model']},{request['temperature']},{request['max_tokens']}]: {prompt}"
        self._reply(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})


OK_ANSWER = json.dumps({"choices": [{"message": {"content": "fine"}}]}).encode()
# Scenario -> 200 body, given the Authorization header the server received.
BAD_ANSWERS: dict[str, Callable[[str], bytes]] = {
    "echo-shape": lambda auth: json.dumps({"object": "error", "received": auth, "api_key": auth.split()[-1],
                                           "detail": f"key {auth.split()[-1]} is not allowed"}).encode(),
    "array": lambda auth: b"[1, 2]",
    "not-json": lambda auth: f"<html>proxy error for {auth}</html>".encode(),
    "number-content": lambda auth: b'{"choices": [{"message": {"content": 42}}]}',
    "huge": lambda auth: json.dumps({"choices": [{"message": {"content": "x" * 5000}}]}).encode(),
    "reset-once": lambda auth: OK_ANSWER,
    "reset-always": lambda auth: OK_ANSWER,
    "busy-once": lambda auth: OK_ANSWER,
    "drip": lambda auth: OK_ANSWER,
}


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the reset scenarios close sockets under the handler's feet on purpose


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = QuietServer(("127.0.0.1", 0), ChatHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


def backend(base: str, **kwargs) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(base, "test-model", api_key_env=KEY_ENV, **kwargs)


def test_openai_backend_completes_in_order(server: str, key: str) -> None:
    client = backend(f"{server}/ok/v1/")
    assert client.complete(["first", "second"], max_new_tokens=7) == [
        "echo[test-model,0,7]: first", "echo[test-model,0,7]: second"]
    parallel = backend(f"{server}/ok/v1", max_workers=4)
    prompts = [f"p{i}" for i in range(10)]
    assert parallel.complete(prompts, 5) == [f"echo[test-model,0,5]: {p}" for p in prompts]
    assert key not in repr(client) and key not in str(client) and key not in str(vars(client))


def test_openai_backend_http_error_has_status_and_message(server: str, key: str) -> None:
    with pytest.raises(BackendHTTPError) as info:
        backend(f"{server}/ok/v1").complete(["hi"], max_new_tokens=5000)
    assert info.value.status == 400
    assert "max_tokens is too large" in str(info.value)


def test_openai_backend_never_leaks_key(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "sk-wrong-key-7d1e"
    monkeypatch.setenv(KEY_ENV, wrong)
    with pytest.raises(BackendHTTPError) as info:
        backend(f"{server}/ok/v1").complete(["hi"], 5)
    assert info.value.status == 401 and "Incorrect API key" in str(info.value)
    for text in (str(info.value), repr(info.value), info.value.message):
        assert wrong not in text


def test_openai_backend_without_key_sends_no_header(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(BackendHTTPError, match="HTTP 401: Incorrect API key provided: None"):
        backend(f"{server}/ok/v1").complete(["hi"], 5)


def test_openai_backend_unreachable_server(key: str) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BackendError, match="cannot reach"):
        backend(f"http://127.0.0.1:{port}/v1", max_retries=1, backoff=0.01).complete(["hi"], 5)


def test_openai_backend_retries_503(server: str, key: str) -> None:
    assert backend(f"{server}/flaky/v1", backoff=0.01).complete(["again"], 3) == ["echo[test-model,0,3]: again"]
    assert ChatHandler.hits["flaky"] == 2


def test_openai_backend_503_exhausts_retries(server: str, key: str) -> None:
    ChatHandler.hits["flaky"] = 0
    with pytest.raises(BackendHTTPError) as info:
        backend(f"{server}/flaky/v1", backoff=0.01, max_retries=0).complete(["x"], 3)
    assert info.value.status == 503 and "overloaded" in str(info.value)


def test_openai_backend_timeout(server: str, key: str) -> None:
    start = time.monotonic()
    with pytest.raises(BackendTimeout) as info:
        backend(f"{server}/slow/v1", timeout=0.3).complete(["zzz"], 3)
    assert time.monotonic() - start < 1.4
    assert "0.3s" in str(info.value) and key not in str(info.value) and key not in repr(info.value)


@pytest.mark.parametrize("scenario, kwargs, error, match", [
    # The server echoes the key in an answer of the wrong shape: refused, key masked.
    ("echo-shape", {}, BackendError, r"/echo-shape/v1/chat/completions: unexpected response shape "
                                     r"\(no choices\[0\].message.content\): .*\"api_key\": \"\*\*\*\""),
    ("array", {}, BackendError, r"unexpected response shape .*: \[1, 2\]"),
    ("not-json", {}, BackendError, r"/not-json/v1/chat/completions answered with invalid JSON: '<html>proxy error"),
    ("number-content", {}, BackendError, r"choices\[0\].message.content is a int, not a string"),
    ("huge", {"max_bytes": 1000}, BackendError, r"/huge/v1/chat/completions: .*over max_bytes=1000"),
    ("reset-always", {"max_retries": 1}, BackendError, r"cannot reach http://\S+/reset-always/v1/chat/completions "
                                                       r"\(2 attempts\): (ConnectionResetError|RemoteDisconnected)"),
    ("drip", {"timeout": 1.0, "deadline": 0.5}, BackendTimeout, r"no answer from \S+/drip/v1/chat/completions within "
                                                                r"1.0s \(no complete answer within deadline="),
    ("reset-once", {}, None, None),  # a reset connection is retried like a 5xx
    ("busy-once", {}, None, None),   # 429 + Retry-After: retried
])
def test_openai_backend_bad_answers(server: str, key: str, caplog: pytest.LogCaptureFixture, scenario: str,
                                    kwargs: dict, error: type | None, match: str | None) -> None:
    ChatHandler.hits[scenario] = 0
    client = backend(f"{server}/{scenario}/v1", backoff=0.01, **kwargs)
    start = time.monotonic()
    with caplog.at_level(logging.DEBUG):
        if error is None:
            assert client.complete(["hi"], 5) == ["fine"]
            assert ChatHandler.hits[scenario] == 2
        else:
            with pytest.raises(error, match=match) as info:
                client.complete(["hi"], 5)
            for text in (str(info.value), repr(info.value)):
                assert KEY not in text
    assert time.monotonic() - start < 4.0  # the drip would take 10 s
    assert KEY not in caplog.text


def test_openai_backend_credentials_in_base_url(server: str, key: str, caplog: pytest.LogCaptureFixture) -> None:
    host = server.removeprefix("http://")
    client = backend(f"http://carol:pw-planted-77@{host}/reset-always/v1", backoff=0.01, max_retries=1)
    assert "pw-planted-77" not in repr(client)
    with caplog.at_level(logging.DEBUG), pytest.raises(BackendError) as info:
        client.complete(["hi"], 5)
    assert "retry 1 of 1" in caplog.text
    for text in (str(info.value), repr(info.value), caplog.text):
        assert "pw-planted-77" not in text and KEY not in text


def test_local_backend_answers_like_the_evaluator() -> None:
    """The local backend is the evaluator's batched greedy generation on a real (tiny, random) model."""
    from sciknow import models
    from sciknow.config import ModelSpec
    from sciknow.evaluate import generate_answers

    loaded = models.get(ModelSpec(name=models.TINY_MODEL))
    prompts = ["Hello", "What is water?", "Hi"]
    out = LocalBackend(loaded.model, loaded.tokenizer, batch_size=2).complete(prompts, max_new_tokens=4)
    assert len(out) == 3 and all(isinstance(o, str) for o in out)
    # 4 tokens cannot hold a loop (16+), so the writer's stop changes nothing here
    assert out == generate_answers(loaded.model, loaded.tokenizer, prompts, max_new_tokens=4, batch_size=3)
    assert "LocalBackend(model=LlamaForCausalLM" in repr(LocalBackend(loaded.model, loaded.tokenizer))


def test_a_greedy_loop_is_found_and_cut_to_one_copy() -> None:
    from sciknow.evaluate import repeated_tail

    assert repeated_tail([7] * 16) == 15 and repeated_tail([1, 2] + [7] * 16) == 15
    assert repeated_tail([9] + [1, 2] * 8) == 14  # period 2: 8 copies make the 16-token span
    assert repeated_tail([5] + [1, 2, 3, 4] * 4) == 12 and repeated_tail(list(range(8)) * 4) == 24
    assert repeated_tail([7] * 15) == 0  # too short a span to call a loop: "\n\n", "...", "|---|---|"
    assert repeated_tail([1, 2] * 7) == 0 and repeated_tail([1, 2, 3, 4] * 3) == 0 and repeated_tail([]) == 0


def test_the_local_backend_stops_a_looping_row_and_keeps_one_copy() -> None:
    """The random tiny model loops on newlines, then on one word: the evaluator's answer runs to the budget, the
    writer backend's stops at the loop; every other row is the same."""
    from sciknow import models
    from sciknow.config import ModelSpec
    from sciknow.evaluate import generate_answers

    loaded = models.get(ModelSpec(name=models.TINY_MODEL))
    prompts = ["Hello", "What is water?", "Hi", "Write three questions about the moon."]
    full = generate_answers(loaded.model, loaded.tokenizer, prompts, max_new_tokens=80, batch_size=4)
    written = LocalBackend(loaded.model, loaded.tokenizer, batch_size=2).complete(prompts, max_new_tokens=80)
    looping = [i for i, a in enumerate(full) if len(a) > 40]
    assert looping, full  # the test needs a row that loops
    for i, (a, b) in enumerate(zip(full, written)):
        assert a.startswith(b)
        assert (len(b) < len(a) / 4) if i in looping else (a == b)


def test_strip_apertium_marks() -> None:
    assert strip_apertium_marks("de *zyxoprene y #foo, @bar **baz") == "de zyxoprene y foo, bar baz"
    assert strip_apertium_marks("paso # 1, 5 * 3, #1") == "paso # 1, 5 * 3, #1"


def test_callable_and_llm_translators() -> None:
    upper = CallableTranslator(lambda texts, lang: [f"[{lang}] {t}" for t in texts])
    assert upper.translate(["a", "b"], "es") == ["[es] a", "[es] b"]
    with pytest.raises(ValueError):
        CallableTranslator(lambda texts, lang: []).translate(["a"], "es")

    class Echo:
        def complete(self, prompts: list[str], max_new_tokens: int) -> list[str]:
            return [f" {p.splitlines()[0]} " for p in prompts]

    out = LLMTranslator(Echo()).translate(["Water boils."], "it")
    assert out == ["Translate the following text from English into Italian. Keep numbers, units, chemical "
                   "names and formulas unchanged. Reply with the translation only."]


needs_apertium = pytest.mark.skipif(shutil.which("apertium") is None,
                                    reason="apertium not installed (apt-get install apertium apertium-eng-spa "
                                           "apertium-spa-ita apertium-eng-cat)")


@needs_apertium
@pytest.mark.parametrize("lang, expected", [
    ("es", "El catalizador aumenta la tasa de reacción de zyxoprene."),
    ("ca", "catalitzador"),
    ("it", "Il catalizzatore aumenta il tasso di reazione di zyxoprene."),
])
def test_apertium_translates(lang: str, expected: str) -> None:
    translator = ApertiumTranslator()
    sentence = "The catalyst increases the reaction rate of zyxoprene."
    out = translator.translate([sentence, ""], lang)
    assert len(out) == 2 and out[1] == ""
    assert expected in out[0]
    assert not any(mark in out[0] for mark in "*#@")


@needs_apertium
def test_apertium_unknown_language() -> None:
    with pytest.raises(ValueError, match="no pipeline"):
        ApertiumTranslator().translate(["Hello."], "xx")
    assert ApertiumTranslator().translate(["Hello."], "en") == ["Hello."]


def test_apertium_missing_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="apertium is not installed"):
        ApertiumTranslator(executable="apertium-does-not-exist").translate(["Hello."], "es")


def test_recording_backend_resumes_after_a_crash(tmp_path):
    """Each finished batch is on disk before the next starts: after a crash, a new run generates only the prompts
    that were not finished, and returns every output in prompt order; another writer id generates anew."""
    from sciknow.generate import RecordingBackend

    class Flaky:
        def __init__(self, fail_on_call=None):
            self.prompts, self.calls, self.fail_on_call = [], 0, fail_on_call

        def complete(self, prompts, max_new_tokens):
            self.calls += 1
            if self.calls == self.fail_on_call:
                raise KeyboardInterrupt  # the run is killed while this batch generates
            self.prompts += prompts
            return [f"out({p},{max_new_tokens})" for p in prompts]

    path = tmp_path / "generations.jsonl"
    prompts = [f"p{i}" for i in range(5)]
    first = Flaky(fail_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        RecordingBackend(first, "writer-a", path, batch_size=2).complete(prompts, 7)
    assert first.prompts == ["p0", "p1"] and len(path.read_text().splitlines()) == 2

    second = Flaky()
    resumed = RecordingBackend(second, "writer-a", path, batch_size=2)
    assert resumed.complete(prompts + ["p0"], 7) == [f"out({p},7)" for p in prompts + ["p0"]]
    assert second.prompts == ["p2", "p3", "p4"] and (resumed.generated, resumed.resumed) == (3, 3)
    assert resumed.writer_seconds >= resumed.seconds >= 0  # the read-back texts count with their recorded time
    assert len(path.read_text().splitlines()) == 5

    other = Flaky()
    RecordingBackend(other, "writer-b", path, batch_size=2).complete(prompts[:1], 7)
    RecordingBackend(other, "writer-a", path, batch_size=2).complete(prompts[:1], 8)  # other max_new_tokens
    assert other.prompts == ["p0", "p0"]
