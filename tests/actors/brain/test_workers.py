"""ReplyWorkers: one reply at a time per conversation, the newest message wins, a stop leaves it pending."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import msgspec

from actors.brain.config import BrainState, PendingMessage
from actors.brain.ledger import Ledger
from actors.brain.reply import ReplyStatus
from actors.brain.workers import CRASHED, NEWER_MESSAGE, ReplyWorkers, split_turn
from schemas import ChatMessage

T = TypeVar("T")


def message(text: str, channel: str = "c1", person: str = "ana") -> ChatMessage:
    return ChatMessage(
        platform="console", person_id=person, display_name=person, channel=channel, text=text
    )


class GatedReplier:
    """Answers after ``release`` is set (each answer waits for it); records how each turn ended
    (a turn's pieces joined with " + "). A reply to a turn named in ``spoke`` has said a sentence
    already; one that has not restarts on the merged turn when a newer message interrupts it, as
    the brain's does. ``closing_s``: how long recording a cancelled reply takes (a publish)."""

    def __init__(self, ledger: Ledger, workers: list[ReplyWorkers]) -> None:
        self.ledger = ledger
        self.workers = workers
        self.release = asyncio.Event()
        self.started: list[str] = []
        self.ended: dict[str, str] = {}
        self.crash_on: set[str] = set()
        self.spoke: set[str] = set()
        self.closing_s = 0.0
        self.cancelling: list[int] = []  # the task's pending cancellations as each answer starts

    async def answer(self, conversation: str, turn: list[PendingMessage]) -> None:
        text = " + ".join(p.message.text for p in turn)
        self.started.append(text)
        task = asyncio.current_task()
        self.cancelling.append(task.cancelling() if task else -1)
        if text in self.crash_on:
            raise RuntimeError("a bug")
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            interruption = self.workers[0].interrupted(conversation)
            if interruption is None:
                raise
            if interruption.why == NEWER_MESSAGE and text not in self.spoke:
                raise
            await asyncio.sleep(self.closing_s)
            self.ended[text] = f"cancelled: {interruption.why}"
        else:
            self.ended[text] = "complete"
        for piece in turn:
            self.ledger.answered(piece.event_id)

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

    def send(self, text: str, channel: str = "c1", person: str = "ana") -> None:
        self.offset += 1
        event = message(text, channel, person)
        self.ledger.accept(f"m{self.offset}", self.offset, event, 0.0)
        self.workers.kick(f"console:{channel}")

    async def settle(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    async def finish(self) -> None:
        self.replier.release.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 5)


def test_a_newer_message_cancels_a_reply_that_spoke_already_and_is_answered_alone() -> None:
    async def scenario() -> Harness:
        h = Harness()
        h.replier.spoke.add("tell me a story")
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


def test_others_messages_waiting_behind_a_reply_are_superseded_by_the_newest() -> None:
    async def scenario() -> Harness:
        h = Harness()
        h.send("one")
        await h.settle()
        h.workers.interrupt("console:c1", "test")  # as a barge-in would, without a message
        h.ledger.accept("m2", 2, message("two", person="bo"), 0.0)
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


def test_a_piece_sent_before_the_reply_spoke_joins_its_turn_and_the_reply_restarts() -> None:
    async def scenario() -> Harness:
        h = Harness()
        h.send("so I was thinking")
        await h.settle()
        h.send("about the trip")
        await h.settle()
        h.send("next week")
        await h.finish()
        return h

    h = asyncio.run(scenario())
    assert h.replier.started == [
        "so I was thinking",
        "so I was thinking + about the trip",
        "so I was thinking + about the trip + next week",
    ]
    assert h.replier.ended == {"so I was thinking + about the trip + next week": "complete"}
    assert not h.ledger.state.pending and not h.workers.busy


def test_another_persons_message_supersedes_a_reply_that_had_not_spoken() -> None:
    async def scenario() -> Harness:
        h = Harness()
        h.send("ana here")
        await h.settle()
        h.send("bo here", person="bo")
        await h.finish()
        return h

    h = asyncio.run(scenario())
    assert h.replier.ended == {"ana here": "cancelled", "bo here": "complete"}
    assert [t.text for t in h.ledger.conversation("console:c1").turns] == ["ana here"]


def test_a_burst_interrupts_a_closing_reply_once_and_no_cancellation_leaks_into_the_next() -> None:
    """Three lines in a row: the third arrives while the first reply is still being closed (its
    cancelled reply publishing). Interrupting it again would cut that short; instead the worker
    goes on to the two newer lines as one turn, with no cancellation pending on its task."""

    async def scenario() -> Harness:
        h = Harness()
        h.replier.spoke.add("one")
        h.replier.closing_s = 0.05
        h.send("one")
        await h.settle()
        h.send("two")
        await h.settle()
        h.send("three")  # "one" is being closed now
        await asyncio.sleep(0.1)
        await h.finish()
        return h

    h = asyncio.run(scenario())
    assert h.replier.ended == {"one": "cancelled: newer message", "two + three": "complete"}
    assert h.replier.cancelling == [0, 0]
    assert not h.ledger.state.pending and not h.workers.interruptions


def test_split_turn_keeps_the_last_persons_run_of_pieces() -> None:
    def pending(i: int, person: str) -> PendingMessage:
        return PendingMessage(event_id=f"m{i}", offset=i, message=message(str(i), person=person))

    waiting = [pending(1, "ana"), pending(2, "bo"), pending(3, "ana"), pending(4, "ana")]
    superseded, turn = split_turn(waiting)
    assert [p.event_id for p in superseded] == ["m1", "m2"]
    assert [p.event_id for p in turn] == ["m3", "m4"]
    assert split_turn(waiting[:1]) == ([], waiting[:1])


def test_her_own_initiative_is_a_turn_of_its_own_and_the_persons_words_supersede_it() -> None:
    def pending(i: int, initiative: str = "") -> PendingMessage:
        m = msgspec.structs.replace(message(str(i)), initiative=initiative)
        return PendingMessage(event_id=f"m{i}", offset=i, message=m)

    # Ana wrote while Hex's opening to her waited: Ana is answered, the opening is dropped.
    superseded, turn = split_turn([pending(1, initiative="a dated event"), pending(2), pending(3)])
    assert [p.event_id for p in superseded] == ["m1"] and [p.event_id for p in turn] == ["m2", "m3"]
    # The opening came after pieces of Ana's still waiting: it never speaks for them.
    superseded, turn = split_turn([pending(1), pending(2, initiative="a long silence")])
    assert [p.event_id for p in superseded] == ["m1"] and [p.event_id for p in turn] == ["m2"]
    # And no turn of Ana's is kept for it.
    ledger = Ledger(BrainState())
    ledger.hear("console:c1", "m2", pending(2, initiative="a long silence").message)
    assert not ledger.conversation("console:c1").turns
