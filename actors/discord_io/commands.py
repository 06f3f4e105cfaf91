"""Slash commands, in Cogs: what everyone may ask, what only owners may, voice (the
approve/reject buttons are in ``buttons``).

Every command answers within Discord's 3 s: quick ones at once, ones that ask another actor
(memory, the supervisor) defer first and follow up. Owner-only ones check the caller against
``owners`` in the actor's config; everyone else gets a polite refusal, and the refusal is logged.

Cogs and views are discord.py's own classes, so this module imports discord.py; only
``bot.py`` imports it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import discord
import structlog
from discord import app_commands
from discord.ext import commands

from actors.discord_io.config import DiscordConfig
from actors.discord_io.host import BotHost
from actors.discord_io.names import discord_person_id
from hexbus import RequestTimeout
from hexbus.control import ControlReply, ControlRequest, SupervisorUnreachable, call
from schemas import (
    CAPABILITIES,
    MemoryAdd,
    MemoryForget,
    MemoryHit,
    MemoryQuery,
    MemoryResult,
    QuietMode,
    SelfmodRequest,
)

log = structlog.get_logger("actors.discord_io")

Interaction = discord.Interaction[Any]
PAGE = 5  # memories per page of /memories
MEMORY_TIMEOUT_S = 5.0


def is_owner(config: DiscordConfig, user: discord.abc.User) -> bool:
    return str(user.id) in config.owners


async def refuse(interaction: Interaction, what: str) -> None:
    log.warning(
        "discord.refused", command=what, user_id=interaction.user.id, user=str(interaction.user)
    )
    await interaction.response.send_message(
        f"Sorry, {what} is only for Hex's owners. If you think you should have it, ask one of them.",
        ephemeral=True,
    )


async def supervisor(host: BotHost, request: ControlRequest, timeout: float = 10.0) -> ControlReply:
    """One command to the supervisor's control socket (blocking ZeroMQ, so off the loop)."""
    return await asyncio.to_thread(call, host.bus.endpoints.control, request, timeout)


def describe(hit: MemoryHit) -> str:
    when = time.strftime("%Y-%m-%d", time.localtime(hit.created)) if hit.created else "?"
    hedge = " (unsure)" if hit.hedge else ""
    quote = f'\n  > "{hit.quote[:150]}"' if hit.quote and hit.quote != hit.text else ""
    return f"**{hit.kind}** · {when}{hedge} · `{hit.id}`\n{hit.text[:300]}{quote}"


