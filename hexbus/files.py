"""Crash-safe file writes shared by the runtime and the actors."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Final

DISK_FULL: Final = (errno.ENOSPC, errno.EDQUOT)
# How libraries that do not raise OSError say it (DuckDB's "Could not write file ...: No space
# left on device"): the C library's own words for the two errors.
_FULL_WORDS: Final = tuple(os.strerror(e) for e in DISK_FULL)


def out_of_space(exc: BaseException) -> bool:
    """Whether a failure is, anywhere in its chain, a disk with no room left."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno in DISK_FULL:
            return True
        if any(words in str(seen) for words in _FULL_WORDS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def fsync_dir(path: Path) -> None:
    """Make the folder's entries (a created, renamed or removed name) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write, fsync, rename over, fsync the folder: a crash leaves the old file or the new one.

    A file that exists keeps its permissions (a person's own persona.toml, say). ``durable``
    False skips the fsyncs (the rename is still atomic, a power loss may keep the old file):
    for a journal whose own policy is not to fsync.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # One name per process and thread: two writes of one file at once never share a temp file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        try:
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        except FileNotFoundError:
            pass
        os.replace(tmp, path)
    except BaseException:
        # A full disk (or anything else) leaves the old file and no debris.
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        fsync_dir(path.parent)
