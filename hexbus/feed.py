"""The durable feed: a subscriber's pull of durable events by offset from the broker's replay endpoint.

A feed asks for events after its offset that match its prefixes; once it has caught
up, the broker parks the request and answers it the moment a matching event is
journaled (a long poll). Nothing is pushed, so a slow subscriber cannot make the
broker buffer for it, and a restart is the same pull from the snapshot's offset.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple

import structlog
import zmq
import zmq.asyncio

from hexbus import codec
from hexbus._sockets import readable, sent
from hexbus.codec import BATCH, FETCH, Envelope, FetchRequest, RejectedFrame
from hexbus.log import RateLimitedCounter

log = structlog.get_logger("hexbus.bus")


class Rewind(NamedTuple):
    """The journal's history changed under this feed: the consumer's applied offset is now
    ``after`` (lower than before when offsets may have been reused) in ``epoch``."""

    epoch: str
    after: int


class DurableFeed:
    """Pulls durable events after an offset from the replay endpoint, at the consumer's pace.

    Yields ``(envelope, blob)`` for each event and ``(None, next_after)`` marks
    when a batch ends, so the consumer can advance its applied offset past
    events it does not subscribe to. ``live`` becomes true once a fetch finds
    nothing newer than the journal head.

    ``epoch`` is the journal history the consumer's offset belongs to (``""``: not known yet),
    for a consumer that keeps its offset (the actor runtime); ``None`` for one that does not.
    When the broker's differs, the feed reconciles before it yields anything of the new one
    (:meth:`_reconcile`) and, for a consumer that keeps its offset, yields ``(None, Rewind)``:
    the consumer takes its offset and epoch from it and saves them, so an event with a number
    it had applied before is never skipped.
    """

    def __init__(
        self,
        sock: zmq.asyncio.Socket,
        prefixes: list[str],
        after: int,
        rejected: RateLimitedCounter,
        *,
        wait_ms: int = 1000,
        max_events: int = 512,
        epoch: str | None = None,
        consumer: str = "",
        saved: Callable[[], int] | None = None,
    ) -> None:
        self.sock = sock
        self.consumer = consumer  # an actor's name: the broker keeps what it has not saved
        self.saved = saved  # the offset it would resume after if it died now
        self.keeps_offset = epoch is not None
        self.epoch = epoch or ""
        self.shadow: zmq.Socket[bytes] = zmq.Socket.shadow(sock.underlying)
        self.prefixes = prefixes
        self.after = after
        self.rejected = rejected
        self.wait_ms = wait_ms
        self.max_events = max_events
        # The question being asked. A timeout sends it again under the same number (an answer
        # to either copy is as good: on busy cores the broker may answer each too late); a
        # new number only once an answer is taken, so an answer with an older one is stale.
        self.req = 0
        self.live = False
        self.head = 0
        self.incarnation = ""
        self.on_live: Callable[[], None] | None = None
        self._positioned = (
            asyncio.Event()
        )  # the offset to read after is known (a tail learns the head)
        if after >= 0:
            self._positioned.set()

    async def positioned(self, timeout: float) -> bool:
        """Wait (while the feed is being iterated) until it knows where it starts; False on timeout.

        For a tail (``after=-1``) that is the journal's head when the broker first answered:
        every event journaled after it will be read, so a request published now cannot have its
        answer missed.
        """
        try:
            await asyncio.wait_for(self._positioned.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _request(self, *, again: bool = False) -> None:
        if not again:
            self.req += 1
        request = FetchRequest(
            req=self.req,
            after=max(0, self.after),
            prefixes=self.prefixes,
            max_events=self.max_events,
            wait_ms=self.wait_ms if self.live else 0,
            consumer=self.consumer,
            saved=self.saved() if self.saved is not None else -1,
            epoch=self.epoch,
        )
        sent(self.sock.send_multipart([FETCH, codec.encode_control(request)], flags=zmq.NOBLOCK))

    async def _reply(self) -> list[bytes] | None:
        # A parked fetch is answered within wait_ms; past that (plus slack) the broker lost it.
        deadline = time.monotonic() + (self.wait_ms if self.live else 0) / 1000 + 0.5
        while True:
            try:
                frames = self.shadow.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                await readable(self.sock, int(remaining * 1000) + 1)
                continue
            if len(frames) < 2 or frames[0] != BATCH:
                self.rejected.add("frames", "unexpected replay frame")
                continue
            try:
                reply = codec.fetch_reply_decoder.decode(frames[1])
            except Exception as exc:
                self.rejected.add("malformed", f"fetch reply: {exc}")
                continue
            if reply.req != self.req:
                continue  # an answer to a question already answered
            return frames

    async def __aiter__(self) -> AsyncIterator[tuple[Envelope | None, Any]]:
        again = False
        while True:
            self._request(again=again)
            frames = await self._reply()
            again = frames is None
            if frames is None:
                continue  # the broker is down, restarting or slow; ask again
            reply = codec.fetch_reply_decoder.decode(frames[1])
            if reply.incarnation != self.incarnation:
                if self.incarnation:
                    log.info(
                        "bus.broker_restarted", incarnation=reply.incarnation, after=self.after
                    )
                self.incarnation = reply.incarnation
            if reply.epoch != self.epoch and self.after >= 0:
                rewind = self._reconcile(reply)
                if self.keeps_offset:
                    self.head = reply.head
                    yield None, rewind
                continue
            if 0 < self.after < reply.retained_after:
                # Retention removed events this subscriber never read: a real, unrecoverable gap.
                log.error(
                    "bus.gap_retention",
                    missing_from=self.after + 1,
                    missing_to=reply.retained_after,
                    hint="raise bus.journal.retention_mb/retention_hours, or keep this actor running",
                )
            if self.after < 0:
                self.after = reply.head  # a tail: start at the journal's head, skip history
                self.epoch = reply.epoch
                self._positioned.set()
                continue
            if reply.head < self.after:
                # Not one of the journal's own offsets (a journal of another epoch-less broker):
                # whatever it numbers next was never applied here, so nothing may be skipped.
                log.error(
                    "bus.journal_behind_snapshot",
                    head=reply.head,
                    after=self.after,
                    hint="the journal is not the one this actor applied; going on from its head",
                )
                self.after = reply.head
                if self.keeps_offset:
                    yield None, Rewind(self.epoch, self.after)
                continue
            body = frames[2:]
            if len(body) != 3 * reply.count:
                self.rejected.add(
                    "frames", f"fetch reply with {len(body)} frames for {reply.count} events"
                )
                continue
            lost = reply.lost_blobs
            for i in range(0, len(body), 3):
                topic, env, blob = body[i], body[i + 1], body[i + 2]
                try:
                    envelope, _ = codec.decode_message([topic, env])
                except RejectedFrame as exc:
                    self.rejected.add(exc.kind, exc.detail)
                    continue
                if envelope.offset <= self.after:
                    continue
                self.after = envelope.offset
                if lost and envelope.offset in lost:
                    # Applied without the audio or document it carried would be a wrong
                    # answer; not applied, and said.
                    log.error(
                        "bus.blob_lost",
                        topic=envelope.topic,
                        offset=envelope.offset,
                        event_id=envelope.id,
                        hint="its blob was deleted past bus.journal.blob_retention_cap_mb "
                        "before this actor read it (or damaged): the event is not applied",
                    )
                    self.rejected.count("blob_lost")
                    continue
                yield envelope, (blob or None)
            self.after = max(self.after, reply.next_after)
            self.head = reply.head
            yield None, self.after
            if not self.live and reply.count == 0 and self.after >= reply.head:
                self.live = True
                if self.on_live is not None:
                    self.on_live()

    def _reconcile(self, reply: codec.FetchReply) -> Rewind:
        """Take the journal's epoch, lowering the offset where its numbers may repeat ours.

        Offsets of the new epoch start at ``epoch_first``; everything below it that is still
        in the journal is the old history (up to ``lost_after``). An offset this feed applied
        at or past ``epoch_first`` can only come from a history whose mark was lost too: those
        numbers are being handed out again, so the feed goes back to read them all. (In the
        same history, every offset handed out is below the next epoch's first, so a consumer
        behind it loses nothing by going on.)
        """
        first = reply.epoch_first
        if not self.epoch:
            # A new consumer, or an offset kept from before epochs: it was applied in this
            # journal, or it is past the head, which the caller reconciles next.
            if self.after > 0:
                log.info("bus.journal_epoch_learned", epoch=reply.epoch, after=self.after)
            self.epoch = reply.epoch
            return Rewind(reply.epoch, self.after)
        after = min(self.after, first - 1)
        log.error(
            "bus.journal_epoch_changed",
            was=self.epoch,
            epoch=reply.epoch,
            applied=self.after,
            lost_from=reply.lost_after + 1,
            lost_to=first - 1,
            rewound_to=after if after < self.after else None,
            hint="the journal lost history (see the broker's journal.history_lost); "
            "this actor goes on with every event of the new epoch",
        )
        self.epoch = reply.epoch
        self.after = after
        return Rewind(reply.epoch, after)
