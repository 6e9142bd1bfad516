"""One text-generation interface for augmentation, Q&A building and judging, plus translators.

A `Backend` turns chat-style user prompts into answer texts (greedy / temperature 0). Two backends:
`LocalBackend` (a Hugging Face model in this process) and `OpenAICompatibleBackend` (any server that
speaks the OpenAI chat-completions protocol: OpenAI, vLLM, gateways, llama.cpp, ...). A `GenerationLog` keeps
finished generations on disk so that a long writing job resumes (`RecordingBackend`, `sciknow.make.augment`).

Translators turn English texts into another language for the paper's multilingual augmentation.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from sciknow import io, secrets


class Backend(Protocol):
    """Chat-style user prompts in, answer texts out (deterministic decoding)."""

    def complete(self, prompts: list[str], max_new_tokens: int) -> list[str]: ...


class LocalBackend:
    """A local Hugging Face model, generating through `sciknow.evaluate.generate_answers`; a row stuck in a greedy
    loop stops and keeps one copy of it (`stop_repetition`)."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 8, progress: bool = False) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.progress = progress  # a tqdm bar over batches: Q&A generation on a CPU takes minutes

    def complete(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        # Imported lazily so that API-only users need not import the torch-heavy evaluation module.
        from sciknow.evaluate import generate_answers

        return generate_answers(self.model, self.tokenizer, list(prompts), max_new_tokens=max_new_tokens,
                                batch_size=self.batch_size, prompt_style="auto", progress=self.progress,
                                stop_repetition=True)

    def __repr__(self) -> str:  # the default would be unhelpful; a model's repr is pages long
        return f"LocalBackend(model={type(self.model).__name__}, batch_size={self.batch_size})"


class BackendError(RuntimeError):
    """A generation request failed."""


class BackendHTTPError(BackendError):
    """The server answered with an HTTP error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class BackendTimeout(BackendError):
    """The server did not answer within the client's timeout."""


class OpenAICompatibleBackend:
    """Client for `POST {base_url}/chat/completions`, one request per prompt, through `sciknow.io.http_request`.

    The API key is read from the environment variable named `api_key_env` at call time, so it is
    never stored on the object (nor in its repr), and it is masked in every error and log line, also when a
    server echoes it back. If the variable is unset, no Authorization header is sent (local servers usually
    need none). Credentials in `base_url` (`https://user:pw@host`) are sent as Basic auth and never shown.
    429 and 5xx answers, refused and reset connections are retried with exponential backoff (or the server's
    Retry-After); timeouts are not retried, since a request that ran past `timeout` will most likely do so
    again. `deadline` bounds one prompt's request, retries included; answers over `max_bytes` are refused.
    `max_tokens_field` lets newer OpenAI models use "max_completion_tokens".
    """

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60,
                 max_retries: int = 3, backoff: float = 1.0, max_workers: int = 1,
                 max_tokens_field: str = "max_tokens", deadline: float = 600, max_bytes: int = 16 * 2**20) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_workers = max_workers
        self.max_tokens_field = max_tokens_field
        self.deadline = deadline
        self.max_bytes = max_bytes

    def __repr__(self) -> str:
        return (f"OpenAICompatibleBackend(base_url={secrets.redact_text(self.base_url)!r}, model={self.model!r}, "
                f"api_key_env={self.api_key_env!r}, timeout={self.timeout})")

    def complete(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        if self.max_workers <= 1:
            return [self.chat(p, max_new_tokens) for p in prompts]
        with ThreadPoolExecutor(self.max_workers) as pool:  # map keeps the prompts' order
            return list(pool.map(lambda p: self.chat(p, max_new_tokens), prompts))

    def chat(self, prompt: str, max_new_tokens: int) -> str:
        """One user message -> the assistant's reply text."""
        payload = {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                   "temperature": 0, self.max_tokens_field: max_new_tokens}
        body, key = self._post("/chat/completions", payload)
        try:
            content = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            shown = secrets.redact_text(json.dumps(secrets.redact(body)), [key])
            raise BackendError(f"{self._url('/chat/completions')}: unexpected response shape "
                               f"(no choices[0].message.content): {shown[:300]}") from None
        if content is not None and not isinstance(content, str):
            raise BackendError(f"{self._url('/chat/completions')}: choices[0].message.content is a "
                               f"{type(content).__name__}, not a string")
        return content or ""  # content is null e.g. for refusals

    def _url(self, path: str) -> str:
        return secrets.redact_text(self.base_url + path)

    def _post(self, path: str, payload: dict[str, Any]) -> tuple[Any, str]:
        """The decoded JSON answer and the key that was sent (for masking)."""
        key = os.environ.get(self.api_key_env, "")
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        try:
            response = io.http_request(self.base_url + path, method="POST", data=json.dumps(payload).encode(),
                                       headers=headers, timeout=self.timeout, deadline=self.deadline,
                                       max_bytes=self.max_bytes, max_retries=self.max_retries, backoff=self.backoff)
        except io.HTTPStatusError as err:
            raise BackendHTTPError(err.status, secrets.redact_text(_error_message(err), [key])) from None
        except io.HTTPTimeoutError as err:
            raise BackendTimeout(f"no answer from {self._url(path)} within {self.timeout}s ({err.problem})") from None
        except io.HTTPConnectionError as err:
            raise BackendError(f"cannot reach {self._url(path)} ({err.attempts} attempts): {err.problem}") from None
        except io.HTTPRequestError as err:  # an answer over max_bytes
            raise BackendError(f"{self._url(path)}: {err.problem}") from None
        try:
            return json.loads(response.body), key
        except (json.JSONDecodeError, UnicodeDecodeError):
            start = secrets.redact_text(response.body[:200].decode("utf-8", "replace"), [key])
            raise BackendError(f"{self._url(path)} answered with invalid JSON: {start!r}") from None


def _error_message(err: io.HTTPStatusError) -> str:
    """The server's own explanation: OpenAI-style {"error": {"message": ...}} or the raw body."""
    try:
        body = json.loads(err.body)
    except json.JSONDecodeError:
        return err.body.strip()[:500] or err.reason
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or error)[:500]
    return str(error)[:500]


