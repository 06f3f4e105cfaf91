"""Drive an actor's handlers on an in-memory bus: fast unit tests, no processes or sockets.

    harness = ActorHarness(CounterActor)
    out = await harness.send(ProbeDurable(n=1))
    assert harness.state.count == 1

Durable events go through the same offset and idempotency checks as in a real
process (:class:`hexbus.runtime.Runtime`); requests the actor makes are answered
by responders you register.
"""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgspec
import structlog

from hexbus import codec
from hexbus.actor import Actor
from hexbus.codec import Envelope
from hexbus.log import RateLimitedCounter
from hexbus.runtime import Runtime
from schemas import Delivery, Event, delivery_of, tag_of

A = TypeVar("A", bound=Actor[Any, Any])
Responder = Callable[[Event], Awaitable[Event | None] | Event | None]


class MemoryBus:
    """The publishing half of :class:`hexbus.BusClient`, recording instead of sending."""

    subscriptions_travel = False  # subscribed is in place at once

    def __init__(self, name: str) -> None:
        self.name = name
        self.session = codec.new_session()
        self.ids = codec.IdSource(self.session)
        self.published: list[tuple[Envelope, bytes | None]] = []
        self.subscriptions: set[str] = set()
        self.events_out = 0
        self.volatile_dropped = 0
        self.rejected = RateLimitedCounter(structlog.get_logger("hexbus.testing"))
        self.on_publish: Callable[[Envelope], Awaitable[None]] | None = None
        self.seq = 0
        self.closed = False

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
        durable = delivery_of(topic) is Delivery.DURABLE
        if durable:
            self.seq += 1
        envelope = codec.make_envelope(
            event,
            event_id=event_id or self.ids.next(),
            source=self.name,
            session=self.session if durable else 0,
            seq=self.seq if durable else 0,
            key=key,
            causation=causation,
            correlation=correlation,
        )
        codec.decode_message(
            codec.message_frames(envelope)
        )  # what the broker would refuse, refuse here
        self.published.append((envelope, blob))
        self.events_out += 1
        if self.on_publish is not None:
            await self.on_publish(envelope)
        return envelope

    async def publish_durable(self, event: Event, **kwargs: Any) -> Envelope:
        return await self.publish(event, **kwargs)

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
        envelope = codec.make_envelope(
            event,
            event_id=event_id or self.ids.next(),
            source=self.name,
            key=key,
            causation=causation,
            correlation=correlation,
        )
        self.published.append((envelope, blob))
        self.events_out += 1
        return envelope

    async def flush(self, timeout: float = 5.0) -> bool:
        return True  # everything published is recorded at once

    def durable_mark(self) -> int:
        return self.seq

    def acknowledged(self, mark: int) -> bool:
        return True  # recorded is acknowledged

    async def wait_acknowledged(self, mark: int) -> None:
        return None

    def subscribe(self, prefix: str) -> None:
        self.subscriptions.add(prefix)

    def unsubscribe(self, prefix: str) -> None:
        self.subscriptions.discard(prefix)


class ActorHarness(Generic[A]):
    """One actor instance on a :class:`MemoryBus`, fed events by the test."""

    def __init__(
        self,
        actor_type: type[A],
        config: msgspec.Struct | dict[str, Any] | None = None,
        state: msgspec.Struct | None = None,
        *,
        name: str = "test",
        data_dir: Path | None = None,
        dead_letter_after: int = 3,
    ) -> None:
        if config is None or isinstance(config, dict):
            config = msgspec.convert(config or {}, actor_type.config_type, strict=True)
        self.bus = MemoryBus(name)
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="hexbus-test-"))
        self.actor: A = actor_type(
            name,
            config,
            state if state is not None else actor_type.state_type(),
            self.bus,  # type: ignore[arg-type]
            self.data_dir,
        )
        self.runtime = Runtime(
            self.actor,
            snapshot_every=10**9,
            snapshot_interval_s=1e9,
            heartbeat_interval_s=1e9,
            heartbeat=lambda rt: None,
            snapshot_path=self.data_dir / "snapshot.msgpack",
            applied_offset=0,
            recent_ids=[],
            dead_letter_after=dead_letter_after,
            retry_backoff_s=0.0,  # retries at once: a test waits for nothing
        )
        self.runtime.state = "live"
        self.responders: dict[type[Event], Responder] = {}
        self.bus.on_publish = self._answer
        self.offset = 0
        self.ids = codec.IdSource(codec.new_session())

    @property
    def state(self) -> Any:
        return self.actor.state

    @property
    def published(self) -> list[Event]:
        return [envelope.body for envelope, _ in self.bus.published]

    @property
    def errors(self) -> list[Event]:
        return [
            e
            for e in self.published
            if tag_of(type(e)) == "sys.actor" and getattr(e, "change", "") == "error"
        ]

    def respond(self, request_type: type[Event], responder: Responder) -> None:
        """Answer every ``request_type`` the actor publishes with a correlation id."""
        self.responders[request_type] = responder

    async def _answer(self, envelope: Envelope) -> None:
        responder = self.responders.get(type(envelope.body))
        future = self.actor._pending.get(envelope.correlation) if envelope.correlation else None
        if responder is None or future is None:
            return
        answer = responder(envelope.body)
        if hasattr(answer, "__await__"):
            answer = await answer  # type: ignore[misc]
        if answer is not None and not future.done():
            reply = codec.make_envelope(
                answer,
                event_id=self.ids.next(),
                source="responder",
                key=envelope.source,
                correlation=envelope.correlation,
            )
            future.set_result((reply, None))

    async def setup(self) -> None:
        await self.actor.setup()

    async def stop(self) -> None:
        """As a graceful stop does: cancel the actor's spawned tasks, then its teardown."""
        await self.actor.stop_tasks(5.0)
        await self.actor.teardown()
        self.actor.shutdown_executors()

    async def send(
        self,
        event: Event,
        *,
        key: str = "",
        blob: bytes | None = None,
        source: str = "tester",
        event_id: str = "",
        offset: int | None = None,
        correlation: str = "",
        causation: str = "",
    ) -> list[Event]:
        """Deliver one event as the runtime would; return what the actor published while handling it."""
        before = len(self.bus.published)
        topic = f"{tag_of(type(event))}.{key}" if key else tag_of(type(event))
        envelope = codec.make_envelope(
            event,
            event_id=event_id or self.ids.next(),
            source=source,
            key=key,
            correlation=correlation,
            causation=causation,
        )
        if topic.startswith("sys.control."):
            await self.runtime.run_control(envelope, blob)
        elif delivery_of(topic) is Delivery.DURABLE:
            self.offset = offset if offset is not None else self.offset + 1
            envelope = msgspec.structs.replace(envelope, offset=self.offset)
            await self.runtime.apply_durable(envelope, blob)
        else:
            await self.runtime.call_handler(envelope, blob)
        return [e.body for e, _ in self.bus.published[before:]]

    async def redeliver(self, event: Event, *, event_id: str, offset: int) -> list[Event]:
        """Deliver a durable event again (as a replay would) to check idempotency."""
        return await self.send(event, event_id=event_id, offset=offset)


__all__ = ["ActorHarness", "MemoryBus"]
