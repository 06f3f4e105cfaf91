"""An ordered chain of backends that is itself a backend: the next one takes over when one fails.

Partial output on a mid-stream fallback: the next backend answers the same
turns from the start, so its pieces are a whole new reply, not a continuation.
The chain never repeats or splices text; instead, before the first piece of
the new reply, it records a :class:`FallbackEvent` with ``partial=True`` in the
stream's ``events``, bumps ``stream.restarts`` and calls ``on_fallback``. The
consumer discards what it collected from that stream so far (what was already
spoken stays spoken; the brain may say it lost its thread). ``stream.text`` is
always the reply of the backend now speaking, so a consumer that only wants
the final text reads it at the end and needs nothing else.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import msgspec
import structlog

from actors.brain.backends.base import (
    Backend,
    BackendError,
    BackendOverloaded,
    ChatTurn,
    Params,
    Stream,
    Usage,
)
from hexbus.models import ModelMissing
from schemas import BackendState
from schemas.brain import BackendStateName

log = structlog.get_logger("actors.brain.fallback")


class FallbackEvent(msgspec.Struct, frozen=True, kw_only=True):
    """The chain moved from one backend to the next.

    ``overloaded``: the failure was :class:`BackendOverloaded` (time for the
    "sleepy" notice). ``partial``: ``from_name`` had already yielded pieces,
    which the consumer must discard.
    """

    from_name: str
    to_name: str
    error: str
    overloaded: bool
    partial: bool


FallbackHook = Callable[[FallbackEvent], None]


class BackendTotals(msgspec.Struct, kw_only=True):
    """What one backend has served through the chain, failed requests included (their tokens were spent)."""

    requests: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0


# A backend stays "sleepy" this long after a rate limit or quota error that named no reset (one
# that did is awake once it passes), or until it answers again.
SLEEPY_S = 600.0
SLEEPY_SHARE = 0.1  # and while the provider says less than this share of its limit is left


class _Health:
    __slots__ = ("down_until", "error", "failed_at", "limited", "reset_known", "started")

    def __init__(self) -> None:
        self.started = False
        self.down_until = 0.0
        self.limited = False  # the last failure was a rate limit or quota
        self.reset_known = False  # and the provider said when it resets (Retry-After)
        self.failed_at = -math.inf
        self.error = ""


class FallbackChain:
    """A :class:`~actors.brain.backends.base.Backend` over ``backends``, tried in order.

    A backend that fails (``BackendError`` or ``ModelMissing`` from ``start``,
    ``BackendError`` before or during a stream, or from ``complete_json``) is
    skipped for ``cooldown_s``, or for
    ``retry_after_s`` when an overloaded server gave one, then tried again
    (``start`` first, if it never succeeded). When every backend is cooling
    down, the chain still tries them, soonest back first, rather than refuse.
    ``on_fallback`` runs synchronously in the consumer's task, before the next
    backend's first piece is returned.
    """

    def __init__(
        self,
        backends: Sequence[Backend],
        *,
        cooldown_s: float = 30.0,
        on_fallback: FallbackHook | None = None,
        name: str = "fallback",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not backends:
            raise ValueError("FallbackChain needs at least one backend")
        names = [b.name for b in backends]
        if len(set(names)) != len(names):
            raise ValueError(f"FallbackChain backend names must be unique, got {names}")
        self.name = name
        self.backends = list(backends)
        self.capacity = backends[0].capacity  # the first serves nearly every request
        self.cooldown_s = cooldown_s
        self.on_fallback = on_fallback
        self.usage_by_backend: dict[str, BackendTotals] = {n: BackendTotals() for n in names}
        self._health = {n: _Health() for n in names}
        self._clock = clock
        # Why a backend may not be used now ("" when it may): the owner's switches.
        self.refuses: Callable[[Backend], str] = lambda backend: ""

    async def start(self) -> None:
        """Start every backend at once; fails only when none starts."""
        results = await asyncio.gather(*(_start(b) for b in self.backends), return_exceptions=True)
        errors: list[str] = []
        for backend, result in zip(self.backends, results, strict=True):
            if isinstance(result, BackendError):
                self._failed(backend, result)
                errors.append(str(result))
            elif isinstance(result, BaseException):
                raise result
            else:
                self._health[backend.name].started = True
        if len(errors) == len(self.backends):
            raise BackendError("no LLM backend started: " + "; ".join(errors))

    async def close(self) -> None:
        results = await asyncio.gather(*(b.close() for b in self.backends), return_exceptions=True)
        for backend, result in zip(self.backends, results, strict=True):
            if isinstance(result, Exception):
                log.warning("brain.backend.close_failed", backend=backend.name, error=str(result))

    def stream(
        self,
        turns: list[ChatTurn],
        params: Params,
        *,
        on_open: Callable[[str], None] | None = None,
    ) -> ChainStream:
        """Pieces from the first backend that serves; see the module docstring for fallbacks.
        ``on_open`` is called with each backend's name as the stream asks it."""
        return ChainStream(self, turns, params, on_open)

    def suspend(self, name: str, why: str) -> None:
        """Cool ``name`` down as if it had failed (it hung a process that was using it)."""
        if name not in self._health:
            return
        self._health[name].down_until = self._clock() + self.cooldown_s
        log.warning("brain.backend.suspended", backend=name, why=why, cooldown_s=self.cooldown_s)

    async def complete_json(
        self, turns: list[ChatTurn], schema: dict[str, Any], params: Params
    ) -> str:
        attempt = _Attempt(self)
        while (backend := await attempt.next_backend()) is not None:
            totals = self.usage_by_backend[backend.name]
            totals.requests += 1
            started = self._clock()
            try:
                result = await backend.complete_json(turns, schema, params)
            except BackendError as exc:
                totals.failures += 1
                attempt.failed(backend, exc, partial=False)
                continue
            finally:
                totals.seconds += self._clock() - started
            self._succeeded(backend)
            return result
        raise attempt.exhausted()

    def count_tokens(self, text: str) -> int:
        """The count of the first healthy backend, the one most likely to serve ``text``."""
        now = self._clock()
        for backend in self.backends:
            health = self._health[backend.name]
            if health.started and health.down_until <= now:
                return backend.count_tokens(text)
        return self.backends[0].count_tokens(text)

    def healthy(self) -> list[str]:
        """Names of the backends the next request would try first (started, not cooling down)."""
        now = self._clock()
        return [
            b.name
            for b in self.backends
            if self._health[b.name].started and self._health[b.name].down_until <= now
        ]

    def states(self, wall: Callable[[], float] = time.time) -> list[BackendState]:
        """Each backend's state for people (the page, /metrics): awake, sleepy, asleep, down."""
        now, offset = self._clock(), wall() - self._clock()
        states = []
        for backend in self.backends:
            health, totals = self._health[backend.name], self.usage_by_backend[backend.name]
            state: BackendStateName = "awake"
            until = 0.0
            if refused := self.refuses(backend):
                state = "off"
            elif health.down_until > now:
                state, until = ("asleep" if health.limited else "down"), health.down_until + offset
            elif health.limited and not health.reset_known and now - health.failed_at < SLEEPY_S:
                state = "sleepy"
            elif (
                (limits := getattr(backend, "limits", None)) is not None
                and (left := limits.share_left()) is not None
                and left < SLEEPY_SHARE
                and (limits.reset_s is None or wall() < limits.at + limits.reset_s)
            ):
                # Close to the provider's limit: sleepy until its reset, where it said one.
                state = "sleepy"
                if limits.reset_s is not None and limits.at + limits.reset_s > wall():
                    until = limits.at + limits.reset_s
            elif not health.started and not totals.requests:
                state = "idle"
            states.append(
                BackendState(
                    name=backend.name,
                    state=state,
                    until=round(until, 3),
                    requests=totals.requests,
                    failures=totals.failures,
                    prompt_tokens=totals.prompt_tokens,
                    completion_tokens=totals.completion_tokens,
                    error=refused or health.error,
                )
            )
        return states

    # --- bookkeeping shared with the stream

    def _order(self) -> list[Backend]:
        now = self._clock()
        usable = [b for b in self.backends if not self.refuses(b)]
        ready = [b for b in usable if self._health[b.name].down_until <= now]
        if ready:
            return ready
        return sorted(usable, key=lambda b: self._health[b.name].down_until)

    async def _ensure_started(self, backend: Backend) -> BackendError | None:
        health = self._health[backend.name]
        if health.started:
            return None
        try:
            await _start(backend)
        except BackendError as exc:
            return exc
        health.started = True
        return None

    def _failed(self, backend: Backend, exc: BackendError) -> None:
        pause = self.cooldown_s
        if isinstance(exc, BackendOverloaded) and exc.retry_after_s is not None:
            pause = exc.retry_after_s
        health = self._health[backend.name]
        health.down_until = self._clock() + pause
        health.limited = isinstance(exc, BackendOverloaded)
        health.reset_known = isinstance(exc, BackendOverloaded) and exc.retry_after_s is not None
        health.failed_at = self._clock()
        health.error = str(exc)[:300]
        log.warning(
            "brain.backend.failed",
            backend=backend.name,
            error=str(exc),
            overloaded=isinstance(exc, BackendOverloaded),
            cooldown_s=pause,
        )

    def _succeeded(self, backend: Backend) -> None:
        health = self._health[backend.name]
        health.down_until, health.limited = 0.0, False  # answering: whatever limit it hit lifted


