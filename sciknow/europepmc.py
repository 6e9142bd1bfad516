"""A small, polite client for the Europe PMC REST API: search open-access articles and cache their JATS full text.

The paper's corpus was open-access CC-BY articles of six Nature-family journals, filtered by keywords;
`build_query` writes that search in Europe PMC's query syntax, `EuropePMC.search` pages through it with
cursorMark, and `EuropePMC.download_fulltext` stores `/{PMCID}/fullTextXML` in a resumable local cache
with each article's licence in `manifest.jsonl`. Standard library only.
"""
from __future__ import annotations

import email.utils
import http.client
import json
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sciknow.corpus import CorpusError, parse_jats

DEFAULT_BASE_URL = "https://www.ebi.ac.uk/europepmc/webservices/rest"
USER_AGENT = "sciknow/0.1 (reproduction of arXiv:2312.03360; Python urllib)"
MANIFEST = "manifest.jsonl"

PAPER_JOURNALS = (
    "Nature Communications",
    "npj Computational Materials",
    "Nature Computational Science",
    "Communications Chemistry",
    "Communications Materials",
    "Scientific Reports",
)
PAPER_KEYWORDS = ("chemistry", "synthesis", "molecule", "polymer", "material", "device")
RETRY_STATUSES = {429, 500, 502, 503, 504}


class EuropePMCError(Exception):
    """A request that failed for good (client error, or retries exhausted), or an unusable response."""


def _phrase(term: str) -> str:
    return '"' + term.replace('"', "") + '"'


def _term(term: str) -> str:
    """A query term, double-quoted when it is a phrase."""
    return _phrase(term) if any(c.isspace() for c in term.strip()) else term.replace('"', "")


def build_query(
    journals: Sequence[str] = PAPER_JOURNALS,
    keywords: Sequence[str] = PAPER_KEYWORDS,
    license: str | None = "cc by",
    open_access: bool = True,
) -> str:
    """Europe PMC query for (any journal) AND (any keyword) AND open access AND licence.

    e.g. `(JOURNAL:"Nature Communications" OR ...) AND (chemistry OR ...) AND OPEN_ACCESS:y AND LICENSE:"cc by"`.
    LICENSE:"cc by" also matches variants such as "cc by-nc"; filter records with `is_cc_by` for strict CC BY.
    """
    parts = []
    if journals:
        parts.append("(" + " OR ".join(f"JOURNAL:{_phrase(j)}" for j in journals) + ")")
    if keywords:
        parts.append("(" + " OR ".join(_term(k) for k in keywords) + ")")
    if open_access:
        parts.append("OPEN_ACCESS:y")
    if license:
        parts.append(f"LICENSE:{_phrase(license)}")
    if not parts:
        raise ValueError("an empty query would match all of Europe PMC")
    return " AND ".join(parts)


def normalize_license(value: str | None) -> str:
    """'CC-BY', 'cc by ' -> 'cc by'; None -> ''."""
    return " ".join((value or "").lower().replace("-", " ").split())


def is_cc_by(record: dict[str, Any]) -> bool:
    """True only for plain CC BY (not BY-NC, BY-ND, BY-SA...)."""
    return normalize_license(record.get("license")) == "cc by"


def journal_title(record: dict[str, Any]) -> str:
    """Journal of a search record: resultType=core nests it, resultType=lite has the abbreviation."""
    return record.get("journalInfo", {}).get("journal", {}).get("title") or record.get("journalTitle", "")


