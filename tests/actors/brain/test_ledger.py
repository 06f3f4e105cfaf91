"""The brain's bookkeeping: what it accepts, what counts as answered, turns, quiet, relationships, usage."""

from __future__ import annotations

import time

import pytest

from actors.brain.backends import Usage
from actors.brain.config import BrainState
from actors.brain.ledger import ANSWERED_KEEP, Ledger, conversation_of, refusal
from actors.brain.persona import Persona, load_persona
from actors.brain.reply import ReplyOutcome
from schemas import Attachment, ChatMessage

NOW = 1_700_000_000.0


def message(text: str = "hi", **overrides: object) -> ChatMessage:
    fields: dict[str, object] = {
        "platform": "discord",
        "person_id": "ana",
        "display_name": "Ana",
        "channel": "c1",
        "text": text,
    }
    fields.update(overrides)
    return ChatMessage(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def persona() -> Persona:
    return load_persona()


def ledger() -> Ledger:
    return Ledger(BrainState(), clock=lambda: NOW)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("   ", "empty"),
        ("spoons " * 100, "700 characters"),
        ("\x00\x01\x02\x03\x04\x05\x06 binary \x07\x08", "binary"),
    ],
)
def test_messages_the_model_never_sees_get_a_line_that_says_why(text: str, words: str) -> None:
    assert words in refusal(message(text), max_chars=200)


def test_a_fine_message_or_an_attachment_alone_is_answered() -> None:
    assert refusal(message("hello there"), max_chars=200) == ""
    attachment = Attachment(filename="a.png", content_type="image/png", url="file:///a.png")
    assert refusal(message("", attachments=(attachment,)), max_chars=200) == ""


def test_a_conversation_is_a_channel_on_a_platform() -> None:
    assert conversation_of(message()) == "discord:c1"


def test_accepted_messages_wait_in_order_until_answered_and_are_never_taken_twice() -> None:
    book = ledger()
    book.accept("m2", 2, message("second"), NOW)
    book.accept("m1", 1, message("first"), NOW)
    book.accept("x", 3, message("elsewhere", channel="c2"), NOW)
    assert [p.event_id for p in book.waiting("discord:c1")] == ["m1", "m2"]
    assert book.conversations_waiting() == {"discord:c1", "discord:c2"}
    book.answered("m1")
    book.answered("m1")  # the reply's echo from the journal, after the worker's own record
    assert book.seen("m1") and book.seen("m2") and not book.seen("m9")
    assert book.state.answered == ["m1"] and "m1" not in book.state.pending


def test_our_reply_seen_on_replay_marks_its_message_answered() -> None:
    book = ledger()
    book.accept("m1", 1, message(), NOW)
    book.reply_seen("m1")
    book.reply_seen("unknown")
    assert not book.state.pending and book.state.answered == ["m1"]


def test_answered_ids_are_bounded() -> None:
    book = ledger()
    for i in range(ANSWERED_KEEP + 10):
        book.answered(f"m{i}")
    assert len(book.state.answered) == ANSWERED_KEEP and book.state.answered[0] == "m10"


def test_quiet_holds_until_it_ends_for_a_person_or_a_channel() -> None:
    book = ledger()
    book.quiet_until("person:ana", NOW + 60)
    assert book.is_quiet(message())
    book.quiet_until("person:ana", NOW - 1)  # ends it
    assert not book.is_quiet(message()) and not book.state.quiet
    book.state.quiet["channel:c1"] = NOW - 5  # ran out while nobody asked
    assert not book.is_quiet(message()) and not book.state.quiet


def test_a_complete_reply_joins_the_turns_and_counts_usage_and_connection(
    persona: Persona,
) -> None:
    book = ledger()
    book.accept("m1", 1, message("thank you so much, that helped"), NOW)
    outcome = ReplyOutcome(
        status="complete",
        text="Glad it helped.",
        backend="llamacpp",
        usage=Usage(prompt_tokens=30, completion_tokens=5),
    )
    book.record("discord:c1", book.state.pending["m1"], outcome, persona)
    turns = book.conversation("discord:c1").turns
    assert [(t.role, t.text, t.event_id) for t in turns] == [
        ("user", "thank you so much, that helped", "m1"),
        ("assistant", "Glad it helped.", "m1"),  # the message it answers
    ]
    assert book.state.answered == ["m1"] and not book.state.pending
    rel = book.state.relationships["ana"]
    assert rel.points > 0 and rel.last_seen == NOW
    day = time.strftime("%Y-%m-%d", time.localtime(NOW))
    row = book.state.usage[f"{day}|llamacpp|ana"]
    assert (row.prompt_tokens, row.completion_tokens, row.replies) == (30, 5, 1)


def test_a_cancelled_reply_is_kept_as_cancelled_and_a_failed_one_says_nothing(
    persona: Persona,
) -> None:
    book = ledger()
    book.accept("m1", 1, message("story?"), NOW)
    book.record(
        "discord:c1",
        book.state.pending["m1"],
        ReplyOutcome(status="cancelled", text="Once upon"),
        persona,
    )
    book.accept("m2", 2, message("again?"), NOW)
    book.record(
        "discord:c1",
        book.state.pending["m2"],
        ReplyOutcome(status="failed", text="My head's full of static"),
        persona,
    )
    turns = book.conversation("discord:c1").turns
    assert [(t.role, t.text, t.cancelled) for t in turns] == [
        ("user", "story?", False),
        ("assistant", "Once upon", True),
        ("user", "again?", False),
    ]
    assert book.state.relationships["ana"].points == 0  # only complete replies count
    assert not book.state.usage  # no backend served them


def test_one_message_joins_a_turns_pieces_and_lets_a_revision_replace_what_it_repeats() -> None:
    from actors.brain.config import PendingMessage
    from actors.brain.ledger import one_message

    def piece(event_id: str, text: str, at: float, **overrides: object) -> PendingMessage:
        return PendingMessage(
            event_id=event_id, offset=int(at), message=message(text, **overrides), received=at
        )

    typed = [piece("m1", "so I was thinking", 1.0), piece("m2", "about the trip", 2.0)]
    joined = one_message(typed)
    assert (joined.event_id, joined.message.text) == ("m2", "so I was thinking\nabout the trip")
    assert joined.received == 1.0  # the turn began with its first piece
    spoken = [
        piece("v1", "And so my fellow America.", 1.0),
        piece("v2", "And so my fellow Americans, ask not ...", 2.0, revises="v1"),
        piece("v3", "Right?", 3.0, attachments=(Attachment(filename="a.png"),)),
    ]
    whole = one_message(spoken)
    assert whole.message.text == "And so my fellow Americans, ask not ...\nRight?"
    assert [a.filename for a in whole.message.attachments] == ["a.png"]
    assert one_message(typed[:1]) is typed[0]


def test_trimming_people_never_drops_someone_whose_message_is_being_answered(
    persona: Persona,
) -> None:
    from actors.brain import ledger as ledger_module

    book = ledger()
    busy = message("hello again", person_id="returning")
    book.accept("e-busy", 1, busy, NOW)
    book.relationship("returning", persona).last_seen = NOW - 10**7  # long quiet
    for i in range(int(ledger_module.PEOPLE_KEPT * 1.2)):
        book.relationship(f"p{i}", persona)  # newcomers while the reply is written
    assert "returning" in book.state.relationships
