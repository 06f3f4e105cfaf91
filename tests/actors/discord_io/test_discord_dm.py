"""Where Hex writes to someone first on Discord: their DM channel, opened on request."""

from __future__ import annotations

import asyncio

from schemas import DiscordDm, DiscordDmChannel, DiscordPresence
from tests.support.discord.memory import MemoryDiscord, actor_on


def test_the_dm_channel_is_opened_once_and_a_closed_dm_or_a_stranger_is_a_clear_answer() -> None:
    async def main() -> None:
        discord = MemoryDiscord()
        h = actor_on(discord)
        h.actor.live = True

        async def ask(person: str) -> DiscordDmChannel:
            before = len(h.bus.published)
            await h.send(DiscordDm(person_id=person), correlation="c1")
            for _ in range(200):
                answers = [
                    e.body
                    for e, _ in h.bus.published[before:]
                    if isinstance(e.body, DiscordDmChannel)
                ]
                if answers:
                    return answers[0]
                await asyncio.sleep(0.01)
            raise AssertionError(f"no answer for {person}")

        try:
            first = await ask("discord:501")
            assert first.channel and not first.error
            assert (await ask("discord:501")).channel == first.channel  # the same DM
            discord.unreachable.add("502")
            closed = await ask("discord:502")
            assert not closed.channel and "403" in closed.error
            stranger = await ask("web:ana")
            assert not stranger.channel and "not a Discord person id" in stranger.error
        finally:
            await h.actor.stop_tasks(2.0)

    asyncio.run(main())


def test_a_members_status_goes_on_the_bus_as_their_person_id() -> None:
    h = actor_on(MemoryDiscord())
    h.actor.presence(501, "dnd")
    (event,) = [e.body for e, _ in h.bus.published if isinstance(e.body, DiscordPresence)]
    assert event == DiscordPresence(person_id="discord:501", status="dnd")


def test_the_answer_names_the_call_hex_is_in_with_them() -> None:
    from actors.discord_io.names import voice_conversation

    async def main() -> None:
        discord = MemoryDiscord()
        discord.voice = {70: 2}
        h = actor_on(discord)
        h.actor.live = True
        try:
            await h.actor.voice_links.connect(7, 70)
            discord.in_calls[70] = {501}
            for person, call in (("discord:501", voice_conversation(70)), ("discord:502", "")):
                before = len(h.bus.published)
                await h.send(DiscordDm(person_id=person), correlation="c1")
                for _ in range(200):
                    got = [
                        e.body
                        for e, _ in h.bus.published[before:]
                        if isinstance(e.body, DiscordDmChannel)
                    ]
                    if got:
                        break
                    await asyncio.sleep(0.01)
                assert got and got[0].call == call and got[0].channel, got
        finally:
            await h.actor.stop_tasks(2.0)

    asyncio.run(main())
