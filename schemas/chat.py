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
    """The final reply to one message; ``reply_to`` is the message event's id."""

    reply_to: str
    channel: str
    text: str
    status: Literal["complete", "cancelled", "failed"] = "complete"
    emotion: str = ""
