"""The Discord actor in-process (hexbus.testing's ActorHarness, its parts over an in-memory
Discord): messages in, replies shown, retried and adopted, notices, suggestions, handlers that
are safe to run again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from actors.discord_io.actor import DiscordActor
from actors.discord_io.config import Asked, PendingReply
from actors.discord_io.names import message_event_id
from actors.discord_io.replies import STREAMING_MARK, Undeliverable
from hexbus.testing import ActorHarness
from schemas import ChatMessage, MemoryChanged, Notice, Reply, ReplyChunk
from tests.support.discord.memory import HEX, MemoryDiscord, actor_on, eventually

ANA = 501
DM = 11

Scenario = Callable[[ActorHarness[DiscordActor], MemoryDiscord], Awaitable[None]]


def run(scenario: Scenario, *, live: bool = True, **config: Any) -> None:
    async def main() -> None:
        discord = MemoryDiscord()
        harness = actor_on(discord, **config)
        harness.actor.live = live
        try:
            await scenario(harness, discord)
        finally:
            await harness.actor.stop_tasks(2.0)
        assert not harness.errors, harness.errors  # no spawned task failed

    asyncio.run(main())


async def ask(h: ActorHarness[DiscordActor], d: MemoryDiscord, text: str) -> str:
    """Ana writes Hex a DM; the chat.message's event id (what the reply answers)."""
    message = d.say(DM, ANA, text, dm=True)
    await h.actor.on_message(message)
    return message_event_id(message.id)


def reply(reply_to: str, text: str, **fields: Any) -> Reply:
    return Reply(reply_to=reply_to, channel=str(DM), text=text, platform="discord", **fields)


def test_a_message_from_discord_becomes_one_durable_chat_message_with_a_derived_id() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        event_id = await ask(h, d, "hello")
        (envelope,) = [e for e, _ in h.bus.published if isinstance(e.body, ChatMessage)]
        assert envelope.id == event_id and envelope.topic == "chat.message.discord"
        assert envelope.body == ChatMessage(
            platform="discord",
            person_id=f"discord:{ANA}",
            display_name=f"user{ANA}",
            channel=str(DM),
            text="hello",
            message_id=str(h.state.asked[event_id].message_id),
            direct=True,
        )

    run(scenario)


def test_chunks_then_the_final_reply_show_one_message_edited_without_the_streaming_mark() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        asked = await ask(h, d, "tell me")
        for index, piece in enumerate(["Once ", "upon ", "a time"]):
            await h.send(
                ReplyChunk(reply_to=asked, channel=str(DM), index=index, text=piece),
                key="discord",
            )
            await eventually(lambda: d.texts(DM), what="the streamed message")
        assert d.texts(DM)[0].endswith(STREAMING_MARK)
        await h.send(reply(asked, "Once upon a time, the end."), key="discord")
        await eventually(lambda: asked in h.state.delivered, what="the reply delivered")
        assert d.texts(DM) == ["Once upon a time, the end."]
        assert d.count("post") == 1 and d.count("edit") >= 1
        assert d.mine(DM)[0].reference_id == h.state.asked[asked].message_id
        assert not h.state.pending and DM not in h.actor.typing.stops

    run(scenario)


def test_a_long_reply_is_posted_in_parts_under_2000_characters_in_order() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        asked = await ask(h, d, "long")
        text = " ".join(f"Sentence number {i} is here to make this reply long." for i in range(90))
        await h.send(reply(asked, text), key="discord")
        await eventually(lambda: asked in h.state.delivered, what="the reply delivered")
        parts = d.texts(DM)
        assert len(parts) == 3 and all(len(p) <= 2000 for p in parts)
        assert " ".join(parts).split() == text.split()

    run(scenario)


def test_a_replayed_reply_adopts_the_parts_already_on_discord_instead_of_posting_again() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        person = d.say(DM, ANA, "remember this", dm=True)
        asked = message_event_id(person.id)
        h.state.asked[asked] = Asked(channel_id=DM, message_id=person.id)
        await d.post(DM, "You said: remem" + STREAMING_MARK, reference=person.id)  # before a crash
        h.actor.live = False  # replaying the journal after a restart
        await h.send(reply(asked, "You said: remember this"), key="discord")
        await eventually(lambda: asked in h.state.delivered, what="the reply delivered")
        assert d.texts(DM) == ["You said: remember this"] and d.count("post") == 1

    run(scenario)


def test_a_reply_pending_in_the_snapshot_is_shown_once_the_actor_is_live() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        h.state.pending["r1"] = PendingReply(
            reply_to="r1", channel_id=DM, reference=None, text="hi"
        )
        await h.actor.on_live()
        await eventually(lambda: "r1" in h.state.delivered, what="the pending reply")
        assert d.texts(DM) == ["hi"]

    run(scenario)


