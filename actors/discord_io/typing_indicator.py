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
    """One indicator task per channel, kept up for at most ``typing_s`` while the brain thinks.

    :meth:`stop` ends an indicator after its request in flight, never in the middle of one: a
    message taken always gets its typing request, however fast the reply comes (cancelling it
    mid-request lost it now and then when a reply started within milliseconds).
    """

    def __init__(
        self, send_typing: Callable[[int], Awaitable[None]], spawn: Spawn, *, typing_s: float
    ) -> None:
        self.send_typing = send_typing
        self.spawn = spawn
        self.typing_s = typing_s
        self.stops: dict[int, asyncio.Event] = {}  # channel id -> set to end its indicator

    def start(self, channel_id: int) -> None:
        if channel_id in self.stops:
            return
        stop = self.stops[channel_id] = asyncio.Event()
        self.spawn(self.keep_up(channel_id, stop), name=f"typing-{channel_id}")

    def stop(self, channel_id: int) -> None:
        stop = self.stops.pop(channel_id, None)
        if stop is not None:
            stop.set()

    async def keep_up(self, channel_id: int, stop: asyncio.Event) -> None:
        deadline = time.monotonic() + self.typing_s
        try:
            while True:
                try:
                    await self.send_typing(channel_id)
                except Exception as exc:  # a typing indicator is never worth an error
                    log.debug("discord.typing_failed", channel=channel_id, error=str(exc))
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                try:
                    await asyncio.wait_for(stop.wait(), min(REFRESH_S, left))
                    return
                except TimeoutError:
                    continue
        finally:
            if self.stops.get(channel_id) is stop:
                del self.stops[channel_id]
