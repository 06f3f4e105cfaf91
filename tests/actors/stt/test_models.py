"""Assembling the packaged Whisper base model, and finding Silero VAD."""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from pathlib import Path

import pytest

from actors.stt.models import (
    WHISPER_FILES,
    WHISPER_PARTS,
    cache_root,
    packaged_whisper_base,
    silero_vad_path,
)


def same_bytes(a: Path, sources: list[Path]) -> bool:
    with a.open("rb") as f:
        for src in sources:
            with src.open("rb") as g:
                while block := g.read(1 << 22):
                    if f.read(len(block)) != block:
                        return False
        return f.read(1) == b""


def sources() -> list[Path]:
    """The two halves of model.bin, found the way the code is told to find them."""
    found = []
    for module, name in WHISPER_PARTS:
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.submodule_search_locations
        found.append(Path(next(iter(spec.submodule_search_locations))) / "data" / name)
    return found


def fingerprint(folder: Path) -> dict[str, tuple[int, int, int]]:
    return {
        p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir()
    }


def test_assembly_joins_the_parts_and_twice_is_a_no_op(tmp_path: Path) -> None:
    folder = packaged_whisper_base(tmp_path)
    assert folder == tmp_path / "whisper-base"
    assert sorted(p.name for p in folder.iterdir()) == sorted(["model.bin", *WHISPER_FILES])
    assert same_bytes(folder / "model.bin", sources())
    before = fingerprint(folder)
    assert packaged_whisper_base(tmp_path) == folder
    assert fingerprint(folder) == before


def test_a_truncated_model_is_assembled_again(tmp_path: Path) -> None:
    folder = packaged_whisper_base(tmp_path)
    model = folder / "model.bin"
    with model.open("r+b") as f:
        f.truncate(model.stat().st_size // 2)
    (folder / "config.json").unlink()
    stale = folder / ".model.bin.x1y2z3.hex-tmp"  # left by a process killed mid-copy
    stale.write_bytes(b"half a model")
    an_hour_ago = time.time() - 2 * 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    assert packaged_whisper_base(tmp_path) == folder
    assert same_bytes(model, sources())
    assert (folder / "config.json").is_file()
    assert not stale.exists()


def test_two_assemblers_at_once_leave_one_complete_model(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def assemble() -> None:
        try:
            packaged_whisper_base(tmp_path)
        except BaseException as exc:  # reported below: a thread's exception would vanish
            errors.append(exc)

    threads = [threading.Thread(target=assemble) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    folder = tmp_path / "whisper-base"
    assert sorted(p.name for p in folder.iterdir()) == sorted(["model.bin", *WHISPER_FILES])
    assert same_bytes(folder / "model.bin", sources())


def test_the_cache_is_hex_cache_or_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEX_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("HEX_CACHE")
    assert cache_root() == Path.home() / ".cache" / "hex"
    assert cache_root(tmp_path) == tmp_path


def test_silero_vad_ships_with_faster_whisper() -> None:
    path = silero_vad_path()
    assert path.name == "silero_vad_v6.onnx" and path.stat().st_size > 100_000
