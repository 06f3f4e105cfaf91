"""discord.py's real client aimed at FakeDiscord: intents, its URLs, the start_bot protocol."""

from __future__ import annotations

from typing import Protocol

import discord
import discord.gateway
import discord.http
import discord.webhook.async_
import pytest
import yarl

from tests.support.discord.botthread import TOKEN, BotThread, Recorder
from tests.support.fakediscord import FakeDiscord


def default_intents(*, content: bool = True) -> discord.Intents:
    intents = discord.Intents.default()
    intents.message_content = content
    return intents


def aim_at(monkeypatch: pytest.MonkeyPatch, fd: FakeDiscord) -> None:
    # The same three attributes the bot process sets; the webhook Route is http's own class.
    assert discord.webhook.async_.Route is discord.http.Route  # type: ignore[attr-defined]
    monkeypatch.setattr(discord.http.Route, "BASE", fd.api_base)
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fd.gateway_url)
    )


class StartBot(Protocol):
    """The ``start_bot`` fixture: start a :class:`Recorder` on its own thread."""

    def __call__(
        self, *, intents: discord.Intents | None = None, token: str = TOKEN, ready: bool = True
    ) -> BotThread[Recorder]: ...


def contents_seen(bot: BotThread[Recorder]) -> list[str]:
    return [m.content for m in bot.client.seen]
