"""Bus throughput and durable latency, against raw pyzmq measured in the same run.

Volatile throughput is the rate at which ONE subscriber process RECEIVES while
ONE publisher process sends as fast as it can for a fixed time (PUB drops at
its high-water mark, so what arrives is the throughput), through a forwarder
process, all on ipc:// in a short folder under /tmp:

- baseline (raw): pyzmq PUB (connect) -> ``zmq.proxy(XSUB bind, XPUB bind)``
  in its own process -> SUB (connect); frames ``[topic, payload]``.
- hex: ``BusClient.publish_volatile(ProbeVolatile(n=i), key="bench")`` ->
  the Hex broker (``Hex(FAST_BUS)``, no actors) -> ``BusClient.volatile()``.

Every socket uses high-water mark 1000 on both paths (Hex's default
``bus.volatile_hwm``). Payloads: 64 B (raw) against a ProbeVolatile envelope
(hex, its size is reported), and 16 KiB (a payload frame against a blob). The
subscriber times its window from the first to the last data message; both
sides wait until a warm-up message arrives before the timed run (slow joiner).
Each configuration runs ``rounds`` times, alternating raw and hex, and the best
round counts (the machine is shared and noisy); every round is reported.

Durable latency: a producer process publishes ``ProbeDurable(n, sent_ns)``
with ``publish_durable`` at a paced 1,000 events/s; a subscriber process reads
the ``client.durable(["probe.durable"], after=0)`` feed (live before the
producer starts) and takes ``monotonic_ns() - sent_ns`` at receipt
(CLOCK_MONOTONIC is system-wide). Default fsync policy (batch). Then durable
throughput: the producer publishes as fast as the outbox allows; acknowledged
events/s (publish to flush) and delivered events/s (first send to last receipt).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncio
import shutil
import tempfile
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

import zmq

from bench._common import MP, children, emit, parser, progress, run_async, summary, wait_event
from hexbus import codec
from hexbus.bus import BusClient
from hexbus.endpoints import Endpoints
from schemas import ProbeDurable, ProbeVolatile
from tests.harness import FAST_BUS, Hex

HWM = 1000
SMALL = 64
LARGE = 16 * 1024
IDLE_END_S = 2.0  # the subscriber gives up this long after the last data message
TOPIC = b"probe.volatile.bench"
WARM, DATA, END = b"w", b"d", b"e"

Results = Queue  # of dict[str, Any], one per child

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
    count, first, last = 0, 0.0, 0.0
    while sock.poll(int(IDLE_END_S * 1000) if count else 30_000):
        topic, payload = sock.recv_multipart()
        kind = payload[:1]
        if kind == DATA:
            last = time.perf_counter()
            if not count:
                first = last
            count += 1
        elif kind == WARM:
            joined.set()
        elif kind == END:
            break
    results.put({"received": count, "window_s": last - first})


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
    deadline = time.perf_counter() + duration
    while time.perf_counter() < deadline:
        for _ in range(1000):
            send(frames)
        sent += 1000
    for _ in range(20):
        send([TOPIC, END + bytes(size - 1)])
        time.sleep(0.02)
    results.put({"sent": sent})


# -- hex ------------------------------------------------------------------------


def hex_sub(endpoints: Endpoints, ready: MpEvent, joined: MpEvent, results: Results) -> None:
    results.put(run_async(_hex_sub(endpoints, ready, joined)))


async def _hex_sub(endpoints: Endpoints, ready: MpEvent, joined: MpEvent) -> dict[str, Any]:
    client = BusClient(endpoints, "bench-sub")
    client.subscribe("probe.volatile.bench")
    ready.set()
    count, first, last = 0, 0.0, 0.0

    async def consume() -> None:
        nonlocal count, first, last
        async for envelope, _ in client.volatile():
            note = envelope.body.note  # type: ignore[union-attr]
            if not note:
                last = time.perf_counter()
                if not count:
                    first = last
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
    await client.close()
    return {"received": count, "window_s": last - first}


def hex_pub(endpoints: Endpoints, size: int, joined: MpEvent, duration: float, results: Results) -> None:
    results.put(run_async(_hex_pub(endpoints, size, joined, duration)))


async def _hex_pub(endpoints: Endpoints, size: int, joined: MpEvent, duration: float) -> dict[str, Any]:
    client = BusClient(endpoints, "bench-pub")
    blob = bytes(size) if size > SMALL else None
    while not joined.is_set():
        client.publish_volatile(ProbeVolatile(n=-1, note="warm"), key="bench", blob=blob)
        await asyncio.sleep(0.01)
    publish = client.publish_volatile
    sent = 0
    deadline = time.perf_counter() + duration
    while time.perf_counter() < deadline:
        for i in range(sent, sent + 1000):
            publish(ProbeVolatile(n=i), key="bench", blob=blob)
        sent += 1000
        await asyncio.sleep(0)
    for _ in range(20):
        publish(ProbeVolatile(n=-1, note="end"), key="bench")
        await asyncio.sleep(0.02)
    await client.close()
    return {"sent": sent, "dropped_at_pub": client.volatile_dropped}


# -- one volatile run -------------------------------------------------------------


def volatile_run(kind: str, size: int, duration: float, raw_addrs: tuple[str, str],
                 endpoints: Endpoints) -> dict[str, Any]:
    """Start subscriber then publisher for one timed run; the subscriber's receiving rate."""
    ready, joined = MP.Event(), MP.Event()
    sub_q: Results = MP.Queue()
    pub_q: Results = MP.Queue()
    with children() as start:
        if kind == "raw":
            start(raw_sub, raw_addrs[1], ready, joined, sub_q)
            wait_event(ready, 30, "raw subscriber")
            start(raw_pub, raw_addrs[0], size, joined, duration, pub_q)
        else:
            start(hex_sub, endpoints, ready, joined, sub_q)
            wait_event(ready, 30, "hex subscriber")
            start(hex_pub, endpoints, size, joined, duration, pub_q)
        wait_event(joined, 30, f"{kind} warm-up message")
        pub = pub_q.get(timeout=duration + 30)
        sub = sub_q.get(timeout=IDLE_END_S + 30)
    rate = sub["received"] / sub["window_s"] if sub["window_s"] > 0 else 0.0
    return {"msgs_s": round(rate), "sent": pub["sent"], "received": sub["received"],
            "delivered_fraction": round(sub["received"] / max(1, pub["sent"]), 4),
            "window_s": round(sub["window_s"], 3)}


