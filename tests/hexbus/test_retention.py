"""Retention never deletes what a durable subscriber has not applied, up to a hard cap; past it
the subscriber is told; large blobs (speech) have a budget of their own and never push chat out
(issue 13, item 3). Real supervisor, broker and actors; real journal."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from actors.memory.store import MemoryStore
from hexbus.bus import BusClient
from schemas import ChatMessage, ProbeDurable, RetentionCut
from tests.support.busclient import ask_count
from tests.support.discord.hexes import bodies
from tests.support.harness import FAST_BUS, Hex, HexFactory, actor_toml, poll_for

pytestmark = [pytest.mark.process, pytest.mark.slow]

SMALL_JOURNAL = FAST_BUS + "segment_mb = 1\nretention_mb = 1\nretention_check_s = 0.3\n"
# Blobs in the records, as with bus.journal.blob_file_kb = 0: the records' own cap at work.
INLINE_JOURNAL = SMALL_JOURNAL + "blob_file_kb = 0\n"
# Blobs in files with 1 MB of their own, 2 MB at most.
BLOB_FILES = SMALL_JOURNAL + "blob_retention_mb = 1\nblob_retention_cap_mb = 2\n"
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


def blob_bytes(hx: Hex) -> int:
    return sum(p.stat().st_size for p in (hx.data_dir / "journal" / "blobs").glob("*.blob"))


def wait_retention(hx: Hex) -> None:
    time.sleep(1.5)  # several retention checks (every 0.3 s here)


def memory_stopped(hex_factory: HexFactory, journal: str) -> Hex:
    """A Hex with a memory actor, stopped by the kill switch (as an owner might for a day)."""
    config = journal + actor_toml(
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
    return hx


def memory_restarted_and_caught_up(hx: Hex) -> None:
    out = hx.cli("restart", "memory")
    assert out.returncode == 0, out.stderr
    hx.wait_state({"memory": "live"}, timeout=60)
    head = hx.status()["broker"]["applied_offset"]
    poll_for(lambda: hx.status()["memory"]["applied_offset"] >= head, 30, what="memory caught up")


def turns_stored(hx: Hex) -> int:
    assert hx.stop() == 0
    with MemoryStore(hx.data_dir / "actors" / "memory" / "memory.duckdb") as store:
        return int(store.counts()["turns"])


def test_a_stopped_memory_actor_gets_every_chat_message_retention_would_have_deleted(
    hex_factory: HexFactory,
) -> None:
    hx = memory_stopped(hex_factory, INLINE_JOURNAL)
    asyncio.run(traffic(hx, chats=30, blobs=25))  # 2.5 MB: over retention_mb, under the cap
    wait_retention(hx)
    assert journal_bytes(hx) > 2 << 20  # kept: memory has not applied it
    memory_restarted_and_caught_up(hx)
    wait_retention(hx)
    assert journal_bytes(hx) < 2 << 20  # applied: now retention takes it
    assert turns_stored(hx) == 30


def test_hours_of_speech_never_push_chat_out_while_memory_is_stopped(
    hex_factory: HexFactory,
) -> None:
    hx = memory_stopped(hex_factory, BLOB_FILES)
    # 8 MB of speech with 30 lines among it: twice the records' cap (4 MB) and four times the
    # blobs' (2 MB). With the blobs in the records, retention would cut chat lines here.
    asyncio.run(traffic(hx, chats=30, blobs=80))
    wait_retention(hx)
    assert journal_bytes(hx) < 1 << 20  # the records: a few hundred kB
    assert blob_bytes(hx) <= (2 << 20) + AUDIO  # the blobs: their own cap held
    log = hx.log()
    assert '"journal.blob_retention"' in log
    assert '"journal.blob_retention_cut"' not in log  # memory never reads speech: lost nothing
    memory_restarted_and_caught_up(hx)
    assert turns_stored(hx) == 30


def test_past_the_blob_cap_the_lagging_actor_is_told_and_does_not_apply_events_without_blobs(
    hex_factory: HexFactory,
) -> None:
    config = BLOB_FILES + actor_toml(
        "counter", "actors.diag.actor:CounterActor", snapshot_interval_s=0.3
    )
    hx = hex_factory(config).start()
    asyncio.run(traffic(hx, chats=0, blobs=3))
    poll_for(lambda: asyncio.run(ask_count(hx.endpoints)) == (3, 0), 20, what="counted 3")
    time.sleep(1.0)  # the counter saves a snapshot past them, and says so in a fetch
    assert hx.cli("killswitch").returncode == 0
    hx.wait_state({"counter": "stopped"})
    asyncio.run(traffic(hx, chats=0, blobs=60))  # 6 MB: three times the blobs' cap
    wait_retention(hx)
    kept = len(list((hx.data_dir / "journal" / "blobs").glob("*.blob")))
    assert kept * AUDIO <= (2 << 20) + AUDIO
    cuts = bodies(hx, ["sys.bus.retention_cut"], RetentionCut)  # one per retention pass
    assert cuts and all(c.consumer == "counter" and c.blobs and c.cap_mb == 2 for c in cuts)
    assert all(a.lost_to < b.lost_from for a, b in itertools.pairwise(cuts))  # each said once
    assert "retention_cut_to" not in hx.status()["counter"]  # the events themselves are kept
    assert hx.cli("restart", "counter").returncode == 0
    hx.wait_state({"counter": "live"}, timeout=60)
    # Only the probes whose audio is still there are applied; the others are said, not counted.
    head = hx.status()["broker"]["applied_offset"]
    poll_for(lambda: hx.status()["counter"]["applied_offset"] >= head, 30, what="caught up")
    assert asyncio.run(ask_count(hx.endpoints)) == (3 + kept, 0)
    log = hx.log()
    assert log.count('"bus.blob_lost"') == 60 - kept
    assert '"journal.blob_missing"' in log


def test_past_the_cap_the_lagging_actor_is_told_what_it_lost_and_marked_in_status(
    hex_factory: HexFactory,
) -> None:
    config = (
        INLINE_JOURNAL
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
        return INLINE_JOURNAL + actor_toml(
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
