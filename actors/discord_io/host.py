"""What the discord.py side (``bot.py``, ``commands.py``) asks of the actor that hosts it.

A Protocol, so those modules need not import the actor (which imports them): the actor is the
one host; a test may pass its own.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from actors.discord_io.config import DiscordConfig, DiscordState
from actors.discord_io.port import SeenMessage
from actors.discord_io.suggestions import Suggestions
from actors.discord_io.voice_links import VoiceLinks
from hexbus.bus import BusClient
from hexbus.capabilities import Capabilities
from schemas import Event

__all__ = ["BotHost"]

E = TypeVar("E", bound=Event)


class BotHost(Protocol):
    """The actor, as discord.py's client and the slash commands see it."""

    @property
    def name(self) -> str: ...

    @property
    def config(self) -> DiscordConfig: ...

    @property
    def state(self) -> DiscordState: ...

    @property
    def bus(self) -> BusClient: ...

    @property
    def live(self) -> bool: ...

    @property
    def voice_links(self) -> VoiceLinks: ...

    @property
    def suggestions(self) -> Suggestions: ...

    @property
    def capabilities(self) -> Capabilities: ...

    def state_changed(self, *, now: bool = False) -> None: ...

    def presence(self, user_id: int, status: str) -> None:
        """A member's online status changed ("online", "idle", "dnd", "offline")."""

    async def publish(self, event: Event, *, key: str = "") -> Any: ...

    async def request(
        self, event: Event, expect: type[E], *, key: str = "", timeout: float = 2.0
    ) -> E: ...

    def on_connect(self) -> None:
        """A new gateway session's READY parsed: before its first message."""
        ...

    async def on_session(self) -> None:
        """A new gateway session, its guilds arrived (discord.py's on_ready)."""
        ...

    def on_resumed(self) -> None:
        """A resumed gateway session (RESUMED)."""
        ...

    async def on_message(self, message: SeenMessage) -> None:
        """A message from the gateway."""
        ...
