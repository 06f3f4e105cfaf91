"""The actor base class: handlers, state, snapshots, requests and heartbeats.

A subclass declares what it subscribes to, its config and state Structs, and
handlers; the base owns the sockets, the uvloop loop, heartbeats, the
snapshot/replay cycle and dispatch. ``python -m hexbus.run pkg.mod:Class``
runs any actor in its own process.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, Generic, ParamSpec, TypeVar

import msgspec
import structlog

from hexbus import codec
from hexbus.bus import BusClient
from hexbus.codec import Envelope
from hexbus.files import write_atomic
from schemas import (
    CONTROL_TAGS,
    Delivery,
    Event,
    Ping,
    Pong,
    Rejected,
    Reload,
    Snapshot,
    Stop,
    delivery_of,
    tag_of,
)

P = ParamSpec("P")
T = TypeVar("T")
E = TypeVar("E", bound=Event)


class NoConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """For actors that take no configuration."""


class NoState(msgspec.Struct):
    """For actors that keep no state."""


C = TypeVar("C", bound=msgspec.Struct)
S = TypeVar("S", bound=msgspec.Struct)

Handler = Callable[[Any, Any], Awaitable[None]]


def on(*event_types: type[Event]) -> Callable[[Handler], Handler]:
    """Mark a method as the handler for these event types."""

    def mark(fn: Handler) -> Handler:
        fn.__hexbus_handles__ = event_types  # type: ignore[attr-defined]
        return fn

    return mark


class ActorUnusable(Exception):
    """Raised from ``setup`` when the actor cannot run as configured (a missing model, token or file).

    The process exits with code 2 and the message becomes the reason ``hexbus status`` shows:
    one line naming the problem and the fix. The supervisor does not retry it.
    """


class RequestTimeout(Exception):
    """No response arrived before the deadline; the caller should degrade, not retry in a loop."""


class SnapshotFile(msgspec.Struct, kw_only=True):
    version: int = 1
    actor: str
    offset: int
    written_at: float
    state: msgspec.Raw
    recent_ids: list[str] = []


_current: contextvars.ContextVar[tuple[Envelope, list[int]] | None] = contextvars.ContextVar(
    "hexbus_current_event", default=None
)


class Actor(Generic[C, S]):
    """Base class for every Hex actor.

    Subclasses set ``subscribes`` (topic prefixes), ``config_type`` and
    ``state_type``, and write handlers with :func:`on` (or override
    :meth:`handle`). Durable events reach handlers once each, in journal
    order, even across crashes; volatile ones are best effort. A handler that
    raises is logged and reported as ``sys.actor.<name>.error``; the actor goes on.
    """

    subscribes: ClassVar[tuple[str, ...]] = ()
    config_type: ClassVar[type[msgspec.Struct]] = NoConfig
    state_type: ClassVar[type[msgspec.Struct]] = NoState
    volatile_queue: ClassVar[int] = 1000  # volatile events waiting beyond this drop the oldest
    volatile_queue_bytes: ClassVar[int] = 64 << 20  # and so do blob bytes waiting beyond this
    dedup_window: ClassVar[int] = 4096  # recent durable event ids remembered for idempotency
    _handlers: ClassVar[dict[type[Event], Handler]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers: dict[type[Event], Handler] = {}
        for base in reversed(cls.__mro__):
            for value in vars(base).values():
                for event_type in getattr(value, "__hexbus_handles__", ()):
                    handlers[event_type] = value
        cls._handlers = handlers

    def __init__(self, name: str, config: C, state: S, bus: BusClient, data_dir: Path) -> None:
        self.name = name
        self.config = config
        self.state = state
        self.bus = bus
        self.data_dir = data_dir
        self.log = structlog.get_logger(f"actors.{name}")
        self._pending: dict[str, asyncio.Future[tuple[Envelope, bytes | None]]] = {}
        self._reply_subs: set[str] = set()
        self._threads: ThreadPoolExecutor | None = None
        self._processes: ProcessPoolExecutor | None = None
        self.live = False
        self.config_dir = Path.cwd()  # the folder of supervisor.toml, set by the entrypoint

    # -- what subclasses write ----------------------------------------------

    async def setup(self) -> None:
        """Load models, open files. Runs before replay; offload anything slow."""

    async def teardown(self) -> None:
        """Release what setup took. Runs on graceful stop, after the final snapshot."""

    async def handle(self, event: Event) -> None:
        """Dispatch to the handler registered for the event's type (see :func:`on`)."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            await handler(self, event)

    async def on_reload(self) -> None:
        """Called on ``sys.control.reload``."""

    async def on_live(self) -> None:
        """Called once replay has caught up with the journal (``self.live`` is then true).

        The place to resume work that was in flight when the last incarnation died.
        """

    # -- what subclasses call -----------------------------------------------

    @property
    def envelope(self) -> Envelope | None:
        """The envelope of the event being handled (id, source, offset, correlation)."""
        current = _current.get()
        return current[0] if current else None

    @property
    def blob(self) -> bytes | None:
        return self._blob.get()

    _blob: contextvars.ContextVar[bytes | None] = contextvars.ContextVar(
        "hexbus_blob", default=None
    )

    async def publish(
        self,
        event: Event,
        *,
        key: str = "",
        blob: bytes | None = None,
        correlation: str = "",
        event_id: str = "",
        causation: str = "",
    ) -> Envelope:
        """Publish an event; durable ones wait for outbox space, volatile ones never wait.

        An event published while handling a durable event gets an id derived
        from that event, so a replay after a crash republishes the same ids and
        idempotent subscribers apply it once. Work that outlives its handler
        (a streamed reply) passes its own deterministic ``event_id`` instead.
        """
        current = _current.get()
        if event_id:
            return await self.bus.publish(
                event,
                key=key,
                blob=blob,
                event_id=event_id,
                causation=causation,
                correlation=correlation,
            )
        if current is not None:
            cause, counter = current
            counter[0] += 1
            causation = cause.id
            if cause.offset:
                event_id = codec.derived_id(cause.id, self.name, str(counter[0]))
        return await self.bus.publish(
            event,
            key=key,
            blob=blob,
            event_id=event_id,
            causation=causation,
            correlation=correlation,
        )

    async def request(
        self, event: Event, expect: type[E], *, key: str = "", timeout: float = 2.0
    ) -> E:
        """Publish a request and wait for the ``expect`` event answering it.

        The responder calls :meth:`respond`. Raises :class:`RequestTimeout`
        after ``timeout`` seconds.
        """
        topic = f"{tag_of(expect)}.{self.name}"
        if topic not in self._reply_subs:
            self._reply_subs.add(topic)
            self.bus.subscribe(topic)
        correlation = self.bus.ids.next()
        future: asyncio.Future[tuple[Envelope, bytes | None]] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending[correlation] = future
        try:
            await self.bus.publish(event, key=key, correlation=correlation)
            envelope, _ = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise RequestTimeout(
                f"no {tag_of(expect)} answered {tag_of(type(event))} within {timeout:g}s"
            ) from None
        finally:
            self._pending.pop(correlation, None)
        if not isinstance(envelope.body, expect):
            raise RequestTimeout(
                f"expected {tag_of(expect)}, got {envelope.body.__struct_config__.tag}"
            )
        return envelope.body

    async def respond(self, event: Event, *, blob: bytes | None = None) -> Envelope:
        """Answer the request being handled; it reaches only the requester."""
        request = self.envelope
        if request is None or not request.correlation:
            raise RuntimeError(
                "respond() is for handlers of a request (an event with a correlation id)"
            )
        return await self.bus.publish(
            event,
            key=request.source,
            blob=blob,
            correlation=request.correlation,
            causation=request.id,
        )

    def state_changed(self, *, now: bool = False) -> None:
        """Say the state changed outside a handler (in a task of the actor's own), so it is snapshotted.

        Changes made by handlers are tracked by the runtime; work that outlives a handler calls this.
        ``now``: snapshot at the next pause between handlers rather than on the usual schedule, for a
        rare change no journal replay could rebuild (a voice channel joined on request).
        """
        self._state_changed(now)

    def _state_changed(self, now: bool = False) -> None:
        """Replaced by the runtime; a no-op for actors driven by hexbus.testing."""

    async def offload(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run blocking work in a worker thread so heartbeats and control keep flowing."""
        if self._threads is None:
            self._threads = ThreadPoolExecutor(
                max_workers=4, thread_name_prefix=f"{self.name}-work"
            )
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(
            self._threads, functools.partial(ctx.run, fn, *args, **kwargs)
        )

    async def offload_process(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run CPU-heavy work (holding the GIL) in a child process; ``fn`` must be picklable."""
        if self._processes is None:
            import multiprocessing

            self._processes = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
        return await asyncio.get_running_loop().run_in_executor(
            self._processes, functools.partial(fn, *args, **kwargs)
        )

    def shutdown_executors(self) -> None:
        for executor in (self._threads, self._processes):
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)


