"""Dead letters: durable events an actor could not apply, kept so nothing accepted is silently lost.

The runtime (:class:`hexbus.runtime.Runtime`) applies a durable event by calling its
handler. A handler that raises is retried with backoff; after ``dead_letter_after``
failures the event is published as :class:`schemas.DeadLetter` on
``sys.deadletter.<actor>`` (with the event's envelope and blob, so it can be retried
later) and the actor goes on. An event that kills the process is caught the same way:
:class:`CrashMarker` notes, in a small file, which offset a handler is working on; a
process that starts and finds a handler was still working names that offset as a
crash, and after ``dead_letter_after`` crashes on it the event is dead-lettered
instead of handled, so the actor stops crash-looping into ``failed``.

``hexbus deadletter list|retry|drop`` reads the letters back from the journal
(:func:`open_letters`); a retry is a durable :class:`schemas.Redrive` the actor's runtime
applies like the original event.

Marker file format (``inflight`` in the actor's data folder, 21 bytes, little-endian):
offset u64, crashes u32, working u8, event u64 (the first 8 bytes of the event id's
BLAKE2b digest, so an unrelated event that comes to hold the same offset after a journal
reset is not taken for the one that crashed). It is rewritten in place through a shared
memory map, without fsync: it only has to survive the process (the page cache outlives a
SIGKILL), not the machine. A map, not ``pwrite``: each ``pwrite`` updates the file's mtime,
and on ext4 that can wait for a journal commit, on the event loop, once or twice per event;
a write to a page already dirty touches no filesystem code. The page is allocated before it is
mapped (a store into a hole of a full disk is a SIGBUS); with no room for it, the marker lives in
memory until there is. A file in the old 13-byte format reads as no crash.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import mmap
import os
import struct
import time
from collections.abc import Container, Iterable
from pathlib import Path
from typing import Any, Final, Protocol

import msgspec
import structlog

from hexbus import codec
from hexbus.ask import AskError, change
from hexbus.bus import BusClient
from hexbus.codec import Envelope
from hexbus.endpoints import Endpoints
from hexbus.files import DISK_FULL
from schemas import DeadLetter, DeadLetterCause, Event, Redrive, tag_of

log = structlog.get_logger("hexbus.runtime")

_MARK: Final = struct.Struct("<QIBQ")
REDRIVEN: Final = "redriven:"  # in the runtime's recent ids: a dead letter a retry has applied
LETTER_OVERHEAD: Final = 4096  # room for a letter's own fields around the event it carries


def _event_key(event_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little")


class CrashMarker:
    """Which durable event a handler is working on, as seen by the next process after a crash."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        data = os.pread(self._fd, _MARK.size, 0)
        offset, crashes, working, key = (
            _MARK.unpack(data) if len(data) == _MARK.size else (0, 0, 0, 0)
        )
        self._map: mmap.mmap | bytearray = bytearray(_MARK.size)
        self.unkept = ""  # why the marker lives in memory only (a full disk), while it does
        self._attach()
        # The event the last process died on, and how many processes have died on it so far.
        self.crashed_offset = offset if working else 0
        self.crashed_key = key if working else 0
        self.crashes = crashes + 1 if working else 0

    def _attach(self) -> None:
        """Map the file, its page allocated first: a store through a map into a hole of a full
        filesystem (tmpfs, ext4) is a SIGBUS, which killed the process at each start. Where
        there is no room, the marker lives in memory (said once) until a later event finds room.
        """
        try:
            self._allocate()
        except OSError as exc:
            if exc.errno not in DISK_FULL:
                raise
            if not self.unkept:
                log.error(
                    "actor.crash_marker_unkept",
                    path=str(self.path),
                    error=str(exc),
                    hint="free space on the data disk; until then a crash is not counted "
                    "against the event it died on",
                )
            self.unkept = str(exc)
            return
        mapped = mmap.mmap(self._fd, _MARK.size)
        if self.unkept:  # what was kept in memory meanwhile goes to the file
            mapped[:] = bytes(self._map)
        self._map, self.unkept = mapped, ""

    def _allocate(self) -> None:
        try:
            os.posix_fallocate(self._fd, 0, _MARK.size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            # A filesystem without fallocate: writing the bytes there allocates them.
            os.pwrite(self._fd, os.pread(self._fd, _MARK.size, 0).ljust(_MARK.size, b"\0"), 0)

    def crashes_at(self, offset: int, event_id: str) -> int:
        """How many processes died while handling this event (0 for any but the last crash's)."""
        if offset == self.crashed_offset and _event_key(event_id) == self.crashed_key:
            return self.crashes
        return 0

    def start(self, offset: int, event_id: str) -> None:
        if self.unkept:
            self._attach()
        crashes = self.crashes_at(offset, event_id)
        _MARK.pack_into(self._map, 0, offset, crashes, 1, _event_key(event_id))

    def finish(self, offset: int) -> None:
        _MARK.pack_into(self._map, 0, offset, 0, 0, 0)
        if offset == self.crashed_offset:
            self.crashed_offset = self.crashed_key = self.crashes = 0

    def close(self) -> None:
        if isinstance(self._map, mmap.mmap):
            self._map.close()
        os.close(self._fd)


class Letters:
    """What an actor's runtime publishes about dead letters, on ``sys.deadletter.<actor>``."""

    def __init__(self, actor: str, bus: Publisher, log: Any) -> None:
        self.actor = actor
        self.bus = bus
        self.log = log

    async def dead(
        self,
        envelope: Envelope,
        blob: bytes | None,
        cause: DeadLetterCause,
        attempts: int,
        error: str,
        causation: str = "",
    ) -> None:
        """The event, its blob and why it was given up on."""
        self.log.error(
            "actor.dead_letter",
            event_id=envelope.id,
            topic=envelope.topic,
            offset=envelope.offset,
            cause=cause,
            attempts=attempts,
            error=error,
            hint=f"hexbus deadletter list --actor {self.actor}; retry it once the fault is fixed",
        )
        encoded = codec.encode(envelope)
        if len(encoded) > codec.MAX_ENVELOPE_BYTES - LETTER_OVERHEAD:
            # Too big to carry inside a letter: the letter still says what was lost.
            self.log.error(
                "actor.dead_letter_too_big", event_id=envelope.id, envelope_bytes=len(encoded)
            )
            error = f"{error} (the event, {len(encoded)} bytes, is too big to keep in the letter)"
            encoded = b""
        letter = DeadLetter(
            actor=self.actor,
            event_id=envelope.id,
            offset=envelope.offset,
            topic=envelope.topic,
            cause=cause,
            attempts=attempts,
            error=error[:1000],
            envelope=encoded,
        )
        await self.publish(letter, envelope, blob, causation)

    async def retried(self, envelope: Envelope, attempts: int, causation: str) -> None:
        """A redriven letter applied."""
        letter = DeadLetter(
            actor=self.actor,
            event_id=envelope.id,
            offset=envelope.offset,
            topic=envelope.topic,
            status="retried",
            attempts=attempts,
        )
        await self.publish(letter, envelope, None, causation)

    async def publish(
        self, letter: DeadLetter, envelope: Envelope, blob: bytes | None, causation: str
    ) -> None:
        # Derived from the event, so the letter a replay publishes again is the same letter.
        event_id = codec.derived_id(envelope.id, self.actor, letter.status, str(envelope.offset))
        await self.bus.publish(
            letter, key=self.actor, blob=blob, event_id=event_id, causation=causation
        )

    async def report(self, letter: DeadLetter, causation: str) -> None:
        """The answer to a redrive that applied nothing."""
        event_id = codec.derived_id(causation, self.actor, "report")
        await self.bus.publish(letter, key=self.actor, event_id=event_id, causation=causation)

    async def redriven(self, envelope: Envelope, recent: Container[str]) -> Envelope | None:
        """The original event a :class:`schemas.Redrive` carries; None when there is nothing to
        apply (unreadable, or applied by an earlier redrive), after reporting why."""
        redrive = envelope.body
        assert isinstance(redrive, Redrive)
        try:
            original, _ = codec.decode_message([redrive.topic.encode(), redrive.envelope])
        except (codec.RejectedFrame, UnicodeEncodeError) as exc:
            self.log.error("actor.redrive_unreadable", event_id=redrive.event_id, error=str(exc))
            unreadable = DeadLetter(
                actor=self.actor,
                event_id=redrive.event_id,
                offset=envelope.offset,
                topic=redrive.topic,
                error=f"the letter's event cannot be read: {exc}"[:1000],
            )
            await self.report(unreadable, envelope.id)
            return None
        if REDRIVEN + original.id in recent:
            # Applied by an earlier retry (a retry asked twice while the actor was down).
            self.log.info("actor.redrive_again", event_id=original.id)
            done = DeadLetter(
                actor=self.actor,
                event_id=original.id,
                offset=envelope.offset,
                topic=original.topic,
                status="retried",
            )
            await self.report(done, envelope.id)
            return None
        return original


class Publisher(Protocol):
    async def publish(
        self,
        event: Event,
        *,
        key: str = ...,
        blob: bytes | None = ...,
        event_id: str = ...,
        causation: str = ...,
    ) -> Envelope: ...


def open_letters(
    letters: Iterable[tuple[DeadLetter, bytes | None]],
) -> dict[str, tuple[DeadLetter, bytes | None]]:
    """The letters still dead, by ``actor/event_id`` (an event two actors failed on is two letters),
    from every letter and status change in journal order.

    A later status for the same event (retried, dropped, dead again) replaces the earlier one;
    a status change carries neither envelope nor blob, so the last ones sent are kept with it.
    """
    latest: dict[str, tuple[DeadLetter, bytes | None]] = {}
    for letter, blob in letters:
        key = f"{letter.actor}/{letter.event_id}"
        before = latest.get(key)
        if before is not None and not letter.envelope:
            letter, blob = msgspec.structs.replace(letter, envelope=before[0].envelope), before[1]
        latest[key] = (letter, blob)
    return {
        key: (letter, blob) for key, (letter, blob) in latest.items() if letter.status == "dead"
    }


def find_letter(
    dead: dict[str, tuple[DeadLetter, bytes | None]], name: str
) -> tuple[DeadLetter, bytes | None]:
    """The letter ``name`` means: ``actor/event_id``, or an event id only one actor has a letter for."""
    if name in dead:
        return dead[name]
    found = [key for key, (letter, _) in dead.items() if letter.event_id == name]
    if len(found) == 1:
        return dead[found[0]]
    if found:
        raise LetterError(
            f"{len(found)} actors have a letter for {name}: name one of {', '.join(found)}"
        )
    raise LetterError(f"no dead letter {name!r}: `hexbus deadletter list` shows them")


class LetterError(Exception):
    """A dead-letter command that cannot be done, with the line to show."""


async def read_letters(
    endpoints: Endpoints, *, timeout: float = 10.0
) -> list[tuple[DeadLetter, bytes | None]]:
    """Every dead letter and status change in the journal up to its head, in order."""
    client = BusClient(endpoints, f"cli{time.monotonic_ns() % 1_000_000}")
    client.start()
    letters: list[tuple[DeadLetter, bytes | None]] = []
    feed = client.durable([tag_of(DeadLetter) + "."], after=0, wait_ms=0)

    async def read() -> None:
        async for envelope, blob in feed:
            if envelope is None:
                if feed.after >= feed.head:
                    return
            elif isinstance(envelope.body, DeadLetter):
                letters.append((envelope.body, bytes(blob) if blob is not None else None))

    try:
        await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        raise LetterError(
            f"the broker did not answer within {timeout:g}s: is Hex running? (`hexbus status`)"
        ) from None
    finally:
        await client.close()
    return letters


async def redrive(
    endpoints: Endpoints, letter: DeadLetter, blob: bytes | None, *, timeout: float
) -> DeadLetter:
    """Ask the letter's actor to apply it again; its report: status retried, or dead again."""
    request = Redrive(
        actor=letter.actor, event_id=letter.event_id, topic=letter.topic, envelope=letter.envelope
    )
    try:
        return await change(
            endpoints,
            request,
            DeadLetter,
            timeout=timeout,
            who=letter.actor,
            blob=blob,
            key=letter.actor,
        )
    except AskError as exc:
        raise LetterError(str(exc)) from None


async def drop(endpoints: Endpoints, letter: DeadLetter, *, timeout: float = 10.0) -> None:
    """Give a letter up: a status change in the journal; the actor is not involved."""
    client = BusClient(endpoints, "cli")
    client.start()
    try:
        dropped = msgspec.structs.replace(letter, status="dropped", envelope=b"")
        await client.publish_durable(dropped, key=letter.actor)
        if not await client.flush(timeout):
            raise LetterError(
                f"the broker did not acknowledge within {timeout:g}s: is Hex running?"
            )
    finally:
        await client.close()


__all__ = [
    "CrashMarker",
    "LetterError",
    "Letters",
    "drop",
    "find_letter",
    "open_letters",
    "read_letters",
    "redrive",
]
