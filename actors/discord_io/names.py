"""The names Hex gives Discord things on the bus: person ids, event ids, voice conversations.

Pure functions of Discord's ids, so every part of the actor (and a replay after a crash) names
the same thing the same way.
"""

from __future__ import annotations

from hexbus.codec import derived_id

__all__ = [
    "DISCORD_EPOCH_MS",
    "VOICE_PREFIX",
    "discord_person_id",
    "message_event_id",
    "part_nonce",
    "snowflake_at",
    "voice_channel_of",
    "voice_conversation",
    "voice_source",
]

DISCORD_EPOCH_MS = 1_420_070_400_000  # the first second of 2015, where snowflake time starts
VOICE_PREFIX = "discord-voice-"


def discord_person_id(user_id: int) -> str:
    """The person id a Discord user has on the bus."""
    return f"discord:{user_id}"


def message_event_id(message_id: int) -> str:
    """The chat.message event id of a Discord message: the same whether it was taken live, caught
    up after an outage or taken again after a crash, so the journal holds it once."""
    return derived_id("discord", str(message_id))


def part_nonce(reply_to: str, index: int) -> str:
    """The nonce of one part of a reply, the same on every try (Discord allows 25 characters)."""
    return derived_id(reply_to, "part", str(index))[:25]


def snowflake_at(seconds: float) -> int:
    """The smallest Discord id made at ``seconds`` (Unix time), for ``after=`` in history."""
    return int(seconds * 1000 - DISCORD_EPOCH_MS) << 22


def voice_conversation(channel_id: int) -> str:
    """The conversation (the ``channel`` of events) of speech in a Discord voice channel."""
    return f"{VOICE_PREFIX}{channel_id}"


def voice_channel_of(conversation: str) -> int | None:
    """The voice channel id of a voice conversation; None for any other conversation."""
    if not conversation.startswith(VOICE_PREFIX):
        return None
    try:
        return int(conversation[len(VOICE_PREFIX) :])
    except ValueError:
        return None


def voice_source(guild_id: int, user_id: int) -> str:
    """The audio stream of one member in a guild's voice channel: one per speaker, for STT."""
    return f"discord:{guild_id}:{user_id}"
