"""Keep secrets out of everything written down: records, study attributes, logs and exception messages.

* `redact(obj)`: a deep copy of a JSON-like structure (dicts, lists, tuples) in which the values of
  secret-looking keys become "***" and every string has its URL userinfo, bearer tokens and secret query
  parameters removed.
* `redact_text(text, secrets=())`: the same for free text, plus the given secret values (an API key read from
  the environment, say).
* `is_secret_key(name)`: whether a field, header or parameter name looks like it holds a secret.

A name is secret-looking when its last word is one of `SECRET_WORDS` or is "key" (`token`, `api_key`,
`apiKey`, `X-Api-Key`, `client_secret`, `Authorization`, `db_password`...). Names ending in `_env` name an
environment variable, not a secret, and are kept; so are `tokens`, `max_tokens` or `bos_token_id`, whose last
word is not a secret word (token counts and ids are not credentials).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "***"
SECRET_WORDS = frozenset({
    "key", "apikey", "token", "secret", "secrets", "password", "passwords", "passwd", "pwd", "passphrase",
    "authorization", "auth", "credential", "credentials", "cookie",
})
# Split "apiKey", "X-Api-Key", "db.password", "client_secret" into words.
_WORD_RE = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
# scheme://user:password@host -> scheme://***@host (also "user@" alone: it can be a token, as in GitHub URLs).
_USERINFO_RE = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s]+)@")
# "Bearer <token>" in headers, curl lines and server error messages. Tokens have digits; prose does not
# ("Bearer bonds"), so a word without one is kept.
_BEARER_RE = re.compile(r"\b(Bearer)\s+(?=[A-Za-z._~+/=-]*\d)[A-Za-z0-9._~+/=-]{8,}")
# ?api_key=... / &token=... in URLs.
_QUERY_RE = re.compile(r"(?P<lead>[?&;](?P<name>[A-Za-z0-9_.-]+)=)(?P<value>[^&#\s\"']+)")


def is_secret_key(name: str) -> bool:
    """True for names whose value is a credential: last word in SECRET_WORDS; `*_env` names are not secrets."""
    words = [w.lower() for w in _WORD_RE.findall(str(name))]
    return bool(words) and words[-1] in SECRET_WORDS


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without URL userinfo, bearer/basic tokens, secret query parameters and the given secret values."""
    # Longest first, so that a secret containing another is masked whole.
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    # The substring tests skip the regular expressions for ordinary prose (records hold thousands of answers).
    if "@" in text:
        text = _USERINFO_RE.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    if "Bearer" in text:
        text = _BEARER_RE.sub(lambda m: f"{m[1]} {MASK}", text)
    if "=" in text:
        text = _QUERY_RE.sub(lambda m: m["lead"] + MASK if is_secret_key(m["name"]) else m[0], text)
    return text


def redact(obj: Any, secrets: Iterable[str] = ()) -> Any:
    """A deep copy of a dict/list/tuple structure with secret-looking values masked (see the module docstring).

    Values of secret-looking keys become "***" when they are strings, bytes or containers; None, booleans and
    numbers are kept (an unset key stays visibly unset, and a number is not a credential). Other objects are
    returned as they are.
    """
    secrets = tuple(secrets)
    if isinstance(obj, dict):
        return {k: _masked(v) if isinstance(k, str) and is_secret_key(k) else redact(v, secrets)
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v, secrets) for v in obj]
    if isinstance(obj, tuple):
        return tuple(redact(v, secrets) for v in obj)
    if isinstance(obj, str):
        return redact_text(obj, secrets)
    return obj


def _masked(value: Any) -> Any:
    if value is None or value == "" or isinstance(value, (bool, int, float)):
        return value
    return MASK
