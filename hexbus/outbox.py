"""The durable producer outbox: a process's durable events, held until the broker answers.

Bounded (``put`` waits while it is full, and never drops), retransmitting (go-back-N after
a pause without progress, or at once on a NACK), deduplicated by the broker by (session,
seq). An event the broker cannot store comes back refused with its reason; one it cannot
store *now* (a full disk) is held: the outbox keeps it and offers it again every ``HOLD_S``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Final

import structlog
import zmq
import zmq.asyncio

from hexbus import codec
from hexbus._sockets import readable, sent
from hexbus.codec import ACK, HOLD, NACK, PUBLISH, REFUSE, U64, U64x2

DRAIN: Final = 512
HOLD_S: Final = 1.0  # how long a held outbox waits before it offers its events again

log = structlog.get_logger("hexbus.bus")


class BusClosed(Exception):
    """The client was closed while an operation waited."""


class BusRefused(ValueError):
    """An event the bus will not carry: raised by ``publish`` for what the client can tell
    itself (a blob over bus.max_blob_mb, an envelope over its limit), and handed to
    :meth:`BusClient.on_refused` callbacks for a durable event the broker refused."""

    def __init__(self, event_id: str, topic: str, reason: str) -> None:
        super().__init__(f"{topic} ({event_id}) refused: {reason}")
        self.event_id = event_id
        self.topic = topic
        self.reason = reason


class Producer:
    """The durable outbox: bounded, retransmitting, deduplicated by the broker.

    ``put`` waits while the outbox is full (backpressure) and never drops. Each
    event carries this incarnation's ``session`` and a consecutive ``seq``; the
    broker accepts only the next expected seq, so a retransmission can never
    reorder or duplicate what it stored. An event the broker cannot store (a tag
    it does not know, a blob over its limit) comes back refused with the reason:
    it leaves the outbox, each ``on_refused`` callback hears of it, and the
    events after it go on.
    """

    def __init__(
        self, sock: zmq.asyncio.Socket, session: int, capacity: int, retransmit_s: float = 0.5
    ) -> None:
        self.sock = sock
        self.shadow: zmq.Socket[bytes] = zmq.Socket.shadow(sock.underlying)
        self.session = session
        self.capacity = capacity
        self.retransmit_s = retransmit_s
        self.outbox: dict[int, list[bytes]] = {}
        self.next_seq = 1
        self.acked = 0
        self.progress_at = time.monotonic()
        self.retransmits = 0
        self._space = asyncio.Event()
        self._space.set()
        self._empty = asyncio.Event()
        self._empty.set()
        self._progress = asyncio.Event()  # set on each acknowledgement
        self._last_nack = (0, 0.0)
        self.on_refused: list[Callable[[BusRefused], None]] = []
        self.refused: deque[BusRefused] = deque(maxlen=256)  # the latest, for callers to look up
        self.closed = False
        self.held = ""  # why the broker is holding this outbox's events (a full disk), if it is
        self.hold_until = 0.0

    def reserve(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq

    async def wait_space(self) -> None:
        while len(self.outbox) >= self.capacity:
            if self.closed:
                raise BusClosed("bus client closed")
            self._space.clear()
            await self._space.wait()

    def put(self, seq: int, frames: list[bytes]) -> None:
        if not self.outbox:
            self.progress_at = time.monotonic()
        self.outbox[seq] = frames
        self._empty.clear()
        if len(self.outbox) >= self.capacity:
            self._space.clear()
        self._send(seq, frames)

    def _send(self, seq: int, frames: list[bytes]) -> bool:
        floor = self.acked + 1
        return sent(
            self.sock.send_multipart([PUBLISH, U64.pack(floor), *frames], flags=zmq.NOBLOCK)
        )

    def resend_from(self, seq: int) -> None:
        for s, frames in self.outbox.items():
            if s >= seq and not self._send(s, frames):
                break
        self.retransmits += 1
        self.progress_at = time.monotonic()

    def on_reply(self, frames: list[bytes]) -> None:
        if len(frames) not in (2, 3) or len(frames[1]) != 16:
            return
        session, seq = U64x2.unpack(frames[1])
        if session != self.session:
            return
        if frames[0] == ACK:
            self._done(seq)
        elif frames[0] == HOLD and len(frames) == 3 and seq > self.acked:
            # The broker cannot store it now (a full disk): keep everything, ask again later.
            reason = frames[2].decode("utf-8", "replace")
            if not self.held:
                log.warning("bus.held", reason=reason, pending=len(self.outbox))
            self.held = reason
            self.hold_until = time.monotonic() + HOLD_S
        elif frames[0] == NACK:
            now = time.monotonic()
            if now < self.hold_until:
                return  # the events after a held one: asked for again when the hold ends
            last_seq, last_at = self._last_nack
            if seq != last_seq or now - last_at > self.retransmit_s / 4:
                self._last_nack = (seq, now)
                self.resend_from(seq)
        elif frames[0] == REFUSE and len(frames) == 3 and seq > self.acked:
            held = self.outbox.get(seq)
            head = codec.peek(held[1]) if held is not None else None
            self._done(seq)
            refusal = BusRefused(
                head.id if head else "",
                head.topic if head else "",
                frames[2].decode("utf-8", "replace"),
            )
            self.refused.append(refusal)
            for callback in self.on_refused:
                callback(refusal)

    def _done(self, seq: int) -> None:
        """Every event up to ``seq`` is stored or refused: out of the outbox."""
        if seq <= self.acked:
            return
        for s in range(self.acked + 1, seq + 1):
            self.outbox.pop(s, None)
        self.acked = seq
        self.progress_at = time.monotonic()
        if self.held:
            log.info("bus.stored_again", pending=len(self.outbox))
            self.held = ""
            self.hold_until = 0.0
        self._progress.set()
        if len(self.outbox) < self.capacity:
            self._space.set()
        if not self.outbox:
            self._empty.set()

    async def run(self) -> None:
        """Read acks and retransmit what stalls; one task per producer."""
        while not self.closed:
            events = await readable(self.sock, int(self.retransmit_s * 500))
            if events:
                for _ in range(DRAIN):
                    try:
                        frames = self.shadow.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self.on_reply(frames)
            now = time.monotonic()
            if (
                self.outbox
                and now - self.progress_at > self.retransmit_s
                and now >= self.hold_until
            ):
                self.resend_from(self.acked + 1)

    async def acked_through(self, seq: int) -> None:
        """Wait until every event up to ``seq`` is acknowledged (or refused)."""
        while self.acked < seq:
            if self.closed:
                raise BusClosed("bus client closed")
            self._progress.clear()
            await self._progress.wait()

    async def flush(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._empty.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.closed = True
        self._space.set()
        self._progress.set()
