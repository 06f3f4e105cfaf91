"""Slow subscribers: a stalled volatile subscriber costs only itself; a durable one that falls
behind catches up from the journal with nothing missing.

No timing thresholds: the volatile test proves the publisher never waits by finishing a
send loop far longer than everything the stalled subscriber could ever hold, and the
durable tests check content (every number once, in order), not speed.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import psutil
import pytest
import zmq

from hexbus.bus import BusClient
from schemas import BrokerHeartbeat, ProbeDurable, ProbeVolatile
from tests.support.harness import FAST_BUS, Hex, actor_toml, poll_for

pytestmark = pytest.mark.process

FLOOD = "probe.volatile.flood"
WINDOW = 200  # flood frames the publisher may run ahead of the healthy subscriber


async def _until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    poke: Callable[[], object] | None = None,
    interval: float = 0.05,
) -> None:
    """Async poll_for: call ``poke`` (if any) and check ``predicate`` every ``interval`` until it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        if poke is not None:
            poke()
        await asyncio.sleep(interval)


@pytest.mark.slow
def test_stalled_volatile_subscriber_never_blocks_the_publisher_or_a_healthy_subscriber(
    hex_factory: Callable[[str], Hex],
) -> None:
    config = (
        FAST_BUS
        + actor_toml("stall", "actors.diag.actor:StallActor", config={"prefix": FLOOD})
        + actor_toml("sink", "actors.diag.actor:SinkActor")
    )
    hx = hex_factory(config).start()
    before = hx.status()
    pids = {name: before[name]["pid"] for name in ("broker", "stall", "sink")}
    rng = random.Random(7)
    pool = rng.randbytes(64 << 10)
    blobs = [pool[: rng.randrange(16 << 10, (64 << 10) + 1)] for _ in range(64)]
    # The stalled SUB holds at most rcvhwm (10) + the broker's per-subscriber sndhwm (1000) messages,
    # plus what the kernel buffers: the flood is many times that, so the broker must drop for it.
    n = 12_000
    # A second stalled subscriber the test can look into afterwards: subscribed, never read while flooding.
    stalled: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
    stalled.linger = 0
    stalled.rcvhwm = 10
    stalled.subscribe(FLOOD.encode())
    stalled.connect(hx.endpoints.volatile_out)

    async def flood() -> tuple[int, int]:
        publisher = BusClient(hx.endpoints, "flooder")
        healthy = BusClient(hx.endpoints, "healthy")
        healthy.subscribe(FLOOD)
        healthy.subscribe("sys.broker.heartbeat")
        received = 0
        progress = asyncio.Event()
        notes: set[str] = set()
        beats_after = 0
        flooding_done = False

        async def read() -> None:
            nonlocal received, beats_after
            async for envelope, blob in healthy.volatile():
                body = envelope.body
                if isinstance(body, ProbeVolatile):
                    notes.add(body.note)
                    if body.note == "flood":
                        assert blob is not None and len(blob) >= 16 << 10
                        received += 1
                        progress.set()
                elif isinstance(body, BrokerHeartbeat) and flooding_done:
                    beats_after += 1

        reader = asyncio.get_running_loop().create_task(read())
        try:
            # The slow joiner: publish a marker until the healthy subscriber hears one.
            await _until(
                lambda: "warmup" in notes,
                10,
                "the flood topic reaching the healthy subscriber",
                poke=lambda: publisher.publish_volatile(
                    ProbeVolatile(n=0, note="warmup"), key="flood"
                ),
            )
            sent = 0
            stalls = 0
            for i in range(n):
                publisher.publish_volatile(
                    ProbeVolatile(n=i + 1, note="flood"), key="flood", blob=blobs[i % 64]
                )
                sent += 1
                # Flood at the pace a healthy subscriber sustains (it shares this loop): stay at most
                # WINDOW frames ahead of it. Waiting for its progress is bounded (and given up after
                # a few misses), so a subscriber that stops receiving (a broker held up by the stalled
                # one) cannot hang the loop; it shows up as a low received count instead.
                while stalls < 20 and sent - received > WINDOW:
                    progress.clear()
                    try:
                        await asyncio.wait_for(progress.wait(), 0.05)
                    except TimeoutError:
                        stalls += 1
                if i % 4 == 3:
                    await asyncio.sleep(0)
            flooding_done = True
            # One PUB, one broker, one SUB: frames arrive in order, so once "end" is heard every flood
            # frame that was not dropped has arrived.
            await _until(
                lambda: "end" in notes,
                20,
                "the end marker",
                poke=lambda: publisher.publish_volatile(
                    ProbeVolatile(n=0, note="end"), key="flood"
                ),
            )
            await _until(lambda: beats_after >= 2, 10, "broker heartbeats after the flood")
            return sent, received
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await publisher.close()
            await healthy.close()

    try:
        sent, received = asyncio.run(flood())
        held = 0
        while stalled.poll(
            200, zmq.POLLIN
        ):  # what it holds and what the broker still queues for it
            frames = stalled.recv_multipart()
            held += frames[0] == FLOOD.encode()
    finally:
        stalled.close(linger=0)
    # The loop completed: every publish returned at once although one subscriber never reads.
    assert sent == n
    # The healthy subscriber kept up with most of it.
    assert received >= n // 2, f"the healthy subscriber got {received} of {n}"
    assert received <= n
    # The stalled subscriber was really subscribed, and lost most of the flood: the broker dropped
    # for it instead of waiting.
    assert 0 < held < n // 2, f"the stalled subscriber holds {held} of {n}"
    # Nobody restarted; the broker, the sink and the stalled actor (its loop is fine) are live.
    status = hx.wait_state({"broker": "live", "stall": "live", "sink": "live"}, timeout=10)
    for name, pid in pids.items():
        assert status[name]["pid"] == pid and status[name]["restarts"] == 0, status[name]
    # The sink, another healthy subscriber in its own process, handled flood events too.
    poll_for(
        lambda: hx.status()["sink"]["events_in"] > 0, 10, what="the sink counting flood events"
    )