class Runtime:
    """Drives one actor: replay, dispatch with control first, snapshots, heartbeats, graceful stop."""

    def __init__(
        self,
        actor: Actor[Any, Any],
        *,
        snapshot_every: int,
        snapshot_interval_s: float,
        heartbeat_interval_s: float,
        heartbeat: Callable[[Runtime], None],
        snapshot_path: Path,
        applied_offset: int,
        recent_ids: list[str],
    ) -> None:
        self.actor = actor
        self.bus = actor.bus
        self.snapshot_every = snapshot_every
        self.snapshot_interval_s = snapshot_interval_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.send_heartbeat = heartbeat
        self.snapshot_path = snapshot_path
        self.applied = applied_offset
        self.recent: OrderedDict[str, None] = OrderedDict((i, None) for i in recent_ids)
        self.control: deque[tuple[Envelope, bytes | None]] = deque()
        self.volatile: deque[tuple[Envelope, bytes | None]] = deque()
        self.volatile_bytes = 0
        self.durable: asyncio.Queue[tuple[Envelope | None, Any]] = asyncio.Queue(maxsize=1024)
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.state = "starting"
        self.events_in = 0
        self.dropped = 0
        self.since_snapshot = 0
        self.snapshot_at = time.monotonic()
        self.dirty = False
        self.snapshot_due = False
        self.snapshot_now = False
        self.control_tags = {f"{tag}.{actor.name}" for tag in CONTROL_TAGS}
        actor._state_changed = self.mark_dirty  # type: ignore[method-assign]

    def mark_dirty(self, now: bool = False) -> None:
        self.dirty = True
        if now:
            self.snapshot_now = True
            self.snapshot_due = True
            self.wake.set()

    # -- inputs ---------------------------------------------------------------

    async def read_volatile(self) -> None:
        async for envelope, blob in self.bus.volatile():
            future = self.actor._pending.get(envelope.correlation) if envelope.correlation else None
            if future is not None and not future.done() and envelope.source != self.actor.name:
                future.set_result((envelope, blob))
                continue
            if envelope.topic in self.control_tags:
                if isinstance(envelope.body, Ping | Stop):
                    await self.run_control(
                        envelope, blob
                    )  # needs no state: answer at once, even mid-handler
                else:
                    self.control.append((envelope, blob))
            elif delivery_of(envelope.topic) is Delivery.DURABLE:
                continue  # durable events arrive through the feed, in order
            else:
                size = len(blob) if blob is not None else 0
                while self.volatile and (
                    len(self.volatile) >= self.actor.volatile_queue
                    or self.volatile_bytes + size > self.actor.volatile_queue_bytes
                ):
                    _, old = self.volatile.popleft()
                    self.volatile_bytes -= len(old) if old is not None else 0
                    self.dropped += 1
                self.volatile.append((envelope, blob))
                self.volatile_bytes += size
            self.wake.set()

    async def read_durable(self, prefixes: list[str]) -> None:
        feed = self.bus.durable(prefixes, self.applied)

        def live() -> None:
            self.state = "live"
            self.actor.live = True
            self.actor.log.info("actor.live", applied_offset=self.applied)
            self.send_heartbeat(self)
            # Queued behind the replayed events, so on_live sees the state they built.
            try:
                self.durable.put_nowait((_LIVE, None))
            except asyncio.QueueFull:
                asyncio.get_running_loop().create_task(self.durable.put((_LIVE, None)))
            self.wake.set()

        feed.on_live = live
        async for item in feed:
            await self.durable.put(item)
            self.wake.set()

    # -- dispatch -------------------------------------------------------------

    async def dispatch(self) -> None:
        turn = 0
        while not self.stopping.is_set():
            if self.snapshot_due:
                self.snapshot_due = False
                if self.snapshot_now:
                    await self.snapshot()
                else:
                    await self.maybe_snapshot()
            if self.control:
                await self.run_control(*self.control.popleft())
                continue
            has_durable = not self.durable.empty()
            has_volatile = bool(self.volatile) and self.state == "live"
            if not has_durable and not has_volatile:
                self.wake.clear()
                await self.wake.wait()
                continue
            turn ^= 1
            if has_durable and (turn or not has_volatile):
                envelope, extra = self.durable.get_nowait()
                if envelope is _LIVE:
                    try:
                        await self.actor.on_live()
                    except Exception:
                        self.actor.log.exception("actor.on_live_failed")
                    continue
                if envelope is None:
                    if extra > self.applied:
                        self.applied = extra
                        self.dirty = True
                    await self.maybe_snapshot()
                    continue
                await self.apply_durable(envelope, extra)
            else:
                envelope, blob = self.volatile.popleft()
                self.volatile_bytes -= len(blob) if blob is not None else 0
                await self.call_handler(envelope, blob)

    async def apply_durable(self, envelope: Envelope, blob: bytes | None) -> None:
        if envelope.offset <= self.applied:
            return
        future = self.actor._pending.get(envelope.correlation) if envelope.correlation else None
        if future is not None and not future.done():
            future.set_result((envelope, blob))
        elif envelope.id not in self.recent:
            await self.call_handler(envelope, blob)
            self.recent[envelope.id] = None
            if len(self.recent) > self.actor.dedup_window:
                self.recent.popitem(last=False)
        self.applied = envelope.offset
        self.dirty = True
        self.since_snapshot += 1
        await self.maybe_snapshot()

    async def call_handler(self, envelope: Envelope, blob: bytes | None) -> None:
        token = _current.set((envelope, [0]))
        blob_token = Actor._blob.set(blob)
        self.events_in += 1
        try:
            await self.actor.handle(envelope.body)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.actor.log.exception(
                "actor.handler_failed", event_id=envelope.id, topic=envelope.topic
            )
            from schemas import ActorLifecycle

            _current.set(None)
            await self.bus.publish(
                ActorLifecycle(
                    actor=self.actor.name,
                    change="error",
                    pid=os.getpid(),
                    event_id=envelope.id,
                    event_type=envelope.topic,
                    reason=f"{type(exc).__name__}: {exc}"[:500],
                ),
                key=f"{self.actor.name}.error",
            )
        finally:
            _current.reset(token)
            Actor._blob.reset(blob_token)

    async def run_control(self, envelope: Envelope, blob: bytes | None) -> None:
        body = envelope.body
        match body:
            case Stop():
                self.actor.log.info("actor.stop_requested", reason=body.reason)
                self.stopping.set()
            case Ping():
                self.bus.publish_volatile(
                    Pong(
                        actor=self.actor.name,
                        nonce=body.nonce,
                        state=self.state,  # type: ignore[arg-type]
                        applied_offset=self.applied,
                    ),
                    key=envelope.source,
                    correlation=envelope.correlation,
                    causation=envelope.id,
                )
            case Snapshot():
                await self.snapshot()
            case Reload():
                await self.actor.on_reload()

    # -- state ----------------------------------------------------------------

    async def maybe_snapshot(self) -> None:
        if not self.dirty:
            return
        if (
            self.since_snapshot >= self.snapshot_every
            or time.monotonic() - self.snapshot_at >= self.snapshot_interval_s
        ):
            await self.snapshot()

    async def snapshot(self) -> None:
        """Write state and applied offset atomically (write, fsync, rename, fsync dir) off the loop."""
        data = msgspec.msgpack.encode(
            SnapshotFile(
                actor=self.actor.name,
                offset=self.applied,
                written_at=time.time(),
                state=msgspec.Raw(msgspec.msgpack.encode(self.actor.state)),
                recent_ids=list(self.recent),
            )
        )
        self.dirty = False
        self.snapshot_now = False
        self.since_snapshot = 0
        self.snapshot_at = time.monotonic()
        await self.actor.offload(write_atomic, self.snapshot_path, data)

    async def timers(self) -> None:
        while not self.stopping.is_set():
            self.send_heartbeat(self)
            rejected = self.bus.rejected
            if rejected.changed:
                rejected.changed = False
                self.bus.publish_volatile(
                    Rejected(
                        process=self.actor.name, counts=dict(rejected.counts), total=rejected.total
                    ),
                    key=self.actor.name,
                )
            if self.dirty:
                # Snapshots happen between handlers only, so no half-applied event is ever saved.
                self.snapshot_due = True
                self.wake.set()
            try:
                await asyncio.wait_for(self.stopping.wait(), self.heartbeat_interval_s)
            except TimeoutError:
                pass


# A marker on the durable queue, behind the replayed events: call on_live between handlers.
_LIVE: Envelope = Envelope(
    id="", topic="sys.control.live", source="", body=Stop(target="", reason="live marker")
)


def load_snapshot(path: Path, state_type: type[S], log: Any) -> tuple[S | None, int, list[str]]:
    """Load a snapshot; a damaged one is set aside and the actor replays from the start of the journal."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, 0, []
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
        return None, 0, []
    return state, snap.offset, snap.recent_ids


__all__ = ["Actor", "ActorUnusable", "NoConfig", "NoState", "RequestTimeout", "codec", "on"]
