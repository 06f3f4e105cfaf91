"""The brain's line to the memory actor: ask for what fits a message, never wait on an absent one."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from actors.brain.config import BrainConfig
from hexbus import RequestTimeout
from schemas import ChatMessage, Heartbeat, MemoryQuery, MemoryResult

log = structlog.get_logger("actors.brain")

MEMORY_SILENT_S = 5.0  # a memory actor unheard for this long is taken to be absent

Request = Callable[..., Awaitable[Any]]


class MemoryLink:
    def __init__(self, config: BrainConfig, request: Request) -> None:
        self.config = config
        self.request = request
        self.down_until = 0.0
        self.seen = -MEMORY_SILENT_S  # when the memory actor's last live heartbeat arrived

    def heard(self, event: Heartbeat) -> None:
        if event.actor == self.config.memory_actor and event.state == "live":
            self.seen = time.monotonic()

    async def fetch(self, event: ChatMessage) -> MemoryResult:
        """Memories for the message and the person's long-term profile; empty when memory is
        down."""
        now = time.monotonic()
        if not self.config.memory or now < self.down_until or now - self.seen > MEMORY_SILENT_S:
            # No memory actor is running (none heard lately): asking would only add the deadline.
            return MemoryResult()
        try:
            result: MemoryResult = await self.request(
                MemoryQuery(text=event.text, person_id=event.person_id, channel=event.channel),
                MemoryResult,
                timeout=self.config.memory_timeout_s,
            )
            return result
        except RequestTimeout:
            self.down_until = time.monotonic() + self.config.memory_retry_s
            log.info("brain.memory_unavailable", retry_in_s=self.config.memory_retry_s)
            return MemoryResult()
