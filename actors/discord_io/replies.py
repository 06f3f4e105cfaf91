"""Showing a reply on Discord: one message edited as the reply streams, split when it grows long.

A :class:`Shown` reply owns the Discord messages of one reply. Chunks and the final text only
change what it *should* show; one task per reply makes Discord match, editing each message at
most once per ``edit_interval_s`` (Discord allows 5 edits per 5 s per channel), so a fast model
never turns into a burst of rate-limited requests. The final text always wins: chunks are
volatile, and whatever was lost or replaced is corrected by it.

Failures: discord.py retries 429s (after Discord's ``retry_after``) and 5xx itself; on top of that
each request is retried with backoff (``attempts``), and a reply still undelivered stays in the
actor's state and is tried again later. Only a refusal that no retry can change (403: Hex may not
write there; 404: the channel is gone) gives up, and it is logged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from actors.discord_io.text import split_message

log = structlog.get_logger("actors.discord_io.replies")

STREAMING_MARK = " …"  # shown after a reply's text while it is still streaming


class Undeliverable(Exception):
    """Discord refused for good (403, 404): retrying cannot help."""


@dataclass
class Shown:
    """One reply and the Discord messages that show it."""

    reply_to: str  # the chat.message event id
    channel_id: int
    reference: int | None  # the person's Discord message, answered with a reply reference
    chunks: dict[int, str] = field(default_factory=dict)
    final: str | None = None  # the reply's final text, once it arrived
    message_ids: list[int] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)
    last_edit: float = 0.0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = field(default_factory=time.monotonic)

    def text(self) -> str:
        if self.final is not None:
            return self.final
        return "".join(self.chunks[i] for i in sorted(self.chunks))

    def wanted(self) -> list[str]:
        text = self.text().strip()
        if not text:
            return []
        if self.final is None:
            return split_message(text + STREAMING_MARK)
        return split_message(text)

    def add_chunk(self, index: int, text: str) -> None:
        if self.final is None and index not in self.chunks:
            self.chunks[index] = text
            self.changed.set()

    def finish(self, text: str) -> None:
        self.final = text
        self.changed.set()


# What the actor gives a Shown's task: post a part (returns its message id), edit a part, delete a part.
Post = Callable[[Shown, int, str], Awaitable[int]]
Edit = Callable[[Shown, int, str], Awaitable[None]]
Delete = Callable[[Shown, int], Awaitable[None]]


async def with_retries(
    what: str, attempt: Callable[[], Awaitable[Any]], *, attempts: int, backoff_s: float
) -> Any:
    """Run ``attempt`` until it succeeds, at most ``attempts`` times with doubling pauses.

    :class:`Undeliverable` is raised at once; the last other error is raised after the last try.
    """
    delay = backoff_s
    for tried in range(1, attempts + 1):
        try:
            return await attempt()
        except Undeliverable:
            raise
        except Exception as exc:
            if tried == attempts:
                raise
            log.warning(
                "discord.retrying",
                what=what,
                attempt=tried,
                error=f"{type(exc).__name__}: {exc}",
                retry_in_s=delay,
            )
            await asyncio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


async def show(
    reply: Shown, post: Post, edit: Edit, delete: Delete, *, edit_interval_s: float
) -> None:
    """Make Discord show ``reply`` until its final text is shown whole; returns then.

    A final text shorter than what streamed (a backend replaced mid-reply, a reply trimmed to
    its last sentence) deletes the parts it no longer needs.
    """
    while True:
        reply.changed.clear()
        wanted = reply.wanted()
        for index, part in enumerate(wanted):
            if index < len(reply.message_ids):
                if reply.shown[index] == part:
                    continue
                wait = reply.last_edit + edit_interval_s - time.monotonic()
                if wait > 0 and reply.final is None:
                    break  # too soon for another streamed edit: catch up on the next round
                if wait > 0:
                    await asyncio.sleep(wait)
                await edit(reply, index, part)
                reply.shown[index] = part
                reply.last_edit = time.monotonic()
            else:
                message_id = await post(reply, index, part)
                reply.message_ids.append(message_id)
                reply.shown.append(part)
                reply.last_edit = time.monotonic()
        if reply.changed.is_set():
            continue  # news arrived while a request was in flight: what is wanted has changed
        if reply.final is not None and reply.shown[: len(wanted)] == wanted:
            while len(reply.message_ids) > len(wanted):
                await delete(reply, len(reply.message_ids) - 1)
                reply.message_ids.pop()
                reply.shown.pop()
            return
        if reply.final is None and reply.shown[: len(wanted)] == wanted:
            await reply.changed.wait()
            continue
        # Something is still to be shown, but not yet: wait for news or the next edit slot.
        wait = max(0.0, reply.last_edit + edit_interval_s - time.monotonic())
        try:
            await asyncio.wait_for(reply.changed.wait(), wait)
        except TimeoutError:
            pass
