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
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, Generic, ParamSpec, TypeVar

import msgspec
import structlog

from hexbus import codec
from hexbus.bus import BusClient
from hexbus.capabilities import Capabilities
from hexbus.codec import Envelope
from hexbus.models import LazyModel, ModelMissing
from hexbus.paths import open_path
from schemas import (
    ActorLifecycle,
    CapabilityChanged,
    Event,
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
        # The owner's switches as the supervisor gave them at spawn; an actor that obeys one
        # subscribes to ``capability.changed`` and :meth:`handle` keeps this up to date.
        self.capabilities = Capabilities.from_env()
        self._pending: dict[str, asyncio.Future[tuple[Envelope, bytes | None]]] = {}
        self._reply_paths: dict[tuple[str, bool], asyncio.Task[bool]] = {}
        self._threads: ThreadPoolExecutor | None = None
        self._processes: ProcessPoolExecutor | None = None
        self.live = False
        self.config_dir = Path.cwd()  # the folder of supervisor.toml, set by the entrypoint
        # The supervisor's run directory (0700: sockets, the pid lock, files for this user's
        # commands only), set by the entrypoint; None where no supervisor started the actor.
        self.run_dir: Path | None = None
        self.config_file: Path | None = None  # supervisor.toml, set by the entrypoint
        self.detail = ""  # shown beside the state in `hexbus status` ("loading whisper-base")
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- what subclasses write ----------------------------------------------

    async def setup(self) -> None:
        """Load models, open files. Runs before replay; offload anything slow."""

    async def teardown(self) -> None:
        """Release what setup took. Runs on graceful stop, after the final snapshot and after
        every task started with :meth:`spawn` has been cancelled and has ended."""

    async def handle(self, event: Event) -> None:
        """Dispatch to the handler registered for the event's type (see :func:`on`). A newer
        table of the owner's switches (``capability.changed``, for an actor subscribed to it)
        is applied to :attr:`capabilities` first; an older one reaches no handler."""
        if isinstance(event, CapabilityChanged) and not self.capabilities.apply(event):
            return
        handler = self._handlers.get(type(event))
        if handler is not None:
            await handler(self, event)

    async def on_reload(self) -> None:
        """Called on ``sys.control.reload``."""

    async def on_live(self) -> None:
        """Called once replay has caught up with the journal (``self.live`` is then true).

        The place to resume work that was in flight when the last incarnation died.
        """

    async def on_journal_rewind(self, after: int) -> None:
        """Called when the journal lost history and hands out offsets this actor had applied:
        from now on it has applied only up to ``after``. An actor that commits its own offset
        (:meth:`resume_offset`) lowers it here, before the runtime saves the new epoch."""

    def resume_offset(self) -> int | None:
        """The journal offset this actor's own store has committed, for actors that commit it
        themselves (memory keeps it in DuckDB, in the transaction that applies each event).

        Called after :meth:`setup`; a number makes the runtime resume after that offset
        instead of the snapshot's, so events the store already holds are not handled again
        and events it lost are. ``None`` (the default): the snapshot's offset.
        """
        return None

    def oldest_work(self) -> float | None:
        """When (``time.monotonic()``) the oldest work this actor accepted and has not finished
        was taken up by this process: a pending message, an utterance being transcribed. None
        (the default) when there is none. Work from before a restart counts from the restart.

        The runtime puts its age in every live heartbeat (a durable event whose handler is
        still running counts too, with no code here); the supervisor restarts an actor whose
        oldest work is older than its ``work_timeout_s`` as hung, heartbeat or not. Called
        once per heartbeat: keep it cheap.
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
        if not event_id and current is not None:
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
        return (await self._request(event, expect, key, timeout, blob_lane=False))[0]

    async def request_blob(
        self, event: Event, expect: type[E], *, key: str = "", timeout: float = 2.0
    ) -> tuple[E, bytes | None]:
        """:meth:`request`, with the blob the answer carries (an export's lines)."""
        return await self._request(event, expect, key, timeout, blob_lane=True)

    async def _request(
        self, event: Event, expect: type[E], key: str, timeout: float, *, blob_lane: bool
    ) -> tuple[E, bytes | None]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self._reply_path(f"{tag_of(expect)}.{self.name}", deadline, blob_lane)
        if loop.time() >= deadline:  # not asked: an answer could no longer be waited for
            raise RequestTimeout(
                f"no path for {tag_of(expect)} through the broker within {timeout:g}s"
            )
        correlation = self.bus.ids.next()
        future: asyncio.Future[tuple[Envelope, bytes | None]] = loop.create_future()
        self._pending[correlation] = future
        try:
            await self.bus.publish(event, key=key, correlation=correlation)
            envelope, blob = await asyncio.wait_for(future, max(0.0, deadline - loop.time()))
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
        return envelope.body, (bytes(blob) if blob is not None else None)

    async def _reply_path(self, topic: str, deadline: float, blob_lane: bool) -> None:
        """Subscribe to a request's answers (once per kind) and wait, until ``deadline`` at
        most, for the subscription to be on its way to the responder.

        A ZeroMQ subscription travels on its own, to the broker and on to every publisher, and
        a responder's PUB drops an answer published before it has the requester's: the first
        request of a kind raced its answer, and lost under load (one run in four of 300 first
        requests). A message to itself on a fresh topic, subscribed behind ``topic``, that comes
        back says the broker has forwarded ``topic`` to every publisher before this one: the
        request then goes, and the subscription has a round trip's lead over it (ZeroMQ orders
        nothing across connections, so this is a lead, not a guarantee; :func:`hexbus.ask.ask`
        resends as well). ``blob_lane``: checked on the blob lane too, where large answers go.
        """
        opening = self._reply_paths.get((topic, blob_lane))
        if opening is None:
            self.bus.subscribe(topic)
            checked = open_path(self.bus, self._pending, topic, blob_lane, self.log)
            opening = self.spawn(checked, name="path")
            self._reply_paths[(topic, blob_lane)] = opening
        if not opening.done():
            await asyncio.wait(
                {opening}, timeout=max(0.0, deadline - asyncio.get_running_loop().time())
            )

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
        cancelled and awaited before :meth:`teardown` (one that ignores its cancellation past
        its share of ``stop_grace_s`` is logged by name and left). Use it for every background task.
        """
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.name}.{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def spawn_thread(
        self, fn: Callable[[threading.Event], None], *, name: str
    ) -> asyncio.Task[None]:
        """Run ``fn(stop)`` in a thread of its own for as long as the actor lives: a loop that
        blocks on a device (a camera's reads) and must not hold a worker of :meth:`offload`.

        Tracked like :meth:`spawn` (a raise is reported, the actor goes on); on stop, or when
        the task is cancelled, ``stop`` is set and the thread is waited for. ``fn`` should
        check ``stop`` at least every few hundred milliseconds.
        """
        stop = threading.Event()

        async def run() -> None:
            loop = asyncio.get_running_loop()
            done: asyncio.Future[None] = loop.create_future()

            def settle(exc: BaseException | None) -> None:
                if done.done():
                    return
                if exc is None:
                    done.set_result(None)
                else:
                    done.set_exception(exc)

            def body() -> None:
                try:
                    fn(stop)
                except BaseException as exc:  # reported through the task, like spawn()'s
                    loop.call_soon_threadsafe(settle, exc)
                else:
                    loop.call_soon_threadsafe(settle, None)

            threading.Thread(target=body, name=f"{self.name}-{name}", daemon=True).start()
            try:
                await asyncio.shield(done)
            except asyncio.CancelledError:
                stop.set()
                await asyncio.shield(done)  # a second cancellation leaves it running
                raise

        return self.spawn(run(), name=name)

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
        except BaseException:
            self.detail = f"{model.name} failed to load"
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


__all__ = ["Actor", "ActorUnusable", "NoConfig", "NoState", "RequestTimeout", "codec", "on"]
