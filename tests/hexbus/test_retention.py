"""Retention never deletes what a durable subscriber has not applied, up to a hard cap; past it
the subscriber is told (issue 13, item 3). Real supervisor, broker and actors; real journal."""

from __future__ import annotations

import asyncio
import time

import pytest

from actors.memory.store import MemoryStore
from hexbus.bus import BusClient
from schemas import ChatMessage, ProbeDurable, RetentionCut
from tests.support.discord.hexes import bodies
from tests.support.harness import FAST_BUS, Hex, HexFactory, actor_toml, poll_for

pytestmark = [pytest.mark.process, pytest.mark.slow]

SMALL_JOURNAL = FAST_BUS + "segment_mb = 1\nretention_mb = 1\nretention_check_s = 0.3\n"
AUDIO = 100_000  # an utterance's audio, about 3 s of 16 kHz PCM16


async def traffic(hx: Hex, chats: int, blobs: int) -> None:
    """``chats`` chat messages spread evenly among ``blobs`` durable events with 100 kB blobs."""
    client = BusClient(hx.endpoints, "people")
    client.start()
    total = chats + blobs
    said = 0
    for i in range(total):
        if chats and said < chats and (i * chats) // total >= said:
            said += 1
            await client.publish(
                ChatMessage(
                    platform="console",
                    person_id="console:ana",
                    display_name="Ana",
                    channel="console",
                    text=f"note number {said}: the spare key is under the blue pot",
                ),
                key="console",
            )
        else:
            await client.publish(ProbeDurable(n=0, note="audio"), blob=bytes(AUDIO))
    assert said == chats
    assert await client.flush(30)
    await client.close()


def journal_bytes(hx: Hex) -> int:
    return sum(p.stat().st_size for p in (hx.data_dir / "journal").glob("*.seg"))


def wait_retention(hx: Hex) -> None:
    time.sleep(1.5)  # several retention checks (every 0.3 s here)


def test_a_stopped_memory_actor_gets_every_chat_message_retention_would_have_deleted(
    hex_factory: HexFactory,
) -> None:
    config = SMALL_JOURNAL + actor_toml(
        "memory",
        "actors.memory.actor:MemoryActor",
        heartbeat_timeout_s=20.0,
        snapshot_interval_s=0.3,
        config={"owners": ["owner1"]},
    )
    hx = hex_factory(config).start()
    out = hx.cli("killswitch")
    assert out.returncode == 0, out.stderr
    hx.wait_state({"memory": "stopped"})
    asyncio.run(traffic(hx, chats=30, blobs=25))  # 2.5 MB: over retention_mb, under the cap
    wait_retention(hx)
    assert journal_bytes(hx) > 2 << 20  # kept: memory has not applied it
    out = hx.cli("restart", "memory")
    assert out.returncode == 0, out.stderr
    hx.wait_state({"memory": "live"}, timeout=60)
    head = hx.status()["broker"]["applied_offset"]
    poll_for(lambda: hx.status()["memory"]["applied_offset"] >= head, 30, what="memory caught up")
    wait_retention(hx)
    assert journal_bytes(hx) < 2 << 20  # applied: now retention takes it
    assert hx.stop() == 0
    with MemoryStore(hx.data_dir / "actors" / "memory" / "memory.duckdb") as store:
        assert store.counts()["turns"] == 30


def test_past_the_cap_the_lagging_actor_is_told_what_it_lost_and_marked_in_status(
    hex_factory: HexFactory,
) -> None:
    config = (
        SMALL_JOURNAL
        + "retention_cap_mb = 2\n"
        + actor_toml("counter", "actors.diag.actor:CounterActor", snapshot_interval_s=0.3)
    )
    hx = hex_factory(config).start()
    asyncio.run(traffic(hx, chats=0, blobs=3))
    time.sleep(1.0)  # the counter saves a snapshot past them, and says so in a fetch
    assert hx.cli("killswitch").returncode == 0
    hx.wait_state({"counter": "stopped"})
    asyncio.run(traffic(hx, chats=0, blobs=60))  # 6 MB: three times the cap
    wait_retention(hx)
    assert journal_bytes(hx) <= 3 << 20  # the cap held (a segment of slack)
    (cut,) = bodies(hx, ["sys.bus.retention_cut"], RetentionCut)
    assert cut.consumer == "counter" and cut.cap_mb == 2 and cut.lost_from <= cut.lost_to
    assert hx.status()["counter"]["retention_cut_to"] == cut.lost_to
    out = hx.cli("status")
    assert "counter: never saw durable events up to offset" in out.stdout
    assert '"journal.retention_cut"' in hx.log()
    # Once it reads past what it lost, the mark goes.
    assert hx.cli("restart", "counter").returncode == 0
    poll_for(lambda: "retention_cut_to" not in hx.status()["counter"], 30, what="the mark cleared")


def test_what_a_subscriber_needs_is_known_across_a_broker_restart(
    hex_factory: HexFactory,
) -> None:
    def config(enabled: bool) -> str:
        return SMALL_JOURNAL + actor_toml(
            "counter",
            "actors.diag.actor:CounterActor",
            snapshot_interval_s=0.3,
            enabled=enabled,
        )

    hx = hex_factory(config(True)).start()
    asyncio.run(traffic(hx, chats=0, blobs=2))
    time.sleep(1.0)
    assert hx.stop() == 0
    # The counter is off: only the broker's record of it (consumers.json) holds retention back.
    hx = hex_factory(config(False), root=hx.root).start()
    asyncio.run(traffic(hx, chats=0, blobs=25))
    wait_retention(hx)
    assert journal_bytes(hx) > 2 << 20
