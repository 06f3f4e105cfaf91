"""An actor is live only once it has handled its replay: ``Actor.live`` is false in the handlers
of replayed events (an actor gates its side effects on it: a reply sent again, a note said
twice) and ``on_live`` comes after the last of them. Real supervisor, broker, journal and actor."""

from __future__ import annotations

import asyncio

import pytest

from hexbus.bus import BusClient
from schemas import ProbeDurable
from tests.support.busclient import ask_probe
from tests.support.harness import FAST_BUS, Hex, HexFactory, actor_toml, poll_for

pytestmark = pytest.mark.process

SENT = 400


async def send(hx: Hex, n: int) -> None:
    client = BusClient(hx.endpoints, "people")
    client.start()
    for i in range(1, n + 1):
        await client.publish(ProbeDurable(n=i, note="replayed"))
    assert await client.flush(30)
    await client.close()


async def ask(hx: Hex) -> tuple[int, dict[str, int]] | None:
    body = await ask_probe(hx.endpoints, "asker", "replay", "replay?", 2.0)
    if body is None:
        return None
    parts = dict(part.split("=") for part in body.note.split())
    return body.n, {k: int(v) for k, v in parts.items()}


@pytest.mark.slow
def test_replayed_events_are_handled_before_the_actor_is_live(hex_factory: HexFactory) -> None:
    config = FAST_BUS + actor_toml(
        "replay", "actors.diag.actor:ReplayCheckActor", snapshot_interval_s=0.3
    )
    hx = hex_factory(config).start()
    # Stopped (its snapshot saved), the events wait in the journal; started again, it replays
    # them from there.
    assert hx.cli("killswitch").returncode == 0
    hx.wait_state({"replay": "stopped"})
    asyncio.run(send(hx, SENT))
    assert hx.cli("restart", "replay").returncode == 0
    hx.wait_state({"replay": "live"}, timeout=60)
    count, seen = poll_for(lambda: asyncio.run(ask(hx)), 30, what="the actor's answer")
    assert count == SENT
    assert seen == {"before_live": SENT, "seen_live": 0}, seen