class GenerationLog:
    """Finished generations in an append-only JSONL file, each written as soon as its text exists and read back by
    its key (a hash of everything that made it), so that a killed run resumes where it stopped and the raw texts
    stay inspectable. A line is {"key", the caller's fields, "seconds", "output"}. `RecordingBackend` keys by
    (writer, max_new_tokens, prompt); `sciknow.make.augment` by (text, writer, step, prompt)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        records = [r for r in io.read_jsonl(self.path) if "key" in r and "output" in r]
        self.outputs = {r["key"]: r["output"] for r in records}
        self.seconds_of = {r["key"]: float(r.get("seconds", 0.0)) for r in records}
        self.generated = 0  # outputs this process added

    @staticmethod
    def key(*parts: Any) -> str:
        payload = json.dumps(list(parts), ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def __contains__(self, key: str) -> bool:
        return key in self.outputs

    def __getitem__(self, key: str) -> str:
        return self.outputs[key]

    def add(self, key: str, output: str, seconds: float, **fields: Any) -> None:
        io.append_jsonl(self.path, {"key": key, **fields, "seconds": round(seconds, 2), "output": output})
        self.outputs[key] = output
        self.seconds_of[key] = seconds
        self.generated += 1


@dataclass(frozen=True)
class PendingGeneration:
    """A prompt to generate and where its output goes: `log` under `key`, with `fields` on its line."""

    log: GenerationLog
    key: str
    prompt: str
    fields: dict[str, Any]


def generate_into_logs(backend: Backend, writer_id: str, pending: Sequence[PendingGeneration],
                       max_new_tokens: int) -> float:
    """One `backend` call for the prompts of `pending` (which may go to several logs); each output is added to its
    log with an equal share of the call's time, which is returned."""
    began = time.perf_counter()
    texts = backend.complete([p.prompt for p in pending], max_new_tokens)
    seconds = (time.perf_counter() - began) / len(pending)
    if len(texts) != len(pending):
        raise BackendError(f"writer {writer_id} returned {len(texts)} texts for {len(pending)} prompts")
    for item, text in zip(pending, texts):
        item.log.add(item.key, text if isinstance(text, str) else "", seconds, **item.fields)
    return seconds


