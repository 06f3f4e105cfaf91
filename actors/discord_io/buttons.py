"""Approve and Reject buttons on what waits for an owner: memory suggestions and her proposals
to change herself. Persistent (a custom id names what they decide), so they work after a
restart; only an owner's click counts. Like ``commands``, only ``bot.py`` imports it.
"""

from __future__ import annotations

import re
from typing import Any

import discord

from actors.discord_io.commands import Interaction, is_owner, refuse
from actors.discord_io.host import BotHost
from actors.discord_io.names import discord_person_id
from schemas import MemoryEdit, SelfmodDecide


def _button(verdict: str, custom_id: str) -> discord.ui.Button[Any]:
    approve = verdict == "approve"
    return discord.ui.Button(
        label="Approve" if approve else "Reject",
        style=discord.ButtonStyle.success if approve else discord.ButtonStyle.danger,
        custom_id=custom_id,
    )


async def _decided(interaction: Interaction, verdict: str) -> None:
    """The prompt says who decided what, and loses its buttons."""
    text = interaction.message.content if interaction.message else ""
    said = "✅ approved" if verdict == "approve" else "❌ rejected"
    await interaction.response.edit_message(
        content=f"{text}\n\n{said} by {interaction.user.mention}"[:2000], view=None
    )


class SuggestionButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"hex:suggest:(?P<verdict>approve|reject):(?P<memory>[\w.:-]+)",
):
    """Approve/Reject on a memory suggestion; persistent, so it works after a restart."""

    def __init__(self, verdict: str, memory: str) -> None:
        super().__init__(_button(verdict, f"hex:suggest:{verdict}:{memory}"))
        self.verdict, self.memory = verdict, memory

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SuggestionButton:
        return cls(match["verdict"], match["memory"])

    async def callback(self, interaction: Interaction) -> None:
        host: BotHost = interaction.client.hex
        if not is_owner(host.config, interaction.user):
            await refuse(interaction, "approving memories")
            return
        await host.publish(
            MemoryEdit(
                id=self.memory,
                approve=self.verdict == "approve",
                by=discord_person_id(interaction.user.id),
            ),
            key="discord",
        )
        await _decided(interaction, self.verdict)
        host.suggestions.settled(self.memory)


class ProposalButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"hex:selfmod:(?P<verdict>approve|reject):(?P<proposal>\d{1,9})",
):
    """Approve/Reject on one of her proposals to change herself; persistent like the memory
    buttons. The click becomes an owner's ``selfmod.decide``; the selfmod actor checks it
    again (the level's switch, expiry, changed files): `hexbus selfmod show` has its answer."""

    def __init__(self, verdict: str, proposal: int) -> None:
        super().__init__(_button(verdict, f"hex:selfmod:{verdict}:{proposal}"))
        self.verdict, self.proposal = verdict, proposal

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ProposalButton:
        return cls(match["verdict"], int(match["proposal"]))

    async def callback(self, interaction: Interaction) -> None:
        host: BotHost = interaction.client.hex
        if not is_owner(host.config, interaction.user):
            await refuse(interaction, "deciding on her changes")
            return
        await host.publish(
            SelfmodDecide(
                action="approve" if self.verdict == "approve" else "reject",
                id=self.proposal,
                by=discord_person_id(interaction.user.id),
                owner=True,
            ),
            key="discord",
        )
        await _decided(interaction, self.verdict)
        host.suggestions.settled(f"selfmod:{self.proposal}")


def proposal_view(proposal: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ProposalButton("approve", proposal))
    view.add_item(ProposalButton("reject", proposal))
    return view


def suggestion_view(memory_id: str) -> discord.ui.View:
    """The Approve and Reject buttons of a memory suggestion's prompt."""
    view = discord.ui.View(timeout=None)
    view.add_item(SuggestionButton("approve", memory_id))
    view.add_item(SuggestionButton("reject", memory_id))
    return view
