"""The Discord actor's setup and teardown in-process: discord.py's real client on the test's loop,
against FakeDiscord, driven through hexbus.testing's ActorHarness (no processes)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import discord.gateway
import discord.http
import pytest

from actors.discord_io.actor import DiscordActor
from hexbus import ActorUnusable
from hexbus.testing import ActorHarness
from schemas import ChatMessage, Reply
from tests.support.discord.memory import FAST, eventually
from tests.support.fakediscord import FakeDiscord, Intent

TOKEN_ENV = "HEX_TEST_DISCORD_TOKEN"


@pytest.fixture(autouse=True)
def discord_py_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """The actor aims discord.py at the fake; put discord.py's defaults back afterwards."""
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket,
        "DEFAULT_GATEWAY",
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
    )


@pytest.fixture
def fake() -> Iterator[FakeDiscord]:
    with FakeDiscord(token="test-token") as server:
        yield server


def harness(fake: FakeDiscord, folder: Path, **config: Any) -> ActorHarness[DiscordActor]:
    settings = {
        **FAST,
        "token_env": TOKEN_ENV,
        "api_base": fake.api_base,
        "gateway_url": fake.gateway_url,
        "guild_ready_timeout_s": 0.05,
        "ready_timeout_s": 10.0,
        "voice": False,
        **config,
    }
    h = ActorHarness(DiscordActor, settings, name="discord", data_dir=folder)
    h.actor.config_dir = folder
    return h


def unusable(h: ActorHarness[DiscordActor]) -> str:
    async def setup() -> str:
        try:
            await h.setup()
        except ActorUnusable as exc:
            return str(exc)
        finally:
            await h.actor.stop_tasks(2.0)
            if hasattr(h.actor, "client"):
                await h.actor.client.close()
        raise AssertionError("setup succeeded")

    return asyncio.run(setup())


def test_a_dm_is_taken_onto_the_bus_and_its_reply_shown_then_the_actor_stops_cleanly(
    fake: FakeDiscord, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "test-token")
    ana = fake.add_user("ana")
    dm = fake.dm_channel(ana)

    async def scenario() -> None:
        h = harness(fake, tmp_path)
        await h.setup()
        assert h.actor.ready.is_set() and fake.connected
        h.actor.live = True  # as the runtime does once the replay is done
        await h.actor.on_live()
        message = fake.post(dm, ana, "hello")

        def taken() -> list[ChatMessage]:
            return [e for e in h.published if isinstance(e, ChatMessage)]

        (chat,) = await eventually(taken, 10, what="the chat.message")
        assert chat.text == "hello" and chat.message_id == message["id"]
        (asked,) = [e.id for e, _ in h.bus.published if isinstance(e.body, ChatMessage)]
        await h.send(Reply(reply_to=asked, channel=str(dm), text="Hi Ana!"), key="discord")

        def shown() -> bool:
            return any(
                m["content"] == "Hi Ana!"
                and (m.get("message_reference") or {}).get("message_id") == message["id"]
                for m in fake.messages(dm)
            )

        await eventually(shown, 10, what="the reply on Discord")
        await h.stop()
        await eventually(lambda: not fake.connected, 5, what="the gateway closed")

    asyncio.run(scenario())
    assert fake.errors == []


def test_no_token_is_one_line_that_names_the_variable_and_the_fix(
    fake: FakeDiscord, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    reason = unusable(harness(fake, tmp_path))
    assert f"{TOKEN_ENV} is not set" in reason and ".env" in reason


def test_the_token_may_come_from_a_dot_env_beside_the_configuration(
    fake: FakeDiscord, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    (tmp_path / ".env").write_text(f'# secrets\n{TOKEN_ENV}="test-token"\n')

    async def scenario() -> None:
        h = harness(fake, tmp_path)
        await h.setup()
        assert h.actor.ready.is_set()
        await h.stop()

    asyncio.run(scenario())


def test_a_token_discord_refuses_is_reported_as_refused(
    fake: FakeDiscord, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "not-the-token")
    assert "refused the token" in unusable(harness(fake, tmp_path))


def test_missing_privileged_intents_name_the_portal_switches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "test-token")
    with FakeDiscord(token="test-token", approved_intents=Intent.GUILD_MEMBERS) as fake:
        reason = unusable(harness(fake, tmp_path))
    assert "MESSAGE CONTENT" in reason and "SERVER MEMBERS" in reason
