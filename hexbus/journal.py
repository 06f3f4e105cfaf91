"""The broker's durable journal: an append-only log of durable events.

Records live in segment files named ``{first_offset:020d}.seg``. Each record is
a ``<IIQ`` header (body_len, crc32, offset) followed by the body: a ``<QQHII``
header (session, seq, topic_len, envelope_len, blob_len) then topic, envelope
and blob; ``blob_len == 0xFFFFFFFF`` means no blob, and ``0x80000000`` a blob kept in a
file of its own (:mod:`hexbus.blobs`), of which the record holds ``<II`` (length, crc32).
The crc covers the offset bytes and the body, which is exactly everything after the first
eight bytes.

Appends are one ``os.write`` each, so a record is in the page cache (and
survives the death of this process) as soon as :meth:`Journal.append` returns;
when it reaches the disk is the :class:`FsyncPolicy`'s business. Opening a
journal recovers it: a torn or damaged tail is cut off at the last whole record.

Offsets are never reused (:mod:`hexbus.epoch`): after an unclean stop numbering goes on
above every offset the last broker may have handed out, and after a loss of history (the
folder deleted, a damaged record, a segment set aside) it goes on there in a new epoch.

It is one module over 500 lines on purpose: :class:`Journal` is one cohesive class
(append, read, recover, retain over the same segment list and index, under one lock),
and the format above is the contract all of it keeps.
"""

from __future__ import annotations

import bisect
import fcntl
import mmap
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, NamedTuple

import msgspec
import structlog

from hexbus.blobs import REF, BlobFiles
from hexbus.epoch import (
    RESERVE,
    Mark,
    MarkUnreadable,
    Start,
    mark_path,
    new_epoch,
    read_mark,
    read_starts,
    write_mark,
    write_starts,
)
from hexbus.files import DISK_FULL, fsync_dir, remove_stale_temps, write_atomic

__all__ = [
    "DISK_FULL",
    "FsyncPolicy",
    "Journal",
    "JournalCorrupt",
    "JournalFailed",
    "Record",
    "only_out_of_space",
]

_HEADER: Final = struct.Struct("<IIQ")
_BODY: Final = struct.Struct("<QQHII")
_LEN_CRC: Final = struct.Struct("<II")
_OFFSET: Final = struct.Struct("<Q")
_HEADER_SIZE: Final = _HEADER.size
_BODY_SIZE: Final = _BODY.size
_NO_BLOB: Final = 0xFFFFFFFF
_BLOB_FILE: Final = 0x80000000  # the blob is in blobs/ (no inline blob is 2 GiB: MAX_BLOB_MB)
_INDEX_EVERY: Final = 256
_READ_CHUNK: Final = 64 << 10
_SEGMENT_NAME: Final = re.compile(r"^(\d{20})\.seg$")
_LOCK_NAME: Final = "journal.lock"
_RETAINED_NAME: Final = "retained"  # the last offset retention deleted
_TORN: Final = ("incomplete header", "incomplete record")  # how the last write of a crash ends
_FULL: Final = DISK_FULL

_log = structlog.get_logger("hexbus.journal")


class FsyncPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """When appended records are forced to disk."""

    mode: Literal["always", "batch", "never"] = "batch"
    every: int = 1000  # batch: fsync after this many appended records...
    interval_ms: int = 50  # ...or this long after the first unsynced append, whichever first


_DEFAULT_FSYNC: Final = FsyncPolicy()


class Record(NamedTuple):
    """One journaled message."""

    offset: int
    session: int  # producer incarnation (u64)
    seq: int  # producer sequence (u64)
    topic: bytes
    envelope: bytes
    blob: bytes | None
    lost: bool = False  # its blob was in a file that is gone (blob retention's cap, damage)


class JournalFailed(OSError):
    """An fsync failed: what was written may not be on disk, so the journal takes no more
    appends; reopening it (a broker restart) recovers what is."""


def only_out_of_space(exc: OSError) -> bool:
    """An append failed for want of room alone: the journal is intact, and takes appends again
    once there is space (any other error, or a failed fsync, needs a reopen)."""
    return exc.errno in DISK_FULL and not isinstance(exc, JournalFailed)


class JournalCorrupt(Exception):
    """The journal directory cannot be used (not a directory, locked, unreadable, ...)."""


# Stands in for evicted cache entries so their payloads can be freed at once.
_EVICTED: Final = Record(0, 0, 0, b"", b"", None)


def _frame_size(record: Record) -> int:
    blob = record.blob
    return (
        _HEADER_SIZE
        + _BODY_SIZE
        + len(record.topic)
        + len(record.envelope)
        + (0 if blob is None else len(blob))
    )


