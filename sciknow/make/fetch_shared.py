"""Fetch the third-party data that sits beside the repo (`../shared`, or the folder `SCIKNOW_SHARED` names) from
its public sources, and check every file against the sha256 sums in data/shared.sha256.

    python -m sciknow.make.fetch_shared                 # fetch what is missing, check everything
    python -m sciknow.make.fetch_shared --check         # check only, fetch nothing
    python -m sciknow.make.fetch_shared --only mmlu --mirror file:///path/to/copy   # from a local copy

A mirror is laid out as <copy>/<source>/<file name in the source's URL>: <copy>/mmlu/data.tar,
<copy>/plos-starter/<article>.xml, <copy>/polyai/<path in the study's repository> (the parts of polyai.json).

A file already present with the right sum is left alone; a present file with another sum is an error (it is
never overwritten). A download whose sum differs is refused and nothing is written.
"""
from __future__ import annotations

import argparse
import hashlib
import io as bytes_io
import sys
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from ..config import REPO_ROOT, SHARED_DIR
from ..io import HTTPRequestError, atomic_write_bytes, http_request
from . import polyai

SUMS_FILE = REPO_ROOT / "data" / "shared.sha256"
MAX_BYTES = 400 * 2**20  # the MMLU archive is the largest download (about 170 MB)


@dataclass(frozen=True)
class Source:
    """One third-party data set: where its files go under the shared folder and where they are published."""
    name: str
    folder: str  # relative to the shared folder
    what: str
    licence: str
    url: str  # "{file}" is replaced by a file's name (or by each of `parts`)
    archive_member: str = ""  # when `url` is a tar archive: each file's path inside it, with "{file}"
    parts: tuple[str, ...] = ()  # when the file is not published as it is: the published files it is made of
    assemble: Callable[[Mapping[str, bytes]], bytes] | None = None  # parts (path -> bytes) -> the file


SOURCES = (
    Source("polyai", "reference/polyai",
           "the paper's fictitious PolyAI document: 12 training contents, 3 extra translations, 10 irrelevant texts, "
           "5 questions with reference answers and keywords (one JSON file, assembled from 4 files of the original "
           f"study's repository at commit {polyai.COMMIT[:7]}: sciknow/make/polyai.py)",
           f"MIT (Kan Hatakeyama, github.com/{polyai.REPOSITORY})",
           url=f"https://raw.githubusercontent.com/{polyai.REPOSITORY}/{polyai.COMMIT}/{{file}}",
           parts=polyai.PARTS, assemble=polyai.assemble),
    Source("mmlu", "reference/mmlu",
           "MMLU test split of college/high-school chemistry and physics (CSV: question,A,B,C,D,answer; no header)",
           "MIT (Hendrycks et al., github.com/hendrycks/test)",
           url="https://people.eecs.berkeley.edu/~hendrycks/data.tar", archive_member="data/test/{file}"),
    Source("plos-starter", "corpora/plos-starter",
           "122 open-access PLOS articles as JATS XML (the allofplos starter corpus)",
           "CC BY 4.0 (a few CC0), PLOS, via github.com/PLOS/allofplos",
           url="https://raw.githubusercontent.com/PLOS/allofplos/master/allofplos/starter_corpus/{file}"),
)


class FetchError(RuntimeError):
    """A shared file is missing, differs from its sha256 sum, or could not be fetched; the message names it."""


def expected_sums(sums_file: Path = SUMS_FILE) -> dict[str, str]:
    """relative path -> sha256, from a `sha256sum`-format file (so `sha256sum -c` in the shared folder reads it too)."""
    sums = {}
    for number, line in enumerate(sums_file.read_text().splitlines(), start=1):
        digest, _, path = line.partition("  ")
        if len(digest) != 64 or not path:
            raise FetchError(f"{sums_file}:{number}: expected '<sha256>  <path>', got {line!r}")
        sums[path] = digest
    return sums


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _source_url(source: Source, mirror: str | None) -> str:
    """The source's URL, or the same file name under `mirror`/<source name>/ (a local or alternative copy)."""
    if mirror is None:
        return source.url
    return f"{mirror.rstrip('/')}/{source.name}/{PurePosixPath(urlparse(source.url).path).name or '{file}'}"


