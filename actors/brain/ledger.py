"""What the brain has accepted, answered and said: its bookkeeping on :class:`BrainState`, no bus.

Every accepted chat message stays pending in the state until its final reply is
journaled, so a brain killed mid-reply answers it after the restart; the ids of
messages answered lately are kept (bounded), so a replayed message is never
answered twice. Conversations keep their turns, people their relationship with
Hex, and every reply its token usage per day, backend and person. All of it is
bounded, whatever the number of people: the least recently active conversations
and people go past :data:`CONVERSATIONS_KEPT` and :data:`PEOPLE_KEPT`, usage past
:data:`USAGE_DAYS` days, and small users' usage is counted together.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec
import structlog

from actors.brain.config import BrainState, Conversation, PendingMessage, UsageRow
from actors.brain.persona import Persona
from actors.brain.profile import ProfileNotes
from actors.brain.prompt import TurnRecord
from actors.brain.reply import ReplyOutcome
from actors.brain.rules import (
    Relationship,
    connection_points,
    new_relationship,
    record_reply,
    update_relationship,
)
from schemas import ChatMessage, Reply

log = structlog.get_logger("actors.brain")

ANSWERED_KEEP = 2048
# The state is bounded whatever the number of people (issue 13): beyond these the least
# recently active go (their history stays in memory, which is where the long term lives).
CONVERSATIONS_KEPT = 1000
PEOPLE_KEPT = 5000  # relationships and the brain's own profile notes
USAGE_DAYS = 62
USAGE_PEOPLE_PER_DAY = 500  # per day and backend; the rest are counted as "others"
OTHERS = "others"


def _over(size: int, cap: int) -> bool:
    """Trim in batches (past a tenth over the cap), so each trim's sort is paid rarely."""
    return size > cap + max(1, cap // 10)


def conversation_of(message: ChatMessage | Reply) -> str:
    """A conversation is a channel on a platform: one reply at a time in each (a reply names
    the conversation of the message it answers)."""
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


def one_message(turn: list[PendingMessage]) -> PendingMessage:
    """The pieces of one person's turn (oldest first) as one message: the last piece's, saying
    every piece's words in order. A piece that a later one revises is left out (the later one
    says its words again, transcribed whole)."""
    if len(turn) == 1:
        return turn[0]
    revised = {p.message.revises for p in turn}
    kept = [p.message for p in turn if p.event_id not in revised]
    last = turn[-1]
    merged = msgspec.structs.replace(
        last.message,
        text="\n".join(m.text for m in kept),
        attachments=tuple(a for m in kept for a in m.attachments),
        direct=any(m.direct for m in kept),
    )
    return PendingMessage(
        event_id=last.event_id, offset=last.offset, message=merged, received=turn[0].received
    )


class Ledger:
    """The brain's state, changed one bookkeeping step at a time (``clock`` gives unix time)."""

    def __init__(self, state: BrainState, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.clock = clock
        self._usage_mark = max(USAGE_PEOPLE_PER_DAY, len(state.usage))

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

    def reply_seen(self, reply_to: str, merged: tuple[str, ...] = ()) -> list[PendingMessage]:
        """Our own final reply came back through the journal: on replay after a crash this is
        what tells a message that was answered from one that was not. Returns the earlier pieces
        it answered too (``merged``) that were still pending: their own final replies are owed."""
        owed = [self.state.pending[m] for m in merged if m in self.state.pending]
        for piece in (reply_to, *merged):
            if piece in self.state.pending:
                self.answered(piece)
        return owed

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
            if _over(len(self.state.conversations), CONVERSATIONS_KEPT):
                self.trim_conversations(keep=conversation)
        return found

    def trim_conversations(self, keep: str = "") -> None:
        """Keep the :data:`CONVERSATIONS_KEPT` most recently active (and ``keep``)."""
        conversations = self.state.conversations
        pending = self.conversations_waiting()

        def last(name: str) -> float:
            turns = conversations[name].turns
            return turns[-1].at if turns else 0.0

        ranked = sorted(conversations, key=last, reverse=True)
        for name in ranked[CONVERSATIONS_KEPT:]:
            if name != keep and name not in pending:
                del conversations[name]

    def hear(self, conversation: str, event_id: str, message: ChatMessage) -> None:
        """The message joins the conversation's turns (heard, whether or not it is answered);
        Hex's own initiative is no turn of the person's."""
        if message.initiative:
            return
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
        self,
        conversation: str,
        pending: PendingMessage,
        outcome: ReplyOutcome,
        persona: Persona,
        pieces: tuple[str, ...] = (),
    ) -> None:
        """A reply ended: the message and what was said join the turns (a failure says nothing),
        the message is answered (with the earlier ``pieces`` of its turn it stands for), and the
        person's relationship and usage are counted."""
        self.hear(conversation, pending.event_id, pending.message)
        for piece in pieces:
            self.answered(piece)
        if outcome.text and outcome.status != "failed":
            self.conversation(conversation).turns.append(
                TurnRecord(
                    role="assistant",
                    text=outcome.text,
                    event_id=pending.event_id,  # the message it answers
                    at=self.clock(),
                    cancelled=outcome.status == "cancelled",
                )
            )
        self.answered(pending.event_id)
        self.account(pending.message, outcome, persona)

    def heard_only(self, channel: str, reply_to: str, said: str) -> None:
        """A spoken reply that ended before its barge-in arrived (a newer message cancelled it
        first, or the model had finished writing while she was still speaking): what the person
        heard of it is what was said."""
        for key, conversation in self.state.conversations.items():
            if key.split(":", 1)[-1] != channel:
                continue
            for turn in reversed(conversation.turns[-8:]):
                if turn.role == "assistant" and turn.event_id == reply_to:
                    if said:
                        turn.text, turn.cancelled = said, True
                    else:  # stopped before a word was heard
                        conversation.turns.remove(turn)
                    return

    # -- people ---------------------------------------------------------------------------

    def relationship(self, person_id: str, persona: Persona) -> Relationship:
        found = self.state.relationships.get(person_id)
        if found is None:
            found = self.state.relationships[person_id] = new_relationship(
                person_id, persona, now=self.clock()
            )
            if _over(len(self.state.relationships), PEOPLE_KEPT):
                self.trim_people(keep=person_id)
        return found

    def profile(self, person_id: str) -> ProfileNotes:
        """The brain's own notes on a person, made when first needed (bounded like people)."""
        found = self.state.profiles.get(person_id)
        if found is None:
            found = self.state.profiles[person_id] = ProfileNotes()
            if _over(len(self.state.profiles), PEOPLE_KEPT):
                self.trim_people(keep=person_id)
        return found

    def trim_people(self, keep: str = "") -> None:
        """Keep the relationships and profile notes of the :data:`PEOPLE_KEPT` people seen
        most recently (and ``keep``)."""
        state = self.state
        # Never someone whose message is waiting or being answered: the reply uses them.
        busy = {p.message.person_id for p in state.pending.values()} | {keep}
        ranked = sorted(state.relationships.values(), key=lambda r: r.last_seen, reverse=True)
        for rel in ranked[PEOPLE_KEPT:]:
            if rel.person_id not in busy:
                del state.relationships[rel.person_id]
        if _over(len(state.profiles), PEOPLE_KEPT):
            known = state.relationships
            by_age = sorted(
                state.profiles,
                key=lambda p: (p in known, state.profiles[p].updated),
                reverse=True,
            )
            for person in by_age[PEOPLE_KEPT:]:
                if person not in busy:
                    del state.profiles[person]

    def account(self, message: ChatMessage, outcome: ReplyOutcome, persona: Persona) -> None:
        now = self.clock()
        rel = self.relationship(message.person_id, persona)
        if outcome.status == "complete" and not message.initiative:
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
            if _over(len(self.state.usage), self._usage_mark):
                self.trim_usage(now)

    def trim_usage(self, now: float) -> None:
        """Forget days older than :data:`USAGE_DAYS`; per day and backend, count all but the
        :data:`USAGE_PEOPLE_PER_DAY` biggest users together as "others"."""
        usage = self.state.usage
        oldest = time.strftime("%Y-%m-%d", time.localtime(now - USAGE_DAYS * 86400))
        groups: dict[str, list[tuple[str, UsageRow]]] = {}
        for key, row in list(usage.items()):
            day, backend, person = key.split("|", 2)
            if day < oldest:
                del usage[key]
            elif person != OTHERS:
                groups.setdefault(f"{day}|{backend}", []).append((key, row))
        for group, rows in groups.items():
            if len(rows) <= USAGE_PEOPLE_PER_DAY:
                continue
            rows.sort(key=lambda kr: kr[1].prompt_tokens + kr[1].completion_tokens, reverse=True)
            others = usage.setdefault(f"{group}|{OTHERS}", UsageRow())
            for key, row in rows[USAGE_PEOPLE_PER_DAY:]:
                others.prompt_tokens += row.prompt_tokens
                others.completion_tokens += row.completion_tokens
                others.replies += row.replies
                del usage[key]
        self._usage_mark = max(USAGE_PEOPLE_PER_DAY, len(usage))  # next trim when a tenth over
