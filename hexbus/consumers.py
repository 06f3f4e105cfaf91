"""The broker's record of its durable subscribers, so retention never deletes what one still needs.

Each actor's feed names itself in its fetches (``FetchRequest.consumer``) and says the offset
it would resume from after a crash (``saved``: its last saved snapshot's, not how far it has
fetched). The broker keeps the latest of each here, in ``consumers.json`` beside the journal,
so a subscriber that is stopped (memory, for a day) still holds back retention after a broker
restart. Retention (:func:`retain`) keeps every segment and blob file above the lowest ``saved``
up to a hard cap; past it, what a subscriber loses is recorded here (``cut_to``, ``blob_cut_to``)
and told to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import msgspec
import structlog

from hexbus.config import JournalConfig
from hexbus.epoch import Start
from hexbus.files import DISK_FULL, write_atomic
from hexbus.journal import Journal
from schemas import RetentionCut

log = structlog.get_logger("hexbus.broker")

FORGET_AFTER_S = 30 * 86400.0  # a subscriber not heard from in 30 days holds nothing back


class Consumer(msgspec.Struct, kw_only=True):
    saved: int  # it resumes after this offset; everything above it must stay
    seen_at: float  # wall clock of its last fetch
    cut_to: int = 0  # retention deleted events it had not read, up to this offset (0: none)
    epoch: str = ""  # the journal history ``saved`` belongs to
    blob_cut_to: int = 0  # blob retention's cap deleted blobs of events up to here it had not read
    # The topic prefixes it fetches (empty: all); None until it says (a record from before).
    prefixes: tuple[str, ...] | None = None


class History(Protocol):
    """What of the journal the record needs: its epoch and where later epochs began."""

    @property
    def epoch(self) -> str: ...

    def epoch_after(self, epoch: str) -> Start: ...


def _wanted(consumer: Consumer) -> tuple[bytes, ...]:
    """The topic prefixes a subscriber fetches, for ``bytes.startswith`` (b"": all)."""
    return tuple(p.encode() for p in consumer.prefixes or ()) or (b"",)


def resumes_after(consumer: Consumer, journal: History) -> int:
    """The offset of ``journal``'s current numbering that ``consumer`` resumes after: its
    saved offset, or, if that belongs to an older history, no later than where the next one
    began (its feed goes back there: the numbers may have been handed out again)."""
    if not consumer.epoch or consumer.epoch == journal.epoch:
        return consumer.saved
    return min(consumer.saved, journal.epoch_after(consumer.epoch).first - 1)


class Consumers:
    """Durable subscribers by name, with the offset each would resume from."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.by_name: dict[str, Consumer] = {}
        self.dirty = False
        self.unsaved = ""  # why the last save failed (a full disk), while it lasts
        try:
            self.by_name = msgspec.json.decode(path.read_bytes(), type=dict[str, Consumer])
        except FileNotFoundError:
            pass
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            # Only a retention hint: start over, and hold back nothing for subscribers not yet
            # heard from (each is known again at its first fetch).
            log.warning("broker.consumers_unreadable", path=str(path), error=str(exc))

    def saw(
        self, name: str, saved: int, epoch: str = "", prefixes: tuple[str, ...] | None = None
    ) -> None:
        """A fetch from ``name``, which would resume after ``saved`` (of history ``epoch``),
        for topics starting with ``prefixes``."""
        if saved < 0:
            return
        now = time.time()
        known = self.by_name.get(name)
        if known is None:
            self.by_name[name] = Consumer(saved=saved, seen_at=now, epoch=epoch, prefixes=prefixes)
            self.dirty = True
            return
        if known.saved != saved or known.epoch != epoch or known.prefixes != prefixes:
            known.saved = saved
            known.epoch = epoch
            known.prefixes = prefixes
            self.dirty = True
        if known.cut_to and saved >= known.cut_to:
            known.cut_to = 0  # it has read past what it lost
            self.dirty = True
        if now - known.seen_at > 60:
            self.dirty = True  # keep seen_at roughly current on disk
        known.seen_at = now

    def floor(self, journal: History, first: int, now: float | None = None) -> int | None:
        """The lowest offset some subscriber would resume after (``None``: no subscriber), never
        below what retention already removed (``first - 1``)."""
        alive = [resumes_after(c, journal) for c in self._alive(now)]
        return max(min(alive), first - 1) if alive else None

    def cut(self, journal: History, retained_after: int) -> dict[str, tuple[int, int]]:
        """Record what retention took from each subscriber now that every record up to
        ``retained_after`` is deleted: name → (first offset lost, last offset lost), for those
        newly behind it. (Offsets a numbering jump skipped were never records: not counted.)"""
        lost: dict[str, tuple[int, int]] = {}
        for name, c in self.by_name.items():
            resumes = resumes_after(c, journal)
            if resumes < retained_after and c.cut_to < retained_after:
                lost[name] = (max(resumes, c.cut_to) + 1, retained_after)
                c.cut_to = retained_after
                self.dirty = True
        return lost

    def needs(self, journal: History, now: float | None = None) -> Callable[[int, bytes], bool]:
        """Whether some subscriber has not applied the event at an offset with a topic (that
        it fetches): for blob retention."""
        alive = [(resumes_after(c, journal), _wanted(c)) for c in self._alive(now)]

        def needed(offset: int, topic: bytes) -> bool:
            return any(offset > after and topic.startswith(wanted) for after, wanted in alive)

        return needed

    def blob_cut(
        self, journal: History, went: list[tuple[int, bytes]]
    ) -> dict[str, tuple[int, int]]:
        """Like :meth:`cut`, for blob files deleted past their cap though needed (the events
        stay, without their blobs): name → (first offset, last offset) of those it needed."""
        lost: dict[str, tuple[int, int]] = {}
        for name, c in self.by_name.items():
            after, wanted = max(resumes_after(c, journal), c.blob_cut_to), _wanted(c)
            mine = [offset for offset, topic in went if offset > after and topic.startswith(wanted)]
            if mine:
                lost[name] = (mine[0], mine[-1])
                c.blob_cut_to = mine[-1]
                self.dirty = True
        return lost

    def _alive(self, now: float | None) -> list[Consumer]:
        """The subscribers heard from within ``FORGET_AFTER_S``: those retention waits for."""
        now = time.time() if now is None else now
        return [c for c in self.by_name.values() if now - c.seen_at < FORGET_AFTER_S]

    def lagging(self) -> dict[str, int]:
        """Subscribers that lost events to retention and have not read past them: name → the
        last offset lost."""
        return {name: c.cut_to for name, c in self.by_name.items() if c.cut_to}

    def save(self) -> None:
        """Write the table if it changed. On a full disk it stays in memory, unsaved (said
        once), and a later save writes it: retention runs again every ``retention_check_s``."""
        if not self.dirty:
            return
        try:
            write_atomic(self.path, msgspec.json.encode(self.by_name))
        except OSError as exc:
            if exc.errno not in DISK_FULL:
                raise
            if not self.unsaved:
                log.error(
                    "broker.consumers_unsaved",
                    path=str(self.path),
                    error=str(exc),
                    hint="free space on the data disk; the positions are saved once there is room",
                )
            self.unsaved = str(exc)
            return
        self.dirty = False
        if self.unsaved:
            self.unsaved = ""
            log.info("broker.consumers_saved", path=str(self.path))