class MemoryPages(discord.ui.View):
    """/memories results, a page at a time, with Previous/Next for the person who asked."""

    def __init__(self, query: str, hits: list[MemoryHit], owner_id: int) -> None:
        super().__init__(timeout=600)
        self.query, self.hits, self.owner_id, self.page = query, hits, owner_id, 0
        self.pages = max(1, -(-len(hits) // PAGE))
        self.update_buttons()

    def render(self) -> str:
        if not self.hits:
            return f"I have no memories matching “{self.query}”."
        shown = self.hits[self.page * PAGE : (self.page + 1) * PAGE]
        head = f"Memories for “{self.query}” — page {self.page + 1} of {self.pages}"
        return "\n\n".join([head, *(describe(h) for h in shown)])[:2000]

    def update_buttons(self) -> None:
        self.previous.disabled = self.page == 0
        self.next.disabled = self.page >= self.pages - 1

    async def interaction_check(self, interaction: Interaction) -> bool:
        return interaction.user.id == self.owner_id

    @discord.ui.button(label="Previous", style=discord.ButtonStyle.secondary)
    async def previous(self, interaction: Interaction, button: discord.ui.Button[Any]) -> None:
        self.page = max(0, self.page - 1)
        self.update_buttons()
        await interaction.response.edit_message(content=self.render(), view=self)

    @discord.ui.button(label="Next", style=discord.ButtonStyle.secondary)
    async def next(self, interaction: Interaction, button: discord.ui.Button[Any]) -> None:
        self.page = min(self.pages - 1, self.page + 1)
        self.update_buttons()
        await interaction.response.edit_message(content=self.render(), view=self)


class Everyone(commands.Cog):
    """Commands anyone who talks to Hex may use."""

    def __init__(self, host: BotHost) -> None:
        self.host = host

    async def ask_memory(self, query: MemoryQuery) -> MemoryResult | None:
        try:
            return await self.host.request(query, MemoryResult, timeout=MEMORY_TIMEOUT_S)
        except RequestTimeout:
            return None

    @app_commands.command(name="remember", description="Ask Hex to remember something about you")
    @app_commands.describe(text="What Hex should remember")
    async def remember(
        self, interaction: Interaction, text: app_commands.Range[str, 1, 1000]
    ) -> None:
        person = discord_person_id(interaction.user.id)
        await self.host.publish(
            MemoryAdd(text=text, kind="fact", person_id=person, importance=0.6, by=person),
            key="discord",
        )
        await interaction.response.send_message(f"I'll remember that: “{text}”", ephemeral=True)

    @app_commands.command(name="forget", description="Ask Hex to forget memories matching a search")
    @app_commands.describe(query="Words from the memories to forget")
    async def forget(
        self, interaction: Interaction, query: app_commands.Range[str, 1, 300]
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        person = discord_person_id(interaction.user.id)
        # Owners may forget any memory; everyone else only memories about themselves.
        scope = "" if is_owner(self.host.config, interaction.user) else person
        result = await self.ask_memory(MemoryQuery(text=query, person_id=scope, k=10))
        if result is None:
            await interaction.followup.send(
                "My memory isn't answering right now; nothing was forgotten. "
                "Try again in a minute.",
                ephemeral=True,
            )
            return
        hits = [h for h in result.hits if h.score > 0 and (not scope or h.person_id == scope)]
        if not hits:
            await interaction.followup.send(
                f"I have no memories of yours matching “{query}”.", ephemeral=True
            )
            return
        await self.host.publish(
            MemoryForget(ids=tuple(h.id for h in hits), by=person), key="discord"
        )
        listing = "\n".join(f"• {h.text[:150]}" for h in hits)
        await interaction.followup.send(
            f"Forgotten ({len(hits)}):\n{listing}"[:2000], ephemeral=True
        )

    @app_commands.command(name="memories", description="Search what Hex remembers (about you)")
    @app_commands.describe(query="What to look for")
    async def memories(
        self, interaction: Interaction, query: app_commands.Range[str, 1, 300]
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        scope = (
            ""
            if is_owner(self.host.config, interaction.user)
            else discord_person_id(interaction.user.id)
        )
        result = await self.ask_memory(MemoryQuery(text=query, person_id=scope, k=50))
        if result is None:
            await interaction.followup.send(
                "My memory isn't answering right now. Try again in a minute.", ephemeral=True
            )
            return
        hits = [h for h in result.hits if not scope or h.person_id == scope]
        pages = MemoryPages(query, hits, interaction.user.id)
        await interaction.followup.send(pages.render(), view=pages, ephemeral=True)

    @app_commands.command(
        name="quiet", description="Hex stays quiet here unless spoken to directly"
    )
    @app_commands.describe(minutes="How long (0 ends quiet mode)")
    async def quiet(
        self, interaction: Interaction, minutes: app_commands.Range[int, 0, 10080] = 60
    ) -> None:
        until = time.time() + minutes * 60 if minutes else 0.0
        channel = str(interaction.channel_id)
        await self.host.publish(
            QuietMode(scope="channel", target=channel, until=until), key="discord"
        )
        text = (
            f"I'll keep quiet here for {minutes} minutes unless you mention me."
            if minutes
            else "Quiet mode is off here."
        )
        await interaction.response.send_message(text)

    @app_commands.command(
        name="capabilities", description="What Hex may do; switch what concerns you off or on"
    )
    @app_commands.describe(
        name="The capability to switch (leave it out to see them all)",
        on="On or off",
        everyone="For everyone, not only you (owners only)",
    )
    @app_commands.choices(
        name=[app_commands.Choice(name=c.name, value=c.name) for c in CAPABILITIES]
    )
    async def capabilities(
        self,
        interaction: Interaction,
        name: str = "",
        on: bool | None = None,
        everyone: bool = False,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        person = discord_person_id(interaction.user.id)
        owner = is_owner(self.host.config, interaction.user)
        try:
            if not name or on is None:  # the list, truthfully, from the supervisor's switches
                reply = await supervisor(self.host, ControlRequest(cmd="capability", person=person))
                rows = reply.data.get("capabilities", [])
                lines = [
                    f"{'**on** ' if r['enabled'] else 'off '} `{r['name']}`: {r['description']}"
                    for r in rows
                ]
                head = "What I may do, for you (an owner switches things for everyone):"
                await interaction.followup.send("\n".join([head, *lines])[:2000], ephemeral=True)
                return
            request = ControlRequest(
                cmd="capability",
                capability=name,
                enabled=on,
                person="" if everyone else person,
                by=person,
                via="discord",
                owner=owner,
            )
            reply = await supervisor(self.host, request)
        except SupervisorUnreachable:
            await interaction.followup.send("The supervisor isn't answering.", ephemeral=True)
            return
        if not reply.ok:
            log.warning(
                "discord.capability_refused", user_id=interaction.user.id, error=reply.error
            )
        text = reply.message if reply.ok else f"I can't do that: {reply.error}."
        await interaction.followup.send(text, ephemeral=True)

    @app_commands.command(name="status", description="How Hex's parts are doing")
    async def status(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            reply = await supervisor(self.host, ControlRequest(cmd="status"))
        except SupervisorUnreachable:
            await interaction.followup.send("The supervisor isn't answering.", ephemeral=True)
            return
        lines = []
        for name, info in sorted(reply.data.items()):
            state = info.get("state", "?")
            extra = (
                f" — {info['reason']}"
                if state not in ("live", "starting") and info.get("reason")
                else ""
            )
            restarts = f", {info['restarts']} restarts" if info.get("restarts") else ""
            lines.append(f"`{name}`: {state}{restarts}{extra}")
        await interaction.followup.send("\n".join(lines)[:2000] or "No actors.", ephemeral=True)


class Owners(commands.Cog):
    """Commands for Hex's owners only."""

    def __init__(self, host: BotHost) -> None:
        self.host = host

    @app_commands.command(name="restart", description="Owner only: restart one of Hex's actors")
    @app_commands.describe(actor="The actor's name (see /status)")
    async def restart(
        self, interaction: Interaction, actor: app_commands.Range[str, 1, 64]
    ) -> None:
        if not is_owner(self.host.config, interaction.user):
            await refuse(interaction, "/restart")
            return
        log.warning(
            "discord.owner_command", command="restart", actor=actor, user_id=interaction.user.id
        )
        await interaction.response.defer(thinking=True)
        try:
            reply = await supervisor(self.host, ControlRequest(cmd="restart", name=actor))
        except SupervisorUnreachable:
            await interaction.followup.send("The supervisor isn't answering.")
            return
        await interaction.followup.send(
            reply.message.capitalize() + "." if reply.ok else reply.error
        )

    @app_commands.command(
        name="change", description="Owner only: ask Hex to change how she talks (a proposal)"
    )
    @app_commands.describe(
        request='What to change, in your words ("be less sarcastic")',
        setting="The persona setting (such as reactions.greeting); leave it out to let the words choose",
    )
    async def change(
        self,
        interaction: Interaction,
        request: app_commands.Range[str, 1, 500],
        setting: app_commands.Range[str, 1, 80] | None = None,
    ) -> None:
        if not is_owner(self.host.config, interaction.user):
            await refuse(interaction, "/change")
            return
        log.info("discord.owner_command", command="change", user_id=interaction.user.id)
        await self.host.publish(
            SelfmodRequest(
                text=request,
                by=discord_person_id(interaction.user.id),
                owner=True,
                key=(setting or "").strip(),
                conversation=f"discord:{interaction.channel_id}",
            )
        )
        await interaction.response.send_message(
            "Asked. The brain drafts the change and the sandbox tests it; once it is ready it "
            "comes to the owners with Approve and Reject. Not drafted if `selfmod.propose` is "
            "off or the setting is protected (selfmod's log says why, as `selfmod.changed`).",
            ephemeral=True,
        )

    @app_commands.command(
        name="killswitch", description="Owner only: stop every actor but this responder"
    )
    async def killswitch(self, interaction: Interaction) -> None:
        if not is_owner(self.host.config, interaction.user):
            await refuse(interaction, "/killswitch")
            return
        log.warning("discord.owner_command", command="killswitch", user_id=interaction.user.id)
        await interaction.response.defer(thinking=True)
        try:
            reply = await supervisor(
                self.host,
                ControlRequest(
                    cmd="killswitch",
                    keep=(self.host.name,),
                    name=f"/killswitch by {interaction.user}",
                ),
                timeout=60,
            )
        except SupervisorUnreachable:
            await interaction.followup.send("The supervisor isn't answering: nothing was stopped.")
            return
        if not reply.ok:
            await interaction.followup.send(f"The kill switch failed: {reply.error}")
            return
        stopped = ", ".join(f"`{n}`" for n in reply.data.get("stopped", [])) or "nothing"
        await interaction.followup.send(
            f"Kill switch thrown. Stopped: {stopped}. Only the supervisor, the bus and I (the Discord "
            f"responder) are still running; I can't think or remember until an owner brings the rest back "
            f"(`/restart NAME` or `hexbus restart NAME`)."
        )


class VoiceCommands(
    commands.GroupCog, group_name="voice", group_description="Hex in voice channels"
):
    def __init__(self, host: BotHost) -> None:
        self.host = host
        super().__init__()

    @app_commands.command(name="join", description="Hex joins your voice channel")
    async def join(self, interaction: Interaction) -> None:
        links = self.host.voice_links
        if links.problem:
            await interaction.response.send_message(
                f"I can't do voice here: {links.problem}.", ephemeral=True
            )
            return
        voice = getattr(interaction.user, "voice", None)
        if interaction.guild is None or voice is None or voice.channel is None:
            await interaction.response.send_message(
                "Join a voice channel first, then ask me again.", ephemeral=True
            )
            return
        person = discord_person_id(interaction.user.id)
        if not self.host.capabilities.allowed("join_voice", person):
            await interaction.response.send_message(
                "Joining calls is switched off for you (`/capabilities`).", ephemeral=True
            )
            return
        channel = voice.channel
        await interaction.response.defer(thinking=True)
        try:
            await links.connect(channel.guild.id, channel.id)
        except (
            TimeoutError,
            discord.ClientException,
            discord.HTTPException,
            RuntimeError,
            OSError,
        ) as exc:
            log.error(
                "discord.voice.join_failed",
                channel=channel.id,
                error=f"{type(exc).__name__}: {exc}",
            )
            await interaction.followup.send(
                f"I couldn't join {channel.mention}: {type(exc).__name__}. "
                "It's logged; try again in a moment."
            )
            return
        await interaction.followup.send(f"I'm in {channel.mention}. Talk to me!")

    @app_commands.command(name="leave", description="Hex leaves the voice channel")
    async def leave(self, interaction: Interaction) -> None:
        guild_id = interaction.guild.id if interaction.guild is not None else None
        links = self.host.voice_links
        if not links.joined(guild_id):
            await links.leave(guild_id)  # not to be rejoined after a restart either
            await interaction.response.send_message(
                "I'm not in a voice channel here.", ephemeral=True
            )
            return
        # Leaving can wait out a join in flight: answered within Discord's 3 s all the same.
        await interaction.response.defer(thinking=True)
        await links.leave(guild_id)
        await interaction.followup.send("Left the voice channel.")
