"""Durable delivery under faults, on a real runtime: refused events never stall their producer,
a journal that lost history never makes new events look applied, and the replay endpoint is
bounded.

Each test reproduces a failure found in the runtime (issue 13) against real processes: the
broker, the supervisor and a counting actor, over the real sockets.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
import zmq

from hexbus import codec
from hexbus.bus import BusClient, BusRefused
from hexbus.codec import FETCH, FetchRequest
from hexbus.endpoints import connect_address
from hexbus.epoch import mark_path
from schemas import ProbeDurable, Rejected
from tests.support.busclient import ask_count
from tests.support.harness import FAST_BUS, Hex, HexFactory, actor_toml, poll_for

pytestmark = [pytest.mark.process, pytest.mark.slow]

COUNTER = FAST_BUS + actor_toml("counter", "actors.diag.actor:CounterActor")
MiB = 1 << 20


def raw_frames(client: BusClient, topic: str, body: dict[str, object]) -> list[bytes]:
    """A durable event's frames as another build of Hex would send them (this one could not:
    its own checks refuse them first), with this client's next seq."""
    envelope = {
        "id": client.ids.next(),
        "topic": topic,
        "source": client.name,
        "session": client.session,
        "seq": client.producer.next_seq,
        "body": body,
    }
    return [topic.encode(), msgspec.msgpack.encode(envelope)]


def counted(hx: Hex, count: int, total: int) -> None:
    poll_for(
        lambda: asyncio.run(ask_count(hx.endpoints)) == (count, total),
        30,
        what=f"{count} probes counted, summing to {total}",
    )


def test_an_event_over_the_blob_limit_is_refused_at_once_and_the_next_is_stored(
    hex_factory: HexFactory,
) -> None:
    hx = hex_factory(COUNTER).start()

    async def go() -> None:
        client = BusClient(hx.endpoints, "tester")
        client.start()
        with pytest.raises(BusRefused, match=r"17\.0 MiB is over the bus's limit of 16 MiB"):
            await client.publish(ProbeDurable(n=1), blob=bytes(17 * MiB))
        await client.publish(ProbeDurable(n=2))
        assert await client.flush(10), "the event after a refused one was never acknowledged"
        await client.close()

    asyncio.run(go())
    counted(hx, 1, 2)


def test_the_broker_refuses_what_it_cannot_store_by_name_and_the_producer_goes_on(
    hex_factory: HexFactory,
) -> None:
    # A producer whose own limit is higher than the broker's (or a build with a tag the running
    # broker does not know: an actor upgraded by `hexbus reload`) sends what the broker must
    # refuse. Before, the broker dropped it unanswered and nacked everything after it: the
    # producer resent forever and its flush never completed.
    hx = hex_factory(COUNTER).start()

    async def go() -> list[BusRefused]:
        client = BusClient(hx.endpoints, "tester")
        client.start()
        heard: list[BusRefused] = []
        client.on_refused(heard.append)
        producer = client.producer
        big = raw_frames(client, "probe.durable", {"type": "probe.durable", "n": 100})
        producer.put(producer.reserve(), [*big, bytes(17 * MiB)])
        await client.publish(ProbeDurable(n=1))
        future = raw_frames(client, "memory.future", {"type": "memory.future", "x": 1})
        producer.put(producer.reserve(), future)
        await client.publish(ProbeDurable(n=2))
        assert await client.flush(10), "a refused event stalled the producer"
        await client.close()
        return heard

    heard = asyncio.run(go())
    assert [r.topic for r in heard] == ["probe.durable", "memory.future"]
    assert "oversized" in heard[0].reason and "bus.max_blob_mb" in heard[0].reason
    assert "unknown_tag" in heard[1].reason
    counted(hx, 2, 3)
    assert hx.log().count('"broker.refused"') == 2


def test_a_refusal_is_reported_on_the_bus_and_survives_a_broker_restart(
    hex_factory: HexFactory,
) -> None:
    hx = hex_factory(COUNTER).start()

    async def go() -> Rejected:
        client = BusClient(hx.endpoints, "tester")
        client.start()
        watcher = BusClient(hx.endpoints, "watcher")
        watcher.subscribe("sys.bus.rejected.tester")
        await asyncio.sleep(0.3)  # the subscription reaches the broker

        async def report() -> Rejected:
            async for envelope, _ in watcher.volatile():
                if isinstance(envelope.body, Rejected) and envelope.body.event_id:
                    return envelope.body
            raise AssertionError("watcher closed")

        waiting = asyncio.ensure_future(report())
        producer = client.producer
        future = raw_frames(client, "memory.future", {"type": "memory.future", "x": 1})
        producer.put(producer.reserve(), future)
        assert await client.flush(10)
        rejected = await asyncio.wait_for(waiting, 10)

        # The broker restarts knowing nothing of the refusal; the producer's next event still
        # follows it (the floor it sends says the refused seq is done).
        old = hx.pid("broker")
        os.kill(old, signal.SIGKILL)
        hx.wait_restarted("broker", old)
        await client.publish(ProbeDurable(n=5))
        assert await client.flush(30)
        await watcher.close()
        await client.close()
        return rejected

    rejected = asyncio.run(go())
    assert rejected.process == "tester" and rejected.topic == "memory.future"
    assert "unknown_tag" in rejected.reason and rejected.counts.get("refused") == 1
    counted(hx, 1, 5)


# -- offsets are never reused (issue 13, item 1) ------------------------------------------


async def publish_probes(hx: Hex, count: int, blob_bytes: int = 0) -> None:
    client = BusClient(hx.endpoints, "tester")
    client.start()
    for _ in range(count):
        await client.publish(ProbeDurable(n=1), blob=bytes(blob_bytes) if blob_bytes else None)
    assert await client.flush(30)
    await client.close()