@dataclass
class EuropePMC:
    """Europe PMC REST client with a minimum interval between requests and retries with exponential backoff."""

    base_url: str = DEFAULT_BASE_URL
    min_interval: float = 0.5  # seconds between two requests; keeps us well inside fair use
    max_retries: int = 5
    backoff: float = 1.0  # first retry delay in seconds, doubled after each failure
    max_backoff: float = 60.0
    timeout: float = 60.0
    user_agent: str = USER_AGENT
    _last_request: float = field(default=float("-inf"), init=False, repr=False)

    # ------------------------------------------------------------ HTTP

    def _wait_turn(self) -> None:
        delay = self._last_request + self.min_interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._last_request = time.monotonic()

    def _retry_delay(self, attempt: int, retry_after: str | None) -> float:
        delay = self.backoff * 2**attempt
        if retry_after:
            try:
                delay = float(retry_after)
            except ValueError:  # an HTTP date rather than seconds
                try:
                    when = email.utils.parsedate_to_datetime(retry_after)
                    delay = (when - datetime.now(timezone.utc)).total_seconds()
                except (TypeError, ValueError):
                    pass  # unreadable header: keep the exponential delay
        return min(max(delay, 0.0), self.max_backoff)

    def get(self, path: str, params: dict[str, Any] | None = None) -> bytes:
        """GET `base_url/path?params`, retrying 429/5xx and connection errors; raise EuropePMCError otherwise."""
        url = f"{self.base_url.rstrip('/')}/{path.lstrip('/')}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        request = urllib.request.Request(url, headers={"User-Agent": self.user_agent})
        for attempt in range(self.max_retries + 1):
            self._wait_turn()
            retry_after = None
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return response.read()
            except urllib.error.HTTPError as exc:
                if exc.code not in RETRY_STATUSES:
                    raise EuropePMCError(f"GET {url} failed: HTTP {exc.code} {exc.reason}") from exc
                problem: Exception = exc
                retry_after = exc.headers.get("Retry-After")
                exc.close()
            except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException) as exc:
                problem = exc
            if attempt == self.max_retries:
                raise EuropePMCError(f"GET {url} failed after {attempt + 1} attempts: {problem}") from problem
            time.sleep(self._retry_delay(attempt, retry_after))
        raise AssertionError("unreachable")

    # ------------------------------------------------------------ API

    def search(
        self, query: str, page_size: int = 100, max_results: int | None = None, result_type: str = "core"
    ) -> list[dict[str, Any]]:
        """All records matching `query` (up to `max_results`), paging with cursorMark."""
        if not 1 <= page_size <= 1000:
            raise ValueError(f"page_size must be in 1..1000 (API limit), got {page_size}")
        results: list[dict[str, Any]] = []
        cursor = "*"
        while max_results is None or len(results) < max_results:
            size = page_size if max_results is None else min(page_size, max_results - len(results))
            params = {"query": query, "format": "json", "resultType": result_type, "pageSize": size}
            try:
                page = json.loads(self.get("search", {**params, "cursorMark": cursor}))
            except json.JSONDecodeError as exc:
                raise EuropePMCError(f"search returned invalid JSON: {exc}") from exc
            batch = page.get("resultList", {}).get("result", [])
            results.extend(batch)
            next_cursor = page.get("nextCursorMark")
            all_seen = "hitCount" in page and len(results) >= page["hitCount"]
            # The last page has no nextCursorMark, or repeats the one we sent.
            if not batch or all_seen or not next_cursor or next_cursor == cursor:
                break
            cursor = next_cursor
        return results if max_results is None else results[:max_results]

    def download_fulltext(self, pmcid: str, cache_dir: str | Path, record: dict[str, Any] | None = None) -> Path:
        """JATS full text of `pmcid` in `cache_dir/{PMCID}.xml`, downloaded only if not already cached.

        The file is checked to be a JATS article and written atomically; its licence (from the search
        `record` when given, and from the XML itself) is appended once to `cache_dir/manifest.jsonl`.
        """
        return self._fetch(pmcid, Path(cache_dir), record or {}, set(read_manifest(cache_dir)))

    def _fetch(self, pmcid: str, cache: Path, record: dict[str, Any], in_manifest: set[str]) -> Path:
        pmcid = pmcid.strip().upper()
        if not pmcid.startswith("PMC") or not pmcid[3:].isdigit():
            raise ValueError(f"not a PMCID: {pmcid!r}")
        cache.mkdir(parents=True, exist_ok=True)
        target = cache / f"{pmcid}.xml"
        if not (target.is_file() and target.stat().st_size > 0):
            _atomic_write(target, self.get(f"{pmcid}/fullTextXML"))
        if pmcid not in in_manifest:
            _append_manifest(cache, _manifest_entry(pmcid, target, record))
            in_manifest.add(pmcid)
        return target

    def download_all(
        self, records: Iterable[dict[str, Any]], cache_dir: str | Path, progress: bool = True
    ) -> tuple[list[Path], list[tuple[str, str]]]:
        """Download the full text of every record having a PMCID; failures are collected as (pmcid, reason)."""
        paths: list[Path] = []
        failures: list[tuple[str, str]] = []
        cache = Path(cache_dir)
        in_manifest = set(read_manifest(cache))  # read once, not once per article
        with_pmcid = [r for r in records if r.get("pmcid")]
        for record in tqdm(with_pmcid, desc="Europe PMC full text", unit="article", disable=not progress):
            try:
                paths.append(self._fetch(record["pmcid"], cache, record, in_manifest))
            except (EuropePMCError, CorpusError, ValueError) as exc:
                failures.append((record["pmcid"], str(exc)))
        return paths, failures


