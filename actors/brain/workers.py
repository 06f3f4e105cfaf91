"""One reply at a time per conversation; conversations side by side; a newer message interrupts.

Each conversation (platform + channel) with pending messages has one worker
task, started with the actor's ``spawn``. The worker answers the newest pending
message; older ones still unanswered are superseded (their final reply says
``cancelled``). A newer message, or a barge-in on the voice, cancels the reply in
flight: the worker catches that cancellation and moves on, while a cancellation
without a recorded interruption (the actor stopping) ends the worker and leaves
the message pending for the next incarnation.
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


class Replier(Protocol):
    """What the workers ask of the actor."""

    async def answer(self, conversation: str, message: PendingMessage) -> None:
        """Reply to ``message`` and record it; a cancellation may come at any await."""

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

    def kick(self, conversation: str) -> None:
        """A message is pending in ``conversation``: start its worker, or interrupt its reply."""
        task = self.tasks.get(conversation)
        if task is not None and not task.done():
            if conversation in self.inflight:
                self.interrupt(conversation, "newer message")
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
        self.interruptions[conversation] = Interruption(why, heard)
        task = self.tasks.get(conversation)
        if task is not None:
            task.cancel()

    def interrupted(self, conversation: str) -> Interruption | None:
        """Why the reply in flight was cancelled; None when nobody interrupted it (a stop)."""
        return self.interruptions.get(conversation)

    async def _work(self, conversation: str) -> None:
        while waiting := self.ledger.waiting(conversation):
            *older, current = waiting
            for stale in older:
                self.ledger.hear(conversation, stale.event_id, stale.message)
                await self.replier.give_up(stale, "", "cancelled")
            self.inflight[conversation] = current.event_id
            try:
                await self.replier.answer(conversation, current)
            except asyncio.CancelledError:
                if conversation not in self.interruptions:
                    raise  # the actor is stopping: the message stays pending
            except Exception:
                log.exception("brain.reply_crashed", conv=conversation, message=current.event_id)
                await self.replier.give_up(current, CRASHED, "failed")
            finally:
                self.inflight.pop(conversation, None)
                self.interruptions.pop(conversation, None)
