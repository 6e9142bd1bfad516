"""Tests for sciknow.make.europepmc against a local HTTP server replaying recorded Europe PMC responses (no internet)."""
from __future__ import annotations

import gzip
import json
import socket
import struct
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sciknow.corpus import parse_jats
from sciknow.make.europepmc import (
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
    routes: dict[str, Callable[[BaseHTTPRequestHandler, dict[str, str]], None]] = field(default_factory=dict)


def make_handler(state: FakeEuropePMC) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            url = urllib.parse.urlsplit(self.path)
            params = dict(urllib.parse.parse_qsl(url.query))
            state.requests.append((url.path, params, self.headers.get("User-Agent", "")))
            if url.path in state.routes:
                state.routes[url.path](self, params)
            elif state.failures[url.path] > 0:
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


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the reset and drip routes drop connections on purpose


@pytest.fixture
def server() -> Iterator[FakeEuropePMC]:
    state = FakeEuropePMC()
    httpd = QuietServer(("127.0.0.1", 0), make_handler(state))
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


@pytest.mark.parametrize("retry_after, max_backoff, waited", [("0.3", 5.0, 0.3), ("3600", 0.2, 0.2), ("", 5.0, 0.01)])
def test_retry_after_honoured_and_capped(server: FakeEuropePMC, retry_after: str, max_backoff: float,
                                         waited: float) -> None:
    client = EuropePMC(base_url=server.base_url, min_interval=0.0, backoff=0.01, max_backoff=max_backoff)
    server.failures["/rest/search"] = 1
    server.retry_after = retry_after
    start = time.monotonic()
    assert len(client.search("polymer", page_size=2, max_results=2)) == 2
    assert waited <= time.monotonic() - start < waited + 1.5  # generous: the machine may be busy


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


def test_collect_with_a_query_of_ones_own(client: EuropePMC, server: FakeEuropePMC, tmp_path: Path) -> None:
    """Notebook 06's `query`: the user's search replaces journals and keywords; open access and CC BY stay."""
    out = collect(tmp_path, client=client, max_results=None, progress=False, query=" perovskite solar ")
    assert out["query"] == '(perovskite solar) AND OPEN_ACCESS:y AND LICENSE:"cc by"'
    assert {p["query"] for path, p, _ in server.requests if path == "/rest/search"} == {out["query"]}
    assert [p.name for p in out["paths"]] == ["PMC9900001.xml", "PMC9900002.xml"]
    with pytest.raises(ValueError, match="query is empty"):
        collect(tmp_path, client=client, query="  ")


# ---------------------------------------------------------------- bad answers and bad files


def drip(handler: BaseHTTPRequestHandler, params: dict[str, str]) -> None:
    """A valid start, then one byte every 0.1 s: every read beats the socket timeout, the whole takes 10 s."""
    handler.send_response(200)
    handler.send_header("Content-Length", "100")
    handler.end_headers()
    for _ in range(100):  # bounded; stops early when the client hangs up
        try:
            handler.wfile.write(b" ")
            handler.wfile.flush()
        except OSError:
            return
        time.sleep(0.1)


def reply(body: bytes, status: int = 200) -> Callable[[BaseHTTPRequestHandler, dict[str, str]], None]:
    def route(handler: BaseHTTPRequestHandler, params: dict[str, str]) -> None:
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return route


def reset_once() -> Callable[[BaseHTTPRequestHandler, dict[str, str]], None]:
    calls = Counter()

    def route(handler: BaseHTTPRequestHandler, params: dict[str, str]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.connection.close()  # a TCP reset before any answer
        else:
            reply((FIXTURES / "PMC9900001.xml").read_bytes())(handler, params)

    return route


def cycling_cursor(handler: BaseHTTPRequestHandler, params: dict[str, str]) -> None:
    """Pages without hitCount whose cursor goes * -> A -> B -> A -> B ... (one record each)."""
    following = {"*": "A", "A": "B", "B": "A"}[params["cursorMark"]]
    page = {"nextCursorMark": following, "resultList": {"result": [{"id": params["cursorMark"]}]}}
    reply(json.dumps(page).encode())(handler, params)


FULLTEXT = "/rest/PMC9900001/fullTextXML"


@pytest.mark.parametrize("path, route, kwargs, match", [
    (FULLTEXT, drip, {"timeout": 1.0, "deadline": 0.6}, r"GET \S+/PMC9900001/fullTextXML: no complete answer within"),
    (FULLTEXT, reply(b"<article>" + b" " * 5000 + b"</article>"), {"max_bytes": 1000},
     r"fullTextXML: the answer has Content-Length 5019, over max_bytes=1000"),
    (FULLTEXT, reply(gzip.compress((FIXTURES / "PMC9900001.xml").read_bytes())), {},
     r"PMC9900001: full text is not a usable JATS article \(gzip-compressed data"),
    (FULLTEXT, reply(b'<article xmlns="http://example.org/x"><front/></article>'), {},
     r"PMC9900001: full text is not a usable JATS article \(<article> is in namespace 'http://example.org/x'"),
    (FULLTEXT, reply(b"", 403), {}, r"GET \S+/PMC9900001/fullTextXML: HTTP 403 Forbidden"),
    ("/rest/search", reply(b"<html>maintenance</html>"), {}, r"search page \(cursorMark='\*'\): invalid JSON"),
    ("/rest/search", reply(b"[1, 2]"), {}, r"search page \(cursorMark='\*'\): a JSON list, not an object"),
    ("/rest/search", reply(b'{"resultList": {"result": {"id": 1}}}'), {}, r"resultList.result is not a list"),
    ("/rest/search", reply(b'{"resultList": [], "hitCount": 3}'), {}, r"resultList is a JSON list, not an object"),
    ("/rest/search", reply(b'{"hitCount": "many", "resultList": {"result": []}}'), {},
     r"hitCount='many' is not a count"),
    ("/rest/search", reply(b'{"nextCursorMark": 7, "resultList": {"result": [{"id": 1}]}}'), {},
     r"nextCursorMark=7 is not a string"),
])
def test_bad_answers_are_refused(server: FakeEuropePMC, tmp_path: Path, path: str, route: Callable, kwargs: dict,
                                 match: str) -> None:
    server.routes[path] = route
    client = EuropePMC(base_url=server.base_url, min_interval=0.0, backoff=0.01, max_retries=1, **kwargs)
    start = time.monotonic()
    with pytest.raises(EuropePMCError, match=match):
        if path == FULLTEXT:
            client.download_fulltext("PMC9900001", tmp_path)
        else:
            client.search("polymer")
    assert time.monotonic() - start < 4.0  # the drip would take 10 s
    assert not any(tmp_path.iterdir())  # nothing cached, no manifest entry


def test_connection_reset_is_retried(server: FakeEuropePMC, client: EuropePMC, tmp_path: Path) -> None:
    server.routes[FULLTEXT] = reset_once()
    assert client.download_fulltext("PMC9900001", tmp_path).read_bytes() == (FIXTURES / "PMC9900001.xml").read_bytes()


def test_cycling_cursor_stops(server: FakeEuropePMC, client: EuropePMC) -> None:
    server.routes["/rest/search"] = cycling_cursor
    with pytest.warns(UserWarning, match=r"cursorMark 'A' came back after 3 pages; stopping with 3 records"):
        records = client.search("polymer")
    assert [r["id"] for r in records] == ["*", "A", "B"]
    assert len(server.requests) == 3


@pytest.mark.parametrize("bad_line, warning", [
    ('{"pmcid": "PMC99000', r"manifest.jsonl:2: skipping an incomplete or invalid JSON line"),
    ("null", r"manifest.jsonl:2: skipping a JSON NoneType, not an object"),
    ('{"file": "PMC9900002.xml"}', r"manifest.jsonl: skipping an entry without a pmcid string"),
    ('{"pmcid": 9900002}', r"manifest.jsonl: skipping an entry without a pmcid string"),
])
def test_bad_manifest_lines_are_skipped(client: EuropePMC, server: FakeEuropePMC, tmp_path: Path, bad_line: str,
                                        warning: str) -> None:
    client.download_fulltext("PMC9900001", tmp_path)
    with open(tmp_path / "manifest.jsonl", "a") as f:
        f.write(bad_line + "\n")
    with pytest.warns(UserWarning, match=warning):
        assert set(read_manifest(tmp_path)) == {"PMC9900001"}
    with pytest.warns(UserWarning, match=warning):  # later calls keep working
        client.download_fulltext("PMC9900002", tmp_path)
    with pytest.warns(UserWarning, match=warning):
        assert set(read_manifest(tmp_path)) == {"PMC9900001", "PMC9900002"}


def test_bad_cached_file_is_reported(client: EuropePMC, server: FakeEuropePMC, tmp_path: Path) -> None:
    (tmp_path / "PMC9900001.xml").write_bytes(gzip.compress(b"<article/>"))  # left by some other tool
    paths, failures = client.download_all([{"pmcid": "PMC9900001"}], tmp_path, progress=False)
    assert paths == [] and failures[0][0] == "PMC9900001" and "gzip-compressed" in failures[0][1]
    assert server.requests == []
