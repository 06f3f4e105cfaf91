"""Where Hex writes to someone first on Discord: their DM channel, opened on request, and the
call she is in with them, if any; and members' status on the bus."""

from __future__ import annotations

import asyncio

from actors.discord_io.actor import DiscordActor
from actors.discord_io.names import voice_conversation
from hexbus.testing import ActorHarness
from schemas import DiscordDm, DiscordDmChannel, DiscordPresence
from tests.support.discord.memory import MemoryDiscord, actor_on


async def ask(h: ActorHarness[DiscordActor], person: str) -> DiscordDmChannel:
    """The actor's answer to a DM request (answered from a task of its own)."""
    before = len(h.bus.published)
    await h.send(DiscordDm(person_id=person), correlation="c1")
    for _ in range(200):
        for envelope, _ in h.bus.published[before:]:
            if isinstance(envelope.body, DiscordDmChannel):
                return envelope.body
        await asyncio.sleep(0.01)
    raise AssertionError(f"no answer for {person}")


def test_the_dm_channel_is_opened_once_and_a_closed_dm_or_a_stranger_is_a_clear_answer() -> None:
    async def main() -> None:
        discord = MemoryDiscord()
        h = actor_on(discord)
        h.actor.live = True
        try:
            first = await ask(h, "discord:501")
            assert first.channel and not first.error and not first.call
            assert (await ask(h, "discord:501")).channel == first.channel  # the same DM
            discord.unreachable.add("502")
            closed = await ask(h, "discord:502")
            assert not closed.channel and "403" in closed.error
            stranger = await ask(h, "web:ana")
            assert not stranger.channel and "not a Discord person id" in stranger.error
        finally:
            await h.actor.stop_tasks(2.0)

    asyncio.run(main())


def test_the_answer_names_the_call_hex_is_in_with_them() -> None:
    async def main() -> None:
        discord = MemoryDiscord()
        discord.voice = {70: 2}
        h = actor_on(discord)
        h.actor.live = True
        try:
            await h.actor.voice_links.connect(7, 70)
            discord.in_calls[70] = {501}
            assert (await ask(h, "discord:501")).call == voice_conversation(70)
            other = await ask(h, "discord:502")
            assert other.channel and other.call == ""
        finally:
            await h.actor.stop_tasks(2.0)

    asyncio.run(main())


def test_a_members_status_goes_on_the_bus_as_their_person_id() -> None:
    h = actor_on(MemoryDiscord())
    h.actor.presence(501, "dnd")
    (event,) = [e.body for e, _ in h.bus.published if isinstance(e.body, DiscordPresence)]
    assert event == DiscordPresence(person_id="discord:501", status="dnd")
