"""The discord.py side of the actor: the client (intents, gateway events, slash commands) and
:class:`ClientPort`, the only way the actor's parts reach Discord.

The only module of the actor that imports discord.py, apart from the slash commands' Cogs and
the voice bridge's audio classes (both subclasses of discord.py's own, imported from here). The
actor imports this module in ``setup``, where a missing discord.py becomes a one-line reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, cast

import discord
import discord.http
import structlog
from discord import app_commands
from discord.ext import commands

from actors.discord_io.buttons import (
    ProposalButton,
    SuggestionButton,
    proposal_view,
    suggestion_view,
)
from actors.discord_io.commands import Everyone, Owners, VoiceCommands
from actors.discord_io.config import SETUP_FIXES
from actors.discord_io.host import BotHost
from actors.discord_io.port import OnAudio, OnEnd, SeenMessage, Speech, VoiceCall
from actors.discord_io.replies import Undeliverable
from actors.discord_io.voice_links import HEARD_RATE
from hexbus import ActorUnusable
from schemas import Attachment

__all__ = ["ClientPort", "HexBot", "build_client", "intents", "seen_message", "voice_problem"]

log = structlog.get_logger("actors.discord_io")

RECONNECT_S = 5.0


NO_MENTIONS: Final = discord.AllowedMentions.none()  # replied_user False too: no reply ping


def intents(presence: bool = False) -> discord.Intents:
    """What Hex asks of the gateway: guild messages and DMs with their content (privileged),
    members (privileged: names and who is in a voice channel), voice states, and with
    ``presence`` members' online status (privileged)."""
    wanted = discord.Intents.default()
    wanted.message_content = True
    wanted.members = True
    wanted.voice_states = True
    wanted.presences = presence
    return wanted


class HexBot(commands.Bot):
    """discord.py's bot, with its events handed to the actor."""

    def __init__(self, host: BotHost, **options: Any) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents(host.config.presence),
            help_command=None,
            max_messages=1000,
            guild_ready_timeout=host.config.guild_ready_timeout_s,
            # Whatever a model writes, nothing Hex posts, edits or answers pings anyone:
            # "@everyone", a role or a third person stay plain text. Every call below says so
            # again, so no default of discord.py's can widen it.
            allowed_mentions=NO_MENTIONS,
            # Statuses are read from each presence's own event (on_raw_presence_update).
            enable_raw_presences=host.config.presence,
            **options,
        )
        self.hex = host
        self.statuses: dict[int, str] = {}  # each member's status as the last presence said

    async def setup_hook(self) -> None:
        await self.add_cog(Everyone(self.hex))
        await self.add_cog(Owners(self.hex))
        await self.add_cog(VoiceCommands(self.hex))
        self.add_dynamic_items(SuggestionButton, ProposalButton)
        self.tree.on_error = self.app_command_error  # type: ignore[method-assign]
        if self.hex.config.sync_commands:
            try:
                await self.sync_commands()
            except discord.HTTPException as exc:
                log.error(
                    "discord.commands_not_synced",
                    error=f"{exc.status}: {exc.text}",
                    hint="slash commands keep their last registered form; the bot runs on",
                )

    async def sync_commands(self) -> None:
        """Register the slash commands with Discord, only when they changed since the last start."""
        config = self.hex.config
        guild = discord.Object(id=int(config.guild_id)) if config.guild_id else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        payload = [c.to_dict(self.tree) for c in self.tree.get_commands(guild=guild)]
        digest = hashlib.sha256(
            json.dumps([payload, str(guild and guild.id)], sort_keys=True).encode()
        ).hexdigest()
        if digest == self.hex.state.commands_digest:
            return
        synced = await self.tree.sync(guild=guild)
        self.hex.state.commands_digest = digest
        self.hex.state_changed()
        log.info("discord.commands_synced", count=len(synced), guild=config.guild_id or "global")

    async def log_in(self, token: str) -> None:
        """Log in once before connecting, so a refused token is the actor's one-line reason."""
        try:
            await self.login(token)
        except discord.LoginFailure:
            raise ActorUnusable(
                f"Discord refused the token in {self.hex.config.token_env} (401): reset it in the "
                f"developer portal's Bot page and update .env ({SETUP_FIXES})"
            ) from None
        except (discord.HTTPException, OSError) as exc:
            # Discord unreachable or failing: the connection keeps trying; the bus side runs meanwhile.
            log.warning(
                "discord.login_failed",
                error=f"{type(exc).__name__}: {exc}",
                hint="retrying in the background",
            )

    async def keep_connected(self, token: str, give_up: Callable[[str], None]) -> None:
        """Hold the gateway session until the client closes; ``give_up`` with a reason when
        Discord refuses for a reason only a person can fix."""
        while True:
            try:
                if not self.is_ready() and self.http.token is None:
                    await self.login(token)
                await self.connect(reconnect=True)
                return
            except discord.PrivilegedIntentsRequired:
                give_up(
                    "Discord refused the bot's intents: enable MESSAGE CONTENT and SERVER MEMBERS "
                    "under Privileged Gateway Intents on the developer portal's Bot page "
                    f"({SETUP_FIXES})"
                )
                return
            except discord.LoginFailure:
                give_up(
                    f"Discord refused the token in {self.hex.config.token_env}: reset it and "
                    f"update .env ({SETUP_FIXES})"
                )
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "discord.connect_failed",
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_s=RECONNECT_S,
                )
                await asyncio.sleep(RECONNECT_S)

    async def on_connect(self) -> None:
        # Dispatched as READY is parsed, before any message of the session; on_ready waits
        # for the guilds (up to guild_ready_timeout) while messages already flow.
        self.hex.on_connect()

    async def on_ready(self) -> None:
        log.info("discord.ready", user=str(self.user), guilds=len(self.guilds))
        await self.hex.on_session()

    async def on_resumed(self) -> None:
        log.info("discord.resumed")
        self.hex.on_resumed()

    async def on_message(self, message: discord.Message) -> None:  # no prefix commands: slash only
        await self.hex.on_message(seen_message(message, self.user))

    async def on_raw_presence_update(self, presence: discord.RawPresenceUpdateEvent) -> None:
        """A member's status, as its own event says: ``on_presence_update``'s ``after`` is the
        live member, which a second presence parsed before the first's handler ran has already
        changed (a quick "dnd" then "offline" was told as "offline" twice). A member's first
        presence since the bot started is told whatever it says; then only changes."""
        status = str(presence.client_status.status)
        if presence.guild_id is None or self.statuses.get(presence.user_id) == status:
            return
        self.statuses[presence.user_id] = status
        self.hex.presence(presence.user_id, status)

    async def on_voice_state_update(
        self, member: discord.Member, before: discord.VoiceState, after: discord.VoiceState
    ) -> None:
        await self.hex.voice_links.on_voice_state(
            member.guild.id,
            member.id,
            before.channel.id if before.channel is not None else None,
            after.channel.id if after.channel is not None else None,
        )

    async def app_command_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        log.error(
            "discord.command_failed",
            command=interaction.command and interaction.command.qualified_name,
            error=f"{type(error).__name__}: {error}",
        )
        text = "Something went wrong with that command; it is logged. Try again?"
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException:
            pass


