"""Discord → bus: which messages Hex answers, each put on the bus once, and what was missed.

A message Hex answers (a DM, a mention, a reply to Hex, anything in a configured channel) is
acknowledged at once (typing indicator, volatile ``chat.ack``) and becomes a durable
``chat.message.discord`` whose id derives from the Discord message's, so taking it again (a
replay, a catch-up racing the live event) is the same event and the journal keeps it once.

Missed messages: the last Discord message id seen in each watched channel (configured channels
and DMs) is kept in state. After a new gateway session (after a crash or an outage) what was sent
meanwhile is fetched from history and taken once, or, past ``catch_up_limit``, taken as one
summary. Where the catch-up starts is kept from the moment the session began (``catch_from``,
saved with the state until each channel is walked), and what it finds is taken unless it was
already (by its event id). Live messages of the new session in watched channels wait for that
session's catch-up (which itself waits for the replay): the missed ones are taken first, in
order, and a live one can never move a channel's last seen message past them, even where the
snapshot predates the channel and only the replay knows where it stood.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

import structlog

from actors.discord_io.config import (
    ASKED_KEPT,
    WATCHED_KEPT,
    Asked,
    DiscordConfig,
    DiscordState,
)
from actors.discord_io.names import discord_person_id, message_event_id, snowflake_at
from actors.discord_io.port import (
    DiscordPort,
    Publish,
    PublishVolatile,
    SeenMessage,
    StateChanged,
)
from actors.discord_io.text import strip_mention
from actors.discord_io.typing_indicator import TypingIndicators
from schemas import ChatAck, ChatMessage

__all__ = ["Inbox"]

log = structlog.get_logger("actors.discord_io")

PAGES: Final = 10  # history pages of catch_up_limit * 10 messages walked per channel at most
HOLD_S: Final = 30.0  # a live message waits this long at most for its session's catch-up


class Inbox:
    """People's Discord messages in: answered ones taken onto the bus, missed ones caught up."""

    def __init__(
        self,
        config: DiscordConfig,
        state: DiscordState,
        discord: DiscordPort,
        typing: TypingIndicators,
        *,
        publish: Publish,
        publish_volatile: PublishVolatile,
        state_changed: StateChanged,
    ) -> None:
        self.config = config
        self.state = state
        self.discord = discord
        self.typing = typing
        self.publish = publish
        self.publish_volatile = publish_volatile
        self.state_changed = state_changed
        self.sessions = 0  # gateway sessions begun: a catch-up knows whether one began meanwhile
        self.catching_up = asyncio.Lock()  # one catch-up at a time (READY and RESUMED may overlap)
        self.caught_up = asyncio.Event()  # the current session's catch-up is done (or none owed)
        self.caught_up.set()

    def wants(self, message: SeenMessage) -> bool:
        """Whether Hex answers this message: DMs, mentions, replies to Hex, configured channels."""
        me = self.discord.me
        if not me or message.author_id == me:
            return False
        if message.author_bot and not self.config.answer_bots:
            return False
        if not message.ordinary:
            return False
        if message.in_dm:
            return True
        if message.mentions_me or str(message.channel_id) in self.config.channels:
            return True
        return message.replies_to_me

    def session_began(self) -> None:
        """A gateway session began (READY or RESUMED): what was sent since the last message
        seen in each watched channel is owed a catch-up, from there, whatever arrives live first."""
        self.sessions += 1
        self.caught_up.clear()
        for channel, message_id in self.state.last_seen.items():
            if channel not in self.state.catch_from:
                self.state.catch_from[channel] = message_id
                self.state_changed()

    def watched(self, message: SeenMessage) -> bool:
        return message.in_dm or str(message.channel_id) in self.config.channels

    async def on_message(self, message: SeenMessage) -> None:
        """A live message from the gateway; in a watched channel, after the session's catch-up
        (which may have taken it already)."""
        if self.watched(message):
            if not self.caught_up.is_set():
                try:
                    async with asyncio.timeout(HOLD_S):
                        await self.caught_up.wait()
                except TimeoutError:
                    log.warning(
                        "discord.catch_up_slow", waited_s=HOLD_S, channel=message.channel_id
                    )
                if message_event_id(message.id) in self.state.asked:
                    return
            self.seen(message.channel_id, message.id)
        if self.wants(message):
            await self.take(message)

    def seen(self, channel_id: int, message_id: int) -> None:
        key = str(channel_id)
        last_seen = self.state.last_seen
        if message_id > last_seen.get(key, 0):
            last_seen[key] = message_id
            self.state_changed()
            if len(last_seen) > WATCHED_KEPT + WATCHED_KEPT // 10:
                # The channels quiet the longest are forgotten (configured ones never).
                configured = set(self.config.channels)
                ranked = sorted(last_seen, key=last_seen.__getitem__, reverse=True)
                for old in ranked[WATCHED_KEPT:]:
                    if old not in configured and old != key:
                        del last_seen[old]

    async def take(
        self, message: SeenMessage, *, text: str | None = None, catch_up: bool = False
    ) -> None:
        """Acknowledge a message at once and put it on the bus as a durable chat.message."""
        channel_id = message.channel_id
        self.typing.start(channel_id)
        event_id = message_event_id(message.id)
        body = text if text is not None else strip_mention(message.content, self.discord.me)
        event = ChatMessage(
            platform="discord",
            person_id=discord_person_id(message.author_id),
            display_name=message.author_name,
            channel=str(channel_id),
            text=body,
            attachments=message.attachments,
            message_id=str(message.id),
            direct=message.in_dm or message.mentions_me,
            catch_up=catch_up,
        )
        self.remember_asked(event_id, channel_id, message.id)
        self.publish_volatile(
            ChatAck(message_event_id=event_id, channel=str(channel_id)), key="discord"
        )
        await self.publish(event, key="discord", event_id=event_id)
        log.info(
            "discord.message",
            event_id=event_id,
            channel=channel_id,
            person=event.person_id,
            chars=len(body),
        )

    def remember_asked(self, event_id: str, channel_id: int, message_id: int) -> None:
        if event_id not in self.state.asked:
            self.state.asked[event_id] = Asked(channel_id=channel_id, message_id=message_id)
            while len(self.state.asked) > ASKED_KEPT:
                del self.state.asked[next(iter(self.state.asked))]
            self.state_changed()

    def taken(self, event_id: str, event: ChatMessage) -> None:
        """A chat.message this actor published, back from the journal: after a crash the replay
        rebuilds what was taken (and where to answer it) up to the last message the bus accepted,
        whatever the snapshot missed, so catch-up starts after it."""
        if not event.message_id.isdigit():
            return
        try:
            channel_id = int(event.channel)
        except ValueError:
            return
        message_id = int(event.message_id)
        self.remember_asked(event_id, channel_id, message_id)
        self.seen(channel_id, message_id)
        key = str(channel_id)
        if event.catch_up and self.state.catch_from.get(key, message_id) < message_id:
            # A catch-up took it, in order: what was owed up to it is taken (a summary's
            # messages too, whose ids no event carries).
            self.state.catch_from[key] = message_id

    # -- missed messages -------------------------------------------------------------------

    async def catch_up(self) -> None:
        """Take the messages sent in watched channels since the last one seen (once each): the
        configured channels, and the ``catch_up_channels`` DM channels most recently active
        within ``catch_up_window_h``. One at a time: a second waits for the first."""
        async with self.catching_up:
            sessions = self.sessions
            try:
                await self._catch_up()
            finally:
                if self.sessions == sessions:  # else the newer session's catch-up is still owed
                    self.caught_up.set()

    async def _catch_up(self) -> None:
        configured = {int(c) for c in self.config.channels}
        since = snowflake_at(time.time() - self.config.catch_up_window_h * 3600)
        recent = sorted(
            (
                (message_id, int(channel))
                for channel, message_id in self.state.last_seen.items()
                if int(channel) not in configured and message_id >= since
            ),
            reverse=True,
        )
        walked = [channel for _, channel in recent[: self.config.catch_up_channels]]
        left = sum(1 for c in self.state.last_seen if int(c) not in configured) - len(walked)
        if left > 0:
            log.info("discord.catch_up_bounded", walked=len(walked), not_walked=left)
        watched = configured | set(walked)
        sessions = self.sessions
        catch_from = self.state.catch_from
        for channel_id in sorted(watched):
            key = str(channel_id)
            after = catch_from.get(key, self.state.last_seen.get(key))
            if after is None:
                continue  # never seen: nothing to catch up on (the start of history is not "missed")
            try:
                newest, whole = await self.catch_up_channel(channel_id, after)
                if whole and self.sessions == sessions:
                    catch_from.pop(key, None)  # walked: nothing more owed here
                else:  # a session began meanwhile, or history was longer than the walk
                    catch_from[key] = max(catch_from.get(key, newest), newest)
                self.state_changed()
            except Exception as exc:
                log.warning(
                    "discord.catch_up_failed",
                    channel=channel_id,
                    error=f"{type(exc).__name__}: {exc}",
                )
        if self.sessions == sessions:  # else the next catch-up decides on the newer session's
            for key in [k for k in catch_from if int(k) not in watched]:
                del catch_from[key]  # not walked by design (quiet too long): nothing owed there

    async def catch_up_channel(self, channel_id: int, after: int) -> tuple[int, bool]:
        """Take what was missed in one channel after ``after``: the newest message id walked,
        and whether the walk reached the end of the channel's history (at most ``PAGES``
        pages, each of which may be messages taken already)."""
        oldest = snowflake_at(time.time()) - (int(self.config.catch_up_max_age_h * 3600_000) << 22)
        limit = self.config.catch_up_limit
        missed: list[SeenMessage] = []
        newest = after
        whole = False
        for _ in range(PAGES):
            walked = 0
            async for message in self.discord.history(
                channel_id, after=max(newest, oldest), limit=limit * 10
            ):
                walked += 1
                newest = max(newest, message.id)
                # One taken already (live, while this ran or before it) is known by its event id.
                if message_event_id(message.id) not in self.state.asked and self.wants(message):
                    missed.append(message)
            if walked < limit * 10:
                whole = True
                break
        if not missed:
            self.seen(channel_id, newest)
            return newest, whole
        log.info("discord.catching_up", channel=channel_id, missed=len(missed))
        if len(missed) <= limit:
            for message in missed:
                self.seen(channel_id, message.id)
                await self.take(message, catch_up=True)
            self.seen(channel_id, newest)
            return newest, whole
        # Too many to answer one by one: one message tells the brain what was said, answered once.
        me = self.discord.me
        lines = [f"{m.author_name}: {strip_mention(m.content, me)}" for m in missed]
        summary = (
            f"(While I was away, {len(missed)} messages arrived here. The latest ones:)\n"
            + "\n".join(lines[-limit:])
        )
        self.seen(channel_id, newest)
        for message in missed[:-1]:  # said in the summary: taken with it
            self.remember_asked(message_event_id(message.id), channel_id, message.id)
        await self.take(missed[-1], text=summary[:4000], catch_up=True)
        return newest, whole
