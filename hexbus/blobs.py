"""Large blobs of durable events, kept beside the journal with a budget of their own.

A durable event's blob of at least ``bus.journal.blob_file_kb`` (an utterance's audio, an
uploaded document) is written to ``journal/blobs/{offset:020d}.blob``, named by the offset of
the record that refers to it; the record holds only the blob's length and crc32. So hours of
speech do not push chat messages out of the journal's byte budget: blobs go by their own
(``blob_retention_mb``, the journal's age limit, and the floor of the subscribers of their
topic up to ``blob_retention_cap_mb``), records by theirs.

A blob is on disk (fsynced, its name too, unless the journal's policy is never to fsync) before
its record is written: no crash, power loss included, leaves a record whose blob was never
stored (the producer's resend would be taken for a duplicate). A crash between the two leaves
a file no record refers to, removed at the next open.

A record whose blob file is gone (deleted past the cap, or damaged) is read with no blob and
``lost`` set: the broker says so in the fetch reply, and the subscriber does not apply it
(loudly), rather than running a handler on audio or a document that is not there.

Offsets are never reused (:mod:`hexbus.epoch`), so a name always means one record. The folder is
inside the journal's: a journal folder deleted takes its blobs with it.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Final

import structlog

from hexbus.files import fsync_dir

__all__ = ["REF", "BlobFiles"]

REF: Final = struct.Struct("<II")  # what a record keeps of a blob in a file: length, crc32
_SUFFIX: Final = ".blob"
_SET_ASIDE: Final = "corrupt"  # blobs of records recovery set aside, kept with their segments

_log = structlog.get_logger("hexbus.journal")


def _name(offset: int) -> str:
    return f"{offset:020d}{_SUFFIX}"


class BlobFiles:
    """The blob files of one journal: written before their records, read back by offset,
    deleted by retention. Used from the journal's thread only."""

    def __init__(self, directory: Path, *, durable: bool) -> None:
        self.dir = directory
        self.durable = durable
        if not directory.is_dir():
            os.makedirs(directory, mode=0o700, exist_ok=True)
            if durable:
                fsync_dir(directory.parent)
        self._dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        # offset -> (size, its record's topic), oldest first (appended in order)
        self.files: dict[int, tuple[int, bytes]] = {}
        self.bytes = 0

    def recover(
        self, topics: dict[int, bytes], *, head: int, retained_after: int, damaged: bool
    ) -> None:
        """Index the files of the records that refer to one (``topics``: offset → topic).
        Others are removed when no record will ever refer to them (just after ``head``: the
        append a crash cut short, unless recovery found ``damaged`` records; at or below
        ``retained_after``: retention), and set aside in ``corrupt/`` otherwise (their
        records were in a segment recovery set aside or cut)."""
        found: list[tuple[int, tuple[int, bytes]]] = []
        removed = aside = 0
        for entry in os.scandir(self.dir):
            name = entry.name
            stem = name[: -len(_SUFFIX)]
            if not entry.is_file() or not name.endswith(_SUFFIX) or not stem.isdigit():
                continue
            offset = int(stem)
            topic = topics.get(offset)
            if topic is not None:
                found.append((offset, (entry.stat().st_size, topic)))
            elif (offset == head + 1 and not damaged) or offset <= retained_after:
                os.unlink(entry.path)
                removed += 1
            else:
                os.makedirs(self.dir / _SET_ASIDE, mode=0o700, exist_ok=True)
                os.rename(entry.path, self.dir / _SET_ASIDE / name)
                aside += 1
        found.sort()
        self.files = dict(found)
        self.bytes = sum(size for _, (size, _) in found)
        if removed or aside:
            os.fsync(self._dir_fd)
        if removed:
            _log.info("journal.blobs_unreferenced_removed", count=removed)
        if aside:
            _log.warning(
                "journal.blobs_set_aside",
                count=aside,
                path=str(self.dir / _SET_ASIDE),
                reason="their records were in a segment recovery set aside or cut",
            )

    def put(self, offset: int, topic: bytes, blob: bytes) -> bytes:
        """Store ``blob`` for the record at ``offset``; return what the record keeps of it.
        On any failure (a full disk) no file is left, and the record must not be written."""
        name = _name(offset)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600, dir_fd=self._dir_fd)
        try:
            try:
                view = memoryview(blob)
                written = 0
                while written < len(view):
                    written += os.write(fd, view[written:])
                if self.durable:
                    os.fdatasync(fd)
            finally:
                os.close(fd)
            if self.durable:
                os.fsync(self._dir_fd)
        except BaseException:
            try:
                os.unlink(name, dir_fd=self._dir_fd)
            except OSError:
                pass  # recovery removes a file no record refers to
            raise
        self.files[offset] = (len(blob), topic)
        self.bytes += len(blob)
        return REF.pack(len(blob), zlib.crc32(blob))

    def get(self, offset: int, ref: bytes) -> bytes | None:
        """The blob of the record at ``offset``, or ``None`` if its file is gone or damaged."""
        length, crc = REF.unpack(ref)
        try:
            fd = os.open(_name(offset), os.O_RDONLY, dir_fd=self._dir_fd)
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

    def discard(self, offset: int) -> None:
        """Delete the file just written for ``offset``: its record could not be written."""
        entry = self.files.pop(offset, None)
        if entry is not None:
            self.bytes -= entry[0]
            try:
                os.unlink(_name(offset), dir_fd=self._dir_fd)
            except OSError:
                pass  # recovery removes a file no record refers to

    def delete_through(self, offset: int) -> None:
        """Delete every file up to ``offset``: their records are gone."""
        self._unlink([o for o in self.files if o <= offset])

    def retain(
        self,
        *,
        limit_bytes: int | None,
        cap_bytes: int,
        needed: Callable[[int, bytes], bool],
        written_before: float | None,
    ) -> tuple[list[int], list[tuple[int, bytes]]]:
        """Delete the oldest files no subscriber still ``needs`` (offset, topic) while over
        ``limit_bytes`` or written before ``written_before`` (wall-clock seconds); then, while
        still over ``cap_bytes``, the oldest whatever they hold. Returns the offsets deleted,
        and the (offset, topic) of those that went although needed."""
        total = self.bytes
        going: list[int] = []
        for offset, (size, topic) in self.files.items():
            over = (limit_bytes is not None and total > limit_bytes) or (
                written_before is not None and self._mtime(offset) < written_before
            )
            if not over:
                break  # the rest are newer and the total is within the limit
            if not needed(offset, topic):
                going.append(offset)
                total -= size
        cut: list[tuple[int, bytes]] = []
        if total > cap_bytes:
            spared = set(going)
            for offset, (size, topic) in self.files.items():
                if total <= cap_bytes:
                    break
                if offset not in spared:
                    going.append(offset)
                    cut.append((offset, topic))
                    total -= size
        going.sort()
        self._unlink(going)
        return going, cut

    def close(self) -> None:
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1

    def _mtime(self, offset: int) -> float:
        try:
            return os.stat(_name(offset), dir_fd=self._dir_fd).st_mtime
        except FileNotFoundError:
            return 0.0  # already gone: as good as expired

    def _unlink(self, offsets: list[int]) -> None:
        for offset in offsets:
            try:
                os.unlink(_name(offset), dir_fd=self._dir_fd)
            except FileNotFoundError:
                pass
            self.bytes -= self.files.pop(offset)[0]
