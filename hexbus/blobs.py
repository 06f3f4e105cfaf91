"""Large blobs of durable events, kept beside the journal with a budget of their own.

A durable event's blob of at least ``bus.journal.blob_file_kb`` (an utterance's audio, an
uploaded document) is written to ``journal/blobs/{offset:020d}.blob``, named by the offset of
the record that refers to it; the record holds only the blob's length and crc32. So hours of
speech do not push chat messages out of the journal's byte budget: blobs go by their own
(``blob_retention_mb``, the journal's age limit, and a subscriber's floor up to
``blob_retention_cap_mb``), records by theirs.

A record whose blob file is gone (deleted past the cap, or damaged) is read with no blob and
``lost`` set: the broker says so in the fetch reply, and the subscriber does not apply it
(loudly), rather than running a handler on audio or a document that is not there.

Offsets are never reused (:mod:`hexbus.epoch`), so a name always means one record. The folder is
inside the journal's: a journal folder deleted takes its blobs with it.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Final

import structlog

__all__ = ["REF", "BlobFiles"]

REF: Final = struct.Struct("<II")  # what a record keeps of a blob in a file: length, crc32
_SUFFIX: Final = ".blob"

_log = structlog.get_logger("hexbus.journal")


class BlobFiles:
    """The blob files of one journal: written on append, fsynced with the journal's records,
    read back by offset, deleted by retention. Used from the journal's thread; ``sync`` also
    from its fsync thread."""

    def __init__(self, directory: Path, *, durable: bool) -> None:
        self.dir = directory
        self.durable = durable
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self._dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        # The files waiting for an fsync, shared with the fsync thread.
        self._lock = threading.Lock()
        self._unsynced: list[str] = []
        self._dir_dirty = False
        # offset -> (size, its record's topic), oldest first (appended in order)
        self.files: dict[int, tuple[int, bytes]] = {}
        self.bytes = 0

    def recover(self, topics: dict[int, bytes]) -> None:
        """Index the files of the records that refer to one (offset → topic); delete the
        others: gone to retention, or never written (a crash between a file and its record)."""
        found: list[tuple[int, tuple[int, bytes]]] = []
        removed = 0
        for entry in os.scandir(self.dir):
            name = entry.name
            stem = name[: -len(_SUFFIX)]
            if name.startswith(".") and name.endswith(".tmp"):
                os.unlink(entry.path)  # cut short by a crash before it was named
                removed += 1
                continue
            if not name.endswith(_SUFFIX) or not stem.isdigit():
                continue
            topic = topics.get(int(stem))
            if topic is None:
                os.unlink(entry.path)
                removed += 1
                continue
            found.append((int(stem), (entry.stat().st_size, topic)))
        found.sort()
        self.files = dict(found)
        self.bytes = sum(size for _, (size, _) in found)
        if removed:
            os.fsync(self._dir_fd)
            _log.info("journal.blobs_unreferenced_removed", count=removed)

    def put(self, offset: int, topic: bytes, blob: bytes) -> bytes:
        """Write ``blob`` for the record at ``offset``; return what the record keeps of it. On
        any failure (a full disk) no file is left and the record must not be written."""
        name = f"{offset:020d}{_SUFFIX}"
        tmp = f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600, dir_fd=self._dir_fd)
        try:
            view = memoryview(blob)
            written = 0
            while written < len(view):
                written += os.write(fd, view[written:])
            # Renamed when whole: a crash never leaves a named file shorter than its record says.
            os.rename(tmp, name, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=self._dir_fd)
            except OSError:
                pass
            raise
        finally:
            os.close(fd)
        if self.durable:
            with self._lock:  # by name: a burst of blobs between two fsyncs holds no descriptors
                self._unsynced.append(name)
                self._dir_dirty = True
        self.files[offset] = (len(blob), topic)
        self.bytes += len(blob)
        return REF.pack(len(blob), zlib.crc32(blob))

    def get(self, offset: int, ref: bytes) -> bytes | None:
        """The blob of the record at ``offset``, or ``None`` if its file is gone or damaged."""
        length, crc = REF.unpack(ref)
        try:
            fd = os.open(f"{offset:020d}{_SUFFIX}", os.O_RDONLY, dir_fd=self._dir_fd)
        except FileNotFoundError:
            return None
        try:
            data = os.pread(fd, length + 1, 0)
        finally:
            os.close(fd)
        if len(data) != length or zlib.crc32(data) != crc:
            _log.error(
                "journal.blob_damaged",
                offset=offset,
                expected_bytes=length,
                found_bytes=len(data),
                hint="the record is served without its blob; its subscribers are told",
            )
            return None
        return data

    def sync(self) -> None:
        """fsync the files written since the last call, and the folder's new names."""
        with self._lock:
            names, self._unsynced = self._unsynced, []
            dir_dirty, self._dir_dirty = self._dir_dirty, False
        for name in names:
            try:
                fd = os.open(name, os.O_RDONLY, dir_fd=self._dir_fd)
            except FileNotFoundError:
                continue  # already deleted by retention
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
        if dir_dirty:
            os.fsync(self._dir_fd)

    def delete_through(self, offset: int) -> int:
        """Delete every file up to ``offset`` (their records are gone); how many were."""
        return len(self._delete(lambda o, _: o <= offset))

    def retain(
        self,
        *,
        limit_bytes: int | None,
        cap_bytes: int,
        needed: Callable[[int, bytes], bool],
        written_before: float | None,
    ) -> tuple[list[int], list[tuple[int, bytes]]]:
        """Delete the oldest files while over ``limit_bytes`` or written before
        ``written_before`` (wall-clock seconds), except one a subscriber still ``needed``
        (offset, topic), unless over ``cap_bytes``: then the oldest go whatever they hold.
        Returns the offsets deleted, and those that went although needed: (offset, topic)."""
        total = self.bytes
        cut: list[tuple[int, bytes]] = []

        def goes(offset: int, topic: bytes, size: int) -> bool:
            nonlocal total
            if total <= cap_bytes:
                over = (limit_bytes is not None and total > limit_bytes) or (
                    written_before is not None and self._mtime(offset) < written_before
                )
                if not over or needed(offset, topic):
                    return False
            elif needed(offset, topic):
                cut.append((offset, topic))
            total -= size
            return True

        return self._delete(lambda offset, entry: goes(offset, entry[1], entry[0])), cut

    def discard(self, offset: int) -> None:
        """Delete the file just written for ``offset``: its record could not be written."""
        entry = self.files.pop(offset, None)
        if entry is not None:
            self.bytes -= entry[0]
            try:
                os.unlink(f"{offset:020d}{_SUFFIX}", dir_fd=self._dir_fd)
            except OSError:
                pass  # recovery removes a file no record refers to

    def close(self) -> None:
        """Close the folder (the journal's last fsync has synced the files)."""
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1

    def _mtime(self, offset: int) -> float:
        try:
            return os.stat(f"{offset:020d}{_SUFFIX}", dir_fd=self._dir_fd).st_mtime
        except FileNotFoundError:
            return 0.0  # already gone: as good as expired

    def _delete(self, goes: Callable[[int, tuple[int, bytes]], bool]) -> list[int]:
        """Delete the oldest files while ``goes`` says so; their offsets."""
        deleted: list[int] = []
        for offset, entry in list(self.files.items()):
            if not goes(offset, entry):
                break
            try:
                os.unlink(f"{offset:020d}{_SUFFIX}", dir_fd=self._dir_fd)
            except FileNotFoundError:
                pass
            del self.files[offset]
            self.bytes -= entry[0]
            deleted.append(offset)
        return deleted