def retain(journal: Journal, consumers: Consumers, jc: JournalConfig) -> list[RetentionCut]:
    """Retention of records and of blob files, each by its own size and the journal's age,
    but never what a durable subscriber has not applied, up to its hard cap; past it, what
    each subscriber lost, to be told to it durably."""
    told: list[RetentionCut] = []
    floor = consumers.floor(journal, journal.first)
    if journal.enforce_retention(keep_after=floor, cap_bytes=jc.cap_mb << 20):
        log.info("journal.retention", first=journal.first)
        cuts = consumers.cut(journal, journal.retained_after)
        told += _said(cuts, cap_mb=jc.cap_mb, blobs=False)
    went = journal.enforce_blob_retention(
        needed=consumers.needs(journal), cap_bytes=jc.blob_cap_mb << 20
    )
    if went:
        told += _said(consumers.blob_cut(journal, went), cap_mb=jc.blob_cap_mb, blobs=True)
    consumers.save()
    return told


def _said(cuts: dict[str, tuple[int, int]], *, cap_mb: int, blobs: bool) -> list[RetentionCut]:
    """Each subscriber's loss, logged, as the event that tells it."""
    what = "blob_retention" if blobs else "retention"
    for name, (lost_from, lost_to) in cuts.items():
        log.error(
            f"journal.{what}_cut",
            consumer=name,
            lost_from=lost_from,
            lost_to=lost_to,
            cap_mb=cap_mb,
            hint=f"raise bus.journal.{what}_cap_mb, or keep this actor running",
        )
    return [
        RetentionCut(consumer=name, lost_from=a, lost_to=b, cap_mb=cap_mb, blobs=blobs)
        for name, (a, b) in cuts.items()
    ]
