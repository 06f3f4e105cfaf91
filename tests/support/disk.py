"""Small real disks for tests: a tmpfs mounted for the test (root only; skipped with the reason
where mounting is not allowed), filled to the last byte on demand."""

from __future__ import annotations

import errno
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_disk(size: str = "16m") -> Iterator[Path]:
    """A folder whose data lives on a tmpfs of ``size``: ``<it>/data``."""
    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    data = root / "data"
    data.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(data)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or 'not root'}")
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)
        shutil.rmtree(root, ignore_errors=True)


def fill(folder: Path) -> Path:
    """Fill the filesystem under ``folder`` to the last byte; the filler file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return filler


def debris(folder: Path) -> list[str]:
    """Temporary files left behind anywhere under ``folder``."""
    return [str(p) for p in folder.rglob("*.tmp")]