# ---------------------------------------------------------------- cache files


def _atomic_write(target: Path, data: bytes) -> None:
    """Write `data` to a temp file, check it is a JATS article, then rename: a crash never leaves half a file."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        try:
            parse_jats(tmp)
        except CorpusError as exc:
            raise EuropePMCError(f"{target.stem}: full text is not a usable JATS article ({exc.reason})") from exc
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _manifest_entry(pmcid: str, path: Path, record: dict[str, Any]) -> dict[str, Any]:
    paper = parse_jats(path)
    return {
        "pmcid": pmcid,
        "doi": record.get("doi") or paper.doi,
        "title": record.get("title") or paper.title,
        "journal": journal_title(record) or paper.journal,
        "license": record.get("license", ""),
        "license_url": paper.license_url,
        "license_text": paper.license,
        "is_open_access": record.get("isOpenAccess", ""),
        "file": path.name,
    }


def read_manifest(cache_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Manifest entries of a cache, by PMCID ({} if there is none yet)."""
    manifest = Path(cache_dir) / MANIFEST
    if not manifest.is_file():
        return {}
    entries = (json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip())
    return {entry["pmcid"]: entry for entry in entries}


def _append_manifest(cache: Path, entry: dict[str, Any]) -> None:
    with (cache / MANIFEST).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------- one call: the paper's corpus


def collect(cache_dir: str | Path, client: EuropePMC | None = None, journals: Sequence[str] = PAPER_JOURNALS,
            keywords: Sequence[str] = PAPER_KEYWORDS, max_results: int | None = 200, strict_cc_by: bool = True,
            progress: bool = True) -> dict[str, Any]:
    """Search the paper's journals and keywords (open access, CC BY) and download the JATS full text of every hit
    into `cache_dir` (resumable: cached files are not fetched again). The licence search also matches BY-NC/ND
    variants; `strict_cc_by` keeps plain CC BY only. Returns paths, skipped (non-CC-BY) PMCIDs and failures."""
    client = client or EuropePMC()
    records = client.search(build_query(journals, keywords), max_results=max_results)
    kept = [r for r in records if is_cc_by(r)] if strict_cc_by else records
    skipped = [r.get("pmcid") or r.get("id", "") for r in records if r not in kept]
    paths, failures = client.download_all(kept, cache_dir, progress=progress)
    return {"query": build_query(journals, keywords), "found": len(records), "paths": paths,
            "skipped_license": skipped, "failures": failures}


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sciknow.europepmc",
                                     description="Download the paper's open-access corpus (JATS XML) from Europe PMC.")
    parser.add_argument("cache_dir", help="folder for {PMCID}.xml files and manifest.jsonl (re-running resumes)")
    parser.add_argument("--max-results", type=int, default=200)
    parser.add_argument("--any-cc-by", action="store_true", help="also keep CC BY-NC / BY-ND / BY-SA articles")
    args = parser.parse_args(argv)
    out = collect(args.cache_dir, max_results=args.max_results, strict_cc_by=not args.any_cc_by)
    print(f"{out['found']} found, {len(out['paths'])} in {args.cache_dir}, {len(out['skipped_license'])} skipped "
          f"(licence), {len(out['failures'])} failed")
    for pmcid, reason in out["failures"]:
        print(f"  {pmcid}: {reason}")


if __name__ == "__main__":
    main()
