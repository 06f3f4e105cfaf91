"""The processes the bus benchmark (bench/bus.py) starts, and the constants they share.

Raw pyzmq's forwarder, publisher and subscriber; Hex's volatile publisher and subscriber; the
durable feed's producer and subscriber; and the jitter probe. Each runs in a spawned child
(``bench._common.children``), so each is a plain function of picklable arguments.
"""

from __future__ import annotations

import asyncio
import time
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

import zmq

from bench._common import Results, run_async, summary
from hexbus.bus import BusClient
from hexbus.endpoints import Endpoints
from schemas import ProbeDurable, ProbeVolatile

HWM = 1000
SMALL = 64
LARGE = 16 * 1024
IDLE_END_S = 2.0  # the subscriber gives up this long after the last data message
TOPIC = b"probe.volatile.bench"
WARM, DATA, END = b"w", b"d", b"e"

# -- raw pyzmq ----------------------------------------------------------------


def raw_proxy(xsub_addr: str, xpub_addr: str) -> None:
    ctx = zmq.Context()
    xsub = ctx.socket(zmq.XSUB)
    xsub.rcvhwm = HWM
    xsub.bind(xsub_addr)
    xpub = ctx.socket(zmq.XPUB)
    xpub.sndhwm = HWM
    xpub.bind(xpub_addr)
    zmq.proxy(xsub, xpub)  # until the parent terminates this process


def raw_sub(address: str, ready: MpEvent, joined: MpEvent, results: Results) -> None:
    sock = zmq.Context().socket(zmq.SUB)
    sock.rcvhwm = HWM
    sock.connect(address)
    sock.subscribe(TOPIC)
    ready.set()
    count, first, last, cpu0 = 0, 0.0, 0.0, 0.0
    while sock.poll(int(IDLE_END_S * 1000) if count else 30_000):
        _, payload = sock.recv_multipart()
        kind = payload[:1]
        if kind == DATA:
            last = time.perf_counter()
            if not count:
                first = last
                cpu0 = time.process_time()
            count += 1
        elif kind == WARM:
            joined.set()
        elif kind == END:
            break
    results.put({"received": count, "window_s": last - first, "cpu_s": time.process_time() - cpu0})


def raw_pub(address: str, size: int, joined: MpEvent, duration: float, results: Results) -> None:
    sock = zmq.Context().socket(zmq.PUB)
    sock.sndhwm = HWM
    sock.connect(address)
    send = sock.send_multipart
    while not joined.wait(0.01):
        send([TOPIC, WARM + bytes(size - 1)])
    payload = DATA + bytes(size - 1)
    frames = [TOPIC, payload]
    sent = 0
    cpu0 = time.process_time()
    deadline = time.perf_counter() + duration
    while time.perf_counter() < deadline:
        for _ in range(1000):
            send(frames)
        sent += 1000
    cpu_s = time.process_time() - cpu0
    for _ in range(20):
        send([TOPIC, END + bytes(size - 1)])
        time.sleep(0.02)
    results.put({"sent": sent, "cpu_s": cpu_s})


# -- hex ------------------------------------------------------------------------


def hex_sub(endpoints: Endpoints, ready: MpEvent, joined: MpEvent, results: Results) -> None:
    results.put(run_async(_hex_sub(endpoints, ready, joined)))


async def _hex_sub(endpoints: Endpoints, ready: MpEvent, joined: MpEvent) -> dict[str, Any]:
    client = BusClient(endpoints, "bench-sub")
    client.subscribe("probe.volatile.bench")
    ready.set()
    count, first, last, cpu0 = 0, 0.0, 0.0, 0.0

    async def consume() -> None:
        nonlocal count, first, last, cpu0
        async for envelope, _ in client.volatile():
            note = envelope.body.note  # type: ignore[union-attr]
            if not note:
                last = time.perf_counter()
                if not count:
                    first = last
                    cpu0 = time.process_time()
                count += 1
            elif note == "warm":
                joined.set()
            elif note == "end":
                return

    task = asyncio.create_task(consume())
    while not task.done():  # the end marker can be dropped too: stop when the flow stops
        await asyncio.wait({task}, timeout=0.25)
        if count and time.perf_counter() - last > IDLE_END_S:
            task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    cpu_s = time.process_time() - cpu0
    await client.close()
    return {"received": count, "window_s": last - first, "cpu_s": cpu_s}