async def _publish(
    hx: Hex, events: list[tuple[int, str]], name: str, done: asyncio.Event | None = None
) -> None:
    client = BusClient(hx.endpoints, name)
    client.start()
    try:
        for n, key in events:
            await client.publish(ProbeDurable(n=n), key=key)
        assert await client.flush(60), "the broker did not acknowledge every durable event"
    finally:
        await client.close()
        if done is not None:
            done.set()


async def _read_all(
    hx: Hex,
    name: str,
    prefixes: list[str],
    stop: Callable[[list[int], bool], bool],
    max_events: int = 512,
) -> tuple[list[int], list[int]]:
    """Read a feed from offset 0 until ``stop(numbers, live)``; return the numbers and the offsets."""
    client = BusClient(hx.endpoints, name)
    numbers: list[int] = []
    offsets: list[int] = []
    try:
        feed = client.durable(prefixes, after=0, max_events=max_events)
        async for envelope, _ in feed:
            if envelope is None:
                if stop(numbers, feed.live):
                    break
                continue
            assert isinstance(envelope.body, ProbeDurable)
            numbers.append(envelope.body.n)
            offsets.append(envelope.offset)
    finally:
        await client.close()
    return numbers, offsets


@pytest.mark.slow
def test_durable_subscriber_that_falls_behind_catches_up_from_the_journal(
    hex_factory: Callable[[str], Hex],
) -> None:
    hx = hex_factory(FAST_BUS).start()
    n = 20_000

    async def run() -> tuple[list[int], list[int], int]:
        published = asyncio.Event()
        producer = asyncio.get_running_loop().create_task(
            _publish(hx, [(i, "") for i in range(1, n + 1)], "producer", published)
        )
        client = BusClient(hx.endpoints, "laggard")
        numbers: list[int] = []
        offsets: list[int] = []
        max_lag = 0
        try:
            feed = client.durable(["probe.durable"], after=0, max_events=256)
            async for envelope, _ in feed:
                if envelope is not None:
                    assert isinstance(envelope.body, ProbeDurable)
                    numbers.append(envelope.body.n)
                    offsets.append(envelope.offset)
                    continue
                # A batch ended: how far behind the journal head is this subscriber?
                max_lag = max(max_lag, feed.head - feed.after)
                if len(numbers) >= n:
                    break
                if not published.is_set():
                    await asyncio.sleep(
                        0.05
                    )  # deliberately slow while the producer runs: fall behind
            await producer
        finally:
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
            await client.close()
        return numbers, offsets, max_lag

    numbers, offsets, max_lag = asyncio.run(run())
    assert max_lag >= 2000, (
        f"the subscriber was never far behind (max lag {max_lag}): the test proves nothing"
    )
    assert numbers == list(range(1, n + 1)), "events missing, duplicated or out of order"
    assert offsets == sorted(set(offsets))

    # A subscriber that starts after everything was published reads it all from the journal.
    late, late_offsets = asyncio.run(
        _read_all(hx, "late", ["probe.durable"], lambda got, live: len(got) >= n)
    )
    assert late == list(range(1, n + 1))
    assert late_offsets == offsets


