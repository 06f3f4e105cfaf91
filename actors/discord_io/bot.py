"""The discord.py client the Discord actor drives: intents, events, slash commands, buttons."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import discord
import discord.http
import structlog
from discord import app_commands
from discord.ext import commands

if TYPE_CHECKING:
    from actors.discord_io.actor import DiscordActor

log = structlog.get_logger("actors.discord_io")


def intents() -> discord.Intents:
    """What Hex asks of the gateway: guild messages and DMs with their content (privileged),
    members (privileged: names and who is in a voice channel), voice states."""
    wanted = discord.Intents.default()
    wanted.message_content = True
    wanted.members = True
    wanted.voice_states = True
    return wanted


class HexBot(commands.Bot):
    """discord.py's bot, with its events handed to the actor."""

    def __init__(self, actor: DiscordActor, **options: Any) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents(),
            help_command=None,
            max_messages=1000,
            guild_ready_timeout=actor.config.guild_ready_timeout_s,
            **options,
        )
        self.hex = actor

    async def setup_hook(self) -> None:
        from actors.discord_io.commands import Everyone, Owners, SuggestionButton, Voice

        await self.add_cog(Everyone(self.hex))
        await self.add_cog(Owners(self.hex))
        await self.add_cog(Voice(self.hex))
        self.add_dynamic_items(SuggestionButton)
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
        guild = (
            discord.Object(id=int(self.hex.config.guild_id)) if self.hex.config.guild_id else None
        )
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
        log.info(
            "discord.commands_synced", count=len(synced), guild=self.hex.config.guild_id or "global"
        )

    async def on_ready(self) -> None:
        log.info("discord.ready", user=str(self.user), guilds=len(self.guilds))
        await self.hex.on_session()

    async def on_resumed(self) -> None:
        # Discord replays what a resumed session missed, but only what it queued for it: look anyway
        # (a few history requests; what was already taken is skipped by its id).
        log.info("discord.resumed")
        if self.hex.live:
            self.hex.spawn(self.hex.catch_up(), "discord-catch-up")

    async def on_message(self, message: discord.Message) -> None:  # no prefix commands: slash only
        await self.hex.on_discord_message(message)

    async def on_voice_state_update(
        self, member: discord.Member, before: discord.VoiceState, after: discord.VoiceState
    ) -> None:
        from actors.discord_io.voice_link import on_voice_state

        await on_voice_state(self.hex, member, before, after)

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


def build_client(actor: DiscordActor) -> HexBot:
    if actor.config.api_base:
        # A Discord-compatible server (the tests' loopback server, or a proxy). REST and interaction
        # webhooks share one Route class; discord.py's unsharded client connects to its default
        # gateway without asking GET /gateway/bot, so that address is set too.
        import discord.gateway
        import yarl

        discord.http.Route.BASE = actor.config.api_base.rstrip("/")
        if actor.config.gateway_url:
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(actor.config.gateway_url)
    options: dict[str, Any] = {}
    if actor.config.ca_file:
        # discord.py's documented connector option: every HTTPS and WSS connection (REST, gateway,
        # voice) also trusts these certificates. Voice gateways are always wss://.
        import ssl

        import aiohttp

        context = ssl.create_default_context()
        context.load_verify_locations(cafile=actor.config.ca_file)
        options["connector"] = aiohttp.TCPConnector(ssl=context)
    return HexBot(actor, **options)
