"""A full disk under the journal and the snapshots, on a real small filesystem (issue 13, item 5).

The data folder is a 16 MiB tmpfs the test mounts (root only; skipped with the reason where
mounting is not allowed). Filled to the last byte, the broker holds durable events in their
producers' outboxes, keeps serving replays and volatile traffic, survives a SIGKILL, leaves no
debris, and stores everything by itself once there is room again; an actor whose own store
is full (memory's DuckDB) waits for room instead of dead-lettering what it was applying.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from hexbus.bus import BusClient
from schemas import ChatMessage, ProbeDurable
from tests.support import disk
from tests.support.busclient import ask_count
from tests.support.discord.hexes import bodies, journal
from tests.support.disk import debris, fill
from tests.support.harness import FAST_BUS, Hex, HexFactory, actor_toml, poll_for
from tests.support.memory import memory_config

pytestmark = [pytest.mark.process, pytest.mark.slow]

COUNTER = FAST_BUS + actor_toml("counter", "actors.diag.actor:CounterActor")


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A folder whose data lives on a 16 MiB tmpfs: ``<it>/data``."""
    with disk.small_disk("16m") as root:
        yield root


def test_a_full_disk_holds_durable_events_and_they_are_stored_when_space_returns(
    hex_factory: HexFactory, small_disk: Path
) -> None:
    hx: Hex = hex_factory(COUNTER, root=small_disk).start()

    async def publish(client: BusClient, count: int) -> None:
        for _ in range(count):
            # 8 kB each: more than the slack left in the journal's last page
            await client.publish(ProbeDurable(n=1), blob=bytes(8192))

    async def first_part() -> None:
        client = BusClient(hx.endpoints, "people")
        client.start()
        await publish(client, 5)
        assert await client.flush(10)
        await client.close()

    asyncio.run(first_part())
    poll_for(lambda: asyncio.run(ask_count(hx.endpoints)) == (5, 5), 20, what="5 counted")
    filler = fill(hx.data_dir)
    broker = hx.pid("broker")

    async def while_full() -> BusClient:
        client = BusClient(hx.endpoints, "people")
        client.start()
        await publish(client, 10)
        assert not await client.flush(3), "stored on a full disk?"
        assert client.producer.held.startswith("disk full"), client.producer.held
        assert len(client.producer.outbox) == 10  # held, none dropped
        return client

    async def scenario() -> None:
        client = await while_full()
        # Volatile traffic and replays go on; the broker stays up and says why in status.
        assert await ask_count(hx.endpoints) == (5, 5)
        assert len(await asyncio.to_thread(bodies, hx, ["probe.durable"], ProbeDurable)) == 5
        assert hx.pid("broker") == broker
        assert "disk full" in hx.status()["broker"]["detail"]
        # A graceful restart cannot save the counter's snapshot: no debris, and it comes back.
        old = hx.pid("counter")
        assert hx.cli("restart", "counter").returncode == 0
        hx.wait_restarted("counter", old)
        # Nor can a broker SIGKILLed now write its mark: it comes back anyway, still holding.
        os.kill(broker, signal.SIGKILL)
        hx.wait_restarted("broker", broker)
        assert not await client.flush(2)
        # (A temporary file in flight, its writer's retry on the full disk, is not debris: what
        # is left behind is.)
        await asyncio.to_thread(poll_for, lambda: debris(hx.data_dir) == [], 10, 0.05, "no debris")
        filler.unlink()  # room again: everything held is stored by itself
        assert await client.flush(30), "the held events were not stored once there was room"
        assert client.producer.held == ""
        await client.close()

    asyncio.run(scenario())
    poll_for(lambda: asyncio.run(ask_count(hx.endpoints)) == (15, 15), 30, what="15 counted")
    log = hx.log()
    assert '"journal.disk_full"' in log and '"bus.held"' in log
    assert '"actor.snapshot_unsaved"' in log
    assert hx.status()["broker"]["state"] == "live"
    assert debris(hx.data_dir) == []


def test_an_actor_whose_store_is_full_waits_for_space_instead_of_dead_lettering(
    hex_factory: HexFactory, small_disk: Path
) -> None:
    """Memory's DuckDB cannot commit on a full disk. Before, each message it was applying went
    to the dead letters after three quick tries (lost from memory: the chaos soak); a full disk
    is not the event's fault, so the event waits until there is room."""
    hx: Hex = hex_factory(memory_config(summaries=False), root=small_disk).start()
    texts = [f"line {n} about the blue teapot" for n in range(4)]

    async def say(lines: list[str]) -> None:
        client = BusClient(hx.endpoints, "console")
        client.start()
        for text in lines:
            await client.publish(
                ChatMessage(
                    platform="console",
                    person_id="console:ana",
                    display_name="ana",
                    channel="console:ana",
                    text=text,
                    direct=True,
                ),
                key="console",
            )
        assert await client.flush(10)
        await client.close()

    def applied() -> int:
        return int(hx.status()["memory"]["applied_offset"])

    asyncio.run(say(texts[:1]))
    # Its own offset: the supervisor's lifecycle events before it move memory's offset too.
    (first,) = journal(hx, ["chat.message"])
    poll_for(lambda: applied() >= first.offset, 30, what="the first line applied")
    memory = hx.pid("memory")
    os.kill(memory, signal.SIGSTOP)  # the next lines reach the journal, not yet memory
    try:
        asyncio.run(say(texts[1:]))
        filler = fill(hx.data_dir)
    finally:
        os.kill(memory, signal.SIGCONT)
    poll_for(lambda: "disk full" in hx.status()["memory"]["detail"], 30, what="memory saying why")
    filler.unlink()

    def caught_up() -> bool:
        status = hx.status()
        head = int(status["broker"]["applied_offset"])
        return "disk full" not in status["memory"]["detail"] and applied() == head

    poll_for(caught_up, 30, what="every line applied once there was room")
    assert hx.pid("memory") == memory
    assert hx.cli("deadletter", "list", "--json").stdout.strip() in ("", "[]")
    hx.stop()
    con = duckdb.connect(str(hx.data_dir / "actors" / "memory" / "memory.duckdb"), read_only=True)
    try:
        stored = [row[0] for row in con.execute('SELECT text FROM turns ORDER BY "at"').fetchall()]
    finally:
        con.close()
    assert stored == texts
