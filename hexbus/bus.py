"""A process's connection to the bus: volatile publish/subscribe and the durable
producer outbox; durable subscriptions are :class:`hexbus.feed.DurableFeed` pulls.

All of it runs on one asyncio loop. Sends never block the loop: a volatile
send that finds a full pipe drops (that is the volatile contract), and a
durable event waits in the bounded outbox until the broker acknowledges it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Final

import structlog
import zmq
import zmq.asyncio

from hexbus import codec
from hexbus._sockets import client_socket, readable
from hexbus.codec import Envelope, RejectedFrame
from hexbus.endpoints import Endpoints, connect_address, secure_client
from hexbus.feed import DurableFeed
from hexbus.log import RateLimitedCounter
from hexbus.outbox import BusClosed, BusRefused, Producer
from schemas import Delivery, Event, Rejected, delivery_of, tag_of

log = structlog.get_logger("hexbus.bus")

DRAIN: Final = 512

__all__ = ["BusClient", "BusClosed", "BusRefused", "Producer"]


class BusClient:
    """Everything one process needs to publish and subscribe.

    ``publish`` routes an event by its delivery class: volatile events go out
    at once (dropped for slow subscribers, never waiting), durable ones through
    the producer outbox (waiting when it is full).
    """

    # A subscription reaches the broker and the publishers on its own, some time after it is
    # made (:meth:`hexbus.actor.Actor.request` checks the path before its first request).
    subscriptions_travel = True

    def __init__(
        self,
        endpoints: Endpoints,
        name: str,
        *,
        outbox: int = 10_000,
        volatile_hwm: int = 1000,
        blob_lane_bytes: int = 65536,
        blob_hwm: int = 16,
        session: int | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.name = name
        self.session = session or codec.new_session()
        self.ids = codec.IdSource(self.session)
        self.ctx = zmq.asyncio.Context.instance()
        curve = endpoints.curve_dir
        self.rejected = RateLimitedCounter(log)
        # The volatile PUBs are plain sockets: they are only ever written, and never block. Frames
        # with a large blob take the second lane, whose queues are a few frames deep.
        sync_ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self.pub = self._pub(sync_ctx, endpoints.volatile_in, volatile_hwm)
        self.pub_big = self._pub(sync_ctx, endpoints.volatile_big_in, blob_hwm)
        self.blob_lane_bytes = blob_lane_bytes
        self.sub = client_socket(self.ctx, zmq.SUB, endpoints.volatile_out, curve)
        self.sub.rcvhwm = volatile_hwm
        self.sub.connect(connect_address(endpoints.volatile_out))
        self.sub.connect(connect_address(endpoints.volatile_big))
        self.sub_shadow: zmq.Socket[bytes] = zmq.Socket.shadow(self.sub.underlying)
        self.ingest = client_socket(self.ctx, zmq.DEALER, endpoints.ingest, curve)
        # Not IMMEDIATE: what is sent before the connection is up waits in the pipe instead of
        # waiting for a retransmission; the broker drops the duplicates that can cause.
        self.ingest.sndhwm = outbox + 1000
        self.ingest.connect(connect_address(endpoints.ingest))
        self.producer = Producer(self.ingest, self.session, outbox)
        self.producer.on_refused.append(self._report_refused)
        self.max_blob = endpoints.max_blob_mb << 20  # the broker's bus.max_blob_mb
        self._replay: zmq.asyncio.Socket | None = None
        self.events_out = 0
        self.volatile_dropped = 0
        self.entering = 0  # durable publishers waiting for room in the outbox
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = False

    def _pub(
        self, ctx: zmq.Context[zmq.Socket[bytes]], address: str, hwm: int
    ) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] = ctx.socket(zmq.PUB)
        sock.linger = 0
        sock.sndhwm = hwm
        if self.endpoints.curve_dir and address.startswith("tcp://"):
            secure_client(sock, self.endpoints.curve_dir)
        sock.connect(connect_address(address))
        return sock

    def start(self) -> None:
        self._tasks.append(
            asyncio.get_running_loop().create_task(self.producer.run(), name="producer")
        )

    # -- publishing ---------------------------------------------------------

    def on_refused(self, callback: Callable[[BusRefused], None]) -> None:
        """Call ``callback`` with each durable event of this client that the broker refuses
        (besides the error logged and the :class:`schemas.Rejected` published for every one)."""
        self.producer.on_refused.append(callback)

    def _report_refused(self, refusal: BusRefused) -> None:
        self.rejected.count("refused")
        log.error(
            "bus.refused",
            event_id=refusal.event_id,
            topic=refusal.topic,
            reason=refusal.reason,
            hint="the broker will not store this event; the events after it go on",
        )
        self.rejected.changed = False  # this report carries the counts too
        self.publish_volatile(
            Rejected(
                process=self.name,
                counts=dict(self.rejected.counts),
                total=self.rejected.total,
                event_id=refusal.event_id,
                topic=refusal.topic,
                reason=refusal.reason,
            ),
            key=self.name,
        )

    def _frames(self, envelope: Envelope, blob: bytes | None) -> list[bytes]:
        """The frames of ``envelope``, or :class:`BusRefused` if the bus would not carry them."""
        frames = codec.message_frames(envelope, blob)
        if blob is not None and len(blob) > self.max_blob:
            reason = (
                f"blob of {len(blob) / (1 << 20):.1f} MiB is over the bus's limit of "
                f"{self.max_blob >> 20} MiB (bus.max_blob_mb in supervisor.toml)"
            )
            raise BusRefused(envelope.id, envelope.topic, reason)
        if len(frames[1]) > codec.MAX_ENVELOPE_BYTES:
            reason = (
                f"event of {len(frames[1]) >> 10} KiB is over the {codec.MAX_ENVELOPE_BYTES >> 10} "
                "KiB an envelope may have: send large content as the event's blob"
            )
            raise BusRefused(envelope.id, envelope.topic, reason)
        return frames

    def envelope(
        self,
        event: Event,
        *,
        key: str = "",
        seq: int = 0,
        event_id: str = "",
        causation: str = "",
        correlation: str = "",
    ) -> Envelope:
        return codec.make_envelope(
            event,
            event_id=event_id or self.ids.next(),
            source=self.name,
            session=self.session if seq else 0,
            seq=seq,
            key=key,
            causation=causation,
            correlation=correlation,
        )

    def publish_volatile(
        self,
        event: Event,
        *,
        key: str = "",
        blob: bytes | None = None,
        event_id: str = "",
        causation: str = "",
        correlation: str = "",
    ) -> Envelope:
        envelope = self.envelope(
            event, key=key, event_id=event_id, causation=causation, correlation=correlation
        )
        if delivery_of(envelope.topic) is not Delivery.VOLATILE:
            raise ValueError(
                f"{envelope.topic} is durable: publish it with publish() or publish_durable()"
            )
        frames = self._frames(envelope, blob)
        sock = self.pub_big if blob is not None and len(blob) >= self.blob_lane_bytes else self.pub
        try:
            sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            self.volatile_dropped += 1
        self.events_out += 1
        return envelope

    async def publish_durable(
        self,
        event: Event,
        *,
        key: str = "",
        blob: bytes | None = None,
        event_id: str = "",
        causation: str = "",
        correlation: str = "",
    ) -> Envelope:
        self.entering += 1  # until it has its seq: a snapshot now would record it unpublished
        try:
            await self.producer.wait_space()
        finally:
            self.entering -= 1
        # Built with the next seq and checked before it is taken: a seq reserved and never sent
        # would stall every event after it.
        envelope = self.envelope(
            event,
            key=key,
            seq=self.producer.next_seq,
            event_id=event_id,
            causation=causation,
            correlation=correlation,
        )
        if delivery_of(envelope.topic) is not Delivery.DURABLE:
            raise ValueError(f"{envelope.topic} is volatile: publish it with publish_volatile()")
        frames = self._frames(envelope, blob)
        self.producer.put(self.producer.reserve(), frames)
        self.events_out += 1
        return envelope

    async def publish(
        self,
        event: Event,
        *,
        key: str = "",
        blob: bytes | None = None,
        event_id: str = "",
        causation: str = "",
        correlation: str = "",
    ) -> Envelope:
        topic = f"{tag_of(type(event))}.{key}" if key else tag_of(type(event))
        if delivery_of(topic) is Delivery.DURABLE:
            return await self.publish_durable(
                event,
                key=key,
                blob=blob,
                event_id=event_id,
                causation=causation,
                correlation=correlation,
            )
        return self.publish_volatile(
            event,
            key=key,
            blob=blob,
            event_id=event_id,
            causation=causation,
            correlation=correlation,
        )

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the broker has acknowledged every durable event; False on timeout."""
        return await self.producer.flush(timeout)

    # -- subscribing --------------------------------------------------------

    def subscribe(self, prefix: str) -> None:
        self.sub.subscribe(prefix.encode("ascii"))

    def unsubscribe(self, prefix: str) -> None:
        self.sub.unsubscribe(prefix.encode("ascii"))

    async def volatile(self) -> AsyncIterator[tuple[Envelope, bytes | None]]:
        """Every decodable message on the SUB socket, invalid ones counted and dropped."""
        shadow = self.sub_shadow
        while not self.closed:
            for _ in range(DRAIN):
                try:
                    frames = shadow.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                try:
                    envelope, blob = codec.decode_message(frames, self.max_blob)
                except RejectedFrame as exc:
                    self.rejected.add(exc.kind, exc.detail)
                    continue
                yield envelope, blob  # type: ignore[misc]
            else:
                await asyncio.sleep(0)
                continue
            await readable(self.sub, 1000)

    def durable(
        self,
        prefixes: list[str],
        after: int,
        *,
        wait_ms: int = 1000,
        max_events: int = 512,
        epoch: str | None = None,
        consumer: str = "",
        saved: Callable[[], int] | None = None,
    ) -> DurableFeed:
        """Durable events matching ``prefixes`` after offset ``after``; ``after=-1`` starts at
        the journal's head. ``epoch``: for a consumer that keeps its offset, the journal history
        it belongs to (see :class:`DurableFeed`); ``consumer`` and ``saved``: its name and the
        offset it would resume after if it died now, which retention keeps events above."""
        if self._replay is None:
            self._replay = client_socket(
                self.ctx, zmq.DEALER, self.endpoints.replay, self.endpoints.curve_dir
            )
            self._replay.connect(connect_address(self.endpoints.replay))
        return DurableFeed(
            self._replay,
            prefixes,
            after,
            self.rejected,
            wait_ms=wait_ms,
            max_events=max_events,
            epoch=epoch,
            consumer=consumer,
            saved=saved,
        )

    def durable_mark(self) -> int:
        """A mark of every durable event published so far (see :meth:`acknowledged`); -1 while
        a publisher waits for room in the outbox (its event has no seq yet, so no mark covers
        it: a snapshot must wait)."""
        return -1 if self.entering else self.producer.next_seq - 1

    def acknowledged(self, mark: int) -> bool:
        """Whether the broker has answered every durable event up to ``mark``."""
        return self.producer.acked >= mark

    async def wait_acknowledged(self, mark: int) -> None:
        await self.producer.acked_through(mark)

    async def close(self, flush_timeout: float = 0.0) -> None:
        if self.closed:
            return
        if flush_timeout > 0:
            await self.flush(flush_timeout)
        self.closed = True
        self.producer.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        for sock in (self.sub, self.ingest, self._replay):
            if sock is not None:
                sock.close(linger=0)
        self.pub.close(linger=0)
        self.pub_big.close(linger=0)
