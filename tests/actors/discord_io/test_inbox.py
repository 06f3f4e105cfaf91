"""Inbox in-process: which Discord messages become chat.message events, once each, and catch-up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import msgspec

from actors.discord_io.config import DiscordConfig, DiscordState
from actors.discord_io.inbox import Inbox
from actors.discord_io.names import message_event_id, snowflake_at
from actors.discord_io.port import SeenMessage
from actors.discord_io.typing_indicator import TypingIndicators
from schemas import ChatAck, ChatMessage, Event
from tests.support.discord.memory import HEX, MemoryDiscord, eventually

T = TypeVar("T")

ANA, BOT = 501, 502
DM, GENERAL, LOUNGE = 11, 12, 13


class InboxParts:
    """An Inbox over a MemoryDiscord, publishing into lists."""

    def __init__(self, **config: Any) -> None:
        self.config = DiscordConfig(**config)
        self.state = DiscordState()
        self.discord = MemoryDiscord()
        self.published: list[tuple[Event, str]] = []  # (event, event id)
        self.volatile: list[Event] = []
        self.changes = 0
        self.tasks: list[asyncio.Task[Any]] = []
        self.typing = TypingIndicators(self.discord.send_typing, self.spawn, typing_s=1.0)
        self.inbox = Inbox(
            self.config,
            self.state,
            self.discord,
            self.typing,
            publish=self.publish,
            publish_volatile=self.publish_volatile,
            state_changed=self.state_changed,
        )

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.append(task)
        return task

    async def publish(self, event: Event, *, key: str = "", event_id: str = "") -> None:
        self.published.append((event, event_id))

    def publish_volatile(self, event: Event, *, key: str = "", blob: bytes | None = None) -> None:
        self.volatile.append(event)

    def state_changed(self, *, now: bool = False) -> None:
        self.changes += 1

    def taken(self) -> list[str]:
        return [e.text for e, _ in self.published if isinstance(e, ChatMessage)]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def test_dms_mentions_replies_to_hex_and_configured_channels_are_answered_others_are_not() -> None:
    parts = InboxParts(channels=(str(LOUNGE),))
    d, wants = parts.discord, parts.inbox.wants
    hex_said = d.say(GENERAL, HEX, "an earlier answer")
    assert wants(d.say(DM, ANA, "hi", dm=True))
    assert wants(d.say(GENERAL, ANA, "<@4242> hi", mentions_me=True))
    assert wants(d.say(GENERAL, ANA, "and another thing", reply_to=hex_said.id))
    assert wants(d.say(LOUNGE, ANA, "anyone here"))
    assert not wants(d.say(GENERAL, ANA, "talking among ourselves"))
    assert not wants(d.say(GENERAL, BOT, "<@4242> beep", mentions_me=True, bot=True))
    assert not wants(d.say(DM, HEX, "my own words", dm=True))
    assert not wants(d.say(DM, ANA, "pinned a message", dm=True, ordinary=False))
    assert InboxParts(answer_bots=True).inbox.wants(d.say(DM, BOT, "beep", dm=True, bot=True))
    d.me = 0  # before the first login Hex does not know who it is: nothing is answered
    assert not wants(d.say(DM, ANA, "hi", dm=True))


def test_a_taken_message_is_acknowledged_typed_and_published_once_under_its_derived_id() -> None:
    async def scenario() -> None:
        parts = InboxParts()
        message = parts.discord.say(GENERAL, ANA, "<@4242> hello <@!4242>", mentions_me=True)
        await parts.inbox.on_message(message)
        ((event, event_id),) = parts.published
        assert isinstance(event, ChatMessage)
        assert event_id == message_event_id(message.id)
        assert (event.person_id, event.channel, event.text) == (
            f"discord:{ANA}",
            str(GENERAL),
            "hello",
        )
        assert event.direct and event.message_id == str(message.id)
        assert parts.volatile == [ChatAck(message_event_id=event_id, channel=str(GENERAL))]
        asked = parts.state.asked[event_id]
        assert (asked.channel_id, asked.message_id) == (GENERAL, message.id)
        await eventually(lambda: parts.discord.count("typing"), what="the typing indicator")
        assert str(GENERAL) not in parts.state.last_seen  # not a watched channel
        await parts.stop()

    run(scenario)


def test_its_own_chat_message_from_the_journal_rebuilds_where_to_answer_and_what_was_seen() -> None:
    parts = InboxParts()
    event = ChatMessage(
        platform="discord",
        person_id="discord:501",
        display_name="ana",
        channel=str(DM),
        text="hi",
        message_id="777",
    )
    parts.inbox.taken("e1", event)
    parts.inbox.taken("e1", event)  # a replay: the same
    assert parts.state.asked["e1"].message_id == 777 and parts.state.last_seen[str(DM)] == 777
    parts.inbox.taken("e2", ChatMessage(**{**_fields(event), "message_id": ""}))
    parts.inbox.taken("e3", ChatMessage(**{**_fields(event), "channel": "voice-room"}))
    assert set(parts.state.asked) == {"e1"}


def _fields(event: ChatMessage) -> dict[str, Any]:
    return {f: getattr(event, f) for f in event.__struct_fields__}


def test_messages_missed_in_watched_channels_are_taken_once_in_order() -> None:
    async def scenario() -> None:
        parts = InboxParts()
        d = parts.discord
        first = d.say(DM, ANA, "first", dm=True)
        await parts.inbox.on_message(first)
        missed = [d.say(DM, ANA, f"while you were out {i}", dm=True) for i in range(3)]
        d.say(GENERAL, ANA, "not watched, not missed", mentions_me=True)
        await parts.inbox.catch_up()
        assert parts.taken() == ["first", *(f"while you were out {i}" for i in range(3))]
        assert parts.state.last_seen[str(DM)] == missed[-1].id
        await parts.inbox.catch_up()  # again (a RESUMED after a READY): nothing new
        assert len(parts.taken()) == 4
        await parts.stop()

    run(scenario)


def test_too_many_missed_messages_become_one_summary_answered_as_the_last() -> None:
    async def scenario() -> None:
        parts = InboxParts(catch_up_limit=3)
        d = parts.discord
        await parts.inbox.on_message(d.say(DM, ANA, "hi", dm=True))
        missed = [d.say(DM, ANA, f"note {i}", dm=True, name="ana") for i in range(6)]
        await parts.inbox.catch_up()
        (summary, event_id) = parts.published[-1]
        assert isinstance(summary, ChatMessage) and len(parts.published) == 2
        assert "While I was away, 6 messages" in summary.text
        assert "ana: note 5" in summary.text and "note 2" not in summary.text
        assert event_id == message_event_id(missed[-1].id)
        await parts.stop()

    run(scenario)


def test_catch_up_starts_at_the_last_seen_message_never_older_than_the_age_limit() -> None:
    async def scenario() -> None:
        parts = InboxParts(catch_up_max_age_h=1.0)
        parts.state.last_seen[str(DM)] = snowflake_at(time.time() - 3 * 3600)
        asked: list[int] = []
        history = parts.discord.history

        def spy(channel_id: int, *, after: int, limit: int) -> AsyncIterator[SeenMessage]:
            asked.append(after)
            return history(channel_id, after=after, limit=limit)

        parts.discord.history = spy  # type: ignore[method-assign]
        await parts.inbox.catch_up()
        assert asked and asked[0] >= snowflake_at(time.time() - 3600 - 5)
        await parts.stop()

    run(scenario)


def test_a_channel_whose_history_fails_is_skipped_and_the_others_caught_up() -> None:
    async def scenario() -> None:
        parts = InboxParts(channels=(str(LOUNGE),))
        d = parts.discord
        await parts.inbox.on_message(d.say(DM, ANA, "hi", dm=True))
        await parts.inbox.on_message(d.say(LOUNGE, ANA, "hello"))
        d.say(DM, ANA, "missed in the DM", dm=True)
        d.fail("history", RuntimeError("503"))  # the first channel asked (the DM, ids sort first)
        d.say(LOUNGE, ANA, "missed in the lounge")
        await parts.inbox.catch_up()
        assert parts.taken()[-1] == "missed in the lounge"
        await parts.stop()

    run(scenario)


def test_a_live_message_before_the_catch_up_never_hides_the_missed_ones_before_it() -> None:
    """After a restart the catch-up waits for the replay, while the gateway already delivers
    new messages: one of them moved the last seen id past the missed ones, which were lost."""

    async def scenario() -> None:
        parts = InboxParts(channels=(str(LOUNGE),))
        d = parts.discord
        before = d.say(LOUNGE, ANA, "before")
        await parts.inbox.on_message(before)
        missed = d.say(LOUNGE, ANA, "said while Hex was down")
        parts.inbox.session_began()  # READY after the restart
        live = asyncio.ensure_future(
            parts.inbox.on_message(d.say(LOUNGE, ANA, "said just after it came back"))
        )
        await asyncio.sleep(0.05)
        assert not live.done() and parts.taken() == ["before"]  # it waits for the catch-up
        assert parts.state.catch_from == {str(LOUNGE): before.id}
        await parts.inbox.catch_up()
        await live
        # In the order they were said, each once.
        assert parts.taken() == [
            "before",
            "said while Hex was down",
            "said just after it came back",
        ]
        assert parts.state.last_seen[str(LOUNGE)] > missed.id and parts.state.catch_from == {}
        await parts.inbox.catch_up()  # a RESUMED later: nothing is taken twice
        assert len(parts.taken()) == 3
        await parts.stop()

    run(scenario)


def next_incarnation(parts: InboxParts, state: DiscordState) -> InboxParts:
    """The actor after a SIGKILL: the same Discord, with ``state`` as its snapshot kept it."""
    again = InboxParts(**msgspec.structs.asdict(parts.config))
    again.discord = again.inbox.discord = parts.discord
    snapshot = msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=DiscordState)
    again.state = again.inbox.state = snapshot
    return again


def test_a_catch_up_owed_when_the_actor_died_is_still_owed_by_the_next_one() -> None:
    async def scenario() -> None:
        parts = InboxParts()
        d = parts.discord
        await parts.inbox.on_message(d.say(DM, ANA, "hi", dm=True))
        d.say(DM, ANA, "missed", dm=True)
        parts.inbox.session_began()
        live = asyncio.ensure_future(parts.inbox.on_message(d.say(DM, ANA, "live", dm=True)))
        await asyncio.sleep(0.05)  # waiting for the catch-up
        # SIGKILL before the catch-up: the next incarnation starts from the saved state.
        live.cancel()
        again = next_incarnation(parts, parts.state)
        again.inbox.session_began()
        await again.inbox.catch_up()
        assert again.taken() == ["missed", "live"]
        await parts.stop()
        await again.stop()

    run(scenario)


def test_a_summary_replayed_after_a_crash_is_not_taken_again_for_what_it_covered() -> None:
    async def scenario() -> None:
        parts = InboxParts(catch_up_limit=2)
        d = parts.discord
        await parts.inbox.on_message(d.say(DM, ANA, "hi", dm=True))
        for i in range(5):
            d.say(DM, ANA, f"note {i}", dm=True)
        parts.inbox.session_began()
        saved = msgspec.msgpack.encode(parts.state)  # the last snapshot before the catch-up
        await parts.inbox.catch_up()
        (summary, event_id) = parts.published[-1]
        assert isinstance(summary, ChatMessage) and summary.catch_up
        # SIGKILL before the next snapshot: the next incarnation has the saved state, and the
        # journal replays what was taken.
        again = next_incarnation(parts, msgspec.msgpack.decode(saved, type=DiscordState))
        again.inbox.taken(event_id, summary)
        again.inbox.session_began()
        await again.inbox.catch_up()
        assert again.taken() == []
        await parts.stop()
        await again.stop()

    run(scenario)


def test_two_catch_ups_at_once_take_what_was_missed_once() -> None:
    async def scenario() -> None:
        parts = InboxParts(catch_up_limit=2)
        d = parts.discord
        await parts.inbox.on_message(d.say(DM, ANA, "hi", dm=True))
        for i in range(4):
            d.say(DM, ANA, f"note {i}", dm=True)
        publish = parts.publish

        async def slow(event: Event, *, key: str = "", event_id: str = "") -> None:
            await asyncio.sleep(0.05)  # an outbox waiting for the broker
            await publish(event, key=key, event_id=event_id)

        parts.inbox.publish = slow
        parts.inbox.session_began()  # READY
        first = asyncio.ensure_future(parts.inbox.catch_up())
        await asyncio.sleep(0)
        parts.inbox.session_began()  # RESUMED while the first walks
        await asyncio.gather(first, parts.inbox.catch_up())
        assert len(parts.taken()) == 2  # "hi", then one summary of the four
        await parts.stop()

    run(scenario)


def test_a_long_history_of_taken_messages_before_the_gap_is_walked_past() -> None:
    async def scenario() -> None:
        parts = InboxParts(channels=(str(LOUNGE),), catch_up_limit=2)  # pages of 20
        d = parts.discord
        await parts.inbox.on_message(d.say(LOUNGE, ANA, "hello"))
        parts.inbox.session_began()
        d.fail("history", RuntimeError("503"))
        await parts.inbox.catch_up()  # still owed from "hello": its history failed
        assert parts.state.catch_from == {str(LOUNGE): parts.state.last_seen[str(LOUNGE)]}
        for i in range(30):
            await parts.inbox.on_message(d.say(LOUNGE, ANA, f"live {i}"))
        d.say(LOUNGE, ANA, "missed while down")
        parts.inbox.session_began()  # back after an outage
        await parts.inbox.catch_up()
        assert parts.taken()[-1] == "missed while down"
        assert parts.state.catch_from == {}
        await parts.stop()

    run(scenario)