def build_client(host: BotHost) -> HexBot:
    config = host.config
    if config.api_base:
        # A Discord-compatible server (the tests' loopback server, or a proxy). REST and interaction
        # webhooks share one Route class; discord.py's unsharded client connects to its default
        # gateway without asking GET /gateway/bot, so that address is set too.
        import discord.gateway
        import yarl

        discord.http.Route.BASE = config.api_base.rstrip("/")
        if config.gateway_url:
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(config.gateway_url)
    options: dict[str, Any] = {}
    if config.ca_file:
        # discord.py's documented connector option: every HTTPS and WSS connection (REST, gateway,
        # voice) also trusts these certificates. Voice gateways are always wss://.
        import ssl

        import aiohttp

        context = ssl.create_default_context()
        context.load_verify_locations(cafile=config.ca_file)
        options["connector"] = aiohttp.TCPConnector(ssl=context)
    return HexBot(host, **options)


def voice_problem() -> str:
    """Why voice cannot work here ("" when it can): libopus and the voice packages are needed."""
    try:
        import discord.opus

        from actors.discord_io import voice  # noqa: F401  (voice-recv, davey, soxr)
    except ImportError as exc:
        problem = f"voice packages missing ({exc}): pip install -e '.[discord]'"
    else:
        if discord.opus.is_loaded() or discord.opus._load_default():
            return ""
        problem = (
            "libopus is not installed: apt-get install libopus0 (Debian/Ubuntu), then restart me"
        )
    log.warning("discord.voice_unavailable", problem=problem)
    return problem


def seen_message(message: discord.Message, me: discord.ClientUser | None) -> SeenMessage:
    """A discord.py message as the actor's parts read it."""
    ref = message.reference
    resolved = ref.resolved if ref is not None else None
    return SeenMessage(
        id=message.id,
        channel_id=message.channel.id,
        author_id=message.author.id,
        author_name=message.author.display_name,
        author_bot=message.author.bot,
        content=message.content,
        in_dm=message.guild is None or isinstance(message.channel, discord.DMChannel),
        mentions_me=me is not None and me in message.mentions,
        replies_to_me=(
            me is not None and isinstance(resolved, discord.Message) and resolved.author.id == me.id
        ),
        reference_id=ref.message_id if ref is not None else None,
        ordinary=message.type in (discord.MessageType.default, discord.MessageType.reply),
        attachments=tuple(
            Attachment(
                filename=a.filename, content_type=a.content_type or "", size=a.size, url=a.url
            )
            for a in message.attachments
        ),
    )