def test_failed_posts_are_retried_and_a_reply_still_failing_is_kept_pending_and_tried_again() -> (
    None
):
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        asked = await ask(h, d, "are you there")
        d.fail("post", RuntimeError("503 Service Unavailable"), times=4)  # one round of 3 tries, +1
        await h.send(reply(asked, "I am here."), key="discord")
        await eventually(lambda: d.count("post") >= 3, what="three tries")
        assert asked in h.state.pending  # kept while Discord fails
        await eventually(lambda: asked in h.state.delivered, what="the reply after redelivery")
        assert d.texts(DM) == ["I am here."] and d.count("post") == 5

    run(scenario)


def test_a_refusal_no_retry_can_change_gives_up_at_once_and_is_not_retried() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        asked = await ask(h, d, "hi")
        d.fail("post", Undeliverable("403: Missing Access"))
        await h.send(reply(asked, "hello"), key="discord")
        await eventually(lambda: asked in h.state.delivered, what="the reply given up")
        await asyncio.sleep(0.1)
        assert d.count("post") == 1 and not h.state.pending

    run(scenario)


def test_a_cancelled_reply_with_nothing_shown_posts_nothing() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        asked = await ask(h, d, "never mind")
        await h.send(reply(asked, "", status="cancelled"), key="discord")
        assert asked in h.state.delivered and not h.state.pending
        await asyncio.sleep(0.05)
        assert d.texts(DM) == []

    run(scenario)


def test_the_reply_handler_run_twice_for_one_event_shows_the_reply_once() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        asked = await ask(h, d, "hi")
        gate = d.hold("post")  # the first try is in flight when the handler runs again
        event = reply(asked, "hello")
        await h.actor.on_reply(event)
        await h.actor.on_reply(event)  # what the runtime's retry of a raising handler does
        gate.set()
        await eventually(lambda: asked in h.state.delivered, what="the reply delivered")
        await h.actor.on_reply(event)  # and a replay after it was shown whole
        await asyncio.sleep(0.05)
        assert d.texts(DM) == ["hello"] and d.count("post") == 1

    run(scenario)


def test_the_typing_indicator_starts_with_the_message_and_stops_with_the_first_part() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        asked = await ask(h, d, "hi")
        await eventually(lambda: d.count("typing"), what="typing")
        assert DM in h.actor.typing.stops
        await h.send(reply(asked, "hello"), key="discord")
        await eventually(lambda: asked in h.state.delivered, what="the reply")
        assert DM not in h.actor.typing.stops

    run(scenario)


def test_its_own_chat_message_replayed_from_the_journal_says_where_to_answer() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        event = ChatMessage(
            platform="discord",
            person_id=f"discord:{ANA}",
            display_name="ana",
            channel=str(DM),
            text="hi",
            message_id="123",
        )
        await h.send(event, key="discord", event_id="from-someone-else", source="web")
        assert not h.state.asked
        await h.send(event, key="discord", event_id="mine", source="discord")
        assert h.state.asked["mine"] == Asked(channel_id=DM, message_id=123)

    run(scenario)


def test_notices_are_posted_in_italics_and_backend_fallbacks_are_not() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        await h.send(
            Notice(channel=str(DM), kind="fallback", text="using the backup"), key="discord"
        )
        await h.send(Notice(channel=str(DM), kind="sleepy", text="I'm slow today"), key="discord")
        await eventually(lambda: d.texts(DM), what="the notice")
        assert d.texts(DM) == ["*I'm slow today*"]

    run(scenario)


def test_a_memory_suggestion_is_posted_once_to_each_reachable_owner() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        d.unreachable.add("3")
        suggested = MemoryChanged(action="suggested", ids=("m1",), detail="Ana keeps bees")
        await h.send(suggested, key="memory")
        await h.actor.on_memory_changed(suggested)  # handled again (a retry, a replay)
        await eventually(lambda: "m1" in h.state.suggestions, what="the suggestion posted")
        await asyncio.sleep(0.05)
        assert [(c, m) for c, m, _ in d.suggestions] == [(d.owners_dm["1"], "m1")]
        assert "Ana keeps bees" in d.suggestions[0][2]
        h.actor.suggestions.settled("m1")
        assert "m1" not in h.state.suggestions

    run(scenario, owners=["1", "3"])


def test_a_memory_suggestion_with_nobody_to_ask_is_not_posted() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        await h.send(MemoryChanged(action="suggested", ids=("m1",), detail="x"), key="memory")
        await asyncio.sleep(0.05)
        assert not d.suggestions and not h.state.suggestions

    run(scenario)


def test_hex_never_answers_itself() -> None:
    async def scenario(h: ActorHarness[DiscordActor], d: MemoryDiscord) -> None:
        await h.actor.on_message(d.say(DM, HEX, "my own words", dm=True))
        assert not h.bus.published

    run(scenario)