async def _start(backend: Backend) -> None:
    try:
        await backend.start()
    except ModelMissing as exc:
        # A backend that cannot run on this machine is one more backend that failed: the chain
        # moves on, and the one line naming the fix ends up in the chain's own error.
        raise BackendError(str(exc)) from exc


class _Attempt:
    """One request's walk down the chain: each backend at most once, an event for every hand-over."""

    def __init__(self, chain: FallbackChain) -> None:
        self.chain = chain
        self.events: list[FallbackEvent] = []
        self._queue = chain._order()
        self._errors: list[BackendError] = []
        self._refused = [f"{b.name}: {why}" for b in chain.backends if (why := chain.refuses(b))]

    async def next_backend(self) -> Backend | None:
        while self._queue:
            backend = self._queue.pop(0)
            if (error := await self.chain._ensure_started(backend)) is not None:
                self.failed(backend, error, partial=False)
                continue
            return backend
        return None

    def failed(self, backend: Backend, exc: BackendError, *, partial: bool) -> FallbackEvent | None:
        """Cool ``backend`` down and announce the hand-over to the next one, if any is left."""
        self.chain._failed(backend, exc)
        self._errors.append(exc)
        if not self._queue:
            return None
        event = FallbackEvent(
            from_name=backend.name,
            to_name=self._queue[0].name,
            error=str(exc),
            overloaded=isinstance(exc, BackendOverloaded),
            partial=partial,
        )
        self.events.append(event)
        log.info(
            "brain.backend.fallback",
            from_backend=event.from_name,
            to_backend=event.to_name,
            overloaded=event.overloaded,
            partial=partial,
        )
        if self.chain.on_fallback is not None:
            self.chain.on_fallback(event)
        return event

    def exhausted(self) -> BackendError:
        if not self._errors:
            return BackendError("no LLM backend may be used: " + "; ".join(self._refused))
        message = "every LLM backend failed: " + "; ".join(str(e) for e in self._errors)
        if self._errors and all(isinstance(e, BackendOverloaded) for e in self._errors):
            waits = [
                e.retry_after_s
                for e in self._errors
                if isinstance(e, BackendOverloaded) and e.retry_after_s is not None
            ]
            return BackendOverloaded(message, retry_after_s=min(waits) if waits else None)
        return BackendError(message)


