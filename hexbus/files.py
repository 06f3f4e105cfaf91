"""Files and disks for the runtime and the actors: crash-safe writes, and telling a full disk
(wait for room) from a request that can never fit (its own failure)."""

from __future__ import annotations

import errno
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Final

DISK_FULL: Final = (errno.ENOSPC, errno.EDQUOT)
# How libraries that do not raise OSError say it (DuckDB's "Could not write file ...: No space
# left on device"): the C library's own words for the two errors.
_FULL_WORDS: Final = tuple(os.strerror(e) for e in DISK_FULL)


def out_of_space(exc: BaseException) -> bool:
    """Whether a failure says, anywhere in its chain, that a disk had no room left."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno in DISK_FULL:
            return True
        if any(words in str(seen) for words in _FULL_WORDS):
            return True
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return False


def disk_full(path: Path) -> bool:
    """Whether the filesystem holding ``path`` is (nearly) full: under 5 % of it free, at most
    64 MiB. A failure that says "no space" while there is room is the request's own (a file
    larger than the disk, a quota, a server's words), not a full disk to wait out."""
    try:
        info = os.statvfs(path)
    except OSError:
        return False
    free, total = info.f_bavail * info.f_frsize, info.f_blocks * info.f_frsize
    return free < min(64 << 20, total // 20)


class RoomWait:
    """An actor's event waiting for disk space: said when it begins, every minute while it
    lasts (and in ``hexbus status``), and when it ends."""

    EVERY_S: Final = 60.0

    def __init__(self, actor: Any, event_id: str) -> None:
        self.actor = actor
        self.event_id = event_id
        self.since = time.monotonic()
        self.told = 0.0
        self.detail = actor.detail  # what status said before (a model's name), said again after

    def still(self, error: str) -> None:
        now = time.monotonic()
        if now - self.told >= self.EVERY_S:
            self.told = now
            self.actor.log.error(
                "actor.disk_full",
                event_id=self.event_id,
                waited_s=round(now - self.since, 1),
                error=error[:300],
                hint="free space on the data disk; the event is applied when there is room",
            )
        self.actor.detail = "disk full: waiting for space"

    def over(self) -> None:
        waited = round(time.monotonic() - self.since, 1)
        self.actor.log.info("actor.disk_space_back", event_id=self.event_id, waited_s=waited)
        self.actor.detail = self.detail


def fsync_dir(path: Path) -> None:
    """Make the folder's entries (a created, renamed or removed name) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_TEMP = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.\d+\.tmp")


def remove_stale_temps(folder: Path) -> list[str]:
    """Remove the temporary files of :func:`write_atomic` that a process killed mid-write left in
    ``folder`` (their writer's pid is gone); the names removed. Another live process's are kept."""
    removed: list[str] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        found = _TEMP.fullmatch(entry.name)
        if found is None:
            continue
        pid = int(found["pid"])
        try:
            os.kill(pid, 0)
            continue  # a live writer's, in flight
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # someone else's process: alive
        try:
            entry.unlink()
            removed.append(entry.name)
        except OSError:
            pass
    return removed


def write_atomic(path: Path, data: bytes, *, durable: bool = True, mode: int | None = None) -> None:
    """Write, fsync, rename over, fsync the folder: a crash leaves the old file or the new one.

    A file that exists keeps its permissions (a person's own persona.toml, say), unless
    ``mode`` is given: then the file has that mode from its first byte (a secret is never
    readable by others, not even in the temporary file). ``durable`` False skips the fsyncs
    (the rename is still atomic, a power loss may keep the old file): for a journal whose own
    policy is not to fsync, or a note that only has to outlive the process.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # One name per process and thread: two writes of one file at once never share a temp file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        try:
            os.chmod(tmp, path.stat().st_mode & 0o7777 if mode is None else mode)
        except FileNotFoundError:
            if mode is not None:
                os.chmod(tmp, mode)
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
