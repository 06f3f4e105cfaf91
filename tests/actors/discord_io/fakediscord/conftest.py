"""Fixtures of the FakeDiscord tests: a FakeDiscord that discord.py is aimed at, bots on it."""

from __future__ import annotations

from collections.abc import Iterator

import discord
import pytest

from tests.support.discord.botthread import TOKEN, BotThread, Recorder
from tests.support.discord.realclient import StartBot, aim_at, default_intents
from tests.support.fakediscord import FakeDiscord


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDiscord]:
    with FakeDiscord(TOKEN) as fd:
        aim_at(monkeypatch, fd)
        yield fd
        assert fd.errors == []


@pytest.fixture
def start_bot(fake: FakeDiscord) -> Iterator[StartBot]:
    bots: list[BotThread[Recorder]] = []

    def start(
        *, intents: discord.Intents | None = None, token: str = TOKEN, ready: bool = True
    ) -> BotThread[Recorder]:
        chosen = intents or default_intents()
        bot = BotThread(lambda: Recorder(intents=chosen), token).start()
        bots.append(bot)
        if ready:
            bot.wait_ready()
        return bot

    yield start
    for bot in bots:
        bot.stop()
