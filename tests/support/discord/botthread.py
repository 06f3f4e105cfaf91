"""discord.py's real client on a thread of its own, for tests that drive it against FakeDiscord.

The client runs on its own thread and event loop (:class:`BotThread`), as it does in the bot's
process, so the test thread only uses FakeDiscord's synchronous API and never blocks the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import discord
from discord.ext import commands

T = TypeVar("T")
B = TypeVar("B", bound=discord.Client)
TOKEN = "test-token"


class Recorder(commands.Bot):
    """A bot that records what discord.py hands it, for the test thread to inspect."""

    def __init__(self, *, intents: discord.Intents) -> None:
        super().__init__(command_prefix="!", intents=intents, guild_ready_timeout=0.05)
        self.seen: list[discord.Message] = []
        self.resumed = 0

    async def on_message(self, message: discord.Message) -> None:
        self.seen.append(message)

    async def on_resumed(self) -> None:
        self.resumed += 1

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # discord.py's default sleeps 5 s before every re-IDENTIFY; a real bot keeps that.
        return None


class BotThread(Generic[B]):
    """A discord.py client started with ``client.start(token)`` on its own loop and thread."""

    def __init__(self, make: Callable[[], B], token: str = TOKEN) -> None:
        self._make = make
        self._token = token
        self._up = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._client: B | None = None
        self._thread = threading.Thread(target=self._run, name="discord.py", daemon=True)

    @property
    def client(self) -> B:
        assert self._client is not None
        return self._client

    def start(self) -> BotThread[B]:
        self._thread.start()
        assert self._up.wait(5)
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._client = self._make()
        self._up.set()
        async with self._client:
            await self._client.start(self._token)

    def call(self, fn: Callable[[B], Awaitable[T]], timeout: float = 10.0) -> T:
        """Run ``fn(client)`` on the client's loop and wait for its result."""
        assert self.loop is not None

        async def run() -> T:
            return await fn(self.client)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def wait_ready(self, timeout: float = 10.0) -> None:
        self.call(lambda c: c.wait_until_ready(), timeout)

    def stop(self) -> None:
        if self.loop is not None and not self.done.is_set():
            with contextlib.suppress(RuntimeError, TimeoutError):
                asyncio.run_coroutine_threadsafe(self.client.close(), self.loop).result(10)
        self._thread.join(10)
