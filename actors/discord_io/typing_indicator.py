"""The typing indicator: shown the moment a message is taken, until its reply starts to show."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from hexbus.types import Spawn

__all__ = ["TypingIndicators"]

log = structlog.get_logger("actors.discord_io")

REFRESH_S = 8.0  # Discord shows the indicator for about 10 s per request


class TypingIndicators:
    """One indicator task per channel, kept up for at most ``typing_s`` while the brain thinks."""

    def __init__(
        self, send_typing: Callable[[int], Awaitable[None]], spawn: Spawn, *, typing_s: float
    ) -> None:
        self.send_typing = send_typing
        self.spawn = spawn
        self.typing_s = typing_s
        self.tasks: dict[int, asyncio.Task[None]] = {}  # channel id → its indicator

    def start(self, channel_id: int) -> None:
        task = self.tasks.get(channel_id)
        if task is not None and not task.done():
            return
        self.tasks[channel_id] = self.spawn(self.keep_up(channel_id), name=f"typing-{channel_id}")

    def stop(self, channel_id: int) -> None:
        task = self.tasks.pop(channel_id, None)
        if task is not None:
            task.cancel()

    async def keep_up(self, channel_id: int) -> None:
        deadline = time.monotonic() + self.typing_s
        try:
            while time.monotonic() < deadline:
                try:
                    await self.send_typing(channel_id)
                except Exception as exc:  # a typing indicator is never worth an error
                    log.debug("discord.typing_failed", channel=channel_id, error=str(exc))
                await asyncio.sleep(REFRESH_S)
        finally:
            if self.tasks.get(channel_id) is asyncio.current_task():
                del self.tasks[channel_id]
