"""What the actor's parts ask of Discord, and of the actor, in plain ids and text.

The parts (``inbox``, ``replies``, ``voice_links``, ``suggestions``) hold the logic; they reach
Discord only through a :class:`DiscordPort`, which ``bot.py`` implements over discord.py's client
and the tests implement in memory, and the bus only through the callables the actor passes
them. So none of them imports discord.py, the actor, or each other in a circle.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from hexbus.types import Spawn
from schemas import Attachment, Event

__all__ = [
    "DiscordPort",
    "OnAudio",
    "OnEnd",
    "Publish",
    "PublishVolatile",
    "SeenMessage",
    "Spawn",
    "Speech",
    "StateChanged",
    "VoiceCall",
]

T = TypeVar("T")

OnAudio = Callable[[int, str, bytes, int], object]  # user id, display name, mono PCM16, rate
# User id, display name, and whether they left (else they stopped sending: silent, or held up).
OnEnd = Callable[[int, str, bool], object]


@dataclass(frozen=True)
class SeenMessage:
    """A message on Discord as the actor reads it: a person's, or one of Hex's own parts."""

    id: int
    channel_id: int
    author_id: int
    author_name: str
    author_bot: bool
    content: str
    in_dm: bool  # a direct message (no guild)
    mentions_me: bool
    replies_to_me: bool  # a reply to one of Hex's messages
    reference_id: int | None  # the message it replies to
    ordinary: bool = True  # a default message or a reply, not a system message (a pin, a join)
    attachments: tuple[Attachment, ...] = ()


class VoiceCall(Protocol):
    """Hex's connection to one voice channel (discord-ext-voice-recv's VoiceRecvClient)."""

    def is_connected(self) -> bool: ...

    def is_playing(self) -> bool: ...

    def play(self, source: Any) -> None: ...

    def stop_playing(self) -> None: ...

    async def disconnect(self, *, force: bool = False) -> None: ...


class Speech(Protocol):
    """Hex's speech for one playback, fed from the loop (voice.BusAudioSource)."""

    @property
    def ended(self) -> bool: ...

    def feed(self, pcm16_mono: bytes, rate: int) -> None: ...

    def finish(self) -> None: ...

    def clear(self) -> None: ...


class DiscordPort(Protocol):
    """Discord as the parts use it. Requests raise what discord.py raises, except that a refusal
    no retry can change (403, a 404 on post) is :class:`replies.Undeliverable`."""

    @property
    def me(self) -> int:
        """Hex's own user id; 0 until the first login."""
        ...

    async def send_typing(self, channel_id: int) -> None: ...

    def history(self, channel_id: int, *, after: int, limit: int) -> AsyncIterator[SeenMessage]:
        """Messages after the id ``after``, oldest first."""
        ...

    async def post(
        self, channel_id: int, text: str, *, reference: int | None = None, nonce: str = ""
    ) -> int:
        """Post ``text`` (answering ``reference``); the new message's id. One try: Discord
        creates a message once per ``nonce`` even if a try timed out after it had it."""
        ...

    async def edit(self, channel_id: int, message_id: int, text: str) -> None: ...

    async def delete(self, channel_id: int, message_id: int) -> None:
        """Delete a message; one already gone is not an error."""
        ...

    async def suggestion_targets(
        self, channels: tuple[str, ...], owners: tuple[str, ...]
    ) -> list[int]:
        """Where memory suggestions go: ``channels``, or else each owner's DM channel (an
        owner Discord cannot reach is logged and left out)."""
        ...

    async def dm_channel(self, user_id: int) -> int:
        """The DM channel with a user, opened if needed (raises :class:`Undeliverable` when
        Discord will not open it)."""
        ...

    async def post_suggestion(self, channel_id: int, memory_id: str, text: str) -> int:
        """Post a suggestion with its Approve and Reject buttons; the message's id."""
        ...

    async def post_proposal(self, channel_id: int, proposal: int, text: str) -> int:
        """Post one of her proposals to change herself with Approve and Reject buttons."""
        ...

    def voice_members(self, channel_id: int) -> int | None:
        """How many people (not bots) are in a voice channel; None if it is not one Hex knows."""
        ...

    def in_voice(self, channel_id: int, user_id: int) -> bool:
        """Whether a user is in that voice channel now."""
        ...

    async def dial(self, channel_id: int, *, timeout: float) -> VoiceCall:
        """Connect to a voice channel, not deafened."""
        ...

    def listen(self, call: VoiceCall, on_audio: OnAudio, on_end: OnEnd) -> None:
        """Hear each member of the call apart: 16 kHz mono PCM16, delivered on the loop."""
        ...

    def new_speech(self) -> Speech: ...


class Publish(Protocol):
    """The actor's durable publish (ids derived from the event being handled, or given)."""

    def __call__(self, event: Event, *, key: str = "", event_id: str = "") -> Awaitable[Any]: ...


class PublishVolatile(Protocol):
    def __call__(self, event: Event, *, key: str = "", blob: bytes | None = None) -> Any: ...


class StateChanged(Protocol):
    """The actor's :meth:`hexbus.Actor.state_changed`, for changes made outside a handler."""

    def __call__(self, *, now: bool = False) -> None: ...