class RecordingBackend:
    """A backend whose generations go through a `GenerationLog` at `path`, one batch at a time, keyed by (writer id,
    max_new_tokens, prompt): a different writer or prompt is generated anew, a recorded one read back.

    `seconds` adds up the time of the generations made in this process, `resumed` counts the ones read back, and
    `writer_seconds` is what every text returned so far took to write, in whichever run wrote it.
    """

    def __init__(self, backend: Backend, writer_id: str, path: str | Path, batch_size: int = 4,
                 progress: bool = False) -> None:
        self.backend = backend
        self.progress = progress  # a bar over the prompts still to generate
        self.writer_id = writer_id
        self.log = GenerationLog(path)
        self.batch_size = max(1, batch_size)
        self.writer_seconds = 0.0
        self.resumed = 0
        self.seconds = 0.0

    @property
    def generated(self) -> int:
        return self.log.generated

    def key(self, prompt: str, max_new_tokens: int) -> str:
        return GenerationLog.key(self.writer_id, max_new_tokens, prompt)

    def complete(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        keys = [self.key(p, max_new_tokens) for p in prompts]
        pending = list(dict.fromkeys(k for k in keys if k not in self.log))
        self.resumed += len(prompts) - len(pending)
        prompt_of = dict(zip(keys, prompts))
        bar = tqdm(total=len(pending), desc=f"generating ({self.writer_id})", unit="prompt",
                   disable=not self.progress or not pending)
        for start in range(0, len(pending), self.batch_size):
            chunk = pending[start:start + self.batch_size]
            share = generate_into_logs(self.backend, self.writer_id, [PendingGeneration(
                self.log, k, prompt_of[k], {"writer": self.writer_id, "max_new_tokens": max_new_tokens,
                                            "prompt": prompt_of[k]}) for k in chunk], max_new_tokens)
            self.seconds += share * len(chunk)
            bar.update(len(chunk))
        bar.close()
        self.writer_seconds += sum(self.log.seconds_of[k] for k in keys)
        return [self.log[k] for k in keys]

    def __repr__(self) -> str:
        return f"RecordingBackend({self.writer_id}, {self.log.path.name})"


# ---------------------------------------------------------------- translation

LANGUAGE_NAMES = {"en": "English", "es": "Spanish", "ca": "Catalan", "it": "Italian", "ja": "Japanese",
                  "fr": "French", "de": "German", "zh": "Chinese"}


class Translator(Protocol):
    """English texts -> texts in `target_lang` (ISO 639-1 code such as "es")."""

    def translate(self, texts: list[str], target_lang: str) -> list[str]: ...


class ApertiumTranslator:
    """Offline rule-based translation with the Debian `apertium` packages.

    Italian has no direct English pair, so it goes through Spanish. Modes are named "eng-spa" in
    current packages and "en-es" in older ones; whichever is installed is used.
    """

    # Each step lists the mode names to try, newest naming first.
    PIPELINES: dict[str, tuple[tuple[str, ...], ...]] = {
        "es": (("eng-spa", "en-es"),),
        "ca": (("eng-cat", "en-ca"),),
        "it": (("eng-spa", "en-es"), ("spa-ita", "es-it")),
    }
    INSTALL_HINT = "apt-get install apertium apertium-eng-spa apertium-spa-ita apertium-eng-cat"

    def __init__(self, executable: str = "apertium", timeout: float = 120) -> None:
        self.executable = executable
        self.timeout = timeout
        self._modes: set[str] | None = None

    def available_modes(self) -> set[str]:
        """Installed translation directions (`apertium -l`)."""
        if self._modes is None:
            if shutil.which(self.executable) is None:
                raise RuntimeError(f"apertium is not installed; run: {self.INSTALL_HINT}")
            listing = subprocess.run([self.executable, "-l"], capture_output=True, text=True, timeout=self.timeout)
            self._modes = set(listing.stdout.split())
        return self._modes

    def modes_for(self, target_lang: str) -> list[str]:
        """The chain of apertium modes translating English into `target_lang`."""
        if target_lang not in self.PIPELINES:
            raise ValueError(f"apertium: no pipeline for {target_lang!r}; supported: {sorted(self.PIPELINES)}")
        available = self.available_modes()
        chain = []
        for candidates in self.PIPELINES[target_lang]:
            found = next((m for m in candidates if m in available), None)
            if found is None:
                raise RuntimeError(f"apertium pair {candidates[0]} is missing (installed: {sorted(available)}); "
                                   f"run: {self.INSTALL_HINT}")
            chain.append(found)
        return chain

    def translate(self, texts: list[str], target_lang: str) -> list[str]:
        if target_lang == "en":
            return list(texts)
        chain = self.modes_for(target_lang)
        return [self._translate_one(text, chain) for text in texts]

    def _translate_one(self, text: str, chain: list[str]) -> str:
        if not text.strip():
            return text
        for mode in chain:
            # -u: do not mark unknown words with "*"; other marks are stripped afterwards.
            run = subprocess.run([self.executable, "-u", mode], input=text, capture_output=True, text=True,
                                 timeout=self.timeout)
            if run.returncode != 0:
                raise RuntimeError(f"apertium {mode} failed: {run.stderr.strip()[:300]}")
            text = run.stdout
        return strip_apertium_marks(text).strip()


# A mark sits at the start of a word: "*unknown", "#ungenerated", "@untransferred".
_APERTIUM_MARK = re.compile(r"(?<![\w*#@])[*#@]+(?=[^\W\d_])")


def strip_apertium_marks(text: str) -> str:
    """Remove apertium's unknown-word marks while keeping stand-alone symbols ("# 1", "5 * 3")."""
    return _APERTIUM_MARK.sub("", text)


TRANSLATE_PROMPT = ("Translate the following text from English into {language}. Keep numbers, units, chemical "
                    "names and formulas unchanged. Reply with the translation only.\n\n{text}")


class LLMTranslator:
    """Prompted translation with any `Backend`."""

    def __init__(self, backend: Backend, max_new_tokens: int = 1024) -> None:
        self.backend = backend
        self.max_new_tokens = max_new_tokens

    def translate(self, texts: list[str], target_lang: str) -> list[str]:
        if target_lang == "en":
            return list(texts)
        language = LANGUAGE_NAMES.get(target_lang, target_lang)
        prompts = [TRANSLATE_PROMPT.format(language=language, text=t) for t in texts]
        return [out.strip() for out in self.backend.complete(prompts, self.max_new_tokens)]


class CallableTranslator:
    """Hook for an external MT service: `fn(texts, target_lang) -> translations`."""

    def __init__(self, fn: Callable[[list[str], str], Sequence[str]]) -> None:
        self.fn = fn

    def translate(self, texts: list[str], target_lang: str) -> list[str]:
        out = list(self.fn(list(texts), target_lang))
        if len(out) != len(texts):
            raise ValueError(f"translator returned {len(out)} texts for {len(texts)} inputs")
        return out
