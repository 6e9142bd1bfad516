"""A small, polite client for the Europe PMC REST API: search open-access articles and cache their JATS full text.

The paper's corpus was open-access CC-BY articles of six Nature-family journals, filtered by keywords;
`build_query` writes that search in Europe PMC's query syntax, `EuropePMC.search` pages through it with
cursorMark, and `EuropePMC.download_fulltext` stores `/{PMCID}/fullTextXML` in a resumable local cache
with each article's licence in `manifest.jsonl`. HTTP goes through `sciknow.io.http_request` (a deadline per
request, a size cap, retries of 429/5xx and connection errors); files through `sciknow.io`.
"""
from __future__ import annotations

import json
import time
import urllib.parse
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sciknow import io
from sciknow.corpus import DEFAULT_MAX_BYTES, CorpusError, Paper, parse_jats, parse_jats_bytes

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
    """Europe PMC REST client with a minimum interval between requests and retries with exponential backoff.

    `timeout` bounds each socket operation and `deadline` one request, retries included; answers larger than
    `max_bytes` are refused.
    """

    base_url: str = DEFAULT_BASE_URL
    min_interval: float = 0.5  # seconds between two requests; keeps us well inside fair use
    max_retries: int = 5
    backoff: float = 1.0  # first retry delay in seconds, doubled after each failure
    max_backoff: float = 60.0  # also caps the server's Retry-After
    timeout: float = 60.0
    deadline: float = 600.0
    max_bytes: int = DEFAULT_MAX_BYTES
    user_agent: str = USER_AGENT
    _last_request: float = field(default=float("-inf"), init=False, repr=False)

    # ------------------------------------------------------------ HTTP

    def _wait_turn(self) -> None:
        delay = self._last_request + self.min_interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._last_request = time.monotonic()

    def get(self, path: str, params: dict[str, Any] | None = None) -> bytes:
        """GET `base_url/path?params`, retrying 429/5xx and connection errors; raise EuropePMCError otherwise."""
        url = f"{self.base_url.rstrip('/')}/{path.lstrip('/')}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            return io.http_request(url, headers={"User-Agent": self.user_agent}, timeout=self.timeout,
                                   deadline=self.deadline, max_bytes=self.max_bytes, max_retries=self.max_retries,
                                   backoff=self.backoff, max_delay=self.max_backoff,
                                   before_attempt=self._wait_turn).body
        except io.HTTPRequestError as exc:
            raise EuropePMCError(str(exc)) from exc

    # ------------------------------------------------------------ API

    def search(
        self, query: str, page_size: int = 100, max_results: int | None = None, result_type: str = "core"
    ) -> list[dict[str, Any]]:
        """All records matching `query` (up to `max_results`), paging with cursorMark."""
        if not 1 <= page_size <= 1000:
            raise ValueError(f"page_size must be in 1..1000 (API limit), got {page_size}")
        results: list[dict[str, Any]] = []
        cursor = "*"
        seen = {cursor}
        while max_results is None or len(results) < max_results:
            size = page_size if max_results is None else min(page_size, max_results - len(results))
            params = {"query": query, "format": "json", "resultType": result_type, "pageSize": size}
            page = _search_page(self.get("search", {**params, "cursorMark": cursor}), cursor)
            batch = page.get("resultList", {}).get("result", [])
            results.extend(batch)
            next_cursor = page.get("nextCursorMark")
            all_seen = isinstance(page.get("hitCount"), int) and len(results) >= page["hitCount"]
            # The last page has no nextCursorMark, or repeats the one we sent.
            if not batch or all_seen or not next_cursor or next_cursor == cursor:
                break
            if next_cursor in seen:  # a cycle (A -> B -> A ...) would page forever
                warnings.warn(f"Europe PMC search {query!r}: cursorMark {next_cursor!r} came back after "
                              f"{len(seen)} pages; stopping with {len(results)} records", stacklevel=2)
                break
            seen.add(next_cursor)
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
        paper = None
        if not (target.is_file() and target.stat().st_size > 0):
            data = self.get(f"{pmcid}/fullTextXML")
            try:  # checked before it is cached: an error document or a truncated file is never stored
                paper = parse_jats_bytes(data, target)
            except CorpusError as exc:
                raise EuropePMCError(f"{pmcid}: full text is not a usable JATS article ({exc.reason})") from exc
            io.atomic_write_bytes(target, data)
        if pmcid not in in_manifest:
            io.append_jsonl(cache / MANIFEST, _manifest_entry(pmcid, target, record, paper))
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