class ClientPort:
    """:class:`actors.discord_io.port.DiscordPort` over discord.py's client."""

    def __init__(self, client: HexBot) -> None:
        self.client = client

    @property
    def me(self) -> int:
        user = self.client.user
        return user.id if user is not None else 0

    def messageable(self, channel_id: int) -> discord.abc.Messageable:
        """The channel, from the cache when known (its messages then carry guild and members)."""
        channel = self.client.get_channel(channel_id)
        if isinstance(channel, discord.abc.Messageable):
            return channel
        return self.client.get_partial_messageable(channel_id)

    async def send_typing(self, channel_id: int) -> None:
        await self.client.http.send_typing(channel_id)

    async def history(
        self, channel_id: int, *, after: int, limit: int
    ) -> AsyncIterator[SeenMessage]:
        channel = self.messageable(channel_id)
        async for message in channel.history(
            after=discord.Object(id=after), limit=limit, oldest_first=True
        ):
            yield seen_message(message, self.client.user)

    async def post(
        self, channel_id: int, text: str, *, reference: int | None = None, nonce: str = ""
    ) -> int:
        channel = self.client.get_partial_messageable(channel_id)
        extra: dict[str, Any] = {}
        if reference is not None:
            extra["reference"] = discord.MessageReference(
                message_id=reference, channel_id=channel_id, fail_if_not_exists=False
            )
        if nonce:
            extra["nonce"] = nonce  # discord.py sets enforce_nonce with it
        try:
            sent = await channel.send(text, allowed_mentions=NO_MENTIONS, **extra)
        except (discord.Forbidden, discord.NotFound) as exc:
            raise Undeliverable(f"{exc.status}: {exc.text}") from None
        return sent.id

    async def edit(self, channel_id: int, message_id: int, text: str) -> None:
        message = self.client.get_partial_messageable(channel_id).get_partial_message(message_id)
        try:
            await message.edit(content=text, allowed_mentions=NO_MENTIONS)
        except discord.Forbidden as exc:
            raise Undeliverable(f"{exc.status}: {exc.text}") from None

    async def delete(self, channel_id: int, message_id: int) -> None:
        message = self.client.get_partial_messageable(channel_id).get_partial_message(message_id)
        try:
            await message.delete()
        except discord.NotFound:
            pass

    async def suggestion_targets(
        self, channels: tuple[str, ...], owners: tuple[str, ...]
    ) -> list[int]:
        if channels:
            return [int(c) for c in channels]
        targets: list[int] = []
        for owner in owners:
            try:
                user = self.client.get_user(int(owner)) or await self.client.fetch_user(int(owner))
                targets.append((await user.create_dm()).id)
            except discord.HTTPException as exc:
                log.warning(
                    "discord.owner_unreachable", owner=owner, error=f"{exc.status}: {exc.text}"
                )
        return targets

    async def dm_channel(self, user_id: int) -> int:
        try:
            user = self.client.get_user(user_id) or await self.client.fetch_user(user_id)
            return (await user.create_dm()).id
        except discord.HTTPException as exc:
            raise Undeliverable(f"{exc.status}: {exc.text}") from None

    async def post_suggestion(self, channel_id: int, memory_id: str, text: str) -> int:
        channel = self.client.get_partial_messageable(channel_id)
        sent = await channel.send(
            text, view=suggestion_view(memory_id), allowed_mentions=NO_MENTIONS
        )
        return sent.id

    async def post_proposal(self, channel_id: int, proposal: int, text: str) -> int:
        channel = self.client.get_partial_messageable(channel_id)
        sent = await channel.send(text, view=proposal_view(proposal), allowed_mentions=NO_MENTIONS)
        return sent.id

    def voice_channel(self, channel_id: int) -> discord.VoiceChannel | discord.StageChannel | None:
        channel = self.client.get_channel(channel_id)
        if isinstance(channel, discord.VoiceChannel | discord.StageChannel):
            return channel
        return None

    def voice_members(self, channel_id: int) -> int | None:
        channel = self.voice_channel(channel_id)
        if channel is None:
            return None
        return sum(1 for m in channel.members if not m.bot)

    def in_voice(self, channel_id: int, user_id: int) -> bool:
        channel = self.voice_channel(channel_id)
        return channel is not None and any(m.id == user_id for m in channel.members)

    async def dial(self, channel_id: int, *, timeout: float) -> VoiceCall:
        from discord.ext import voice_recv

        channel = self.voice_channel(channel_id)
        if channel is None:
            raise discord.ClientException(f"{channel_id} is not a voice channel Hex can see")
        call: VoiceCall = await channel.connect(
            cls=voice_recv.VoiceRecvClient, timeout=timeout, self_deaf=False
        )
        return call

    def listen(self, call: VoiceCall, on_audio: OnAudio, on_end: OnEnd) -> None:
        from actors.discord_io.voice import UserAudioSink

        sink = UserAudioSink(
            on_audio, asyncio.get_running_loop(), out_rate=HEARD_RATE, on_end=on_end
        )
        cast(Any, call).listen(sink)  # dial made it a VoiceRecvClient

    def new_speech(self) -> Speech:
        from actors.discord_io.voice import BusAudioSource

        return BusAudioSource()
