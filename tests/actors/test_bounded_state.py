"""Per-person and per-channel state stays bounded however many people write (issue 13, item 11).

100,000 distinct people each send one message. The brain's bookkeeping (the real Ledger, as the
actor drives it) and the Discord inbox (the real Inbox, over the in-memory Discord port) take them
all; their snapshots stay within the stated bounds, what is kept is the most recent, the usage
totals lose nothing, and a reconnect walks a bounded number of DM channels.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import msgspec
import psutil
import pytest

from actors.brain.backends import Usage
from actors.brain.config import BrainState
from actors.brain.ledger import (
    CONVERSATIONS_KEPT,
    PEOPLE_KEPT,
    USAGE_PEOPLE_PER_DAY,
    Ledger,
    conversation_of,
)
from actors.brain.persona import Persona, load_persona
from actors.brain.reply import ReplyOutcome
from actors.discord_io.config import ASKED_KEPT, WATCHED_KEPT, DiscordConfig, DiscordState
from actors.discord_io.inbox import Inbox
from actors.discord_io.typing_indicator import TypingIndicators
from schemas import ChatMessage, Event
from tests.support.discord.memory import MemoryDiscord

PEOPLE = 50_000  # ten times the people the brain keeps, five times the 10,000 first

pytestmark = pytest.mark.slow
BRAIN_SNAPSHOT_BOUND = 2 << 20  # bytes, stated in the README
DISCORD_SNAPSHOT_BOUND = 256 << 10

START = 1_767_225_600.0  # 2026-01-01


class Brain:
    """The brain's bookkeeping as the actor drives it for one message and its reply."""

    def __init__(self, persona: Persona) -> None:
        self.state = BrainState()
        self.now = START
        self.ledger = Ledger(self.state, clock=lambda: self.now)
        self.persona = persona

    def message(self, i: int) -> None:
        self.now += 0.05
        person = f"discord:{10**17 + i}"
        message = ChatMessage(
            platform="discord",
            person_id=person,
            display_name=f"Person {i}",
            channel=str(2 * 10**17 + i),  # a DM channel of their own
            text="hi! a friend told me about you, what do you like to do?",
        )
        event_id = f"e{i}"
        self.ledger.accept(event_id, i + 1, message, self.now)
        outcome = ReplyOutcome(
            status="complete",
            text="Hi! I like long talks and bad puns. What about you?",
            backend="llamacpp",
            usage=Usage(prompt_tokens=300, completion_tokens=15),
        )
        self.ledger.record(
            conversation_of(message), self.state.pending[event_id], outcome, self.persona
        )
        self.ledger.profile(person).hobbies.append("talking")

    def size(self) -> int:
        return len(msgspec.msgpack.encode(self.state))


@pytest.fixture(scope="module")
def persona() -> Persona:
    return load_persona()


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def test_the_brain_state_stays_bounded_for_50000_people(persona: Persona) -> None:
    brain = Brain(persona)
    for i in range(10_000):
        brain.message(i)
    at_10k, rss_10k = brain.size(), rss()
    for i in range(10_000, PEOPLE):
        brain.message(i)
    state = brain.state
    assert len(state.conversations) <= CONVERSATIONS_KEPT * 1.1
    assert len(state.relationships) <= PEOPLE_KEPT * 1.1
    assert len(state.profiles) <= PEOPLE_KEPT * 1.1
    assert len(state.usage) <= (USAGE_PEOPLE_PER_DAY + 1) * 1.1 * 2  # one or two days here
    assert not state.pending and len(state.answered) <= 2048
    # What is kept is the most recent; nobody's usage is lost, only grouped.
    last = f"discord:{10**17 + PEOPLE - 1}"
    assert last in state.relationships and f"discord:{10**17}" not in state.relationships
    assert sum(row.replies for row in state.usage.values()) == PEOPLE
    assert sum(row.prompt_tokens for row in state.usage.values()) == 300 * PEOPLE
    size = brain.size()
    assert size <= BRAIN_SNAPSHOT_BOUND, size
    assert size <= at_10k * 1.25  # flat: 40,000 more people cost nothing lasting
    assert rss() - rss_10k < 64 << 20


def test_the_discord_state_stays_bounded_and_a_reconnect_walks_few_channels() -> None:
    async def go() -> dict[str, Any]:
        config = DiscordConfig(catch_up_channels=50)
        state = DiscordState()
        discord = MemoryDiscord()
        published: list[Event] = []
        tasks: list[asyncio.Task[Any]] = []

        async def publish(event: Event, *, key: str = "", event_id: str = "") -> None:
            published.append(event)

        def spawn(coro: Any, *, name: str) -> asyncio.Task[Any]:
            task = asyncio.get_running_loop().create_task(coro, name=name)
            tasks.append(task)
            return task

        typing = TypingIndicators(discord.send_typing, spawn, typing_s=1.0)
        inbox = Inbox(
            config,
            state,
            discord,
            typing,
            publish=publish,
            publish_volatile=lambda event, **_: None,
            state_changed=lambda **_: None,
        )
        for i in range(PEOPLE):
            channel = 3 * 10**17 + i
            message = discord.say(channel, 10**17 + i, "hello?", dm=True)
            await inbox.on_message(message)
            typing.stop(channel)  # the reply arrived
        await asyncio.gather(*tasks, return_exceptions=True)
        walked_before = discord.count("history")
        await inbox.catch_up()
        return {
            "state": state,
            "taken": sum(1 for e in published if isinstance(e, ChatMessage)),
            "walked": discord.count("history") - walked_before,
        }

    found = asyncio.run(go())
    state: DiscordState = found["state"]
    assert found["taken"] == PEOPLE  # every one answered
    assert len(state.last_seen) <= WATCHED_KEPT * 1.1
    assert len(state.asked) <= ASKED_KEPT
    assert found["walked"] <= 50  # not 100,000 DM channels on each reconnect
    assert len(msgspec.msgpack.encode(state)) <= DISCORD_SNAPSHOT_BOUND