def _download(url: str) -> bytes:
    return http_request(url, timeout=120, deadline=1800, max_bytes=MAX_BYTES).body


def fetch(shared: Path = SHARED_DIR, only: tuple[str, ...] = (), mirror: str | None = None, check_only: bool = False,
          sums_file: Path = SUMS_FILE, log=print) -> dict[str, str]:
    """Bring every file of the chosen sources into `shared` and check its sum: relative path -> "present" or
    "fetched". Raises FetchError listing every file that is wrong or could not be had."""
    unknown = set(only) - {s.name for s in SOURCES}
    if unknown:
        raise FetchError(f"only: unknown source(s) {sorted(unknown)}; choose from {[s.name for s in SOURCES]}")
    sums = expected_sums(sums_file)
    done, problems = {}, []
    for source in SOURCES:
        if only and source.name not in only:
            continue
        wanted = {p: d for p, d in sums.items() if p.startswith(source.folder + "/")}
        archive: tarfile.TarFile | None = None
        for relative, digest in sorted(wanted.items()):
            target = shared / relative
            if target.exists():
                actual = sha256(target.read_bytes())
                if actual == digest:
                    done[relative] = "present"
                else:
                    problems.append(f"{target}: sha256 {actual}, expected {digest} (a different version? move it "
                                    "away and fetch again)")
                continue
            if check_only:
                problems.append(f"{target}: missing")
                continue
            name = PurePosixPath(relative).name
            url = _source_url(source, mirror)
            if source.assemble:
                where = f"{url.format(file='')} ({len(source.parts)} files, assembled)"
            elif source.archive_member:
                where = f"{url} member {source.archive_member.format(file=name)}"
            else:
                where = url.format(file=name)
            try:
                if source.assemble:
                    data = source.assemble({part: _download(url.format(file=part)) for part in source.parts})
                elif source.archive_member:
                    if archive is None:
                        log(f"fetch_shared: downloading {url} (once for {source.name})")
                        archive = tarfile.open(fileobj=bytes_io.BytesIO(_download(url)))
                    member = archive.extractfile(source.archive_member.format(file=name))
                    data = member.read() if member else b""
                else:
                    data = _download(where)
            except (OSError, KeyError, ValueError, tarfile.TarError, HTTPRequestError) as error:
                problems.append(f"{target}: could not fetch from {where}: {error}")
                continue
            if sha256(data) != digest:
                problems.append(f"{target}: {where} has sha256 {sha256(data)}, expected {digest}; not written")
                continue
            atomic_write_bytes(target, data)
            done[relative] = "fetched"
            log(f"fetch_shared: {relative} <- {where}")
    if problems:
        raise FetchError(f"{len(problems)} shared file(s) not in order (shared folder {shared}):\n  "
                         + "\n  ".join(problems))
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sciknow.make.fetch_shared", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=SHARED_DIR,
                        help=f"the shared folder (default: $SCIKNOW_SHARED or ../shared, here {SHARED_DIR})")
    parser.add_argument("--only", action="append", default=[], choices=[s.name for s in SOURCES])
    parser.add_argument("--mirror", help="fetch from MIRROR/<source>/<file name> instead of the public sources")
    parser.add_argument("--check", action="store_true", help="only check what is there; fetch nothing")
    parser.add_argument("--list", action="store_true", help="say what each source is, its licence and URL")
    args = parser.parse_args(argv)
    if args.list:
        for s in SOURCES:
            print(f"{s.name} -> {args.shared / s.folder}\n  {s.what}\n  licence: {s.licence}\n  "
                  f"from: {s.url.format(file='<file>')}")
        return 0
    try:
        done = fetch(args.shared, tuple(args.only), args.mirror, args.check)
    except FetchError as error:
        print(f"fetch_shared: error: {error}", file=sys.stderr)
        return 1
    fetched = sum(v == "fetched" for v in done.values())
    print(f"fetch_shared: {len(done)} files in order in {args.shared} ({fetched} fetched)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
