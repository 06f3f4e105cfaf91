"""A real Hex for the Discord actor's process tests: a supervisor running the actor against a
FakeDiscord, with the scripted brain (peers.py), and what those tests read back: the bot's
messages on the fake, and the journal."""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypeVar

from hexbus.bus import BusClient
from hexbus.codec import Envelope
from schemas import Event
from tests.support.fakediscord import FakeDiscord
from tests.support.harness import FAST_BUS, Hex, actor_toml, poll_for

E = TypeVar("E", bound=Event)

BRAIN = actor_toml(
    "brain",
    "tests.support.discord.peers:ScriptedBrain",
    config={"chunks": 8, "chunk_interval_s": 0.15},
)


def discord_toml(
    fake: FakeDiscord,
    *,
    token: str | None = "test-token",
    settings: dict[str, Any] | None = None,
    **config: Any,
) -> str:
    """The Discord actor's table: ``settings`` for the actor (snapshot_interval_s...), the rest
    for its config."""
    actor_config = {
        "api_base": fake.api_base,
        "gateway_url": fake.gateway_url,
        "guild_ready_timeout_s": 0.1,
        "edit_interval_s": 0.4,
        "backoff_s": 0.2,
        "redeliver_s": 1.0,
        "ready_timeout_s": 15.0,
        "owners": [str(fake.owner_id)],
        **config,
    }
    toml = actor_toml(
        "discord",
        "actors.discord_io.actor:DiscordActor",
        heartbeat_timeout_s=10.0,
        backoff_initial_s=0.1,
        **(settings or {}),
        config=actor_config,
    )
    if token is not None:
        toml += f'[actors.discord.env]\nDISCORD_TOKEN = "{token}"\n'
    return toml


def start(fake: FakeDiscord, extra: str = BRAIN, **config: Any) -> Hex:
    hx = Hex(FAST_BUS + extra + discord_toml(fake, **config)).start()
    poll_for(lambda: fake.connected, 20, what="the actor's gateway session")
    return hx


def with_dm(fake: FakeDiscord, hexes: list[Hex], **config: Any) -> tuple[Hex, int, int]:
    """A started Hex, a person (ana) and her DM channel with Hex."""
    hx = start(fake, **config)
    hexes.append(hx)
    ana = fake.add_user("ana")
    return hx, ana, fake.dm_channel(ana)


def from_bot(fake: FakeDiscord, channel: int) -> list[dict[str, Any]]:
    return [m for m in fake.messages(channel) if m["author"]["id"] == str(fake.bot_id)]


def answer_to(fake: FakeDiscord, channel: int, message_id: str) -> list[dict[str, Any]]:
    """The bot's messages replying to one message (a reply's parts), oldest first."""
    return [
        m
        for m in from_bot(fake, channel)
        if (m.get("message_reference") or {}).get("message_id") == message_id
    ]


def journal(hx: Hex, prefixes: list[str], timeout: float = 20) -> list[Envelope]:
    """Every durable event on ``prefixes`` journaled so far."""

    async def read() -> list[Envelope]:
        client = BusClient(hx.endpoints, f"reader-{time.monotonic_ns()}")
        client.start()
        feed = client.durable(prefixes, after=0, wait_ms=100)
        found: list[Envelope] = []
        try:
            async for envelope, _ in feed:
                if envelope is not None:
                    found.append(envelope)
                elif feed.live:
                    break
        finally:
            await client.close()
        return found

    return asyncio.run(asyncio.wait_for(read(), timeout))


def bodies(hx: Hex, prefixes: list[str], kind: type[E]) -> list[E]:
    """The events journaled on ``prefixes`` so far, each checked to be a ``kind``."""
    found: list[E] = []
    for envelope in journal(hx, prefixes):
        assert isinstance(envelope.body, kind), envelope.body
        found.append(envelope.body)
    return found


def wait_reply(
    fake: FakeDiscord, channel: int, message: dict[str, Any], text: str, timeout: float = 20
) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        parts = answer_to(fake, channel, message["id"])
        shown = "\n".join(p["content"] for p in parts)
        return parts if parts and shown == text else None

    return poll_for(done, timeout, what=f"the reply {text[:40]!r}")
