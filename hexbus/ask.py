"""One-shot conversations with an actor from a command: a request and its answer, or a change and its report.

``ask`` sends a volatile request with a correlation id and waits for the answer the
responder addresses to this client (``respond()``); ``change`` publishes a durable
event and waits, on the journal, for the durable report whose causation is that
event. Both raise :class:`AskError` with a line a person can act on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeAlias, TypeVar

from hexbus.bus import BusClient
from hexbus.endpoints import Endpoints
from schemas import Event, PathCheck, tag_of

E = TypeVar("E", bound=Event)
# An event type that names the request it is about (``request``), and what to do with each.
Progress: TypeAlias = tuple[type[Event], Callable[[Any], None]]


class AskError(Exception):
    """No answer (the actor is not running, or too slow)."""


PATH_CHECK_S = 0.02  # how often a fresh client checks its path through the broker
RESEND_S = 0.5  # a request not answered this long is sent again (its responder restarting)


async def ask(
    endpoints: Endpoints,
    request: Event,
    expect: type[E],
    *,
    timeout: float = 10.0,
    who: str = "the actor",
    key: str = "",
) -> tuple[E, bytes | None]:
    client = BusClient(endpoints, f"cli{time.monotonic_ns() % 1_000_000}")
    client.subscribe(f"{tag_of(expect)}.{client.name}")
    client.subscribe(f"{tag_of(PathCheck)}.{client.name}")
    client.start()
    correlation = client.ids.next()
    deadline = time.monotonic() + timeout
    path_open = asyncio.Event()
    try:

        async def answer() -> tuple[E, bytes | None]:
            async for envelope, blob in client.volatile():
                if isinstance(envelope.body, PathCheck):
                    path_open.set()
                elif envelope.correlation == correlation and isinstance(envelope.body, expect):
                    return envelope.body, (bytes(blob) if blob is not None else None)
            raise AskError("the bus closed")

        waiting = asyncio.get_running_loop().create_task(answer())
        # A fresh PUB drops what it sends until the broker's subscription reaches it, and the
        # broker forwards the answer only once it has this client's: a message to itself that
        # comes back says both are in place (in a few ms), so the request goes once, not after
        # a blind wait.
        opened = asyncio.get_running_loop().create_task(path_open.wait())
        try:
            while not path_open.is_set():
                if time.monotonic() > deadline:
                    raise AskError(
                        f"the broker did not answer within {timeout:g}s: is Hex running? (`hexbus status`)"
                    )
                client.publish_volatile(PathCheck(), key=client.name)
                await asyncio.wait({opened, waiting}, timeout=PATH_CHECK_S)
                if waiting.done():
                    waiting.result()  # the bus closed: raise
        finally:
            opened.cancel()
        while not waiting.done():
            if time.monotonic() > deadline:
                waiting.cancel()
                raise AskError(
                    f"{who} did not answer within {timeout:g}s: is it running? (`hexbus status`)"
                )
            client.publish_volatile(request, key=key, correlation=correlation)
            await asyncio.wait({waiting}, timeout=RESEND_S)
        return waiting.result()
    finally:
        await client.close()


async def change(
    endpoints: Endpoints,
    request: Event,
    expect: type[E],
    *,
    timeout: float = 30.0,
    who: str = "the actor",
    blob: bytes | None = None,
    key: str = "",
    progress: Progress | None = None,
) -> E:
    """Publish one durable request and wait for the durable report caused by it."""
    reports = [
        r
        async for r in changes(
            endpoints,
            [(request, blob)],
            expect,
            timeout=timeout,
            who=who,
            key=key,
            progress=progress,
        )
    ]
    return reports[0]


async def changes(
    endpoints: Endpoints,
    requests: Sequence[tuple[Event, bytes | None]],
    expect: type[E],
    *,
    timeout: float = 30.0,
    who: str = "the actor",
    key: str = "",
    progress: Progress | None = None,
) -> AsyncIterator[E]:
    """Publish durable requests in order and yield each one's report as it comes (``timeout`` per
    report). ``progress``: (an event type with a ``request`` field, a function) called with each
    such event the actor publishes about one of these requests while it works; the wait for a
    report starts again at each."""
    client = BusClient(endpoints, "cli")
    if progress is not None:
        client.subscribe(tag_of(progress[0]))
    client.start()
    feed = client.durable([tag_of(expect)], after=-1, wait_ms=300)
    reports: dict[str, E] = {}
    arrived = asyncio.Event()

    async def collect() -> None:
        async for envelope, _ in feed:
            if envelope is not None and isinstance(envelope.body, expect) and envelope.causation:
                reports[envelope.causation] = envelope.body
                arrived.set()

    sent: list[str] = []

    async def follow() -> None:
        assert progress is not None
        kind, call = progress
        async for envelope, _ in client.volatile():
            if isinstance(envelope.body, kind) and getattr(envelope.body, "request", "") in sent:
                call(envelope.body)
                arrived.set()  # work is moving: the report's wait starts again

    reading = asyncio.get_running_loop().create_task(collect())
    following = asyncio.get_running_loop().create_task(follow()) if progress is not None else None
    try:
        if not await feed.positioned(10):  # then no report after the journal's head can be missed
            raise AskError(
                "the broker did not answer within 10 s: is Hex running? (`hexbus status`)"
            )
        for request, blob in requests:
            sent.append((await client.publish_durable(request, blob=blob, key=key)).id)
        if not await client.flush(10 + len(requests) / 100):
            raise AskError(
                "the broker did not acknowledge the request within 10 s: is Hex running?"
            )
        for event_id in sent:
            while event_id not in reports:
                arrived.clear()
                try:
                    await asyncio.wait_for(arrived.wait(), timeout)
                except TimeoutError:
                    raise AskError(
                        f"{who} did not report within {timeout:g}s (the request is journaled and will "
                        "be applied when it runs: `hexbus status`)"
                    ) from None
            yield reports.pop(event_id)
    finally:
        for task in (reading, following):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in (reading, following) if t is not None), return_exceptions=True
        )
        await client.close()