def volatile_bench(sizes: dict[str, int], rounds: int, duration: float, endpoints: Endpoints,
                   raw_dir: Path) -> dict[str, Any]:
    raw_addrs = (f"ipc://{raw_dir}/in", f"ipc://{raw_dir}/out")
    out: dict[str, Any] = {}
    with children() as start:
        start(raw_proxy, *raw_addrs)
        time.sleep(0.5)  # the proxy binds before anyone connects (connects retry anyway)
        for label, size in sizes.items():
            best = {"raw": 0, "hex": 0}
            for r in range(rounds):
                for kind in ("raw", "hex"):
                    run = volatile_run(kind, size, duration, raw_addrs, endpoints)
                    progress(f"volatile {label} {kind} round {r + 1}: {run}")
                    out.setdefault(f"{kind}_{label}_rounds", []).append(run)
                    best[kind] = max(best[kind], run["msgs_s"])
            out[f"raw_{label}_msgs_s"] = best["raw"]
            out[f"hex_{label}_msgs_s"] = best["hex"]
            out[f"volatile_{label}_ratio_vs_raw"] = round(best["hex"] / best["raw"], 3) if best["raw"] else None
    return out


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
    return {"latencies_ns": latencies_ns, "unique": len(seen), "duplicates": duplicates, "last_ns": last_ns}


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
    return {"first_ns": first_ns, "acked_s": acked_s, "flushed": flushed, "behind_schedule": behind,
            "retransmits": client.producer.retransmits}


