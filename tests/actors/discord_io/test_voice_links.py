"""Voice links in-process (the actor's part over an in-memory Discord): joining, hearing each
member as their own stream, playing audio.out, barge-in, leaving empty channels, rejoining."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from actors.discord_io.actor import DiscordActor
from actors.discord_io.names import voice_conversation
from hexbus.testing import ActorHarness
from schemas import AudioFrame, AudioOut, Speaking
from tests.support.discord.memory import HEX, MemoryDiscord, actor_on

GUILD, ROOM, OTHER_ROOM = 7, 70, 71
ANA, BO = 501, 502
TALK = voice_conversation(ROOM)

Scenario = Callable[[ActorHarness[DiscordActor], MemoryDiscord], Awaitable[None]]


def run(scenario: Scenario) -> None:
    async def main() -> None:
        discord = MemoryDiscord()
        discord.voice = {ROOM: 2, OTHER_ROOM: 1}
        harness = actor_on(discord)
        harness.actor.live = True
        try:
            await scenario(harness, discord)
        finally:
            await harness.actor.stop_tasks(2.0)

    asyncio.run(main())


def audio_out(seq: int, *, channel: str = TALK) -> AudioOut:
    return AudioOut(channel=channel, reply_to="r1", sentence=0, seq=seq, rate=24_000)


def test_joining_is_saved_at_once_and_each_member_is_heard_as_their_own_stream() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        await h.actor.voice_links.connect(GUILD, ROOM)
        assert h.state.voice == {str(GUILD): ROOM}
        (call,) = d.calls
        call.hear(ANA, "ana", b"\x01\x00" * 320)
        call.hear(BO, "bo", b"\x02\x00" * 320)
        call.hear(ANA, "ana", b"\x03\x00" * 320)
        call.stop_hearing(ANA, "ana")  # stopped sending: a pause of unknown length
        call.hear(ANA, "ana", b"\x04\x00" * 320)
        call.stop_hearing(ANA, "ana", left=True)
        frames = [(e.body, blob) for e, blob in h.bus.published if isinstance(e.body, AudioFrame)]
        ana = [f for f, _ in frames if f.source == f"discord:{GUILD}:{ANA}"]
        assert [f.seq for f in ana] == [0, 1, 2, 3, 4]
        assert [(f.paused, f.end) for f in ana] == [(False, False)] * 2 + [
            (True, False),
            (False, False),
            (False, True),
        ]
        assert {f.person_id for f in ana} == {f"discord:{ANA}"}
        assert {f.channel for f, _ in frames} == {TALK} and {f.rate for f, _ in frames} == {16000}
        assert frames[1][1] == b"\x02\x00" * 320

    run(scenario)


def test_audio_out_plays_in_its_channel_and_a_stop_drains_it_or_drops_it_on_barge_in() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        await h.actor.voice_links.connect(GUILD, ROOM)
        (call,) = d.calls
        await h.send(audio_out(0), key=TALK, blob=b"\x00\x01" * 100)
        await h.send(audio_out(1), key=TALK, blob=b"\x00\x02" * 100)
        await h.send(audio_out(0, channel="discord-voice-999"), key="x", blob=b"\x00" * 10)
        (speech,) = d.speeches
        assert call.played == [speech] and [rate for _, rate in speech.fed] == [24_000, 24_000]
        await h.send(Speaking(channel=TALK, reply_to="r1", state="stop"), key=TALK)
        assert speech.finished and not speech.cleared
        speech.ended = True  # played out
        await h.send(audio_out(0), key=TALK, blob=b"\x00\x03" * 100)
        second = d.speeches[-1]
        assert second is not speech and call.played[-1] is second
        await h.send(
            Speaking(channel=TALK, reply_to="r2", state="stop", interrupted=True), key=TALK
        )
        assert second.cleared

    run(scenario)


def test_hex_leaves_a_channel_only_bots_are_left_in_and_forgets_it() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        links = h.actor.voice_links
        await links.connect(GUILD, ROOM)
        d.voice[ROOM] = 1
        await links.on_voice_state(GUILD, ANA, ROOM, None)  # one of two leaves
        assert links.linked(GUILD)
        await links.on_voice_state(GUILD, BO, OTHER_ROOM, None)  # someone elsewhere
        assert links.linked(GUILD)
        d.voice[ROOM] = 0
        await links.on_voice_state(GUILD, BO, ROOM, None)
        assert not links.linked(GUILD) and not h.state.voice and not d.calls[0].connected

    run(scenario)


def test_a_link_discord_closed_when_hex_was_moved_out_is_forgotten() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        links = h.actor.voice_links
        await links.connect(GUILD, ROOM)
        d.calls[0].connected = False
        await links.on_voice_state(GUILD, HEX, ROOM, None)
        assert not links.linked(GUILD) and not h.state.voice

    run(scenario)


def test_joining_another_channel_leaves_the_first_and_joining_the_same_one_is_a_no_op() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        links = h.actor.voice_links
        first = await links.connect(GUILD, ROOM)
        assert await links.connect(GUILD, ROOM) is first and len(d.calls) == 1
        await links.connect(GUILD, OTHER_ROOM)
        assert [c.connected for c in d.calls] == [False, True]
        assert h.state.voice == {str(GUILD): OTHER_ROOM}

    run(scenario)


def test_after_a_restart_hex_rejoins_only_channels_someone_is_still_in() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        h.state.voice = {str(GUILD): ROOM, "8": OTHER_ROOM, "9": 999}
        d.voice[OTHER_ROOM] = 0
        await h.actor.voice_links.rejoin()
        assert [c.channel_id for c in d.calls] == [ROOM]
        assert h.state.voice == {str(GUILD): ROOM}

    run(scenario)


def test_no_rejoin_where_voice_cannot_work_and_leave_says_whether_hex_was_there() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        links = h.actor.voice_links
        links.problem = "libopus is not installed"
        h.state.voice = {str(GUILD): ROOM}
        await links.rejoin()
        assert not d.calls
        assert not await links.leave(GUILD) and not h.state.voice
        links.problem = ""
        await links.connect(GUILD, ROOM)
        assert await links.leave(GUILD) and not links.linked(GUILD)

    run(scenario)


def test_a_leave_during_a_rejoin_waits_for_it_and_leaves_the_channel_it_made() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        links = h.actor.voice_links
        h.state.voice = {str(GUILD): ROOM}
        dialed = d.hold("dial")
        rejoining = asyncio.ensure_future(links.rejoin())
        while not d.requests:
            await asyncio.sleep(0)
        assert links.joined(GUILD) and not links.linked(GUILD)  # connected at Discord's end
        leaving = asyncio.ensure_future(links.leave(GUILD))
        await asyncio.sleep(0.05)
        assert not leaving.done()
        dialed.set()
        assert await leaving
        await rejoining
        assert not links.linked(GUILD) and not h.state.voice
        assert [c.connected for c in d.calls] == [False]

    run(scenario)


def test_a_graceful_stop_leaves_every_channel_but_remembers_them_for_the_next_start() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        links = h.actor.voice_links
        await links.connect(GUILD, ROOM)
        await links.connect(8, OTHER_ROOM)
        await links.leave_all()
        assert not any(c.connected for c in d.calls) and not links.links
        assert h.state.voice == {str(GUILD): ROOM, "8": OTHER_ROOM}

    run(scenario)


def test_a_leave_discord_never_confirms_does_not_hold_up_the_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        import actors.discord_io.voice_links as voice_links

        monkeypatch.setattr(voice_links, "LEAVE_TIMEOUT_S", 0.05)
        links = h.actor.voice_links
        await links.connect(GUILD, ROOM)

        async def never(*, force: bool = False) -> None:
            await asyncio.Event().wait()

        d.calls[0].disconnect = never  # type: ignore[method-assign]
        await asyncio.wait_for(links.leave_all(), 1.0)

    run(scenario)


def test_join_voice_switched_off_for_everyone_leaves_every_call_and_none_is_rejoined() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        from hexbus.capabilities import Capabilities

        links = h.actor.voice_links
        await links.connect(GUILD, ROOM)
        caps = Capabilities()
        caps.set("join_voice", False, by="owner", owner=True, person_id="discord:9")
        await h.send(
            caps.changed(name="join_voice", person_id="discord:9", enabled=False, by="o", via="cli")
        )
        assert links.linked(GUILD)  # one person's own "off" takes nobody out of a call
        caps.set("join_voice", False, by="owner", owner=True)
        await h.send(
            caps.changed(name="join_voice", person_id="", enabled=False, by="o", via="cli")
        )
        assert not links.linked(GUILD) and not h.state.voice
        assert [c.connected for c in d.calls] == [False]

    run(scenario)
