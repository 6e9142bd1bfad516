"""Tests for sciknow.europepmc against a local HTTP server replaying recorded Europe PMC responses (no internet)."""
from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sciknow.corpus import parse_jats
from sciknow.europepmc import (
    EuropePMC,
    EuropePMCError,
    build_query,
    collect,
    is_cc_by,
    journal_title,
    read_manifest,
)

FIXTURES = Path(__file__).parent / "fixtures" / "europepmc"
# cursorMark sent -> recorded page; the last page's nextCursorMark leads nowhere.
PAGES = {
    "*": "search_page1.json",
    "AoIIP4AAACgyNDY3MTQ4OA==": "search_page2.json",
    "AoIIP4AAACgyNDY3MTQ5MQ==": "search_page3.json",
}
NOT_OPEN_ACCESS = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><ns4:errorBean xmlns:ns4="http://webservice.cdb.ebi.ac.uk/">'
    b"<errCode>0</errCode><errMsg>Article with id PMC9900009 is not open access one</errMsg></ns4:errorBean>"
)


@dataclass
class FakeEuropePMC:
    """State shared with the request handler: what was asked, and which paths should fail first."""

    base_url: str = ""
    requests: list[tuple[str, dict[str, str], str]] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)  # path -> number of 503s still to send
    retry_after: str = "0"