def _payload_size(record: Record) -> int:
    blob = record.blob
    return len(record.topic) + len(record.envelope) + (0 if blob is None else len(blob))


def _decode(buf: bytes, pos: int, offset: int, refs: dict[int, bytes]) -> Record:
    """The record whose body starts at ``buf[pos]``; one whose blob is in a file comes without
    it, its reference put in ``refs`` (read only if the record is wanted)."""
    session, seq, topic_len, envelope_len, blob_len = _BODY.unpack_from(buf, pos)
    pos += _BODY_SIZE
    topic = buf[pos : pos + topic_len]
    pos += topic_len
    envelope = buf[pos : pos + envelope_len]
    pos += envelope_len
    if blob_len == _NO_BLOB:
        return Record(offset, session, seq, topic, envelope, None)
    if blob_len == _BLOB_FILE:
        refs[offset] = buf[pos : pos + REF.size]
        return Record(offset, session, seq, topic, envelope, None)
    return Record(offset, session, seq, topic, envelope, buf[pos : pos + blob_len])


def _stored_blob(blob_len: int) -> int:
    """How many bytes of a record's body its blob takes."""
    if blob_len == _NO_BLOB:
        return 0
    return REF.size if blob_len == _BLOB_FILE else blob_len


class _Segment:
    """One segment file and what the journal keeps in memory about it."""

    __slots__ = ("fd", "first", "index_offsets", "index_positions", "last", "path", "size")

    def __init__(self, path: Path, first: int) -> None:
        self.path = path
        self.first = first
        self.last = first - 1  # offset of the last record; first - 1 while empty
        self.size = 0
        self.fd = -1  # opened lazily for reads unless this is or was the active segment
        # Sparse index: the file position of every _INDEX_EVERY-th record.
        self.index_offsets: list[int] = []
        self.index_positions: list[int] = []


