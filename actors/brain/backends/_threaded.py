"""A stream whose pieces come from a blocking generator in a worker thread (llama.cpp, exllamav2).

The thread hands each piece to the event loop through an asyncio queue, so the
loop never waits on the model. Closing the stream (or cancelling its consumer)
sets a flag the generator checks at every piece, and returns at once: the
thread itself gives the resource it used (a model instance) back, on the loop,
when its generator has ended. A resource handed back by whoever awaited it
would be lost for good when a second cancellation lands in that await (a
burst of messages cancels replies that are still closing), and every later
request would wait for it forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from actors.brain.backends.base import BackendError, Usage

Produce = Callable[[Any, Usage, threading.Event], Iterator[str]]


class ThreadStream:
    """``produce(resource, usage, stop)`` runs in a thread; ``acquire``/``release`` bracket it on the loop."""

    def __init__(
        self,
        name: str,
        produce: Produce,
        *,
        acquire: Callable[[], Awaitable[Any]] | None = None,
        release: Callable[[Any], None] | None = None,
    ) -> None:
        self.name = name
        self.usage = Usage()
        self._produce = produce
        self._acquire = acquire
        self._release = release
        self._stop = threading.Event()
        self._gen: AsyncGenerator[str, None] | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        if self._gen is None:
            self._gen = self._run()
        return self._gen

    async def _run(self) -> AsyncGenerator[str, None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        resource = await self._acquire() if self._acquire is not None else None
        t0 = time.monotonic()

        def put(item: str | BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                for piece in self._produce(resource, self.usage, self._stop):
                    if self._stop.is_set():
                        break
                    put(piece)
                put(None)
            except BaseException as exc:  # handed to the loop, raised there
                put(exc)
            finally:
                if self._release is not None:
                    with contextlib.suppress(RuntimeError):  # the loop is gone: so is the backend
                        loop.call_soon_threadsafe(self._release, resource)

        threading.Thread(target=work, name=f"{self.name}-gen", daemon=True).start()
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise BackendError(f"{self.name} failed: {item}") from item
                if not self.usage.time_to_first_token_s:
                    self.usage.time_to_first_token_s = time.monotonic() - t0
                yield item
        finally:
            # Nothing to await: the thread notices the flag at its next piece and gives the
            # resource back itself, so no cancellation can keep it.
            self._stop.set()
            self.usage.seconds = time.monotonic() - t0

    async def aclose(self) -> None:
        self._stop.set()
        if self._gen is not None:
            await self._gen.aclose()
