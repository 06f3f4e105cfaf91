"""The broker's replay endpoint: durable subscribers pull events by offset, within bounds.

A fetch asks for events after an offset that match some prefixes. Answered at once when there
are any (or when it does not wait); otherwise parked until one is journaled or its wait ends
(a long poll). One parked fetch per peer (a newer one replaces it), ``MAX_PARKED`` in all,
waits of at most ``MAX_WAIT_MS``, replies of at most ``MAX_REPLY_BYTES`` (or one event, however
big) and ``MAX_REPLY_EVENTS``: a peer that pipelines fetches and never reads gets a few replies
queued (the ROUTER's ``REPLY_HWM``) and the rest dropped, so it cannot make the broker hold
more than a bounded amount for it. Honest feeds have one fetch out at a time and never notice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

import msgspec
import structlog
import zmq

from hexbus import codec
from hexbus.codec import BATCH, FETCH, FetchReply, FetchRequest, RejectedFrame
from hexbus.consumers import Consumers
from hexbus.journal import Journal
from hexbus.keys import LOCAL
from hexbus.log import RateLimitedCounter
from hexbus.origins import origin_of

log = structlog.get_logger("hexbus.broker")

DRAIN: Final = 256
REPLY_HWM: Final = 4  # replies queued per peer before the ROUTER drops more
MAX_REPLY_BYTES: Final = 8 << 20
MAX_REPLY_EVENTS: Final = 10_000
MAX_WAIT_MS: Final = 30_000
MAX_PARKED: Final = 4096


@dataclass(slots=True)
class Parked:
    identity: bytes
    request: FetchRequest
    prefixes: tuple[bytes, ...]
    cursor: int
    deadline: float


class Replay:
    """Serves fetches from the journal on the broker's loop."""

    def __init__(
        self,
        journal: Journal,
        sock: zmq.Socket[bytes],
        consumers: Consumers,
        rejected: RateLimitedCounter,
        incarnation: str,
        curve: bool = False,
    ) -> None:
        self.journal = journal
        self.curve = curve  # peers are admitted by key: a frame without a host name is unknown
        self.sock = sock
        self.consumers = consumers
        self.rejected = rejected
        self.incarnation = incarnation
        self.parked: dict[bytes, Parked] = {}

    def on_fetch(self) -> None:
        now = time.monotonic()
        for _ in range(DRAIN):
            try:
                raw = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            origin = origin_of(raw[0], curve=self.curve)
            frames = [frame.bytes for frame in raw]
            identity = frames[0]
            try:
                if len(frames) != 3 or frames[1] != FETCH:
                    raise RejectedFrame("frames", f"replay message of {len(frames)} frames")
                request = codec.fetch_request_decoder.decode(frames[2])
                prefixes = tuple(p.encode("ascii") for p in request.prefixes)
            except (msgspec.DecodeError, msgspec.ValidationError, UnicodeEncodeError) as exc:
                self.rejected.add("fetch", str(exc))
                continue
            except RejectedFrame as exc:
                self.rejected.add(exc.kind, exc.detail)
                continue
            if request.consumer:
                # Another host's fetches never speak for an actor of this one (nor hold
                # retention back in its name): its consumers are its own.
                name = request.consumer if origin == LOCAL else f"{origin}.{request.consumer}"
                self.consumers.saw(name, request.saved, request.epoch, tuple(request.prefixes))
            self.parked.pop(identity, None)
            wait_ms = min(max(0, request.wait_ms), MAX_WAIT_MS)
            parked = Parked(identity, request, prefixes, request.after, now + wait_ms / 1000)
            final = wait_ms <= 0 or len(self.parked) >= MAX_PARKED
            if len(self.parked) >= MAX_PARKED:
                self.rejected.add("fetch", f"over {MAX_PARKED} parked fetches: answered at once")
            if not self._try_serve(parked, final=final):
                self.parked[identity] = parked

    def journaled(self, now: float) -> None:
        """New events are in the journal: answer the parked fetches they match."""
        if self.parked:
            self._serve_parked(now)

    def expire(self, now: float) -> None:
        """Answer (empty) the parked fetches whose wait has ended."""
        if self.parked and now >= self.next_deadline():
            self._serve_parked(now)

    def next_deadline(self) -> float:
        return min((p.deadline for p in self.parked.values()), default=float("inf"))

    def _try_serve(self, parked: Parked, *, final: bool) -> bool:
        request = parked.request
        records, cursor = self.journal.read(
            parked.cursor,
            prefixes=parked.prefixes,
            max_records=max(1, min(request.max_events, MAX_REPLY_EVENTS)),
            max_bytes=max(1, min(request.max_bytes, MAX_REPLY_BYTES)),
        )
        parked.cursor = max(parked.cursor, cursor)
        if not records and not final:
            return False
        since = self.journal.epoch_after(request.epoch)
        lost = tuple(record.offset for record in records if record.lost)
        if lost:
            log.error(
                "journal.blob_missing",
                consumer=request.consumer,
                offsets=list(lost[:16]),
                count=len(lost),
                hint="its blob file was deleted past bus.journal.blob_retention_cap_mb, "
                "or damaged: the subscriber is told and does not apply the event",
            )
        reply = FetchReply(
            req=request.req,
            next_after=parked.cursor,
            head=self.journal.head,
            first=self.journal.first,
            count=len(records),
            incarnation=self.incarnation,
            epoch=self.journal.epoch,
            epoch_first=since.first,
            lost_after=since.lost_after,
            retained_after=self.journal.retained_after,
            lost_blobs=lost,
        )
        frames: list[bytes] = [parked.identity, BATCH, codec.encode_control(reply)]
        for record in records:
            frames += (record.topic, record.envelope, record.blob or b"")
        try:
            self.sock.send_multipart(frames, zmq.NOBLOCK)
        except (zmq.Again, zmq.ZMQError):
            pass  # a vanished peer or a full pipe: the fetcher asks again
        return True

    def _serve_parked(self, now: float) -> None:
        for identity, parked in list(self.parked.items()):
            if self._try_serve(parked, final=now >= parked.deadline):
                del self.parked[identity]