class Journal:
    """A segmented append-only log with crash recovery, retention and a read cache.

    Not thread-safe: one thread appends and reads. The only other thread is the
    batch-mode fsync thread, which does nothing but fsync.
    """

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = 64 << 20,
        fsync: FsyncPolicy = _DEFAULT_FSYNC,
        retention_bytes: int | None = None,
        retention_age_s: float | None = None,
        cache_bytes: int = 32 << 20,
        blob_file_bytes: int | None = None,
        blob_retention_bytes: int | None = None,
    ) -> None:
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be positive, got {segment_bytes}")
        if fsync.every < 1 or fsync.interval_ms < 0:
            raise ValueError(f"invalid fsync policy {fsync!r}")
        if cache_bytes < 0:
            raise ValueError(f"cache_bytes must not be negative, got {cache_bytes}")
        self._dir = Path(directory)
        self._segment_bytes = segment_bytes
        self._policy = fsync
        self._retention_bytes = retention_bytes
        self._retention_age_s = retention_age_s
        self._cache_bytes = cache_bytes
        # Blobs of at least this many bytes go to files of their own (None: none do).
        self._blob_file_bytes = blob_file_bytes
        self._blob_retention_bytes = blob_retention_bytes
        self._blobs: BlobFiles | None = None
        self._file_topics: dict[int, bytes] = {}  # at recovery: records whose blob is in a file

        self._closed = False
        self._failure: OSError | None = None
        self._segments: list[_Segment] = []
        self._firsts: list[int] = []  # segment first offsets, for bisect
        self._sessions: dict[int, int] = {}
        self._head = 0
        self._dir_fd = -1
        self._lock_fd = -1
        self._mark_path = mark_path(self._dir)
        self._starts: list[Start] = []
        self._starts_dirty = False  # changed at open and not on disk yet (a full disk)
        # The mark and the starts are fsynced unless the journal's own policy is not to.
        self._durable_files = fsync.mode != "never"
        self._retained_after = 0  # the last offset retention deleted
        self._reserved = 0  # the mark's: no offset above it handed out before the mark says so

        # The most recent records; _cache[_cache_lo] has offset _cache_first.
        self._cache: list[Record] = []
        self._cache_lo = 0
        self._cache_first = 1
        self._cache_used = 0

        # Sync state, shared with the fsync thread under _cond. _sync_lock
        # serialises fsyncs and keeps fds from being closed under one.
        self._cond = threading.Condition()
        self._sync_lock = threading.Lock()
        self._unsynced = 0
        self._unsynced_since = 0.0
        self._dirty: set[_Segment] = set()
        self._dir_dirty = False
        self._stopping = False
        self._thread: threading.Thread | None = None

        self._open_directory()
        remove_stale_temps(self._dir)  # a broker killed mid-write leaves no debris behind
        try:
            self._recover()
        except OSError as exc:
            self._close_fds()
            raise JournalCorrupt(f"cannot recover journal {self._dir}: {exc}") from exc
        except BaseException:
            self._close_fds()
            raise
        self._cache_first = self._head + 1
        if fsync.mode == "batch":
            self._thread = threading.Thread(
                target=self._fsync_loop, name="hexbus-journal-fsync", daemon=True
            )
            self._thread.start()

    # -- properties -----------------------------------------------------------

    @property
    def head(self) -> int:
        """The last offset numbered: the last appended, or the last skipped where numbering
        jumped (see :mod:`hexbus.epoch`); 0 when nothing ever was."""
        return self._head

    @property
    def first(self) -> int:
        """The first offset still retained; ``head + 1`` when the journal is empty."""
        return self._segments[0].first

    @property
    def size_bytes(self) -> int:
        """The bytes of the segments retained (a large blob's own file not counted)."""
        return sum(seg.size for seg in self._segments)

    @property
    def next_offset(self) -> int:
        """The offset the next append will get."""
        return self._head + 1

    @property
    def epoch(self) -> str:
        """This journal's history: changes whenever history was lost."""
        return self._starts[-1].epoch

    @property
    def epoch_start(self) -> Start:
        """Where the current epoch began: its first offset, and after which offset the records
        before it were lost."""
        epoch = self.epoch
        return next(s for s in self._starts if s.epoch == epoch)

    @property
    def retained_after(self) -> int:
        """Retention deleted every record up to this offset (0: none); offsets above it and
        below :attr:`first` were never handed out (a jump)."""
        return self._retained_after

    def epoch_after(self, epoch: str) -> Start:
        """Where the history after ``epoch`` began: the start of the first epoch that came after
        it, or of the oldest this journal knows if ``epoch`` is not one of its own (lost with a
        deleted folder): a subscriber of ``epoch`` may have applied the same numbers up to
        there, never past it."""
        starts = self._starts
        mine = [i for i, s in enumerate(starts) if s.epoch == epoch]
        if not mine:
            return starts[0]
        for start in starts[mine[-1] + 1 :]:
            if start.epoch != epoch:
                return start
        return self.epoch_start

    # -- writing --------------------------------------------------------------

    def append(
        self, session: int, seq: int, topic: bytes, envelope: bytes, blob: bytes | None
    ) -> int:
        """Write one record at :attr:`next_offset` and return that offset."""
        if self._closed or self._failure is not None:
            self._raise_unusable()
        offset = self._head + 1
        to_file = False
        if blob is None:
            blob_len = _NO_BLOB
        else:
            blob_len = len(blob)
            if blob_len >= _BLOB_FILE:
                raise ValueError(f"blob too large: {blob_len} bytes")
            limit = self._blob_file_bytes
            if limit is not None and blob_len >= limit:
                to_file = True
                blob_len = _BLOB_FILE
        try:
            body = _BODY.pack(session, seq, len(topic), len(envelope), blob_len)
        except struct.error as exc:
            raise ValueError(f"record field out of range: {exc}") from exc

        if offset > self._reserved or self._starts_dirty:
            self._save_starts()
            self._write_mark(reserved=offset - 1 + RESERVE)
        blobs = self._blobs
        assert blobs is not None
        if blob is None:
            payload = b""
        elif to_file:
            payload = blobs.put(offset, topic, blob)  # first: no record refers to a missing file
        else:
            payload = blob
        rest = b"".join((_OFFSET.pack(offset), body, topic, envelope, payload))
        frame = _LEN_CRC.pack(len(rest) - 8, zlib.crc32(rest)) + rest
        seg = self._segments[-1]
        size = len(frame)
        try:
            if seg.size and seg.size + size > self._segment_bytes:
                seg = self._roll(offset)
            position = seg.size
            written = os.write(seg.fd, frame)
            if written != size:
                self._finish_short_write(seg, frame, written)
        except BaseException:
            if to_file:
                blobs.discard(offset)
            raise
        seg.size = position + size
        seg.last = offset
        if not (offset - seg.first) % _INDEX_EVERY:
            seg.index_offsets.append(offset)
            seg.index_positions.append(position)
        self._head = offset

        sessions = self._sessions
        known = sessions.get(session)
        if known is None or seq > known:
            sessions[session] = seq

        cached = Record(offset, session, seq, topic, envelope, blob)
        self._cache.append(cached)
        self._cache_used += _frame_size(cached)  # as eviction counts it: the blob, not its ref
        if self._cache_used > self._cache_bytes:
            self._evict()

        with self._cond:
            self._unsynced += 1
            if self._unsynced == 1:
                self._unsynced_since = time.monotonic()
                self._dirty.add(seg)
                self._cond.notify()
            elif self._unsynced == self._policy.every:
                self._cond.notify()
        return offset

    def sync(self) -> None:
        """fsync now if anything is unsynced, including new segments' directory entries."""
        if self._closed or self._failure is not None:
            self._raise_unusable()
        try:
            self._sync()
        except OSError as exc:
            self._failure = exc
            raise

    # -- reading --------------------------------------------------------------

    def read(
        self,
        after: int,
        *,
        prefixes: Sequence[bytes] = (),
        max_records: int = 512,
        max_bytes: int = 4 << 20,
        max_scan: int = 20000,
    ) -> tuple[list[Record], int]:
        """Records after ``after`` whose topic starts with one of ``prefixes`` (all if none).

        Returns ``(records, cursor)``: every matching record with offset <= cursor
        is in this or an earlier result, so the next call passes ``cursor`` as
        ``after``. Stops after ``max_records`` records, before the payload bytes
        (topic + envelope + blob) would exceed ``max_bytes`` (one record is always
        returned if one matches), or after examining ``max_scan`` records.
        """
        if self._closed:
            raise ValueError("journal is closed")
        head = self._head
        floor = self._segments[0].first - 1
        start = self._past_gap(max(after, floor) + 1)
        if start > head or max_records < 1 or max_scan < 1:
            return [], min(start - 1, head)
        match_all = not prefixes
        wanted = tuple(prefixes)
        stop = min(head, start + max_scan - 1)
        if match_all:
            stop = min(stop, start + max_records - 1)

        out: list[Record] = []
        total = 0
        cursor = stop
        refs: dict[int, bytes] = {}  # blobs in files of the records read from disk
        blobs = self._blobs
        assert blobs is not None
        for record in self._records(start, stop, refs):
            if match_all or record.topic.startswith(wanted):
                ref = refs.pop(record.offset, None) if refs else None
                size = _payload_size(record) + (0 if ref is None else REF.unpack(ref)[0])
                if out and total + size > max_bytes:
                    cursor = record.offset - 1
                    break
                if ref is not None:  # read only now: wanted, and within the reply's bytes
                    blob = blobs.get(record.offset, ref)
                    record = record._replace(blob=blob, lost=blob is None)
                out.append(record)
                total += size
                if len(out) >= max_records:
                    cursor = record.offset
                    break
        return out, cursor

    def sessions(self) -> dict[int, int]:
        """A snapshot of session -> highest seq seen, including records since deleted."""
        return dict(self._sessions)

    # -- retention ------------------------------------------------------------

    def enforce_retention(
        self,
        now: float | None = None,
        *,
        keep_after: int | None = None,
        cap_bytes: int | None = None,
    ) -> int:
        """Delete whole oldest segments that are over the size or age limit, except one holding
        an offset above ``keep_after`` (a subscriber has not applied it), unless the journal is
        over ``cap_bytes``: then the oldest go whatever they hold.

        The active segment is never deleted. ``now`` is wall-clock seconds,
        compared with segment files' mtimes. Returns how many were deleted.
        """
        if self._closed:
            raise ValueError("journal is closed")
        limit_bytes = self._retention_bytes
        limit_age = self._retention_age_s
        if limit_bytes is None and limit_age is None and cap_bytes is None:
            return 0
        if now is None:
            now = time.time()
        total = sum(seg.size for seg in self._segments)
        deleted = 0
        while len(self._segments) > 1:
            seg = self._segments[0]
            if cap_bytes is None or total <= cap_bytes:
                if not (limit_bytes is not None and total > limit_bytes) and not (
                    limit_age is not None and now - _mtime(seg.path) > limit_age
                ):
                    break
                if keep_after is not None and seg.last > keep_after:
                    break  # a subscriber still needs it
            self._delete_oldest()
            total -= seg.size
            deleted += 1
            self._retained_after = max(self._retained_after, seg.last)
        if deleted:
            self._evict_before(self._segments[0].first)
            assert self._blobs is not None
            self._blobs.delete_through(self._retained_after)  # their records are gone
            try:
                write_atomic(
                    self._dir / _RETAINED_NAME,
                    b"%d\n" % self._retained_after,
                    durable=self._durable_files,
                )
            except OSError as exc:  # only a hint for readers' gap reports
                _log.warning("journal.retained_unwritten", error=str(exc))
        return deleted

    @property
    def blob_bytes(self) -> int:
        """What the blobs kept in files of their own take."""
        return self._blobs.bytes if self._blobs is not None else 0

    def enforce_blob_retention(
        self,
        now: float | None = None,
        *,
        needed: Callable[[int, bytes], bool] = lambda offset, topic: False,
        cap_bytes: int,
    ) -> list[tuple[int, bytes]]:
        """Delete the oldest blob files over their own size limit or the journal's age limit,
        except one a subscriber has not applied (``needed(offset, topic)``), unless the files
        are over ``cap_bytes``: then the oldest go whatever they hold, their records stay (read
        with ``lost`` set). Returns the (offset, topic) of each that went although needed."""
        if self._closed:
            raise ValueError("journal is closed")
        assert self._blobs is not None
        age = self._retention_age_s
        before = None if age is None else (time.time() if now is None else now) - age
        deleted, cut = self._blobs.retain(
            limit_bytes=self._blob_retention_bytes,
            cap_bytes=cap_bytes,
            needed=needed,
            written_before=before,
        )
        if deleted:
            self._forget_blobs(deleted)
            _log.info("journal.blob_retention", files_removed=len(deleted), bytes=self.blob_bytes)
        return cut

    # -- lifecycle ------------------------------------------------------------

    def close(self) -> None:
        """Stop the fsync thread, fsync, and close the files. Idempotent."""
        if self._closed:
            return
        self._closed = True
        thread = self._thread
        if thread is not None:
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
            thread.join()
        try:
            if self._failure is None:
                self._sync()
                # Closed cleanly: the next open goes on from the head, not from the reservation.
                try:
                    write_mark(
                        self._mark_path,
                        Mark(self.epoch, self._reserved, self._head, True),
                        durable=self._durable_files,
                    )
                except OSError as exc:  # a full disk: the next open goes on past the reservation
                    _log.warning("journal.mark_unwritten", error=str(exc))
        finally:
            self._close_fds()

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals: opening and recovery --------------------------------------

    def _open_directory(self) -> None:
        try:
            if not self._dir.exists():
                os.makedirs(self._dir, mode=0o700, exist_ok=True)
                fsync_dir(self._dir.parent)
            if not self._dir.is_dir():
                raise JournalCorrupt(f"{self._dir} is not a directory")
            self._dir_fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY)
            self._lock_fd = os.open(self._dir / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            self._close_fds()
            raise JournalCorrupt(f"cannot open journal directory {self._dir}: {exc}") from exc
        try:
            # Two writers on one journal would interleave records; refuse the second.
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._close_fds()
            raise JournalCorrupt(f"journal {self._dir} is in use by another process") from exc

    def _recover(self) -> None:
        try:
            names = os.listdir(self._dir)
        except OSError as exc:
            raise JournalCorrupt(f"cannot list journal directory {self._dir}: {exc}") from exc
        found = sorted(
            (int(match.group(1)), name)
            for name in names
            if (match := _SEGMENT_NAME.match(name)) and (self._dir / name).is_file()
        )
        self._starts = read_starts(self._dir)
        try:
            self._retained_after = int((self._dir / _RETAINED_NAME).read_text("ascii"))
        except (FileNotFoundError, ValueError, UnicodeDecodeError):
            self._retained_after = 0
        jumps = {start.first for start in self._starts}
        lost: list[str] = []
        head: int | None = None
        changed_dir = False
        for first, name in found:
            path = self._dir / name
            if first < 1 or (
                head is not None and first != head + 1 and not (first > head and first in jumps)
            ):
                last_and_empty = (first, name) == found[-1] and path.stat().st_size == 0
                if last_and_empty and head is not None and first > head:
                    # A jump's segment made while its start could not be saved (a full disk),
                    # and never written: nothing is lost, numbering is decided again.
                    path.unlink()
                    changed_dir = True
                    continue
                # A gap means the records in between are gone; serving what
                # follows would break consecutive offsets, so set it aside.
                expected = 1 if head is None else head + 1
                self._quarantine(path, f"first offset {first}, expected {expected}")
                lost.append(f"{name} set aside")
                changed_dir = True
                continue
            seg, reason = self._scan(path, first)
            torn_tail = (first, name) == found[-1] and reason in _TORN
            if reason is not None and not torn_tail:  # a write cut short is not a loss
                lost.append(f"{name} cut at its first {reason}")
            self._segments.append(seg)
            self._firsts.append(first)
            head = seg.last
        if changed_dir:
            os.fsync(self._dir_fd)
        self._number(lost)
        # The blob files of the records scanned; the others removed, or set aside if damage
        # (not just a crash's torn tail) took their records.
        last = max((seg.last for seg in self._segments if seg.last >= seg.first), default=0)
        self._blobs = BlobFiles(self._dir / "blobs", durable=self._durable_files)
        self._blobs.recover(
            self._file_topics, head=last, retained_after=self._retained_after, damaged=bool(lost)
        )
        self._file_topics = {}
        active = self._segments[-1]
        if active.fd < 0:
            active.fd = os.open(active.path, os.O_RDWR | os.O_APPEND)
        self._head = active.last

    def _number(self, lost: list[str]) -> None:
        """Decide where numbering goes on, in which epoch, and say so (see :mod:`hexbus.epoch`)."""
        try:
            mark = read_mark(self._mark_path)
        except MarkUnreadable as exc:
            mark = None
            lost.append(str(exc))
        starts = self._starts
        head = self._segments[-1].last if self._segments else None
        if head is None and starts:
            lost.append("its segments are gone")
        if mark is not None and mark.epoch != (starts[-1].epoch if starts else ""):
            lost.append(
                "the journal folder is not the one its mark describes (deleted or replaced)"
            )
        if mark is None and not lost:
            # A new journal, one from before epochs, or a mark deleted by hand: go on from the head.
            if not starts:
                first = self._segments[0].first if head is not None else 1
                starts.append(Start(new_epoch(), first, first - 1))
                self._starts_dirty = True
            if head is None:
                self._roll(starts[-1].first)
            self._open_writes(reserved=(head or 0) + RESERVE)
            return
        top = head or 0
        if mark is not None and mark.clean and mark.head > top:
            lost.append(f"offsets {top + 1}-{mark.head}, whole at a clean close, are gone")
        if mark is None:
            first = top + 1
        elif mark.clean:
            first = max(top, mark.head) + 1  # closed cleanly: nothing above its head handed out
        else:
            first = max(top, mark.reserved) + 1  # a crash: nothing above the reservation
        if lost:
            starts.append(Start(new_epoch(), first, top))
            _log.error(
                "journal.history_lost",
                path=str(self._dir),
                lost=lost,
                epoch=starts[-1].epoch,
                first=first,
                lost_after=top,
                hint="subscribers reconcile on the new epoch; records set aside are in *.corrupt",
            )
        elif first > top + 1:
            starts.append(Start(starts[-1].epoch, first, first - 1))
            _log.info(
                "journal.offsets_skipped",
                skipped_from=top + 1,
                skipped_to=first - 1,
                reason="unclean stop: no offset the last broker may have handed out is reused",
            )
        if lost or first > top + 1:
            self._starts_dirty = True
            try:
                self._save_starts()  # before the segment: recovery accepts its gap
            except OSError as exc:
                if exc.errno not in _FULL:
                    raise  # on a full disk: saved before the first append into it
        if first > top + 1 or head is None:
            if self._segments and self._segments[-1].size == 0:
                self._segments.pop().path.unlink()
                self._firsts.pop()
            self._roll(first)
        self._open_writes(reserved=first - 1 + RESERVE)

    def _open_writes(self, *, reserved: int) -> None:
        """Write the starts and the mark at open; on a full disk, before the first append
        instead (which waits for space), so a broker with a full disk still serves replays."""
        try:
            self._save_starts()
            self._write_mark(reserved=reserved)
        except OSError as exc:
            if exc.errno not in _FULL:
                raise
            self._reserved = 0  # nothing is appended before the mark is written
            _log.error(
                "journal.disk_full",
                path=str(self._dir),
                error=str(exc),
                hint="durable events wait until there is space again; replays go on",
            )

    def _save_starts(self) -> None:
        if self._starts_dirty:
            write_starts(self._dir, self._starts, durable=self._durable_files)
            self._starts_dirty = False

    def _write_mark(self, *, reserved: int) -> None:
        write_mark(
            self._mark_path, Mark(self.epoch, reserved, 0, False), durable=self._durable_files
        )
        self._reserved = reserved

    def _scan(self, path: Path, first: int) -> tuple[_Segment, str | None]:
        """Validate one segment file, cutting it at its first bad record (and saying why)."""
        seg = _Segment(path, first)
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            end, reason = 0, None
            if size:
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                    end, reason = self._scan_records(mm, size, seg)
        if reason is not None:
            fd = os.open(path, os.O_RDWR)
            try:
                os.ftruncate(fd, end)
                os.fsync(fd)
            finally:
                os.close(fd)
            _log.warning(
                "journal.truncated",
                path=str(path),
                position=end,
                dropped_bytes=size - end,
                reason=reason,
            )
        seg.size = end
        return seg, reason

    def _scan_records(self, mm: mmap.mmap, size: int, seg: _Segment) -> tuple[int, str | None]:
        """Index the whole records in ``mm``; return where they end and why they stopped."""
        sessions = self._sessions
        crc32 = zlib.crc32
        unpack_header = _HEADER.unpack_from
        unpack_body = _BODY.unpack_from
        first = seg.first
        offset = first
        pos = 0
        with memoryview(mm) as view:
            while pos < size:
                if size - pos < _HEADER_SIZE:
                    return pos, "incomplete header"
                body_len, crc, record_offset = unpack_header(view, pos)
                if body_len < _BODY_SIZE:
                    return pos, "bad length"
                end = pos + _HEADER_SIZE + body_len
                if end > size:
                    return pos, "incomplete record"
                if crc32(view[pos + 8 : end]) != crc:
                    return pos, "crc mismatch"
                if record_offset != offset:
                    return pos, "offset mismatch"
                session, seq, topic_len, envelope_len, blob_len = unpack_body(
                    view, pos + _HEADER_SIZE
                )
                payload = topic_len + envelope_len + _stored_blob(blob_len)
                if _BODY_SIZE + payload != body_len:
                    return pos, "bad length"
                if not (offset - first) % _INDEX_EVERY:
                    seg.index_offsets.append(offset)
                    seg.index_positions.append(pos)
                if blob_len == _BLOB_FILE:
                    start = pos + _HEADER_SIZE + _BODY_SIZE
                    self._file_topics[offset] = bytes(view[start : start + topic_len])
                known = sessions.get(session)
                if known is None or seq > known:
                    sessions[session] = seq
                seg.last = offset
                offset += 1
                pos = end
        return pos, None

    def _quarantine(self, path: Path, reason: str) -> None:
        target = path.with_name(path.name + ".corrupt")
        n = 1
        while target.exists():
            target = path.with_name(f"{path.name}.corrupt.{n}")
            n += 1
        os.rename(path, target)
        _log.warning("journal.quarantined", path=str(path), moved_to=str(target), reason=reason)

    # -- internals: writing ---------------------------------------------------

    def _roll(self, first: int) -> _Segment:
        """Start a new active segment whose first record will have offset ``first``."""
        path = self._dir / f"{first:020d}.seg"
        seg = _Segment(path, first)
        seg.fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        self._segments.append(seg)
        self._firsts.append(first)
        with self._cond:
            # The new file's data and its directory entry both need an fsync.
            self._dirty.add(seg)
            self._dir_dirty = True
        return seg

    def _finish_short_write(self, seg: _Segment, frame: bytes, written: int) -> None:
        try:
            view = memoryview(frame)
            while written < len(frame):
                written += os.write(seg.fd, view[written:])
        except OSError:
            # A torn record would make every later append unrecoverable; cut it off.
            os.ftruncate(seg.fd, seg.size)
            raise

    def _evict(self) -> None:
        cache = self._cache
        lo = self._cache_lo
        used = self._cache_used
        limit = self._cache_bytes
        n = len(cache)
        while used > limit and lo < n:
            used -= _frame_size(cache[lo])
            cache[lo] = _EVICTED
            lo += 1
        self._cache_used = used
        self._cache_first += lo - self._cache_lo
        self._set_cache_lo(lo)

    def _evict_before(self, offset: int) -> None:
        cache = self._cache
        lo = self._cache_lo
        n = len(cache)
        while self._cache_first < offset and lo < n:
            self._cache_used -= _frame_size(cache[lo])
            cache[lo] = _EVICTED
            lo += 1
            self._cache_first += 1
        self._cache_first = max(self._cache_first, offset)
        self._set_cache_lo(lo)

    def _forget_blobs(self, offsets: list[int]) -> None:
        """The cache's copies of deleted blobs go too: a record reads the same from the cache
        as from the disk (lost), and the memory is freed."""
        cache, base = self._cache, self._cache_lo - self._cache_first
        for offset in offsets:
            if offset >= self._cache_first:
                record = cache[base + offset]
                if record.blob is not None:
                    self._cache_used -= len(record.blob)
                    cache[base + offset] = record._replace(blob=None, lost=True)

    def _set_cache_lo(self, lo: int) -> None:
        cache = self._cache
        # Compact only when the dead prefix is at least half the list: amortised O(1).
        if lo == len(cache):
            cache.clear()
            lo = 0
        elif lo > 4096 and 2 * lo > len(cache):
            del cache[:lo]
            lo = 0
        self._cache_lo = lo

    def _delete_oldest(self) -> None:
        seg = self._segments[0]
        seg.path.unlink(missing_ok=True)
        with self._sync_lock:
            with self._cond:
                self._dirty.discard(seg)
            if seg.fd >= 0:
                os.close(seg.fd)
                seg.fd = -1
        del self._segments[0]
        del self._firsts[0]

    # -- internals: syncing ---------------------------------------------------

    def _sync(self) -> None:
        with self._sync_lock:
            with self._cond:
                if not self._unsynced and not self._dirty and not self._dir_dirty:
                    return
                dirty = self._dirty
                self._dirty = set()
                dir_dirty = self._dir_dirty
                self._dir_dirty = False
                self._unsynced = 0
            for seg in dirty:
                if seg.fd >= 0:
                    # fdatasync also flushes the file size, which is all an append changes.
                    os.fdatasync(seg.fd)
            if dir_dirty:
                os.fsync(self._dir_fd)

    def _fsync_loop(self) -> None:
        every = self._policy.every
        interval = self._policy.interval_ms / 1000
        cond = self._cond
        while True:
            with cond:
                while True:
                    if self._stopping:
                        return
                    if self._unsynced:
                        if self._unsynced >= every:
                            break
                        remaining = self._unsynced_since + interval - time.monotonic()
                        if remaining <= 0:
                            break
                        cond.wait(remaining)
                    else:
                        cond.wait()
            try:
                self._sync()
            except OSError as exc:
                # After a failed fsync the kernel may have dropped the dirty pages;
                # appending on as if durable would lie, so the journal stops.
                self._failure = exc
                _log.error("journal.fsync_failed", path=str(self._dir), error=str(exc))
                return

    def _raise_unusable(self) -> None:
        if self._closed:
            raise ValueError("journal is closed")
        failure = self._failure
        if failure is not None:
            raise JournalFailed(failure.errno, f"journal fsync failed earlier: {failure.strerror}")

    def _close_fds(self) -> None:
        for seg in self._segments:
            if seg.fd >= 0:
                os.close(seg.fd)
                seg.fd = -1
        if self._blobs is not None:
            self._blobs.close()
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = -1

    # -- internals: reading ---------------------------------------------------

    def _records(self, start: int, stop: int, refs: dict[int, bytes]) -> Iterator[Record]:
        """Records ``start..stop`` inclusive, from disk and then from the cache; those from
        disk whose blob is in a file come without it, its reference in ``refs``."""
        cache_first = self._cache_first
        if start < cache_first:
            yield from self._disk_records(start, min(stop, cache_first - 1), refs)
            start = cache_first
        if start <= stop:
            base = self._cache_lo - cache_first
            yield from self._cache[base + start : base + stop + 1]

    def _past_gap(self, offset: int) -> int:
        """``offset``, or the first offset after it if it falls where numbering jumped."""
        i = bisect.bisect_right(self._firsts, offset) - 1
        if i >= 0 and self._segments[i].last < offset and i + 1 < len(self._segments):
            return max(offset, self._segments[i + 1].first)
        return offset

    def _disk_records(self, start: int, stop: int, refs: dict[int, bytes]) -> Iterator[Record]:
        segments = self._segments
        i = max(0, bisect.bisect_right(self._firsts, start) - 1)
        offset = start
        while offset <= stop and i < len(segments):
            seg = segments[i]
            i += 1
            offset = max(offset, seg.first)  # past a gap where numbering jumped
            if seg.last < offset or offset > stop:
                continue
            k = bisect.bisect_right(seg.index_offsets, offset) - 1
            current = seg.index_offsets[k]
            pos = seg.index_positions[k]
            end_offset = min(seg.last, stop)
            fd = seg.fd
            if fd < 0:
                fd = seg.fd = os.open(seg.path, os.O_RDONLY)
            buf = b""
            base = pos  # file position of buf[0]
            while current <= end_offset:
                rel = pos - base
                if rel + _HEADER_SIZE > len(buf):
                    buf = os.pread(fd, _READ_CHUNK, pos)
                    base = pos
                    rel = 0
                    if len(buf) < _HEADER_SIZE:
                        raise JournalCorrupt(f"{seg.path} shrank under the journal at {pos}")
                body_len, _crc, record_offset = _HEADER.unpack_from(buf, rel)
                length = _HEADER_SIZE + body_len
                if rel + length > len(buf):
                    buf = os.pread(fd, max(_READ_CHUNK, length), pos)
                    base = pos
                    rel = 0
                    if len(buf) < length:
                        raise JournalCorrupt(f"{seg.path} shrank under the journal at {pos}")
                if record_offset != current:
                    raise JournalCorrupt(
                        f"{seg.path} at {pos}: offset {record_offset}, expected {current}"
                    )
                if current >= offset:
                    yield _decode(buf, rel + _HEADER_SIZE, current, refs)
                pos += length
                current += 1
            offset = current


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return 0.0  # already gone: as good as expired