def restart_after(hx: Hex, hex_factory: HexFactory, config: str, damage: Callable[[], None]) -> Hex:
    assert hx.stop() == 0
    damage()
    return hex_factory(config, root=hx.root).start()


def epoch_changes(hx: Hex) -> list[dict[str, object]]:
    found = []
    for line in hx.log().splitlines():
        if '"bus.journal_epoch_changed"' in line:
            found.append(json.loads(line))
    return found


@pytest.mark.slow
def test_a_deleted_journal_folder_never_makes_new_events_look_applied(
    hex_factory: HexFactory,
) -> None:
    hx = hex_factory(COUNTER).start()
    asyncio.run(publish_probes(hx, 100))
    counted(hx, 100, 100)
    journal = hx.data_dir / "journal"
    hx = restart_after(hx, hex_factory, COUNTER, lambda: shutil.rmtree(journal))
    asyncio.run(publish_probes(hx, 10))
    counted(hx, 110, 110)
    assert '"journal.history_lost"' in hx.log()
    (change,) = epoch_changes(hx)
    # The supervisor's own durable events are in the journal too: the counter applied them all.
    applied = change["applied"]
    assert isinstance(applied, int) and applied >= 100
    lost_to = change["lost_to"]  # the journal's head when it closed: the new epoch starts past it
    assert isinstance(lost_to, int) and lost_to >= applied and change["rewound_to"] is None


@pytest.mark.slow
def test_a_journal_deleted_with_its_mark_makes_the_actor_go_back_for_the_reused_offsets(
    hex_factory: HexFactory,
) -> None:
    hx = hex_factory(COUNTER).start()
    asyncio.run(publish_probes(hx, 100))
    counted(hx, 100, 100)
    journal = hx.data_dir / "journal"

    def wipe() -> None:
        shutil.rmtree(journal)
        mark_path(journal).unlink()

    hx = restart_after(hx, hex_factory, COUNTER, wipe)
    asyncio.run(publish_probes(hx, 10))  # offsets 1-10 again, in a history the actor never saw
    counted(hx, 110, 110)
    (change,) = epoch_changes(hx)
    applied = change["applied"]
    assert isinstance(applied, int) and applied >= 100 and change["rewound_to"] == 0
    # The new history is the actor's now: another start neither counts again nor goes back.
    hx = restart_after(hx, hex_factory, COUNTER, lambda: None)
    counted(hx, 110, 110)
    assert len(epoch_changes(hx)) == 1


@pytest.mark.slow
def test_a_damaged_middle_segment_never_makes_new_events_look_applied(
    hex_factory: HexFactory,
) -> None:
    config = COUNTER.replace("[bus.journal]\n", "[bus.journal]\nsegment_mb = 1\n")
    hx = hex_factory(config).start()
    asyncio.run(publish_probes(hx, 100, blob_bytes=30_000))  # four segments of about 1 MiB
    counted(hx, 100, 100)
    segments = sorted((hx.data_dir / "journal").glob("*.seg"))
    assert len(segments) >= 3

    def damage() -> None:
        middle = segments[1]
        content = bytearray(middle.read_bytes())
        content[40_000] ^= 0xFF  # inside its second record
        middle.write_bytes(bytes(content))

    hx = restart_after(hx, hex_factory, config, damage)
    asyncio.run(publish_probes(hx, 10))
    counted(hx, 110, 110)
    assert len(list((hx.data_dir / "journal").glob("*.corrupt"))) == len(segments) - 2
    (change,) = epoch_changes(hx)
    applied = change["applied"]
    assert isinstance(applied, int) and applied >= 100
    lost_to = change["lost_to"]
    assert isinstance(lost_to, int) and lost_to >= applied and change["rewound_to"] is None


# -- the replay endpoint is bounded (issue 13, item 6) ------------------------------------


def anonymous_bytes(pid: int) -> int:
    """Memory the process allocated itself (not the journal's mapped pages)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Anonymous:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no Anonymous line in smaps_rollup")


@pytest.mark.slow
def test_a_peer_that_pipelines_huge_fetches_and_never_reads_cannot_exhaust_the_broker(
    hex_factory: HexFactory,
) -> None:
    hx = hex_factory(COUNTER).start()
    asyncio.run(publish_probes(hx, 16, blob_bytes=1 << 20))  # 16 MiB to replay
    counted(hx, 16, 16)
    broker = hx.pid("broker")
    before = anonymous_bytes(broker)

    ctx = zmq.Context()
    greedy = ctx.socket(zmq.DEALER)
    greedy.rcvhwm = 1
    greedy.rcvbuf = 4096
    greedy.linger = 0
    greedy.connect(connect_address(hx.endpoints.replay))
    for req in range(300):  # each would be a 16 MiB reply: 4.8 GB if the broker held them all
        request = FetchRequest(req=req, after=0, prefixes=[], max_bytes=64 << 20, wait_ms=600_000)
        greedy.send_multipart([FETCH, codec.encode_control(request)])
        request = FetchRequest(req=req, after=0, prefixes=[], max_bytes=64 << 20)
        greedy.send_multipart([FETCH, codec.encode_control(request)])
    try:
        time.sleep(3.0)  # the broker answers what it can
        asyncio.run(publish_probes(hx, 10))  # acknowledged meanwhile, and applied
        counted(hx, 26, 26)
        grown = anonymous_bytes(broker) - before
        assert grown < 256 << 20, f"the broker holds {grown >> 20} MiB more for one peer"
        assert hx.pid("broker") == broker  # never restarted
    finally:
        greedy.close()
        ctx.term()