class ChainStream:
    """The pieces of one reply through a :class:`FallbackChain`.

    ``backend``: name of the backend whose reply is streaming (the one that
    produced the final text once iteration ends). ``text``: that reply so far.
    ``events`` and ``restarts``: fallbacks so far, and how many of them threw
    away pieces already yielded. ``usage`` is the serving backend's.
    """

    def __init__(
        self,
        chain: FallbackChain,
        turns: list[ChatTurn],
        params: Params,
        on_open: Callable[[str], None] | None = None,
    ) -> None:
        self.chain = chain
        self.turns = turns
        self.params = params
        self.on_open = on_open
        self.usage = Usage()
        self.backend = ""
        self.restarts = 0
        self._attempt: _Attempt | None = None
        self._inner: Stream | None = None
        self._it: AsyncIterator[str] | None = None
        self._pieces: list[str] = []
        self._closed = False
        self._done = False

    @property
    def events(self) -> list[FallbackEvent]:
        return self._attempt.events if self._attempt is not None else []

    @property
    def fell_back(self) -> bool:
        return bool(self.events)

    @property
    def text(self) -> str:
        return "".join(self._pieces)

    def __aiter__(self) -> ChainStream:
        return self

    async def __anext__(self) -> str:
        while not (self._done or self._closed):
            if self._inner is None or self._it is None:
                await self._open_next()
            inner, it = self._inner, self._it
            assert inner is not None and it is not None  # _open_next set both or raised
            if self._closed:  # aclose() came while a backend was starting
                await inner.aclose()
                self._settle(inner, failed=False)
                break
            try:
                piece = await anext(it)
            except StopAsyncIteration:
                self._settle(inner, failed=False)
                self._done = True
                break
            except BackendError as exc:
                self._settle(inner, failed=True)
                if self._closed:
                    break
                await inner.aclose()
                assert self._attempt is not None  # set by _open_next before any inner exists
                event = self._attempt.failed(
                    self._backend_named(self.backend), exc, partial=bool(self._pieces)
                )
                if event is not None and event.partial:
                    self.restarts += 1
                continue
            if self._closed:
                break
            self._pieces.append(piece)
            return piece
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._closed = True
        if self._inner is not None:
            inner = self._inner
            await inner.aclose()
            self._settle(inner, failed=False)

    async def _open_next(self) -> None:
        if self._attempt is None:
            self._attempt = _Attempt(self.chain)
        backend = await self._attempt.next_backend()
        if backend is None:
            self._done = True
            raise self._attempt.exhausted()
        self._pieces = []
        self.backend = backend.name
        if self.on_open is not None:
            self.on_open(backend.name)
        self._inner = inner = backend.stream(self.turns, self.params)
        self._it = aiter(inner)
        self.usage = inner.usage

    def _settle(self, inner: Stream, *, failed: bool) -> None:
        """Book ``inner``'s usage once, when it ends, fails or is closed."""
        if self._inner is not inner:
            return
        self._inner = self._it = None
        totals = self.chain.usage_by_backend[self.backend]
        totals.requests += 1
        totals.failures += int(failed)
        totals.prompt_tokens += inner.usage.prompt_tokens
        totals.completion_tokens += inner.usage.completion_tokens
        totals.seconds += inner.usage.seconds
        if not failed and not self._closed:
            self.chain._succeeded(self._backend_named(self.backend))

    def _backend_named(self, name: str) -> Backend:
        return next(b for b in self.chain.backends if b.name == name)
