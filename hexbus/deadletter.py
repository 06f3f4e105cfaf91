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

Marker file format (``inflight`` in the actor's data folder, 13 bytes, little-endian):
offset u64, crashes u32, working u8. It is rewritten in place, without fsync: it only
has to survive the process, not the machine.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import msgspec

from hexbus.ask import AskError, change
from hexbus.bus import BusClient
from hexbus.endpoints import Endpoints
from schemas import DeadLetter, Redrive, tag_of

_MARK: Final = struct.Struct("<QIB")


class CrashMarker:
    """Which durable offset a handler is working on, as seen by the next process after a crash."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        data = os.pread(self._fd, _MARK.size, 0)
        offset, crashes, working = _MARK.unpack(data) if len(data) == _MARK.size else (0, 0, 0)
        # The offset the last process died on, and how many processes have died on it so far.
        self.crashed_offset = offset if working else 0
        self.crashes = crashes + 1 if working else 0

    def crashes_at(self, offset: int) -> int:
        """How many processes died while handling ``offset`` (0 for any offset but the last crash's)."""
        return self.crashes if offset == self.crashed_offset else 0

    def start(self, offset: int) -> None:
        os.pwrite(self._fd, _MARK.pack(offset, self.crashes_at(offset), 1), 0)

    def finish(self, offset: int) -> None:
        os.pwrite(self._fd, _MARK.pack(offset, 0, 0), 0)
        if offset == self.crashed_offset:
            self.crashed_offset = self.crashes = 0

    def close(self) -> None:
        os.close(self._fd)


def open_letters(
    letters: Iterable[tuple[DeadLetter, bytes | None]],
) -> dict[str, tuple[DeadLetter, bytes | None]]:
    """The letters still dead, by event id, from every letter and status change in journal order.

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
        letter.event_id: (letter, blob)
        for letter, blob in latest.values()
        if letter.status == "dead"
    }


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


__all__ = ["CrashMarker", "LetterError", "drop", "open_letters", "read_letters", "redrive"]
