"""A stream whose pieces come from a blocking generator in a worker thread (llama.cpp, exllamav2).

The thread hands each piece to the event loop through an asyncio queue, so the
loop never waits on the model. Closing the stream (or cancelling its consumer)
sets a flag the generator checks at every piece; the thread is joined before
the resource it used (a model instance) is given back.
"""

from __future__ import annotations

import asyncio
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

        thread = threading.Thread(target=work, name=f"{self.name}-gen", daemon=True)
        thread.start()
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise BackendError(f"{self.name} failed: {item}") from item
                if not self.usage.time_to_first_token_s:
                    self.usage.time_to_first_token_s = time.monotonic() - t0
                yield item
        finally:
            self._stop.set()
            # The thread notices the flag at its next piece; the resource goes back only when it has.
            await asyncio.to_thread(thread.join)
            self.usage.seconds = time.monotonic() - t0
            if self._release is not None:
                self._release(resource)

    async def aclose(self) -> None:
        self._stop.set()
        if self._gen is not None:
            # Runs its finally: the worker thread ends, the resource is free again.
            await self._gen.aclose()
