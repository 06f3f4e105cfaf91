"""The Discord actor: Hex's text (and voice) on Discord, with a responder nothing can block.

discord.py's client runs on this actor's own event loop. What people write becomes durable
``chat.message.discord`` events; the typing indicator and a ``chat.ack`` go out the moment a
message is seen. The brain's reply streams back as volatile chunks and one durable
``chat.reply.discord``: the chunks edit one Discord message as they come, the final reply
corrects and completes it (split over 2,000 characters, code blocks whole). The loop itself does
nothing slow: no model, no disk scan, no waiting for the brain. Discord requests run in tasks of
their own, and a reply is kept in the actor's state until Discord has it, so a crash, a
restart of the brain, a 429 or a 5xx never loses one.

This module only dispatches. The logic lives in plain classes the actor owns, each reaching
Discord through a :class:`~actors.discord_io.port.DiscordPort`: :class:`Inbox` (messages in,
missed messages), :class:`Replies` (replies out), :class:`VoiceLinks` (voice channels),
:class:`Suggestions` (memory approvals). ``bot.py`` is discord.py's side of it.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import structlog

from actors.discord_io.config import (
    DiscordConfig,
    DiscordState,
    read_token,
)
from actors.discord_io.inbox import Inbox
from actors.discord_io.names import discord_person_id
from actors.discord_io.port import DiscordPort, SeenMessage
from actors.discord_io.replies import Replies, Undeliverable
from actors.discord_io.suggestions import Suggestions
from actors.discord_io.typing_indicator import TypingIndicators
from actors.discord_io.voice_links import VoiceLinks
from hexbus import Actor, ActorUnusable, on
from hexbus.bus import BusClient
from hexbus.log import add_secret
from schemas import (
    AudioOut,
    CapabilityChanged,
    ChatMessage,
    DiscordDm,
    DiscordDmChannel,
    DiscordPresence,
    MemoryChanged,
    Notice,
    Reply,
    ReplyChunk,
    SelfmodChanged,
    Speaking,
)

if TYPE_CHECKING:
    from actors.discord_io.bot import HexBot

__all__ = ["DiscordActor", "DiscordConfig", "DiscordState"]

log = structlog.get_logger("actors.discord_io")


class DiscordActor(Actor[DiscordConfig, DiscordState]):
    """Hex on Discord: messages in, streamed replies out, slash commands, voice.

    Every handler is safe to run again for the same event (the runtime retries one that
    raises): what it records is keyed by the event's ids, and a reply already being shown is
    not shown twice.
    """

    subscribes: ClassVar[tuple[str, ...]] = (
        "chat.message.discord",  # its own: the journal, not the snapshot, says what was taken
        "chat.reply.discord",
        "chat.reply.chunk.discord",
        "chat.notice.discord",
        "memory.changed",
        "selfmod.changed",  # her proposals, ready for an owner's decision
        "audio.out",
        "tts.speaking",
        "discord.dm",  # where Hex writes to someone first: their DM channel
        "capability.changed",  # join_voice (the base class applies the switches)
    )
    config_type = DiscordConfig
    state_type = DiscordState

    client: HexBot
    typing: TypingIndicators
    inbox: Inbox
    replies: Replies
    voice_links: VoiceLinks
    suggestions: Suggestions

    def __init__(
        self, name: str, config: DiscordConfig, state: DiscordState, bus: BusClient, data_dir: Path
    ) -> None:
        super().__init__(name, config, state, bus, data_dir)
        self.ready = asyncio.Event()  # a gateway session is up
        self.settled = asyncio.Event()  # ready, or the connection gave up
        self.fatal: ActorUnusable | None = None

    async def setup(self) -> None:
        try:
            # Here, not at the top: without discord.py the actor still starts, to say so.
            from actors.discord_io import bot
        except ImportError as exc:
            raise ActorUnusable(
                f"discord.py is not installed ({exc}): pip install -e '.[discord]'"
            ) from None
        token = read_token(self.config.token_env, [self.config_dir, Path.cwd()])
        if token is None:
            raise ActorUnusable(
                f"{self.config.token_env} is not set: create a bot (README.md, 'Discord'), put "
                f"{self.config.token_env}=... in .env beside supervisor.toml, then "
                f"`hexbus restart {self.name}`"
            )
        add_secret(token)
        self.client = bot.build_client(self)
        self.attach(bot.ClientPort(self.client))
        if self.config.voice:
            self.voice_links.problem = bot.voice_problem()
        else:
            self.voice_links.problem = "voice is off in my configuration"
        await self.client.log_in(token)
        self.spawn(self.connect(token), name="connect")
        try:
            await asyncio.wait_for(self.settled.wait(), self.config.ready_timeout_s)
        except TimeoutError:
            log.warning(
                "discord.not_ready_yet",
                waited_s=self.config.ready_timeout_s,
                hint="the gateway is unreachable; discord.py keeps reconnecting",
            )
        if self.fatal is not None:
            raise self.fatal

    def attach(self, discord: DiscordPort) -> None:
        """Build the parts over ``discord`` (``setup`` does; in-process tests pass a fake)."""
        self.typing = TypingIndicators(
            discord.send_typing, self.spawn, typing_s=self.config.typing_s
        )
        self.inbox = Inbox(
            self.config,
            self.state,
            discord,
            self.typing,
            publish=self.publish,
            publish_volatile=self.bus.publish_volatile,
            state_changed=self.state_changed,
        )
        self.replies = Replies(
            self.config,
            self.state,
            discord,
            self.typing,
            spawn=self.spawn,
            state_changed=self.state_changed,
        )
        self.voice_links = VoiceLinks(
            self.config,
            self.state,
            discord,
            publish_volatile=self.bus.publish_volatile,
            state_changed=self.state_changed,
        )
        self.suggestions = Suggestions(
            self.config, self.state, discord, state_changed=self.state_changed
        )
        self.port = discord

    async def connect(self, token: str) -> None:
        try:
            await self.client.keep_connected(token, self.give_up)
        finally:
            self.settled.set()

    def give_up(self, reason: str) -> None:
        """Discord refused for a reason only a person can fix. During setup it becomes the actor's
        one-line status; later (a token revoked while running) the actor stops, and the next start
        reports it the same way instead of running deaf."""
        self.fatal = ActorUnusable(reason)
        if self.ready.is_set():
            log.error("discord.refused_by_discord", reason=reason)
            signal.raise_signal(signal.SIGTERM)

    async def teardown(self) -> None:
        # The runtime has cancelled every spawned task by now, the connection's included.
        await self.voice_links.leave_all()
        await self.client.close()

    # -- Discord → bus (called by bot.py) ----------------------------------------------------

    async def on_message(self, message: SeenMessage) -> None:
        await self.inbox.on_message(message)

    def on_connect(self) -> None:
        """A new gateway session (READY parsed): what is missed is counted from here, before
        the session's first live message can move a channel's last seen one."""
        self.inbox.session_began()

    async def on_session(self) -> None:
        """The new session's guilds arrived (on_ready): fetch what was missed meanwhile."""
        self.ready.set()
        self.settled.set()
        if self.live:  # else on_live does it, once the replay has rebuilt what was already taken
            self.after_session()

    def on_resumed(self) -> None:
        # Discord replays what a resumed session missed, but only what it queued for it: look
        # anyway (a few history requests; what was already taken is skipped by its id).
        self.inbox.session_began()
        if self.live:
            self.spawn(self.inbox.catch_up(), name="catch-up")

    def after_session(self) -> None:
        self.spawn(self.inbox.catch_up(), name="catch-up")
        if self.capabilities.allowed("join_voice"):
            self.spawn(self.voice_links.rejoin(), name="voice-rejoin")

    async def on_live(self) -> None:
        self.replies.resume_pending()
        if self.ready.is_set():
            self.after_session()

    # -- bus → Discord -----------------------------------------------------------------------

    @on(ChatMessage)
    async def on_taken(self, event: ChatMessage) -> None:
        envelope = self.envelope
        if envelope is not None and envelope.source == self.name:
            self.inbox.taken(envelope.id, event)

    @on(ReplyChunk)
    async def on_chunk(self, event: ReplyChunk) -> None:
        self.replies.chunk(event)

    @on(Reply)
    async def on_reply(self, event: Reply) -> None:
        self.replies.final(event, adopt=not self.live)

    @on(Notice)
    async def on_notice(self, event: Notice) -> None:
        if event.kind == "fallback":
            return  # which backend answered is for logs and `hexbus tail`, not the conversation
        try:
            channel_id = int(event.channel)
        except ValueError:
            return
        self.spawn(self.replies.notice(channel_id, event.text), name="notice")

    def presence(self, user_id: int, status: str) -> None:
        """A member's status, for the autonomy actor (volatile: the next change says it again)."""
        self.bus.publish_volatile(
            DiscordPresence(person_id=discord_person_id(user_id), status=status), key="discord"
        )

    @on(CapabilityChanged)
    async def on_capability(self, event: CapabilityChanged) -> None:
        """``join_voice`` switched off for everyone: out of every call now, and not back."""
        if not self.capabilities.allowed("join_voice"):
            for guild_id in list(self.voice_links.links):
                await self.voice_links.leave(guild_id)

    @on(DiscordDm)
    async def on_dm(self, event: DiscordDm) -> None:
        """The DM channel with a person, opened if needed; off the loop: Discord may be slow."""
        self.spawn(self.answer_dm(event), name="dm")

    async def answer_dm(self, event: DiscordDm) -> None:
        """Their DM channel, and the call Hex is in with them now, if any."""
        platform, _, user = event.person_id.partition(":")
        if platform != "discord" or not user.isdigit():
            error = f"{event.person_id!r} is not a Discord person id"
            await self.respond(DiscordDmChannel(person_id=event.person_id, error=error))
            return
        call = self.voice_links.call_with(int(user))
        try:
            channel = str(await self.port.dm_channel(int(user)))
        except (Undeliverable, OSError) as exc:
            await self.respond(
                DiscordDmChannel(person_id=event.person_id, error=str(exc), call=call)
            )
            return
        await self.respond(DiscordDmChannel(person_id=event.person_id, channel=channel, call=call))

    @on(MemoryChanged)
    async def on_memory_changed(self, event: MemoryChanged) -> None:
        if event.action == "suggested" and event.ids:
            self.spawn(self.suggestions.propose(event.ids[0], event.detail), name="suggestion")

    @on(SelfmodChanged)
    async def on_selfmod_changed(self, event: SelfmodChanged) -> None:
        if event.proposal is not None and event.proposal.status == "ready" and not event.error:
            self.spawn(self.suggestions.propose_change(event.proposal), name="proposal")
        else:
            assert self.envelope is not None
            outcome = self.suggestions.tell_outcome(event, self.envelope.id)
            self.spawn(outcome, name="proposal-outcome")

    @on(AudioOut)
    async def on_audio(self, event: AudioOut) -> None:
        self.voice_links.play(event, self.blob or b"")

    @on(Speaking)
    async def on_speaking(self, event: Speaking) -> None:
        self.voice_links.speaking(event)
