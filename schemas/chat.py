"""Chat events: a message from a person, and the reply streamed back."""

from __future__ import annotations

from typing import Literal

import msgspec

from schemas.base import Event

Platform = Literal["discord", "web", "console", "voice"]


class Attachment(msgspec.Struct, frozen=True, kw_only=True):
    """A file that came with a message; large content travels by URL or path, never inline."""

    filename: str
    content_type: str = "application/octet-stream"
    size: int = 0
    url: str = ""


class ChatMessage(Event, frozen=True, kw_only=True, tag="chat.message"):
    """What a person said to Hex, on any platform."""

    platform: Platform
    person_id: str
    display_name: str
    channel: str
    text: str
    attachments: tuple[Attachment, ...] = ()
    message_id: str = ""
    direct: bool = False
    # Speech only: the id of this person's earlier message whose words this one says again, whole
    # (the audio of both re-transcribed as one turn), so the brain reads this text in its place.
    revises: str = ""
    # Discord only: taken by a catch-up after an outage or a restart, in order, so everything
    # missed in its channel up to this message was taken with it (a summary) or before it.
    catch_up: bool = False
    # Hex speaks first (the autonomy actor): why, for the prompt; ``text`` then says what about
    # (the dated fact, her thought), never words of the person's, and no turn of theirs is kept.
    initiative: str = ""


class ChatAck(Event, frozen=True, kw_only=True, tag="chat.ack"):
    """The responder saw a message (typing indicator shown)."""

    message_event_id: str
    channel: str


class ReplyChunk(Event, frozen=True, kw_only=True, tag="chat.reply.chunk"):
    """A piece of a reply as it streams; ``index`` orders the chunks of one reply."""

    reply_to: str
    channel: str
    index: int
    text: str


class Reply(Event, frozen=True, kw_only=True, tag="chat.reply"):
    """The final reply to one message; ``reply_to`` is the message event's id.

    ``failed`` carries a text meant for the person (why there is no real answer);
    ``cancelled`` carries what had been generated when a newer message or a barge-in stopped it.

    A person who sends a turn in pieces (lines typed in a row, speech split at a pause) gets one
    answer: the reply to the last piece lists the earlier ones in ``merged``, and each earlier
    piece's own final reply is ``cancelled`` with no text and ``merged_into`` the last piece.
    """

    reply_to: str
    channel: str
    text: str
    status: Literal["complete", "cancelled", "failed"] = "complete"
    emotion: str = ""
    platform: str = ""
    person_id: str = ""
    backend: str = ""  # which backend produced the text
    fallbacks: int = 0  # backends that failed before it
    merged: tuple[str, ...] = ()  # earlier pieces of the same turn this reply answers too
    merged_into: str = ""  # this piece was answered by the reply to that message
    recalled: tuple[str, ...] = ()  # the memories (ids) that went into the reply's prompt


class ReplySentence(Event, frozen=True, kw_only=True, tag="chat.sentence"):
    """One complete sentence of a reply, published the moment it is complete (what TTS speaks)."""

    reply_to: str
    channel: str
    platform: str = ""
    person_id: str = ""
    index: int
    text: str


class Fact(msgspec.Struct, frozen=True, kw_only=True):
    """Something worth remembering, with the person's words it came from."""

    text: str
    quote: str = ""


class KnownPerson(msgspec.Struct, frozen=True, kw_only=True):
    """Somebody a person mentioned: who they are to them, how they feel about them, what happened."""

    name: str
    relation: str = ""  # "brother", "coworker"
    sentiment: str = ""  # how the person feels about them
    note: str = ""  # notable history, one line


class ProfileUpdate(msgspec.Struct, frozen=True, kw_only=True):
    hobbies: tuple[str, ...] = ()
    tastes: tuple[str, ...] = ()
    sentiment: str = ""  # how the person feels about Hex right now, in a word or two
    people: tuple[KnownPerson, ...] = ()  # for the person's roster of people they know


class ReplyMeta(Event, frozen=True, kw_only=True, tag="chat.meta"):
    """What the brain concluded about an exchange, after the reply: emotion and memory directives."""

    reply_to: str
    person_id: str
    channel: str
    emotion: str = "neutral"
    remember: bool = False
    importance: float = 0.0
    tags: tuple[str, ...] = ()
    facts: tuple[Fact, ...] = ()
    profile: ProfileUpdate = ProfileUpdate()
    repaired: bool = False  # the model's JSON needed repair or defaults


class BargeIn(Event, frozen=True, kw_only=True, tag="chat.bargein"):
    """A person started speaking while Hex spoke to them: stop the reply; ``said`` is what they heard."""

    channel: str
    person_id: str = ""
    said: str = ""
    # The message whose spoken reply was interrupted ("" = whatever reply is in flight there:
    # the page's Stop button). A barge-in about a reply that has already ended (a newer message
    # cancelled it first) only corrects what the brain recorded as said.
    reply_to: str = ""


class Notice(Event, frozen=True, kw_only=True, tag="chat.notice"):
    """Something the person should know that is not a reply (a backend is sleepy, a message was refused)."""

    channel: str
    platform: str = ""
    kind: Literal["sleepy", "fallback", "refused", "quiet", "capability"]
    text: str
