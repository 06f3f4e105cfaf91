"""Showing replies on Discord: one message edited as the reply streams, split when it grows long.

A :class:`Shown` reply owns the Discord messages of one reply. Chunks and the final text only
change what it *should* show; one task per reply (:func:`show`) makes Discord match, editing each
message at most once per ``edit_interval_s`` (Discord allows 5 edits per 5 s per channel), so a
fast model never turns into a burst of rate-limited requests. The final text always wins: chunks
are volatile, and whatever was lost or replaced is corrected by it. :func:`show` gets its side
effects (post, edit, delete) as callables, so it is tested without Discord.

:class:`Replies` is the actor's part that runs those tasks: a final reply is kept in the actor's
state until Discord has it whole, so a crash, a restart of the brain, a 429 or a 5xx never loses
one, and after a crash the parts already posted are found and edited rather than posted again.

Failures: discord.py retries 429s (after Discord's ``retry_after``) and 5xx itself; on top of that
each request is retried with backoff (``attempts``), and a reply still undelivered stays in the
actor's state and is tried again later. Only a refusal that no retry can change (403: Hex may not
write there; 404: the channel is gone) gives up, and it is logged.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from actors.discord_io.config import DELIVERED_KEPT, DiscordConfig, DiscordState, PendingReply
from actors.discord_io.names import part_nonce
from actors.discord_io.port import DiscordPort, StateChanged
from actors.discord_io.text import split_message
from actors.discord_io.typing_indicator import TypingIndicators
from hexbus.types import Spawn
from schemas import Reply, ReplyChunk

__all__ = ["Replies", "Shown", "Undeliverable", "show", "with_retries"]

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


class Replies:
    """The replies the actor is showing or still owes Discord, each shown by one task of its own."""

    def __init__(
        self,
        config: DiscordConfig,
        state: DiscordState,
        discord: DiscordPort,
        typing: TypingIndicators,
        *,
        spawn: Spawn,
        state_changed: StateChanged,
    ) -> None:
        self.config = config
        self.state = state
        self.discord = discord
        self.typing = typing
        self.spawn = spawn
        self.state_changed = state_changed
        self.shown: dict[str, Shown] = {}  # reply_to → the reply a task is showing
        self.delivered = OrderedDict((r, None) for r in state.delivered)
        # One post at a time per channel, so the parts of a reply stay in order.
        self.channel_locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

    def chunk(self, event: ReplyChunk) -> None:
        """A streamed piece: shown at once, whatever came before it."""
        if event.reply_to in self.delivered or event.reply_to in self.state.pending:
            return
        shown = self.shown.get(event.reply_to) or self.start_showing(event.reply_to, event.channel)
        if shown is not None:
            shown.add_chunk(event.index, event.text)

    def final(self, event: Reply, *, adopt: bool) -> None:
        """The final reply: kept pending in state until Discord has it whole. ``adopt``: it was
        not streamed by this incarnation (a replay after a crash), so its parts may be on Discord
        already. Safe to repeat for the same reply."""
        if event.reply_to in self.delivered:
            return
        text = event.text.strip()
        shown = self.shown.get(event.reply_to)
        if event.status == "cancelled" and not text and shown is None:
            self.mark_delivered(event.reply_to)
            return
        asked = self.state.asked.get(event.reply_to)
        try:
            channel_id = asked.channel_id if asked else int(event.channel)
        except ValueError:
            log.warning(
                "discord.reply_without_channel", reply_to=event.reply_to, channel=event.channel
            )
            return
        earlier = self.state.pending.get(event.reply_to)
        posted = shown.message_ids if shown else earlier.message_ids if earlier else []
        self.state.pending[event.reply_to] = PendingReply(
            reply_to=event.reply_to,
            channel_id=channel_id,
            reference=asked.message_id if asked else None,
            text=text,
            message_ids=list(posted),
        )
        shown = shown or self.start_showing(event.reply_to, event.channel, adopt=adopt)
        if shown is not None:
            shown.finish(text)

    def resume_pending(self) -> None:
        """Show again every reply the state says Discord does not have whole (after a restart)."""
        for reply_to in list(self.state.pending):
            if reply_to not in self.shown:
                self.start_showing(reply_to, "", adopt=True)

    def start_showing(self, reply_to: str, channel: str, *, adopt: bool = False) -> Shown | None:
        asked = self.state.asked.get(reply_to)
        pending = self.state.pending.get(reply_to)
        try:
            channel_id = (
                pending.channel_id if pending else asked.channel_id if asked else int(channel)
            )
        except ValueError:
            return None
        reference = pending.reference if pending else asked.message_id if asked else None
        shown = Shown(reply_to=reply_to, channel_id=channel_id, reference=reference)
        if pending is not None:
            shown.final = pending.text
        self.shown[reply_to] = shown
        self.spawn(self.deliver(shown, adopt=adopt), name=f"reply-{reply_to}")
        return shown

    async def deliver(self, shown: Shown, *, adopt: bool) -> None:
        """Show one reply until Discord has it whole; on failure keep it pending, try again later."""
        try:
            while True:
                try:
                    if adopt:
                        await self.adopt(shown)
                        adopt = False
                    await show(
                        shown,
                        self.post,
                        self.edit,
                        self.delete,
                        edit_interval_s=self.config.edit_interval_s,
                    )
                    break
                except Undeliverable as exc:
                    log.error(
                        "discord.reply_undeliverable",
                        reply_to=shown.reply_to,
                        channel=shown.channel_id,
                        error=str(exc),
                        hint="Hex may not write in that channel, or it is gone",
                    )
                    break
                except Exception as exc:
                    if shown.final is None:
                        # Still streaming: the final reply (durable) will try again.
                        log.warning(
                            "discord.stream_failed", reply_to=shown.reply_to, error=repr(exc)
                        )
                        await shown.changed.wait()
                        continue
                    log.error(
                        "discord.reply_failed",
                        reply_to=shown.reply_to,
                        error=repr(exc),
                        retry_in_s=self.config.redeliver_s,
                    )
                    await asyncio.sleep(self.config.redeliver_s)
                    adopt = True
            self.mark_delivered(shown.reply_to)
        finally:
            if self.shown.get(shown.reply_to) is shown:
                del self.shown[shown.reply_to]
            self.typing.stop(shown.channel_id)

    def mark_delivered(self, reply_to: str) -> None:
        self.state.pending.pop(reply_to, None)
        self.delivered[reply_to] = None
        while len(self.delivered) > DELIVERED_KEPT:
            self.delivered.popitem(last=False)
        self.state.delivered = list(self.delivered)
        self.state_changed()

    async def adopt(self, shown: Shown) -> None:
        """After a crash: find the parts of this reply already posted (Hex's messages answering
        the person's message), so they are edited rather than posted again."""
        if shown.reference is None or shown.message_ids:
            return
        me = self.discord.me
        found = [
            message
            async for message in self.discord.history(
                shown.channel_id, after=shown.reference, limit=50
            )
            if me and message.author_id == me and message.reference_id == shown.reference
        ]
        shown.message_ids = [m.id for m in found]
        shown.shown = [m.content for m in found]
        if found:
            log.info("discord.reply_adopted", reply_to=shown.reply_to, parts=len(found))

    async def post(self, shown: Shown, index: int, text: str) -> int:
        self.typing.stop(shown.channel_id)
        # The same nonce on every try of this part: Discord then creates the message once even
        # when a try timed out after Discord had it.
        nonce = part_nonce(shown.reply_to, index)
        async with self.channel_locks[shown.channel_id]:
            message_id: int = await with_retries(
                f"post {shown.reply_to}#{index}",
                lambda: self.discord.post(
                    shown.channel_id, text, reference=shown.reference, nonce=nonce
                ),
                attempts=self.config.attempts,
                backoff_s=self.config.backoff_s,
            )
        pending = self.state.pending.get(shown.reply_to)
        if pending is not None:
            pending.message_ids.append(message_id)
            self.state_changed()
        return message_id

    async def edit(self, shown: Shown, index: int, text: str) -> None:
        message_id = shown.message_ids[index]
        await with_retries(
            f"edit {shown.reply_to}#{index}",
            lambda: self.discord.edit(shown.channel_id, message_id, text),
            attempts=self.config.attempts,
            backoff_s=self.config.backoff_s,
        )

    async def delete(self, shown: Shown, index: int) -> None:
        await self.discord.delete(shown.channel_id, shown.message_ids[index])

    async def notice(self, channel_id: int, text: str) -> None:
        """Something the person should know that is not a reply, in italics."""
        await with_retries(
            "notice",
            lambda: self.discord.post(channel_id, f"*{text}*"),
            attempts=self.config.attempts,
            backoff_s=self.config.backoff_s,
        )
