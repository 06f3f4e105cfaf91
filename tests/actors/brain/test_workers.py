"""ReplyWorkers: one reply at a time per conversation, the newest message wins, a stop leaves it pending."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from actors.brain.config import BrainState, PendingMessage
from actors.brain.ledger import Ledger
from actors.brain.reply import ReplyStatus
from actors.brain.workers import CRASHED, ReplyWorkers
from schemas import ChatMessage

T = TypeVar("T")


def message(text: str, channel: str = "c1") -> ChatMessage:
    return ChatMessage(
        platform="console", person_id="ana", display_name="Ana", channel=channel, text=text
    )


class GatedReplier:
    """Answers after ``release`` is set (each answer waits for it); records how each message ended."""

    def __init__(self, ledger: Ledger, workers: list[ReplyWorkers]) -> None:
        self.ledger = ledger
        self.workers = workers
        self.release = asyncio.Event()
        self.started: list[str] = []
        self.ended: dict[str, str] = {}
        self.crash_on: set[str] = set()

    async def answer(self, conversation: str, pending: PendingMessage) -> None:
        self.started.append(pending.message.text)
        if pending.message.text in self.crash_on:
            raise RuntimeError("a bug")
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            interruption = self.workers[0].interrupted(conversation)
            if interruption is None:
                raise
            self.ended[pending.message.text] = f"cancelled: {interruption.why}"
        else:
            self.ended[pending.message.text] = "complete"
        self.ledger.answered(pending.event_id)

    async def give_up(self, pending: PendingMessage, text: str, status: ReplyStatus) -> None:
        self.ended[pending.message.text] = f"{status}: {text}" if text else status
        self.ledger.answered(pending.event_id)


class Harness:
    def __init__(self) -> None:
        self.ledger = Ledger(BrainState())
        self.tasks: list[asyncio.Task[Any]] = []
        box: list[ReplyWorkers] = []
        self.replier = GatedReplier(self.ledger, box)
        self.workers = ReplyWorkers(self.spawn, self.ledger, self.replier)
        box.append(self.workers)
        self.offset = 0

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.append(task)
        return task

    def send(self, text: str, channel: str = "c1") -> None:
        self.offset += 1
        event = message(text, channel)
        self.ledger.accept(f"m{self.offset}", self.offset, event, 0.0)
        self.workers.kick(f"console:{channel}")

    async def settle(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    async def finish(self) -> None:
        self.replier.release.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 5)


def test_a_newer_message_cancels_the_reply_in_flight_and_is_answered() -> None:
    async def scenario() -> Harness:
        h = Harness()
        h.send("tell me a story")
        await h.settle()
        assert h.workers.inflight == {"console:c1": "m1"} and h.workers.busy
        h.send("never mind")
        await h.finish()
        return h

    h = asyncio.run(scenario())
    assert h.replier.ended == {
        "tell me a story": "cancelled: newer message",
        "never mind": "complete",
    }
    assert not h.workers.busy and not h.workers.interruptions and not h.ledger.state.pending


def test_messages_waiting_behind_a_reply_are_superseded_by_the_newest() -> None:
    async def scenario() -> Harness:
        h = Harness()
        h.send("one")
        await h.settle()
        h.workers.interrupt("console:c1", "test")  # as a barge-in would, without a message
        h.ledger.accept("m2", 2, message("two"), 0.0)
        h.ledger.accept("m3", 3, message("three"), 0.0)
        await h.finish()
        return h

    h = asyncio.run(scenario())
    assert h.replier.ended == {"one": "cancelled: test", "two": "cancelled", "three": "complete"}
    # The superseded message was heard: it is in the conversation's turns.
    assert [t.text for t in h.ledger.conversation("console:c1").turns] == ["two"]


def test_conversations_run_side_by_side() -> None:
    async def scenario() -> Harness:
        h = Harness()
        h.send("hello", channel="c1")
        h.send("hi", channel="c2")
        await h.settle()
        assert set(h.workers.inflight) == {"console:c1", "console:c2"}
        await h.finish()
        return h

    h = asyncio.run(scenario())
    assert h.replier.ended == {"hello": "complete", "hi": "complete"}


def test_a_barge_in_stops_only_its_channels_reply_and_keeps_what_was_heard() -> None:
    async def scenario() -> tuple[Harness, str | None]:
        h = Harness()
        h.send("story please", channel="c1")
        h.send("other", channel="c2")
        await h.settle()
        h.workers.barge_in("c1", "Once upon")
        interruption = h.workers.interrupted("console:c1")
        await h.finish()
        return h, interruption.heard if interruption else None

    h, heard = asyncio.run(scenario())
    assert heard == "Once upon"
    assert h.replier.ended == {"story please": "cancelled: barge-in", "other": "complete"}


def test_a_reply_that_crashes_gets_a_failed_reply_and_the_worker_goes_on() -> None:
    async def scenario() -> Harness:
        h = Harness()
        h.replier.crash_on.add("boom")
        h.send("boom")
        await h.settle()
        h.send("fine")
        await h.finish()
        return h

    h = asyncio.run(scenario())
    assert h.replier.ended == {"boom": f"failed: {CRASHED}", "fine": "complete"}


def test_a_stop_leaves_the_message_pending_for_the_next_incarnation() -> None:
    async def scenario() -> Harness:
        h = Harness()
        h.send("still thinking")
        await h.settle()
        for task in h.tasks:  # as the runtime does on stop: no interruption recorded
            task.cancel()
        await asyncio.gather(*h.tasks, return_exceptions=True)
        return h

    h = asyncio.run(scenario())
    assert "still thinking" not in h.replier.ended
    assert list(h.ledger.state.pending) == ["m1"] and not h.workers.busy
