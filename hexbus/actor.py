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
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, ParamSpec, TypeVar

import msgspec
import structlog

from hexbus import codec
from hexbus.bus import BusClient
from hexbus.codec import Envelope
from hexbus.deadletter import CrashMarker
from hexbus.files import write_atomic
from hexbus.models import LazyModel, ModelMissing
from schemas import (
    CONTROL_TAGS,
    ActorLifecycle,
    DeadLetter,
    DeadLetterCause,
    Delivery,
    Event,
    Ping,
    Pong,
    Redrive,
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
    raises is logged and reported as ``sys.actor.<name>.error``; a durable event
    whose handler keeps raising (or keeps killing the process) is dead-lettered
    on ``sys.deadletter.<name>`` after ``dead_letter_after`` tries, and the actor
    goes on. Services for subclasses: :meth:`spawn` (background tasks),
    :meth:`load_model` (models), :meth:`offload` (blocking work),
    :meth:`request`/:meth:`respond`, and the :meth:`resume_offset` hook.
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
        self.detail = ""  # shown beside the state in `hexbus status` ("loading whisper-base")
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- what subclasses write ----------------------------------------------

    async def setup(self) -> None:
        """Load models, open files. Runs before replay; offload anything slow."""

    async def teardown(self) -> None:
        """Release what setup took. Runs on graceful stop, after the final snapshot and after
        every task started with :meth:`spawn` has been cancelled and has ended."""

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

    def resume_offset(self) -> int | None:
        """The journal offset this actor's own store has committed, for actors that commit it
        themselves (memory keeps it in DuckDB, in the transaction that applies each event).

        Called after :meth:`setup`; a number makes the runtime resume after that offset
        instead of the snapshot's, so events the store already holds are not handled again
        and events it lost are. ``None`` (the default): the snapshot's offset.
        """
        return None

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

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        """Run ``coro`` in the background for as long as the actor lives.

        The task is named ``<actor>.<name>`` and tracked: if it raises, the failure is logged
        and published as ``sys.actor.<actor>.error`` (the actor goes on); on stop it is
        cancelled and awaited before :meth:`teardown`. Use it for every background task.
        """
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.name}.{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        self.log.error("actor.task_failed", task=task.get_name(), exc_info=exc)
        report = ActorLifecycle(
            actor=self.name,
            change="error",
            pid=os.getpid(),
            event_type=f"task:{task.get_name()}",
            reason=f"{type(exc).__name__}: {exc}"[:500],
        )
        if not self.bus.closed:
            self.spawn(self.bus.publish(report, key=f"{self.name}.error"), name="report-error")

    async def stop_tasks(self, timeout: float) -> None:
        """Cancel every task :meth:`spawn` started and wait for them (the runtime calls this on stop)."""
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                self.log.warning(
                    "actor.tasks_not_stopped", tasks=sorted(t.get_name() for t in pending)
                )
                return

    async def load_model(self, model: LazyModel[T]) -> T:
        """Load ``model`` in a worker thread, showing ``loading <name>`` in ``hexbus status`` meanwhile
        and how long it took once loaded. A :class:`hexbus.models.ModelMissing` raised here during
        :meth:`setup` makes the actor unusable, with its one line as the reason."""
        if model.loaded:
            return model.get()
        self.detail = f"loading {model.name}"
        self.log.info("actor.model_loading", model=model.name)
        try:
            value = await self.offload(model.get)
        except ModelMissing:
            self.detail = f"{model.name} missing"
            raise
        took = model.load_s or 0.0
        self.detail = f"{model.name} {took:.1f}s"
        self.log.info("actor.model_loaded", model=model.name, seconds=round(took, 2))
        return value

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
        dead_letter_after: int = 3,
        retry_backoff_s: float = 0.1,
        crash_marker: CrashMarker | None = None,
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
        self.dead_letter_after = dead_letter_after
        self.retry_backoff_s = retry_backoff_s
        self.crash_marker = crash_marker
        self.redrive_topic = f"{tag_of(Redrive)}.{actor.name}"
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
            if not await self.apply(envelope, blob):
                return  # stopped between retries: not applied, so the next process handles it
            self.recent[envelope.id] = None
            if len(self.recent) > self.actor.dedup_window:
                self.recent.popitem(last=False)
        self.applied = envelope.offset
        self.dirty = True
        self.since_snapshot += 1
        await self.maybe_snapshot()

    async def apply(self, envelope: Envelope, blob: bytes | None) -> bool:
        """Handle one durable event: retried with backoff while its handler raises, dead-lettered
        after ``dead_letter_after`` failures or process deaths. False if a stop came first."""
        offset = envelope.offset
        target, target_blob, redriven = envelope, blob, False
        if envelope.topic == self.redrive_topic and isinstance(envelope.body, Redrive):
            original = self.redriven(envelope)
            if original is None:
                return True
            # The event as it first came, at the redrive's offset: a store that commits offsets
            # (memory) must never see one go backwards.
            target, redriven = msgspec.structs.replace(original, offset=offset), True
        marker = self.crash_marker
        crashes = marker.crashes_at(offset) if marker is not None else 0
        if crashes >= self.dead_letter_after:
            await self.dead_letter(
                target,
                target_blob,
                "crashed",
                crashes,
                f"the process died {crashes} times while handling it",
            )
            if marker is not None:
                marker.finish(offset)
            return True
        cause = envelope.id if redriven else ""
        if marker is not None:
            marker.start(offset)
        delay, attempts = self.retry_backoff_s, 0
        try:
            while True:
                error = await self.call_handler(target, target_blob)
                attempts += 1
                if error is None:
                    if redriven:
                        await self.publish_letter(
                            target, "retried", "raised", attempts, "", None, envelope.id
                        )
                    return True
                if attempts >= self.dead_letter_after:
                    await self.dead_letter(target, target_blob, "raised", attempts, error, cause)
                    return True
                self.actor.log.warning(
                    "actor.handler_retry",
                    event_id=target.id,
                    offset=offset,
                    attempt=attempts,
                    retry_in_s=delay,
                )
                try:
                    await asyncio.wait_for(self.stopping.wait(), delay)
                except TimeoutError:
                    pass
                if self.stopping.is_set():
                    return False
                delay = min(delay * 2, 5.0)
        finally:
            if marker is not None:
                marker.finish(offset)

    def redriven(self, envelope: Envelope) -> Envelope | None:
        """The original event a :class:`schemas.Redrive` carries, or None (logged) if unreadable."""
        redrive = envelope.body
        assert isinstance(redrive, Redrive)
        try:
            original, _ = codec.decode_message([redrive.topic.encode(), redrive.envelope])
        except codec.RejectedFrame as exc:
            self.actor.log.error(
                "actor.redrive_unreadable", event_id=redrive.event_id, error=str(exc)
            )
            return None
        return original

    async def dead_letter(
        self,
        envelope: Envelope,
        blob: bytes | None,
        cause: DeadLetterCause,
        attempts: int,
        error: str,
        causation: str = "",
    ) -> None:
        self.actor.log.error(
            "actor.dead_letter",
            event_id=envelope.id,
            topic=envelope.topic,
            offset=envelope.offset,
            cause=cause,
            attempts=attempts,
            error=error,
            hint=f"hexbus deadletter list --actor {self.actor.name}; retry it once the fault is fixed",
        )
        await self.publish_letter(envelope, "dead", cause, attempts, error, blob, causation)

    async def publish_letter(
        self,
        envelope: Envelope,
        status: Literal["dead", "retried"],
        cause: DeadLetterCause,
        attempts: int,
        error: str,
        blob: bytes | None,
        causation: str = "",
    ) -> None:
        letter = DeadLetter(
            actor=self.actor.name,
            event_id=envelope.id,
            offset=envelope.offset,
            topic=envelope.topic,
            status=status,
            cause=cause,
            attempts=attempts,
            error=error[:1000],
            envelope=codec.encode(envelope) if status == "dead" else b"",
        )
        token = _current.set(None)
        try:
            await self.bus.publish(
                letter,
                key=self.actor.name,
                blob=blob if status == "dead" else None,
                event_id=codec.derived_id(
                    envelope.id, self.actor.name, status, str(envelope.offset)
                ),
                causation=causation,
            )
        finally:
            _current.reset(token)

    async def call_handler(self, envelope: Envelope, blob: bytes | None) -> str | None:
        """Run the handler for one event; the error it raised (logged and reported), or None."""
        token = _current.set((envelope, [0]))
        blob_token = Actor._blob.set(blob)
        self.events_in += 1
        try:
            await self.actor.handle(envelope.body)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            self.actor.log.exception(
                "actor.handler_failed", event_id=envelope.id, topic=envelope.topic
            )
            _current.set(None)
            await self.bus.publish(
                ActorLifecycle(
                    actor=self.actor.name,
                    change="error",
                    pid=os.getpid(),
                    event_id=envelope.id,
                    event_type=envelope.topic,
                    reason=error[:500],
                ),
                key=f"{self.actor.name}.error",
            )
            return error
        finally:
            _current.reset(token)
            Actor._blob.reset(blob_token)
        return None

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