@pytest.mark.slow
def test_durable_subscriber_to_a_rare_topic_advances_past_everything_else(
    hex_factory: Callable[[str], Hex],
) -> None:
    hx = hex_factory(FAST_BUS).start()
    total = 26_000
    rare = [5, 6, 21_000, 25_999]  # a gap wider than one fetch scans (20,000 records)
    events = [(i, "rare" if i in rare else "common") for i in range(1, total + 1)]
    asyncio.run(_publish(hx, events, "producer"))

    async def run() -> tuple[list[int], list[int], list[int], int]:
        client = BusClient(hx.endpoints, "rare")
        numbers: list[int] = []
        markers: list[int] = []
        empty_advances = 0
        try:
            feed = client.durable(["probe.durable.rare"], after=0, max_events=1)
            since_marker = 0
            async for envelope, extra in feed:
                if envelope is not None:
                    assert envelope.topic == "probe.durable.rare"
                    assert isinstance(envelope.body, ProbeDurable)
                    numbers.append(envelope.body.n)
                    since_marker += 1
                    continue
                if since_marker == 0 and markers and extra > markers[-1]:
                    empty_advances += 1  # a batch with no events still moved the offset forward
                markers.append(extra)
                since_marker = 0
                if feed.live:
                    break
            head = feed.head
        finally:
            await client.close()
        return numbers, markers, [head], empty_advances

    numbers, markers, (head,), empty_advances = asyncio.run(run())
    assert numbers == rare
    assert markers == sorted(markers)
    assert markers[-1] == head and head >= total
    assert empty_advances >= 1, f"no empty batch advanced the feed: markers {markers}"


@pytest.mark.slow  # a few seconds of real processes
def test_stalled_subscriber_of_large_blobs_pins_a_bounded_amount_of_broker_memory(
    hex_factory: Callable[[str], Hex],
) -> None:
    """A webcam-sized flood (1 MiB frames) with a subscriber that never reads: the broker queues at
    most ``blob_hwm`` frames for it, so its memory stays near its idle size instead of growing by
    the flood (this once grew by 30 MB/s: high-water marks set after bind did not apply)."""
    hx = hex_factory(
        FAST_BUS + actor_toml("stall", "actors.diag.actor:StallActor", config={"prefix": FLOOD})
    ).start()
    broker = psutil.Process(hx.pid("broker"))
    idle_rss = broker.memory_info().rss
    frames, blob = 400, bytes(1 << 20)  # 400 MiB in all, 25 times the big lane's queue of 16 frames

    async def flood() -> int:
        publisher = BusClient(hx.endpoints, "webcam")
        watcher = BusClient(hx.endpoints, "watcher")
        watcher.subscribe(FLOOD)
        seen = 0

        async def read() -> None:
            nonlocal seen
            async for _envelope, _blob in watcher.volatile():
                seen += 1

        reader = asyncio.get_running_loop().create_task(read())
        peak = 0
        try:
            await _until(
                lambda: seen > 0,
                10,
                "the flood reaching a healthy subscriber",
                poke=lambda: publisher.publish_volatile(ProbeVolatile(n=0), key="flood", blob=blob),
            )
            for i in range(frames):
                publisher.publish_volatile(ProbeVolatile(n=i), key="flood", blob=blob)
                await asyncio.sleep(0.002)
                if i % 20 == 0:
                    peak = max(peak, broker.memory_info().rss)
            await asyncio.sleep(0.5)
            return max(peak, broker.memory_info().rss)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await publisher.close()
            await watcher.close()

    peak = asyncio.run(flood())
    grown_mib = (peak - idle_rss) / 2**20
    # Two lanes of 16 frames each way, the healthy subscriber's queue and allocator slack: far below 400.
    assert grown_mib < 120, f"the broker grew by {grown_mib:.0f} MiB while one subscriber stalled"
    assert hx.status()["stall"]["state"] == "live"
