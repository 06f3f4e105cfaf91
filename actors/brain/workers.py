"""One reply at a time per conversation; conversations side by side; a newer message interrupts.

Each conversation (platform + channel) with pending messages has one worker
task, started with the actor's ``spawn``. The worker answers the person who
spoke last, all their pending pieces as one turn (:func:`split_turn`); older
messages from others still unanswered are superseded (their final reply says
``cancelled``). A newer message, or a barge-in on the voice, cancels the reply
in flight: the worker catches that cancellation and moves on, while a
cancellation without a recorded interruption (the actor stopping) ends the
worker and leaves the message pending for the next incarnation. Whether the
interrupted reply is recorded as cancelled or its pieces wait to be answered
with the newer one is the replier's call (it knows whether it spoke yet).

A reply is interrupted once: a second interruption while the first is still
being handled would land in the replier's cleanup (publishing the cancelled
reply), and the worker reads the pending messages again after it anyway.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import msgspec
import structlog

from actors.brain.config import PendingMessage
from actors.brain.ledger import Ledger
from actors.brain.reply import ReplyStatus
from hexbus.types import Spawn

log = structlog.get_logger("actors.brain")

CRASHED = "Something went wrong in my head. Try again?"
NEWER_MESSAGE = "newer message"  # an interruption's ``why`` when the conversation got one


class Replier(Protocol):
    """What the workers ask of the actor."""

    async def answer(self, conversation: str, turn: list[PendingMessage]) -> None:
        """Reply to the pieces of one turn (oldest first) and record them; a cancellation may
        come at any await."""

    async def give_up(self, message: PendingMessage, text: str, status: ReplyStatus) -> None:
        """End ``message`` with a final reply saying ``text`` and no model output."""


class Interruption(msgspec.Struct, frozen=True):
    """Why a reply in flight was cancelled, and what the person heard of it before a barge-in."""

    why: str
    heard: str | None = None


class ReplyWorkers:
    """The conversations' workers: :meth:`kick` when a message is pending, :meth:`barge_in` when
    the voice is cut off. ``inflight`` maps a conversation to the message being answered."""

    def __init__(self, spawn: Spawn, ledger: Ledger, replier: Replier) -> None:
        self._spawn = spawn
        self.ledger = ledger
        self.replier = replier
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.inflight: dict[str, str] = {}
        self.interruptions: dict[str, Interruption] = {}

    @property
    def busy(self) -> bool:
        """Some conversation has a reply in flight."""
        return bool(self.inflight)

    async def idle(self) -> None:
        """Until no reply is in flight (work that yields to people's replies waits here)."""
        while self.inflight:
            await asyncio.sleep(0.05)

    def kick(self, conversation: str) -> None:
        """A message is pending in ``conversation``: start its worker, or interrupt its reply."""
        task = self.tasks.get(conversation)
        if task is not None and not task.done():
            if conversation in self.inflight:
                self.interrupt(conversation, NEWER_MESSAGE)
            return  # a worker between replies reads the pending messages again before the next
        self.tasks[conversation] = self._spawn(
            self._work(conversation), name=f"reply-{conversation}"
        )

    def barge_in(self, channel: str, heard: str) -> None:
        """The person spoke over the voice in ``channel``: stop the reply, keep what they heard."""
        for conversation, task in self.tasks.items():
            if (
                conversation.split(":", 1)[1] == channel
                and conversation in self.inflight
                and not task.done()
            ):
                self.interrupt(conversation, "barge-in", heard)

    def interrupt(self, conversation: str, why: str, heard: str | None = None) -> None:
        if conversation in self.interruptions:
            return  # being handled: the worker reads the pending messages again afterwards
        self.interruptions[conversation] = Interruption(why, heard)
        task = self.tasks.get(conversation)
        if task is not None:
            task.cancel()

    def interrupted(self, conversation: str) -> Interruption | None:
        """Why the reply in flight was cancelled; None when nobody interrupted it (a stop)."""
        return self.interruptions.get(conversation)

    async def _work(self, conversation: str) -> None:
        while waiting := self.ledger.waiting(conversation):
            superseded, turn = split_turn(waiting)
            for stale in superseded:
                self.ledger.hear(conversation, stale.event_id, stale.message)
                await self.replier.give_up(stale, "", "cancelled")
            if superseded and self.ledger.waiting(conversation)[-1].event_id != turn[-1].event_id:
                continue  # more came while those were closed: start from the newest
            self.inflight[conversation] = turn[-1].event_id
            try:
                await self.replier.answer(conversation, turn)
            except asyncio.CancelledError:
                if conversation not in self.interruptions:
                    raise  # the actor is stopping: the messages stay pending
            except Exception:
                log.exception("brain.reply_crashed", conv=conversation, message=turn[-1].event_id)
                for piece in turn[:-1]:
                    await self.replier.give_up(piece, "", "failed")
                await self.replier.give_up(turn[-1], CRASHED, "failed")
            finally:
                self.inflight.pop(conversation, None)
                if self.interruptions.pop(conversation, None) is not None:
                    # Its cancellation was taken and handled: later awaits must not see it.
                    task = asyncio.current_task()
                    if task is not None:
                        task.uncancel()


def split_turn(waiting: list[PendingMessage]) -> tuple[list[PendingMessage], list[PendingMessage]]:
    """``waiting`` (oldest first) as (superseded, turn): the turn is the newest message and every
    pending piece before it from the same person; what others said before it is superseded.
    Hex's own initiative is a turn of its own, and the person's words supersede it."""
    last = waiting[-1].message
    start = len(waiting) - 1
    while (
        start > 0
        and not last.initiative
        and not waiting[start - 1].message.initiative
        and waiting[start - 1].message.person_id == last.person_id
    ):
        start -= 1
    return waiting[:start], waiting[start:]
