"""What the brain has accepted, answered and said: its bookkeeping on :class:`BrainState`, no bus.

Every accepted chat message stays pending in the state until its final reply is
journaled, so a brain killed mid-reply answers it after the restart; the ids of
messages answered lately are kept (bounded), so a replayed message is never
answered twice. Conversations keep their turns, people their relationship with
Hex, and every reply its token usage per day, backend and person.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from actors.brain.config import BrainState, Conversation, PendingMessage, UsageRow
from actors.brain.persona import Persona
from actors.brain.prompt import TurnRecord
from actors.brain.reply import ReplyOutcome
from actors.brain.rules import (
    Relationship,
    connection_points,
    new_relationship,
    record_reply,
    update_relationship,
)
from schemas import ChatMessage

log = structlog.get_logger("actors.brain")

ANSWERED_KEEP = 2048


def conversation_of(message: ChatMessage) -> str:
    """A conversation is a channel on a platform: one reply at a time in each."""
    return f"{message.platform}:{message.channel}"


def looks_binary(text: str) -> bool:
    controls = sum(1 for c in text if ord(c) < 32 and c not in "\n\r\t")
    return "\x00" in text or controls > max(4, len(text) // 20)


def refusal(message: ChatMessage, max_chars: int) -> str:
    """Why ``message`` gets no answer from the model, said to the person; '' when it does."""
    text = message.text
    if not text.strip() and not message.attachments:
        return "That message was empty, so there's nothing for me to answer."
    if len(text) > max_chars:
        return (
            f"That message is {len(text)} characters; I read at most {max_chars}. "
            "Send it in parts, or as a file."
        )
    if looks_binary(text):
        return "That looks like binary data, not words. Send files as attachments."
    return ""


class Ledger:
    """The brain's state, changed one bookkeeping step at a time (``clock`` gives unix time)."""

    def __init__(self, state: BrainState, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.clock = clock

    # -- messages -------------------------------------------------------------------------

    def seen(self, event_id: str) -> bool:
        """Accepted already: pending, or answered lately."""
        return event_id in self.state.pending or event_id in self.state.answered

    def accept(self, event_id: str, offset: int, message: ChatMessage, received: float) -> None:
        self.state.pending[event_id] = PendingMessage(
            event_id=event_id, offset=offset, message=message, received=received
        )

    def waiting(self, conversation: str) -> list[PendingMessage]:
        """The conversation's pending messages, oldest first."""
        return sorted(
            (p for p in self.state.pending.values() if conversation_of(p.message) == conversation),
            key=lambda p: p.offset,
        )

    def conversations_waiting(self) -> set[str]:
        return {conversation_of(p.message) for p in self.state.pending.values()}

    def answered(self, event_id: str) -> None:
        """The message has its final reply: no longer pending, and never answered again."""
        self.state.pending.pop(event_id, None)
        answered = self.state.answered
        if event_id in answered:
            return  # our reply's echo from the journal came first
        answered.append(event_id)
        if len(answered) > ANSWERED_KEEP:
            del answered[: len(answered) - ANSWERED_KEEP]

    def reply_seen(self, reply_to: str) -> None:
        """Our own final reply came back through the journal: on replay after a crash this is
        what tells a message that was answered from one that was not."""
        if reply_to in self.state.pending:
            self.answered(reply_to)

    # -- quiet ----------------------------------------------------------------------------

    def quiet_until(self, key: str, until: float) -> None:
        """``key`` is ``person:ID`` or ``channel:ID``; an ``until`` in the past ends the quiet."""
        if until > self.clock():
            self.state.quiet[key] = until
        else:
            self.state.quiet.pop(key, None)

    def is_quiet(self, message: ChatMessage) -> bool:
        now = self.clock()
        for key in (f"person:{message.person_id}", f"channel:{message.channel}"):
            until = self.state.quiet.get(key)
            if until is not None:
                if until > now:
                    return True
                del self.state.quiet[key]
        return False

    # -- conversations --------------------------------------------------------------------

    def conversation(self, conversation: str) -> Conversation:
        found = self.state.conversations.get(conversation)
        if found is None:
            found = self.state.conversations[conversation] = Conversation()
        return found

    def hear(self, conversation: str, event_id: str, message: ChatMessage) -> None:
        """The message joins the conversation's turns (heard, whether or not it is answered)."""
        self.conversation(conversation).turns.append(
            TurnRecord(
                role="user",
                text=message.text,
                person_id=message.person_id,
                name=message.display_name,
                event_id=event_id,
                at=self.clock(),
            )
        )

    def record(
        self, conversation: str, pending: PendingMessage, outcome: ReplyOutcome, persona: Persona
    ) -> None:
        """A reply ended: the message and what was said join the turns (a failure says nothing),
        the message is answered, and the person's relationship and usage are counted."""
        self.hear(conversation, pending.event_id, pending.message)
        if outcome.text and outcome.status != "failed":
            self.conversation(conversation).turns.append(
                TurnRecord(
                    role="assistant",
                    text=outcome.text,
                    at=self.clock(),
                    cancelled=outcome.status == "cancelled",
                )
            )
        self.answered(pending.event_id)
        self.account(pending.message, outcome, persona)

    # -- people ---------------------------------------------------------------------------

    def relationship(self, person_id: str, persona: Persona) -> Relationship:
        found = self.state.relationships.get(person_id)
        if found is None:
            found = self.state.relationships[person_id] = new_relationship(
                person_id, persona, now=self.clock()
            )
        return found

    def account(self, message: ChatMessage, outcome: ReplyOutcome, persona: Persona) -> None:
        now = self.clock()
        rel = self.relationship(message.person_id, persona)
        if outcome.status == "complete":
            points = connection_points(message.text, persona)
            if changed := update_relationship(rel, points, persona, now=now):
                log.info("brain.relationship_phase", person=message.person_id, phase=changed)
            record_reply(rel, outcome.text, persona)
        rel.last_seen = now
        if outcome.backend:
            day = time.strftime("%Y-%m-%d", time.localtime(now))
            row = self.state.usage.setdefault(
                f"{day}|{outcome.backend}|{message.person_id}", UsageRow()
            )
            row.prompt_tokens += outcome.usage.prompt_tokens
            row.completion_tokens += outcome.usage.completion_tokens
            row.replies += 1
