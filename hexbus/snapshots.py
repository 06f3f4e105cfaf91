"""An actor's snapshots on disk, each saved only once the broker holds every effect it records.

A snapshot is the actor's state, its applied offset, recent ids, dead-lettered offsets and the
journal epoch, written atomically (write, fsync, rename, fsync dir). The state can record an
effect whose durable event is still in the producer's outbox: a message marked seen, a reply
marked answered. Saved then, a SIGKILL would lose the event while the snapshot says it
happened. So a snapshot is *taken* at any point between handlers and *saved* once the broker
has acknowledged every durable event the process published up to then: at once when the outbox
has nothing older (the usual case), otherwise by :meth:`Snapshots.run` as acknowledgements come
in. While the broker is away the last saved snapshot stays, and a restart replays from it (the
effects are redone, with the same derived ids). At most two wait: the oldest, which will be
saved when its events are acknowledged, and the newest, replaced by each later one, so memory
stays bounded and progress is never starved by newer snapshots.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

import msgspec
import structlog

from hexbus.files import remove_stale_temps, write_atomic

S = TypeVar("S", bound=msgspec.Struct)

log = structlog.get_logger("hexbus.snapshots")

RETRY_S = 1.0  # between attempts to save on a full disk


class SnapshotFile(msgspec.Struct, kw_only=True):
    version: int = 1
    actor: str
    offset: int
    written_at: float
    state: msgspec.Raw
    recent_ids: list[str] = []
    dead_offsets: list[int] = []  # durable offsets dead-lettered: never handled again
    epoch: str = ""  # the journal history ``offset`` belongs to (hexbus.epoch); "" not known


class Loaded(NamedTuple):
    state: Any
    offset: int
    recent_ids: list[str]
    dead_offsets: list[int]
    epoch: str


def load_snapshot(path: Path, state_type: type[S], log: Any) -> Loaded:
    """Load a snapshot: state (``None`` if there is none), applied offset, recent event ids,
    dead-lettered offsets, and the journal epoch of the offset.

    A damaged one is set aside and the actor replays from the start of the journal.
    """
    none = Loaded(None, 0, [], [], "")
    remove_stale_temps(path.parent)  # a process killed while saving leaves no debris behind
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return none
    try:
        snap = msgspec.msgpack.decode(data, type=SnapshotFile)
        state = msgspec.msgpack.decode(snap.state, type=state_type)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        bad = path.with_suffix(".corrupt")
        os.replace(path, bad)
        log.error(
            "actor.snapshot_unreadable",
            path=str(path),
            moved_to=str(bad),
            error=str(exc),
            hint="replaying the whole journal instead",
        )
        return none
    return Loaded(state, snap.offset, snap.recent_ids, snap.dead_offsets, snap.epoch)


class Acknowledger(Protocol):
    """The part of the bus client that says what the broker has acknowledged."""

    def durable_mark(self) -> int: ...  # -1: not now

    def acknowledged(self, mark: int) -> bool: ...

    async def wait_acknowledged(self, mark: int) -> None: ...


@dataclass(slots=True)
class _Taken:
    data: bytes
    offset: int
    mark: int  # every durable event published before it was taken
    generation: int
    taken_at: float


class Snapshots:
    """Saves the snapshots a runtime takes, each once the broker holds what it records."""

    def __init__(
        self,
        path: Path,
        bus: Acknowledger,
        offload: Callable[..., Awaitable[Any]],
        saved_offset: int = 0,
    ) -> None:
        self.path = path
        # The applied offset of the snapshot on disk: a restart now resumes after it.
        self.saved_offset = saved_offset
        self.bus = bus
        self._offload = offload
        self._waiting: list[_Taken] = []
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._taken = 0
        self._saved = 0
        self.failing = ""  # why the last save failed, until one succeeds

    @property
    def waiting(self) -> int:
        """Snapshots taken and not saved yet (0-2)."""
        return len(self._waiting)

    async def take(self, data: bytes, offset: int) -> bool:
        """Save ``data`` (a snapshot at applied ``offset``) now if the broker acknowledged every
        durable event published so far; otherwise as soon as it has. False (not taken: try again
        later) while a publisher still waits for room in the outbox: its event has no mark yet."""
        mark = self.bus.durable_mark()
        if mark < 0:
            return False
        self._taken += 1
        taken = _Taken(data, offset, mark, self._taken, time.monotonic())
        if self.bus.acknowledged(taken.mark):
            self._waiting.clear()  # all older: this one supersedes them
            await self._save(taken)
            return True
        if len(self._waiting) >= 2:
            self._waiting[-1] = taken
        else:
            self._waiting.append(taken)
        self._wake.set()
        return True

    async def run(self) -> None:
        """Save waiting snapshots as acknowledgements come in (one task per runtime)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                await self.bus.wait_acknowledged(self._waiting[0].mark)
                await self.save_ready()
                if self.failing:
                    await asyncio.sleep(RETRY_S)

    async def save_ready(self) -> bool:
        """Save the newest waiting snapshot whose events are all acknowledged; True if none is
        left waiting."""
        ready = [t for t in self._waiting if self.bus.acknowledged(t.mark)]
        if ready:
            newest = ready[-1]
            self._waiting = [t for t in self._waiting if t.generation > newest.generation]
            await self._save(newest)
        return not self._waiting

    async def _save(self, taken: _Taken) -> None:
        async with self._lock:
            if taken.generation <= self._saved:
                return  # a newer one is already on disk
            # Shielded: a cancelled caller (a stop) still waits for the write to end before the
            # lock goes, so two writes never race and an older one never lands last.
            write = asyncio.ensure_future(self._offload(write_atomic, self.path, taken.data))
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                await asyncio.gather(write, return_exceptions=True)
                if write.exception() is None:
                    self._saved = taken.generation
                    self.saved_offset = taken.offset
                raise
            except OSError as exc:
                # A full disk: the last saved snapshot stays (write_atomic leaves no debris) and
                # this one waits to be tried again, unless a newer one replaces it.
                if not self.failing:
                    log.error(
                        "actor.snapshot_unsaved",
                        path=str(self.path),
                        error=str(exc),
                        hint="the last saved snapshot stays; trying again every second",
                    )
                self.failing = str(exc)
                if not any(t.generation > taken.generation for t in self._waiting):
                    self._waiting.insert(0, taken)
                self._wake.set()
                return
            if self.failing:
                log.info("actor.snapshot_saved_again", path=str(self.path))
                self.failing = ""
            self._saved = taken.generation
            self.saved_offset = taken.offset
        waited = time.monotonic() - taken.taken_at
        if waited > 1.0:
            log.info("actor.snapshot_saved_after_ack", waited_s=round(waited, 1))


__all__ = ["Acknowledger", "Loaded", "SnapshotFile", "Snapshots", "load_snapshot"]
