"""One text-generation interface for augmentation, Q&A building and judging, plus translators.

A `Backend` turns chat-style user prompts into answer texts (greedy / temperature 0). Two backends:
`LocalBackend` (a Hugging Face model in this process) and `OpenAICompatibleBackend` (any server that
speaks the OpenAI chat-completions protocol: OpenAI, vLLM, gateways, llama.cpp, ...).

Translators turn English texts into another language for the paper's multilingual augmentation.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Backend(Protocol):
    """Chat-style user prompts in, answer texts out (deterministic decoding)."""

    def complete(self, prompts: list[str], max_new_tokens: int) -> list[str]: ...


class LocalBackend:
    """A local Hugging Face model, generating through `sciknow.evaluate.generate_answers`."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 8, progress: bool = False) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.progress = progress  # a tqdm bar over batches: Q&A generation on a CPU takes minutes

    def complete(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        # Imported lazily so that API-only users need not import the torch-heavy evaluation module.
        from sciknow.evaluate import generate_answers

        return generate_answers(self.model, self.tokenizer, list(prompts), max_new_tokens=max_new_tokens,
                                batch_size=self.batch_size, prompt_style="auto", progress=self.progress)

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


_RETRYABLE = {429, 500, 502, 503, 504}


class OpenAICompatibleBackend:
    """Client for `POST {base_url}/chat/completions`, one request per prompt.

    The API key is read from the environment variable named `api_key_env` at call time, so it is
    never stored on the object (nor in its repr) and is redacted from server error messages. If the
    variable is unset, no Authorization header is sent (local servers usually need none).
    429 and 5xx answers and refused connections are retried with exponential backoff; timeouts are
    not retried, since a request that ran past `timeout` will most likely do so again.
    `max_tokens_field` lets newer OpenAI models use "max_completion_tokens".
    """

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60,
                 max_retries: int = 3, backoff: float = 1.0, max_workers: int = 1,
                 max_tokens_field: str = "max_tokens") -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_workers = max_workers
        self.max_tokens_field = max_tokens_field

    def __repr__(self) -> str:
        return (f"OpenAICompatibleBackend(base_url={self.base_url!r}, model={self.model!r}, "
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
        body = self._post("/chat/completions", payload)
        try:
            content = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise BackendError(f"unexpected response shape: {json.dumps(body)[:300]}") from None
        return content or ""  # content is null e.g. for refusals

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        key = os.environ.get(self.api_key_env, "")
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(payload).encode()
        url = self.base_url + path
        for attempt in range(self.max_retries + 1):
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as err:
                message = _redact(_error_message(err), key)
                if err.code not in _RETRYABLE or attempt == self.max_retries:
                    raise BackendHTTPError(err.code, message) from None
                delay = _retry_after(err) or self.backoff * 2**attempt
                log.warning("HTTP %d from %s (%s); retry %d in %.1fs", err.code, url, message, attempt + 1, delay)
            except (TimeoutError, socket.timeout) as err:
                raise BackendTimeout(f"no answer from {url} within {self.timeout}s") from err
            except urllib.error.URLError as err:
                if isinstance(err.reason, (TimeoutError, socket.timeout)):
                    raise BackendTimeout(f"no answer from {url} within {self.timeout}s") from None
                if attempt == self.max_retries:
                    raise BackendError(f"cannot reach {url}: {err.reason}") from None
                delay = self.backoff * 2**attempt
                log.warning("cannot reach %s (%s); retry %d in %.1fs", url, err.reason, attempt + 1, delay)
            except json.JSONDecodeError:
                raise BackendError(f"{url} answered with invalid JSON") from None
            time.sleep(delay)
        raise AssertionError("unreachable")


def _error_message(err: urllib.error.HTTPError) -> str:
    """The server's own explanation: OpenAI-style {"error": {"message": ...}} or the raw body."""
    raw = err.read().decode("utf-8", "replace")
    try:
        body = json.loads(raw)
    except json.JSONDecodeError:
        return raw.strip()[:500] or str(err.reason)
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or error)[:500]
    return str(error)[:500]


def _retry_after(err: urllib.error.HTTPError) -> float | None:
    try:
        return min(float(err.headers.get("Retry-After", "")), 60.0)
    except (TypeError, ValueError):
        return None


def _redact(text: str, key: str) -> str:
    return text.replace(key, "***") if key else text


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