def _search_page(data: bytes, cursor: str) -> dict[str, Any]:
    """A search answer checked for the fields paging relies on; EuropePMCError names the bad one."""
    where = f"search page (cursorMark={cursor!r})"
    try:
        page = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EuropePMCError(f"{where}: invalid JSON: {exc}") from exc
    if not isinstance(page, dict):
        raise EuropePMCError(f"{where}: a JSON {type(page).__name__}, not an object")
    result_list = page.get("resultList", {})
    if not isinstance(result_list, dict):
        raise EuropePMCError(f"{where}: resultList is a JSON {type(result_list).__name__}, not an object")
    batch = result_list.get("result", [])
    if not isinstance(batch, list) or not all(isinstance(r, dict) for r in batch):
        raise EuropePMCError(f"{where}: resultList.result is not a list of records: {str(batch)[:100]}")
    if "hitCount" in page and not (isinstance(page["hitCount"], int) and page["hitCount"] >= 0):
        raise EuropePMCError(f"{where}: hitCount={page['hitCount']!r} is not a count")
    if page.get("nextCursorMark") is not None and not isinstance(page["nextCursorMark"], str):
        raise EuropePMCError(f"{where}: nextCursorMark={page['nextCursorMark']!r} is not a string")
    return page


def _manifest_entry(pmcid: str, path: Path, record: dict[str, Any], paper: Paper | None = None) -> dict[str, Any]:
    paper = paper or parse_jats(path)
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
    """Manifest entries of a cache, by PMCID ({} if there is none yet). Torn lines, lines that are not JSON
    objects and entries without a PMCID are skipped with a warning (the next download writes the entry again)."""
    manifest = Path(cache_dir) / MANIFEST
    entries = {}
    for entry in io.read_jsonl(manifest):
        if not isinstance(entry.get("pmcid"), str):
            warnings.warn(f"{manifest}: skipping an entry without a pmcid string: {str(entry)[:100]}", stacklevel=2)
            continue
        entries[entry["pmcid"]] = entry
    return entries


# ---------------------------------------------------------------- one call: the paper's corpus


def collect(cache_dir: str | Path, client: EuropePMC | None = None, journals: Sequence[str] = PAPER_JOURNALS,
            keywords: Sequence[str] = PAPER_KEYWORDS, max_results: int | None = 200, strict_cc_by: bool = True,
            progress: bool = True, query: str | None = None) -> dict[str, Any]:
    """Search the paper's journals and keywords (or your own Europe PMC `query` instead), open access and CC BY,
    and download the JATS full text of every hit into `cache_dir` (resumable: cached files are not fetched again).
    The licence search also matches BY-NC/ND variants; `strict_cc_by` keeps plain CC BY only. Returns paths,
    skipped (non-CC-BY) PMCIDs and failures."""
    if query is not None and not query.strip():
        raise ValueError("query is empty: give a Europe PMC search, or None for the paper's journals and keywords")
    client = client or EuropePMC()
    search = build_query(journals, keywords) if query is None else f"({query.strip()}) AND {build_query((), ())}"
    records = client.search(search, max_results=max_results)
    kept = [r for r in records if is_cc_by(r)] if strict_cc_by else records
    skipped = [r.get("pmcid") or r.get("id", "") for r in records if r not in kept]
    paths, failures = client.download_all(kept, cache_dir, progress=progress)
    return {"query": search, "found": len(records), "paths": paths,
            "skipped_license": skipped, "failures": failures}


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sciknow.make.europepmc",
                                     description="Download the paper's open-access corpus (JATS XML) from Europe PMC.")
    parser.add_argument("cache_dir", help="folder for {PMCID}.xml files and manifest.jsonl (re-running resumes)")
    parser.add_argument("--query", help="your own Europe PMC search instead of the paper's journals and keywords")
    parser.add_argument("--max-results", type=int, default=200)
    parser.add_argument("--any-cc-by", action="store_true", help="also keep CC BY-NC / BY-ND / BY-SA articles")
    args = parser.parse_args(argv)
    out = collect(args.cache_dir, max_results=args.max_results, strict_cc_by=not args.any_cc_by, query=args.query)
    print(f"{out['found']} found, {len(out['paths'])} in {args.cache_dir}, {len(out['skipped_license'])} skipped "
          f"(licence), {len(out['failures'])} failed")
    for pmcid, reason in out["failures"]:
        print(f"  {pmcid}: {reason}")


if __name__ == "__main__":
    main()