def make_handler(state: FakeEuropePMC) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            url = urllib.parse.urlsplit(self.path)
            params = dict(urllib.parse.parse_qsl(url.query))
            state.requests.append((url.path, params, self.headers.get("User-Agent", "")))
            if state.failures[url.path] > 0:
                state.failures[url.path] -= 1
                self.reply(503, b"Service Unavailable", "text/plain", {"Retry-After": state.retry_after})
            elif url.path == "/rest/search" and params.get("cursorMark") in PAGES:
                self.reply(200, (FIXTURES / PAGES[params["cursorMark"]]).read_bytes(), "application/json")
            elif url.path.startswith("/rest/PMC") and url.path.endswith("/fullTextXML"):
                fixture = FIXTURES / f"{url.path.split('/')[2]}.xml"
                if fixture.is_file():
                    self.reply(200, fixture.read_bytes(), "application/xml")
                elif "PMC9900009" in url.path:  # Europe PMC's answer for an article that is not open access
                    self.reply(200, NOT_OPEN_ACCESS, "application/xml")
                else:
                    self.reply(404, b"", "application/xml")
            else:
                self.reply(404, b"not found", "text/plain")

        def reply(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[FakeEuropePMC]:
    state = FakeEuropePMC()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/rest"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def client(server: FakeEuropePMC) -> EuropePMC:
    return EuropePMC(base_url=server.base_url, min_interval=0.0, backoff=0.01, max_retries=3, timeout=5)


def test_build_query_paper_corpus() -> None:
    query = build_query()
    assert query.startswith('(JOURNAL:"Nature Communications" OR JOURNAL:"npj Computational Materials" OR ')
    assert 'JOURNAL:"Scientific Reports")' in query
    assert "(chemistry OR synthesis OR molecule OR polymer OR material OR device)" in query
    assert query.endswith(' AND OPEN_ACCESS:y AND LICENSE:"cc by"')
    custom = build_query(["Nature"], ["thin film"], license=None, open_access=False)
    assert custom == '(JOURNAL:"Nature") AND ("thin film")'
    with pytest.raises(ValueError):
        build_query([], [], license=None, open_access=False)


def test_search_pages_with_cursor_mark(client: EuropePMC, server: FakeEuropePMC) -> None:
    records = client.search("polymer", page_size=2)
    assert [r["pmcid"] for r in records] == [f"PMC990000{i}" for i in range(1, 6)]
    searches = [params for path, params, _ in server.requests if path == "/rest/search"]
    assert [p["cursorMark"] for p in searches] == list(PAGES)
    assert all(p["format"] == "json" and p["resultType"] == "core" and p["pageSize"] == "2" for p in searches)
    assert all(p["query"] == "polymer" for p in searches)
    assert all(agent.startswith("sciknow/") for _, _, agent in server.requests)
    assert journal_title(records[0]) == "Nature Communications"
    assert [is_cc_by(r) for r in records] == [True, True, False, True, True]  # one is "cc by-nc-nd"


def test_search_respects_max_results(client: EuropePMC, server: FakeEuropePMC) -> None:
    records = client.search("polymer", page_size=2, max_results=3)
    assert len(records) == 3
    assert [p["pageSize"] for path, p, _ in server.requests] == ["2", "1"]


def test_retry_after_503(client: EuropePMC, server: FakeEuropePMC) -> None:
    server.failures["/rest/search"] = 2
    assert len(client.search("polymer", page_size=2, max_results=2)) == 2
    assert len(server.requests) == 3  # two 503s, then the page


def test_gives_up_after_max_retries(client: EuropePMC, server: FakeEuropePMC) -> None:
    server.failures["/rest/search"] = 10
    with pytest.raises(EuropePMCError, match="after 4 attempts"):
        client.search("polymer")
    assert len(server.requests) == 4


def test_client_error_is_not_retried(client: EuropePMC, server: FakeEuropePMC, tmp_path: Path) -> None:
    with pytest.raises(EuropePMCError, match="HTTP 404"):
        client.download_fulltext("PMC9999999", tmp_path)
    assert len(server.requests) == 1
    assert not any(tmp_path.iterdir())  # no empty or partial file left behind


def test_error_document_is_not_cached(client: EuropePMC, tmp_path: Path) -> None:
    with pytest.raises(EuropePMCError, match="PMC9900009: full text is not a usable JATS article"):
        client.download_fulltext("PMC9900009", tmp_path)
    assert not any(tmp_path.iterdir())


def test_retry_delay_honours_retry_after() -> None:
    client = EuropePMC(backoff=1.0, max_backoff=30.0)
    assert client._retry_delay(0, None) == 1.0 and client._retry_delay(3, None) == 8.0
    assert client._retry_delay(0, "7") == 7.0
    assert client._retry_delay(0, "3600") == 30.0
    assert client._retry_delay(2, "Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: go now


def test_download_and_resume(client: EuropePMC, server: FakeEuropePMC, tmp_path: Path) -> None:
    records = client.search("polymer", page_size=2)[:2]
    server.requests.clear()
    server.failures["/rest/PMC9900002/fullTextXML"] = 1  # one transient failure during the download

    paths, failures = client.download_all(records, tmp_path, progress=False)
    assert failures == []
    assert [p.name for p in paths] == ["PMC9900001.xml", "PMC9900002.xml"]
    assert [p.read_bytes() for p in paths] == [(FIXTURES / p.name).read_bytes() for p in paths]
    assert len(server.requests) == 3
    assert sorted(f.name for f in tmp_path.iterdir()) == ["PMC9900001.xml", "PMC9900002.xml", "manifest.jsonl"]

    manifest = read_manifest(tmp_path)
    assert manifest["PMC9900001"]["license"] == "cc by"
    assert manifest["PMC9900001"]["license_url"] == "https://creativecommons.org/licenses/by/4.0/"
    assert manifest["PMC9900002"]["journal"] == "Communications Chemistry"
    assert parse_jats(paths[0]).introduction.startswith("Porous organic polymers combine")

    # Second run: everything is cached, nothing is requested, the manifest is not duplicated.
    server.requests.clear()
    again, failures = client.download_all(records, tmp_path, progress=False)
    assert (again, failures, server.requests) == (paths, [], [])
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["pmcid"] for line in lines) == ["PMC9900001", "PMC9900002"]


def test_empty_cached_file_is_downloaded_again(client: EuropePMC, server: FakeEuropePMC, tmp_path: Path) -> None:
    (tmp_path / "PMC9900001.xml").write_bytes(b"")  # left by an interrupted run of some older tool
    path = client.download_fulltext("pmc9900001", tmp_path)
    assert path.read_bytes() == (FIXTURES / "PMC9900001.xml").read_bytes()
    assert len(server.requests) == 1


def test_download_failures_are_collected(client: EuropePMC, tmp_path: Path) -> None:
    records = [{"pmcid": "PMC9999999"}, {"pmcid": "PMC9900002", "license": "cc by"}, {"id": "12345", "source": "MED"}]
    paths, failures = client.download_all(records, tmp_path, progress=False)
    assert [p.name for p in paths] == ["PMC9900002.xml"]
    assert [pmcid for pmcid, _ in failures] == ["PMC9999999"]
    with pytest.raises(ValueError, match="not a PMCID"):
        client.download_fulltext("12345", tmp_path)


def test_rate_limit_spaces_requests(server: FakeEuropePMC) -> None:
    client = EuropePMC(base_url=server.base_url, min_interval=0.1)
    start = time.monotonic()
    client.search("polymer", page_size=2)
    assert time.monotonic() - start >= 0.2  # three requests, two waits


def test_collect_keeps_plain_cc_by_and_resumes(client: EuropePMC, server: FakeEuropePMC, tmp_path: Path) -> None:
    out = collect(tmp_path, client=client, max_results=None, progress=False)
    assert out["found"] == 5 and "LICENSE:" in out["query"]
    assert len(out["skipped_license"]) == 1  # the "cc by-nc-nd" record is never downloaded
    fetched = {path.split("/")[-2] for path, _, _ in server.requests if path.endswith("/fullTextXML")}
    assert not fetched & set(out["skipped_license"])
    assert [p.name for p in out["paths"]] == ["PMC9900001.xml", "PMC9900002.xml"]
    assert len(out["failures"]) == 2  # no full text served for the other two: collected, not raised
    assert set(read_manifest(tmp_path)) == {"PMC9900001", "PMC9900002"}
