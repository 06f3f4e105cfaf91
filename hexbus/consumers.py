"""The broker's record of its durable subscribers, so retention never deletes what one still needs.

Each actor's feed names itself in its fetches (``FetchRequest.consumer``) and says the offset
it would resume from after a crash (``saved``: its last saved snapshot's, not how far it has
fetched). The broker keeps the latest of each here, in ``consumers.json`` beside the journal,
so a subscriber that is stopped (memory, for a day) still holds back retention after a broker
restart. Retention keeps every segment above the lowest ``saved`` up to a hard cap; past it,
what a subscriber loses is recorded here (``cut_to``) until it reads past it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

import msgspec
import structlog

from hexbus.epoch import Start
from hexbus.files import write_atomic

log = structlog.get_logger("hexbus.broker")

FORGET_AFTER_S = 30 * 86400.0  # a subscriber not heard from in 30 days holds nothing back


class Consumer(msgspec.Struct, kw_only=True):
    saved: int  # it resumes after this offset; everything above it must stay
    seen_at: float  # wall clock of its last fetch
    cut_to: int = 0  # retention deleted events it had not read, up to this offset (0: none)
    epoch: str = ""  # the journal history ``saved`` belongs to


class History(Protocol):
    """What of the journal the record needs: its epoch and where later epochs began."""

    @property
    def epoch(self) -> str: ...

    def epoch_after(self, epoch: str) -> Start: ...


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
        try:
            self.by_name = msgspec.json.decode(path.read_bytes(), type=dict[str, Consumer])
        except FileNotFoundError:
            pass
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            # Only a retention hint: start over, and hold back nothing for subscribers not yet
            # heard from (each is known again at its first fetch).
            log.warning("broker.consumers_unreadable", path=str(path), error=str(exc))

    def saw(self, name: str, saved: int, epoch: str = "") -> None:
        """A fetch from ``name``, which would resume after ``saved`` (of history ``epoch``)."""
        if saved < 0:
            return
        now = time.time()
        known = self.by_name.get(name)
        if known is None:
            self.by_name[name] = Consumer(saved=saved, seen_at=now, epoch=epoch)
            self.dirty = True
            return
        if known.saved != saved or known.epoch != epoch:
            known.saved = saved
            known.epoch = epoch
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
        now = time.time() if now is None else now
        alive = [
            resumes_after(c, journal)
            for c in self.by_name.values()
            if now - c.seen_at < FORGET_AFTER_S
        ]
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

    def lagging(self) -> dict[str, int]:
        """Subscribers that lost events to retention and have not read past them: name → the
        last offset lost."""
        return {name: c.cut_to for name, c in self.by_name.items() if c.cut_to}

    def save(self) -> None:
        if self.dirty:
            write_atomic(self.path, msgspec.json.encode(self.by_name))
            self.dirty = False