def hex_pub(
    endpoints: Endpoints, size: int, joined: MpEvent, duration: float, results: Results
) -> None:
    results.put(run_async(_hex_pub(endpoints, size, joined, duration)))


async def _hex_pub(
    endpoints: Endpoints, size: int, joined: MpEvent, duration: float
) -> dict[str, Any]:
    client = BusClient(endpoints, "bench-pub")
    blob = bytes(size) if size > SMALL else None
    while not joined.is_set():
        client.publish_volatile(ProbeVolatile(n=-1, note="warm"), key="bench", blob=blob)
        await asyncio.sleep(0.01)
    publish = client.publish_volatile
    sent = 0
    cpu0 = time.process_time()
    deadline = time.perf_counter() + duration
    while time.perf_counter() < deadline:
        for i in range(sent, sent + 1000):
            publish(ProbeVolatile(n=i), key="bench", blob=blob)
        sent += 1000
        await asyncio.sleep(0)
    cpu_s = time.process_time() - cpu0
    for _ in range(20):
        publish(ProbeVolatile(n=-1, note="end"), key="bench")
        await asyncio.sleep(0.02)
    await client.close()
    return {"sent": sent, "cpu_s": cpu_s}


# -- durable ------------------------------------------------------------------------


def durable_sub(endpoints: Endpoints, tag: str, ready: MpEvent, results: Results) -> None:
    results.put(run_async(_durable_sub(endpoints, tag, ready)))


async def _durable_sub(endpoints: Endpoints, tag: str, ready: MpEvent) -> dict[str, Any]:
    client = BusClient(endpoints, "bench-dsub")
    feed = client.durable(["probe.durable"], after=0)
    feed.on_live = ready.set
    latencies_ns: list[int] = []
    seen: set[int] = set()
    duplicates = 0
    last_ns = 0

    async def consume() -> None:
        nonlocal duplicates, last_ns
        async for envelope, _ in feed:
            if envelope is None:
                continue
            body = envelope.body
            if not isinstance(body, ProbeDurable) or body.note != tag:
                continue  # an earlier phase's events
            if body.n < 0:
                return
            last_ns = time.monotonic_ns()
            latencies_ns.append(last_ns - body.sent_ns)
            if body.n in seen:
                duplicates += 1
            seen.add(body.n)

    try:
        await asyncio.wait_for(consume(), 120)
    except TimeoutError:
        pass
    await client.close()
    return {
        "latencies_ns": latencies_ns,
        "unique": len(seen),
        "duplicates": duplicates,
        "last_ns": last_ns,
    }


def durable_pub(endpoints: Endpoints, tag: str, count: int, rate: float, results: Results) -> None:
    results.put(run_async(_durable_pub(endpoints, tag, count, rate)))


async def _durable_pub(endpoints: Endpoints, tag: str, count: int, rate: float) -> dict[str, Any]:
    """Publish ``count`` probes at ``rate``/s (0: as fast as the outbox allows), then an end marker."""
    client = BusClient(endpoints, "bench-dpub")
    client.start()
    publish = client.publish_durable
    first_ns = time.monotonic_ns()
    start = time.monotonic()
    behind = 0
    for i in range(count):
        if rate:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.005:
                behind += 1
        await publish(ProbeDurable(n=i, sent_ns=time.monotonic_ns(), note=tag), key="bench")
    flushed = await client.flush(60)
    acked_s = time.monotonic() - start
    await publish(ProbeDurable(n=-1, note=tag), key="bench")
    await client.flush(10)
    await client.close()
    return {
        "first_ns": first_ns,
        "acked_s": acked_s,
        "flushed": flushed,
        "behind_schedule": behind,
        "retransmits": client.producer.retransmits,
    }


def jitter(stop: MpEvent, results: Results) -> None:
    """How late a 1 ms sleep wakes up on this machine right now (the noise floor of the latencies)."""
    late_ms: list[float] = []
    while not stop.is_set():
        t0 = time.perf_counter()
        time.sleep(0.001)
        late_ms.append((time.perf_counter() - t0) * 1000 - 1)
    results.put(summary(late_ms, "sleep_1ms_late_ms"))