def durable_run(endpoints: Endpoints, tag: str, count: int, rate: float) -> tuple[dict[str, Any], dict[str, Any]]:
    ready = MP.Event()
    sub_q: Results = MP.Queue()
    pub_q: Results = MP.Queue()
    with children() as start:
        start(durable_sub, endpoints, tag, ready, sub_q)
        wait_event(ready, 30, "durable feed live")
        start(durable_pub, endpoints, tag, count, rate, pub_q)
        pub = pub_q.get(timeout=(count / rate if rate else 0) + 120)
        sub = sub_q.get(timeout=60)
    return pub, sub


def durable_latency(endpoints: Endpoints, seconds: float, rate: float) -> dict[str, Any]:
    count = int(seconds * rate)
    pub, sub = durable_run(endpoints, "latency", count, rate)
    ms = [ns / 1e6 for ns in sub["latencies_ns"]]
    out: dict[str, Any] = {
        "durable_rate_per_s": rate,
        "durable_sent": count,
        "durable_received": sub["unique"],
        "durable_duplicates": sub["duplicates"],
        "durable_all_received": sub["unique"] == count,
        "durable_behind_schedule": pub["behind_schedule"],
        "durable_retransmits": pub["retransmits"],
        **summary(ms, "durable_latency_ms"),
    }
    out["durable_p50_ms"] = out.pop("durable_latency_ms_p50", None)
    out["durable_p99_ms"] = out.pop("durable_latency_ms_p99", None)
    out["durable_max_ms"] = out.pop("durable_latency_ms_max", None)
    return out


def durable_throughput(endpoints: Endpoints, count: int) -> dict[str, Any]:
    pub, sub = durable_run(endpoints, "burst", count, 0)
    delivered_s = (sub["last_ns"] - pub["first_ns"]) / 1e9
    ms = [ns / 1e6 for ns in sub["latencies_ns"]]
    return {
        "durable_burst_sent": count,
        "durable_burst_received": sub["unique"],
        "durable_acked_msgs_s": round(count / pub["acked_s"]) if pub["flushed"] else None,
        "durable_delivered_msgs_s": round(sub["unique"] / delivered_s) if delivered_s > 0 else None,
        "durable_burst_retransmits": pub["retransmits"],
        **summary(ms, "durable_burst_latency_ms", 1),
    }


def envelope_bytes() -> int:
    envelope = codec.make_envelope(ProbeVolatile(n=123456), event_id=f"{codec.new_session():016x}1e240",
                                   source="bench-pub", key="bench")
    return sum(len(f) for f in codec.message_frames(envelope))


def main() -> None:
    args = parser(__doc__).parse_args()
    quick = args.quick
    rounds, duration = (1, 1.5) if quick else (2, 3.0)
    latency_s, burst = (5.0, 5_000) if quick else (10.0, 20_000)
    raw_dir = Path(tempfile.mkdtemp(prefix="hxb", dir="/tmp"))
    hx = Hex(FAST_BUS)
    result: dict[str, Any] = {"bench": "bus", "quick": quick, "hwm": HWM, "rounds": rounds,
                              "volatile_duration_s": duration, "hex_64b_frames_bytes": envelope_bytes()}
    try:
        progress("starting Hex (broker only)")
        hx.start()
        result.update(volatile_bench({"64b": SMALL, "16k": LARGE}, rounds, duration, hx.endpoints, raw_dir))
        progress(f"durable latency: {latency_s:g}s at 1000/s")
        result.update(durable_latency(hx.endpoints, latency_s, 1000.0))
        progress(f"durable throughput: {burst} events unpaced")
        result.update(durable_throughput(hx.endpoints, burst))
        broker = hx.status().get("broker", {})
        result["broker_rss_mb"] = round(broker.get("rss_bytes", 0) / 2**20, 1)
    finally:
        hx.cleanup()
        shutil.rmtree(raw_dir, ignore_errors=True)
    result["target_volatile_64b_ratio"] = 0.5
    result["target_durable_p99_ms"] = 5
    result["meets_volatile_target"] = (result.get("volatile_64b_ratio_vs_raw") or 0) >= 0.5
    result["meets_durable_target"] = (result.get("durable_p99_ms") or 1e9) <= 5
    emit(result)


if __name__ == "__main__":
    main()
