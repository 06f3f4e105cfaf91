"""The autonomy actor in-process, on a clock the test sets: a dated event heard in chat becomes
Hex's own message at the right time, never in quiet hours, never with the switch off; a
person's "off" drops what waits for them; ``autonomy.why`` says why she is silent."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from zoneinfo import ZoneInfo

from actors.autonomy.actor import AutonomyActor
from hexbus.capabilities import Capabilities
from hexbus.codec import derived_id
from hexbus.testing import ActorHarness
from schemas import (
    AutonomyReport,
    AutonomyWhy,
    BrainEnergy,
    CapabilityChanged,
    ChatMessage,
    DiscordDm,
    DiscordDmChannel,
    DiscordPresence,
    Event,
    MemoryHit,
    MemoryQuery,
    MemoryResult,
    QuietMode,
    ReplyMeta,
)

BERLIN = ZoneInfo("Europe/Berlin")
ANA = "discord:501"
CONFIG = {
    "tick_s": 1.0,
    "pacing": {"quiet": "22:00-09:00", "timezone": "Europe/Berlin", "after_activity_s": 600},
}

Scenario = Callable[[ActorHarness[AutonomyActor], list[float]], Awaitable[None]]


def at(day: int, hour: int, minute: int = 0) -> float:
    """December 2026, Berlin time."""
    return dt.datetime(2026, 12, day, hour, minute, tzinfo=BERLIN).timestamp()


def run(scenario: Scenario, config: dict[str, object] | None = None) -> None:
    async def main() -> None:
        h = ActorHarness(AutonomyActor, config or CONFIG, name="autonomy")
        clock = [at(7, 19)]
        h.actor.clock = lambda: clock[0]
        h.respond(MemoryQuery, lambda e: MemoryResult())  # memory holds nothing from years ago
        h.respond(DiscordDm, lambda e: DiscordDmChannel(person_id=ANA, channel="9001"))
        await h.setup()
        h.actor.live = True
        try:
            await scenario(h, clock)
        finally:
            await h.stop()

    asyncio.run(main())


def said(h: ActorHarness[AutonomyActor]) -> list[ChatMessage]:
    return [e for e in h.published if isinstance(e, ChatMessage) and e.initiative]


async def switch(
    h: ActorHarness[AutonomyActor], name: str, enabled: bool, person: str = ""
) -> None:
    caps = h.actor.capabilities
    caps.set(name, enabled, by=person or "owner", owner=not person, person_id=person)
    event: CapabilityChanged = caps.changed(
        name=name, person_id=person, enabled=enabled, by="test", via="cli"
    )
    h.actor.capabilities = Capabilities()  # as a fresh process would hold them: the event decides
    await h.send(event)


async def why(h: ActorHarness[AutonomyActor]) -> AutonomyReport:
    (report,) = await h.send(AutonomyWhy(), correlation="c1")
    assert isinstance(report, AutonomyReport)
    return report


async def tell(h: ActorHarness[AutonomyActor], text: str) -> None:
    await h.send(
        ChatMessage(
            platform="discord",
            person_id=ANA,
            display_name="Ana",
            channel="9001",
            text=text,
            direct=True,
        )
    )


def test_a_dated_event_becomes_her_message_at_the_right_time_and_never_in_quiet_hours() -> None:
    async def scenario(h: ActorHarness[AutonomyActor], clock: list[float]) -> None:
        await switch(h, "speak_first", True)
        await tell(h, "I have my driving test tomorrow, I'm so nervous")
        await h.actor.round()
        assert not said(h)  # the test is tomorrow: nothing tonight
        waiting = {w.candidate: w for w in (await why(h)).lines}
        assert len(waiting) == 2 and all("not before" in w.verdict for w in waiting.values())

        clock[0] = at(8, 8, 45)  # the morning of, but her quiet hours end at nine
        await h.actor.round()
        assert not said(h)
        clock[0] = at(8, 9, 5)  # a "good luck", no answer expected
        await h.actor.round()
        (luck,) = said(h)
        assert luck.platform == "discord" and luck.channel == "9001" and luck.person_id == ANA
        assert "is today" in luck.initiative and "test" in luck.initiative
        assert "driving test tomorrow" in luck.text

        clock[0] = at(8, 23, 30)  # after it, but in her quiet hours
        await h.actor.round()
        assert len(said(h)) == 1
        (after,) = [w for w in (await why(h)).lines if not w.dropped]
        assert after.verdict == "quiet hours until 09:00", after

        clock[0] = at(9, 9, 5)
        await h.actor.round()
        how = said(h)[1]
        assert "how it went" in how.initiative
        # Its id is the candidate's: sent again after a crash, it is the same message.
        ids = [e.id for e, _ in h.bus.published if isinstance(e.body, ChatMessage)]
        assert ids[1] == derived_id("autonomy", after.candidate)
        report = await why(h)
        assert not [w for w in report.lines if not w.dropped]
        assert [s.kind for s in report.sent] == ["due", "due"]
        # The brain's reading of her own opening is nothing Ana said: no worry about Ana from it.
        await h.send(ReplyMeta(reply_to=ids[1], person_id=ANA, channel="9001", emotion="worried"))
        await h.actor.round()
        assert not [w for w in (await why(h)).lines if w.kind == "thought"]
        await h.send(ReplyMeta(reply_to="m1", person_id=ANA, channel="9001", emotion="worried"))
        await h.actor.round()
        assert "thought" in [w.kind for w in (await why(h)).lines if not w.dropped]

    run(scenario)


def test_nothing_goes_with_the_switch_off_and_a_persons_own_off_drops_what_waits() -> None:
    async def scenario(h: ActorHarness[AutonomyActor], clock: list[float]) -> None:
        await tell(h, "my interview is on friday")  # Mon 7 Dec: friday is the 11th
        clock[0] = at(11, 19)
        await h.actor.round()
        assert not said(h)  # speak_first is off by default
        (w,) = [w for w in (await why(h)).lines if not w.dropped]
        assert w.verdict == "speaking first is switched off (discord)"

        await switch(h, "speak_first", True)
        await switch(h, "speak_first", False, person=ANA)  # "stop messaging me first"
        report = await why(h)
        assert not [w for w in report.lines if not w.dropped]
        verdicts = {w.kind + ": " + w.verdict for w in report.lines if w.dropped}
        # (The "good luck" was for the morning: expired by the evening.)
        assert verdicts == {"due: expired", "due: speaking first was switched off (discord)"}
        clock[0] = at(12, 10)
        await h.actor.round()
        assert not said(h)

    run(scenario)


def test_quiet_mode_and_talking_now_hold_her_back() -> None:
    async def scenario(h: ActorHarness[AutonomyActor], clock: list[float]) -> None:
        await switch(h, "speak_first", True)
        await tell(h, "I have an exam tomorrow")
        clock[0] = at(8, 18, 30)
        await h.send(QuietMode(scope="person", target=ANA, until=at(8, 20)))
        await h.actor.round()
        assert not said(h)
        (w,) = [w for w in (await why(h)).lines if not w.dropped]
        assert w.verdict == "quiet mode until 20:00"
        clock[0] = at(8, 20, 1)
        await tell(h, "ugh, long day")  # she talked just now: no "how did it go?" on top
        await h.actor.round()
        assert not said(h)
        clock[0] = at(8, 20, 12)
        await h.actor.round()
        (how,) = said(h)
        assert "how it went" in how.initiative

    run(scenario)


def test_sleepy_or_asleep_she_takes_no_initiative_and_awake_again_she_does() -> None:
    async def scenario(h: ActorHarness[AutonomyActor], clock: list[float]) -> None:
        await switch(h, "speak_first", True)
        await tell(h, "I have an exam tomorrow")
        clock[0] = at(8, 19)
        await h.send(BrainEnergy(state="sleepy", why="cloud is close to its limit"))
        await h.actor.round()
        assert not said(h)
        (w,) = [w for w in (await why(h)).lines if not w.dropped]
        assert w.verdict == "sleepy: no initiative until she is awake"
        # Her own budget for Ana is spent: asleep for Ana only.
        await h.send(BrainEnergy(state="awake", people={ANA: "asleep"}))
        await h.actor.round()
        assert not said(h)
        await h.send(BrainEnergy(state="awake"))
        await h.actor.round()
        assert len(said(h)) == 1

    run(scenario)


def test_a_year_later_she_remembers_the_day_and_the_owner_gets_the_check_in_when_on() -> None:
    config = {**CONFIG, "owner": ANA, "checkin_every_s": 7 * 86400}

    async def scenario(h: ActorHarness[AutonomyActor], clock: list[float]) -> None:
        # On Discord she writes first in their DM (the Discord actor opens it), not in the
        # channel they last talked in; a dated event is followed up where it was told.
        h.respond(DiscordDm, lambda e: DiscordDmChannel(person_id=ANA, channel="7777"))
        await switch(h, "speak_first", True)
        await tell(h, "my wedding is on December 12th!")
        clock[0] = at(7, 19, 30) + 365 * 86400 + 5 * 86400  # 12 Dec 2027, 19:30
        await h.actor.round()
        (remembered,) = said(h)
        assert remembered.initiative == "a year ago today was their wedding"
        assert "December 12th" in remembered.text and remembered.channel == "7777"
        assert not [w for w in (await why(h)).lines if not w.dropped and w.kind == "checkin"]

        await switch(h, "checkin", True)  # off by default
        clock[0] += 14.5 * 3600  # the next morning, 10:00: past her quiet hours
        await h.actor.round()
        checkin = said(h)[-1]
        assert checkin.initiative.startswith("the regular check-in")
        assert "on: answer" in checkin.text and "camera" in checkin.text.split("off:")[1]
        clock[0] += 86400  # a day later: the next one is a week away
        await tell(h, "all good, keep it as it is")
        clock[0] += 3600
        await h.actor.round()
        assert said(h)[-1] == checkin

    run(scenario, config)


def test_what_was_said_in_a_call_is_followed_up_where_they_write_and_never_into_the_call() -> None:
    async def scenario(h: ActorHarness[AutonomyActor], clock: list[float]) -> None:
        await switch(h, "speak_first", True)
        await tell(h, "hi!")  # Ana writes on Discord, channel 9001
        await h.send(
            ChatMessage(
                platform="voice",
                person_id=ANA,
                display_name="Ana",
                channel="discord-voice-70",
                text="my exam is tomorrow",
            )
        )
        clock[0] = at(8, 19)
        await h.actor.round()
        (how,) = said(h)
        assert how.platform == "discord" and how.channel == "9001"

    run(scenario)


def test_discord_status_holds_her_offline_and_in_do_not_disturb() -> None:
    async def scenario(h: ActorHarness[AutonomyActor], clock: list[float]) -> None:
        await switch(h, "speak_first", True)
        await tell(h, "I have an exam tomorrow")
        await h.send(DiscordPresence(person_id="discord:999", status="online"))  # a stranger
        assert "discord:999" not in h.state.people
        clock[0] = at(8, 19)
        await h.send(DiscordPresence(person_id=ANA, status="offline"))
        await h.actor.round()
        assert not said(h)
        assert [w.verdict for w in (await why(h)).lines if not w.dropped] == ["they are away"]
        await h.send(DiscordPresence(person_id=ANA, status="dnd"))
        await h.actor.round()
        (w,) = [w for w in (await why(h)).lines if not w.dropped]
        assert w.verdict.startswith("do not disturb until")
        held = h.state.people[ANA].dnd_until
        clock[0] += 3600
        await h.send(DiscordPresence(person_id=ANA, status="dnd"))  # told again (a restart)
        assert h.state.people[ANA].dnd_until == held  # the day counts from the first
        await h.send(DiscordPresence(person_id=ANA, status="idle"))
        await h.actor.round()
        (how,) = said(h)
        assert "how it went" in how.initiative

    run(scenario)


def test_what_memory_holds_from_this_day_years_ago_is_remembered_once_a_day() -> None:
    async def scenario(h: ActorHarness[AutonomyActor], clock: list[float]) -> None:
        asked: list[MemoryQuery] = []
        two_years_ago = dt.datetime(2024, 12, 9, tzinfo=BERLIN).timestamp()

        def memory(q: Event) -> MemoryResult:
            assert isinstance(q, MemoryQuery)
            asked.append(q)
            if q.since != two_years_ago:
                return MemoryResult()
            return MemoryResult(
                hits=(
                    MemoryHit(
                        id="m-ice", text="Ana fell through the ice", person_id=ANA, importance=0.2
                    ),
                    MemoryHit(
                        id="m-dog", text="Ana adopted her dog Pixel", person_id=ANA, importance=0.9
                    ),
                    MemoryHit(id="m-bo", text="Bo moved to Lyon", person_id="bo", importance=1.0),
                )
            )

        h.respond(MemoryQuery, memory)
        await switch(h, "speak_first", True)
        await tell(h, "hello!")
        clock[0] = at(9, 10)
        await h.actor.round()
        (remembered,) = said(h)
        assert remembered.initiative == "2 years ago today, from her memory of them"
        assert remembered.text == "Ana adopted her dog Pixel"
        assert len(asked) == 5 and all(q.browse and q.inspect and q.person_id == ANA for q in asked)
        assert {q.until - q.since for q in asked} == {86399.0}
        clock[0] += 3600
        await h.actor.round()
        assert len(asked) == 5  # once a day

    run(scenario)


def test_in_a_call_with_them_she_says_it_aloud_unless_speaking_first_aloud_is_off() -> None:
    async def scenario(h: ActorHarness[AutonomyActor], clock: list[float]) -> None:
        h.respond(
            DiscordDm,
            lambda e: DiscordDmChannel(person_id=ANA, channel="7777", call="discord-voice-70"),
        )
        await switch(h, "speak_first", True)
        await tell(h, "my exam is tomorrow")
        clock[0] = at(8, 19)
        await h.actor.round()
        (aloud,) = said(h)
        assert aloud.platform == "voice" and aloud.channel == "discord-voice-70"
        await switch(h, "speak_first.voice", False, person=ANA)
        await tell(h, "it went fine! and my interview is on friday")  # answered, and another
        clock[0] = at(11, 19)
        await h.actor.round()
        written = said(h)[-1]
        assert written.platform == "discord" and written.channel == "9001"  # where it was told

    run(scenario)


def test_someone_stays_on_her_mind_while_worry_outweighs_good_news_and_time() -> None:
    async def scenario(h: ActorHarness[AutonomyActor], clock: list[float]) -> None:
        await switch(h, "speak_first", True)
        await tell(h, "hi")

        async def felt(emotion: str) -> None:
            clock[0] += 60  # a reply a minute
            await h.send(ReplyMeta(reply_to="m", person_id=ANA, channel="9001", emotion=emotion))
            await h.actor.round()

        def thoughts() -> list[str]:
            return [held.reason for _, held in h.actor.agenda.why() if held.kind == "thought"]

        await felt("worried")
        assert thoughts() and thoughts()[0].startswith("not before")
        await felt("happy")  # 1 - 0.5: off her mind, the check dropped
        assert thoughts() == ["they are no longer on her mind"]
        await felt("sad")
        await felt("worried")  # 0.5 + 1 + 1: heavy
        assert len([t for t in thoughts() if t.startswith("not before")]) == 1
        clock[0] += 4 * 86400  # two half-lives: about 0.62, off her mind before it could go
        await h.actor.round()
        assert not said(h) and "they are no longer on her mind" in thoughts()[-1]

    run(scenario)
