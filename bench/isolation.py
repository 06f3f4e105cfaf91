"""Chat acknowledgement latency with a quiet Hex, then with misbehaving neighbours and a flood.

The bench process sends ``ChatMessage`` events (durable, ``publish_durable``)
at about 20/s and times each one from just before the publish to the arrival
of the volatile ``chat.ack`` that EchoActor publishes with the message's event
id. Baseline and loaded phases each run on a FRESH Hex, so the loaded one
starts from the same empty journal:

- idle (the baseline): the broker and ``echo`` alone.
- loaded: ``echo`` plus ``stall`` (StallActor on ``probe.volatile.flood``,
  subscribed and never reading), ``sink`` (SinkActor, reading the flood) and
  ``hang`` (HangActor, hang_after_s = 1: it blocks its loop a second after
  every start, so the supervisor kills and restarts it over and over, each
  restart a fresh Python process), while a producer process publishes
  ``ProbeVolatile`` with a 1 MiB blob on ``probe.volatile.flood`` at 30/s.

With ``--discord`` the responder is the real Discord actor (discord.py's client in its own
process) connected to a Discord-compatible server on loopback (tests/support/fakediscord/)
that runs in this process: each chat message is a DM posted there and
dispatched over the gateway, and timed until the actor's ``chat.ack`` arrives on the bus. The
loaded phase replaces ``hang`` with ``brain`` (HungBrainActor: it takes every chat message and
hangs, so the supervisor restarts it over and over) beside the same flood, stall and sink.

With ``--perception`` the loaded phase also runs the perception actor on a 1080p 30 fps video
(made here from real photographs: the desk, a person sitting down, leaving), analysed at up to
``--perception-rate`` a second (30 by default, every frame: the CPU governor decides how much
of that it can have; 5 is the shipped default), beside the same neighbours and flood; the
result says how many frames it took in, analysed and dropped. ``--idle-hogs N`` is the control:
N processes spinning at SCHED_IDLE in the loaded phase (no perception needed), the cost on this
machine of any work that runs only on what nobody else wants.

A warm-up message (acknowledged, not timed) proves the ack subscription is in
place before each phase. Reported: p50/p99 per phase and their ratio, acks
lost, hang's restarts and sink's events during the loaded phase, and the
broker's largest RSS seen (a stalled subscriber holds up to ``volatile_hwm``
messages in the broker, whatever their size).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncio
import os
import tempfile
import threading
import time
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

from bench._common import MP, Results, children, emit, parser, progress, run_async, summary
from hexbus.bus import BusClient
from hexbus.codec import derived_id
from hexbus.endpoints import Endpoints
from schemas import ChatAck, ChatMessage, ProbeVolatile
from tests.support.harness import FAST_BUS, Hex, actor_toml

RATE = 20.0  # chat messages per second
FLOOD_RATE = 30.0
FLOOD_BLOB = 1 << 20
ACK_GRACE_S = 5.0  # after the last send, how long a missing ack may still come

ECHO = actor_toml("echo", "actors.diag.actor:EchoActor")
NEIGHBOURS = (
    actor_toml("stall", "actors.diag.actor:StallActor", config={"prefix": "probe.volatile.flood"})
    + actor_toml("sink", "actors.diag.actor:SinkActor")
    + actor_toml(
        "hang",
        "actors.diag.actor:HangActor",
        heartbeat_timeout_s=1.0,
        max_restarts=1000,
        backoff_initial_s=0.05,
        config={"hang_after_s": 1.0},
    )
)


HUNG_BRAIN = actor_toml(
    "brain",
    "actors.diag.actor:HungBrainActor",
    heartbeat_timeout_s=1.0,
    max_restarts=1000,
    backoff_initial_s=0.05,
    config={"hang_after_s": 1.0},
)
DISCORD_NEIGHBOURS = NEIGHBOURS.split("[actors.hang]")[0] + HUNG_BRAIN


def discord_toml(fake: Any) -> str:
    return (
        actor_toml(
            "discord",
            "actors.discord_io.actor:DiscordActor",
            heartbeat_timeout_s=10.0,
            config={
                "api_base": fake.api_base,
                "gateway_url": fake.gateway_url,
                "guild_ready_timeout_s": 0.1,
                "voice": False,
            },
        )
        + f'[actors.discord.env]\nDISCORD_TOKEN = "{fake.token}"\n'
    )


# -- the flood producer (a child process) ------------------------------------------------


def flood(endpoints: Endpoints, stop: MpEvent, results: Results) -> None:
    results.put(run_async(_flood(endpoints, stop)))


async def _flood(endpoints: Endpoints, stop: MpEvent) -> dict[str, Any]:
    client = BusClient(endpoints, "bench-flood")
    blob = bytes(FLOOD_BLOB)
    start = time.monotonic()
    n = 0
    while not stop.is_set():
        delay = start + n / FLOOD_RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        client.publish_volatile(ProbeVolatile(n=n), key="flood", blob=blob)
        n += 1
    await client.close()
    return {"flood_sent": n, "flood_rate_per_s": round(n / (time.monotonic() - start), 1)}


# -- the chat client (this process) ---------------------------------------------------------


def chat_message(text: str) -> ChatMessage:
    return ChatMessage(
        platform="console", person_id="bench", display_name="Bench", channel="bench", text=text
    )


async def chat_latency(endpoints: Endpoints, count: int) -> dict[str, Any]:
    """Send ``count`` chat messages at RATE/s; the ack latency of each, in ms."""
    client = BusClient(endpoints, "bench-chat")
    client.start()
    client.subscribe("chat.ack")
    sent_at: dict[str, float] = {}
    latency_ms: dict[str, float] = {}
    first_ack = asyncio.Event()

    async def receive() -> None:
        async for envelope, _ in client.volatile():
            body = envelope.body
            if not isinstance(body, ChatAck):
                continue
            first_ack.set()
            t0 = sent_at.get(body.message_event_id)
            if t0 is not None and body.message_event_id not in latency_ms:
                latency_ms[body.message_event_id] = (time.perf_counter() - t0) * 1000

    receiver = asyncio.create_task(receive())
    try:
        await warm_up(client, first_ack)
        start = time.monotonic()
        for i in range(count):
            delay = start + i / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            event_id = client.ids.next()
            sent_at[event_id] = time.perf_counter()
            await client.publish_durable(chat_message(f"bench {i}"), key="bench", event_id=event_id)
        deadline = time.monotonic() + ACK_GRACE_S
        while len(latency_ms) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        receiver.cancel()
        await asyncio.gather(receiver, return_exceptions=True)
        await client.close()
    return {
        "sent": count,
        "acked": len(latency_ms),
        "lost_acks": count - len(latency_ms),
        "latencies_ms": list(latency_ms.values()),
    }


async def warm_up(client: BusClient, first_ack: asyncio.Event, timeout: float = 30.0) -> None:
    """Send untimed messages until one is acknowledged: echo is live and the subscription is in place."""
    deadline = time.monotonic() + timeout
    while not first_ack.is_set():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no chat.ack within {timeout:g}s")
        await client.publish_durable(chat_message("warm-up"), key="bench")
        try:
            await asyncio.wait_for(first_ack.wait(), 0.25)
        except TimeoutError:
            pass
    await asyncio.sleep(0.3)  # let the other warm-up acks drain


async def discord_latency(endpoints: Endpoints, fake: Any, count: int) -> dict[str, Any]:
    """Post ``count`` DMs at RATE/s on the Discord server; the time from each post to its chat.ack."""
    client = BusClient(endpoints, "bench-discord")
    client.start()
    client.subscribe("chat.ack")
    acked_at: dict[str, float] = {}
    first_ack = asyncio.Event()
    person = await asyncio.to_thread(fake.add_user, "bench")
    dm = await asyncio.to_thread(fake.dm_channel, person)

    async def receive() -> None:
        async for envelope, _ in client.volatile():
            if isinstance(envelope.body, ChatAck):
                acked_at.setdefault(envelope.body.message_event_id, time.perf_counter())
                first_ack.set()

    async def post(text: str) -> tuple[str, float]:
        t0 = time.perf_counter()
        message = await asyncio.to_thread(fake.post, dm, person, text)
        return derived_id("discord", message["id"]), t0

    receiver = asyncio.create_task(receive())
    sent: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 30
        while (
            not first_ack.is_set()
        ):  # warm-up: the actor is on the gateway and the ack subscription is in place
            if time.monotonic() > deadline:
                raise TimeoutError("no chat.ack for a Discord message within 30 s")
            await post("warm-up")
            try:
                await asyncio.wait_for(first_ack.wait(), 0.5)
            except TimeoutError:
                pass
        await asyncio.sleep(0.3)
        start = time.monotonic()
        for i in range(count):
            delay = start + i / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            event_id, t0 = await post(f"bench {i}")
            sent[event_id] = t0
        deadline = time.monotonic() + ACK_GRACE_S
        while any(e not in acked_at for e in sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        receiver.cancel()
        await asyncio.gather(receiver, return_exceptions=True)
        await client.close()
    latencies = [(acked_at[e] - t0) * 1000 for e, t0 in sent.items() if e in acked_at]
    return {
        "sent": count,
        "acked": len(latencies),
        "lost_acks": count - len(latencies),
        "latencies_ms": latencies,
    }


# -- watching the supervisor ----------------------------------------------------------------


class Monitor(threading.Thread):
    """Polls the supervisor's status twice a second: the broker's largest RSS, the last status seen."""

    def __init__(self, hx: Hex) -> None:
        super().__init__(daemon=True)
        self.hx = hx
        self.done = threading.Event()
        self.broker_rss_max = 0
        self.last: dict[str, Any] = {}

    def run(self) -> None:
        while not self.done.wait(0.5):
            status = self.hx.status()
            if status:
                self.last = status
                self.broker_rss_max = max(
                    self.broker_rss_max, status.get("broker", {}).get("rss_bytes", 0)
                )

    def stop(self) -> dict[str, Any]:
        self.done.set()
        self.join(5)
        return self.hx.status() or self.last


def restarts(status: dict[str, Any], name: str) -> int:
    return int(status.get(name, {}).get("restarts", 0))


def phase(name: str, hx: Hex, count: int, fake: Any = None) -> dict[str, Any]:
    """One timed run against a started Hex, reported with the ``{name}_`` prefix."""
    before = hx.status()
    monitor = Monitor(hx)
    monitor.start()
    responder = "echo" if fake is None else "discord"
    run = run_async(
        chat_latency(hx.endpoints, count)
        if fake is None
        else discord_latency(hx.endpoints, fake, count)
    )
    after = monitor.stop()
    out: dict[str, Any] = {
        f"{name}_sent": run["sent"],
        f"{name}_lost_acks": run["lost_acks"],
        **summary(run["latencies_ms"], f"{name}_ack_ms"),
        f"{name}_{responder}_restarts": restarts(after, responder) - restarts(before, responder),
        f"{name}_broker_rss_start_mb": round(
            before.get("broker", {}).get("rss_bytes", 0) / 2**20, 1
        ),
        f"{name}_broker_rss_max_mb": round(monitor.broker_rss_max / 2**20, 1),
    }
    out[f"{name}_p50_ms"] = out.pop(f"{name}_ack_ms_p50", None)
    out[f"{name}_p99_ms"] = out.pop(f"{name}_ack_ms_p99", None)
    if "hang" in after or (fake is not None and "brain" in after):
        hung = "hang" if "hang" in after else "brain"
        out[f"{name}_{hung}_restarts"] = restarts(after, hung) - restarts(before, hung)
        out[f"{name}_sink_events_in"] = int(after.get("sink", {}).get("events_in", 0))
        out[f"{name}_sink_dropped"] = int(after.get("sink", {}).get("dropped", 0))
        out[f"{name}_stall_state"] = after.get("stall", {}).get("state")
    return out


def idle_phase(count: int, fake: Any = None) -> dict[str, Any]:
    responder = ECHO if fake is None else discord_toml(fake)
    hx = Hex(FAST_BUS + responder)
    try:
        progress(f"idle: starting Hex with {'echo' if fake is None else 'discord'}")
        hx.start()
        progress(f"idle: {count} chat messages at {RATE:g}/s")
        return phase("idle", hx, count, fake)
    finally:
        hx.cleanup()


def idle_hog(stop: MpEvent) -> None:
    """Spin at SCHED_IDLE until told to stop: the control for --perception (the cost of any
    work the scheduler runs only on what nobody else wants, on this machine)."""
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    n = 0
    while not stop.is_set():
        for _ in range(100_000):
            n += 1


def perception_toml(folder: Path, rate_hz: float = 30.0) -> str:
    """The perception actor on a 1080p 30 fps video of the desk, a person, the desk, looping."""
    from tests.support import vision

    shots = [vision.Shot("desk", 3.0), vision.Shot("person", 6.0), vision.Shot("desk", 3.0)]
    video = vision.write_video(folder / "desk-1080p.avi", shots, fps=30, size=(1920, 1080))
    return (
        actor_toml(
            "perception",
            "actors.perception.actor:PerceptionActor",
            config={"rate_hz": rate_hz, "min_rate_hz": 1.0},
        )
        + "[[actors.perception.config.sources]]\n"
        + f"name = 'desk'\nkind = 'file'\npath = {str(video)!r}\nwidth = 1920\nheight = 1080\n"
    )


def loaded_phase(
    count: int,
    fake: Any = None,
    perception: bool = False,
    perception_rate: float = 30.0,
    hogs: int = 0,
) -> dict[str, Any]:
    responder, name = (ECHO, "echo") if fake is None else (discord_toml(fake), "discord")
    extra = ""
    if perception:
        folder = Path(tempfile.mkdtemp(prefix="hxv", dir="/tmp"))
        progress("loaded: writing a 1080p 30 fps video for perception")
        extra = perception_toml(folder, perception_rate)
    hx = Hex(FAST_BUS + responder + (NEIGHBOURS if fake is None else DISCORD_NEIGHBOURS) + extra)
    stop = MP.Event()
    results: Results = MP.Queue()
    try:
        progress(
            f"loaded: starting Hex with {name}, stall, sink, {'hang' if fake is None else 'a hung brain'}"
        )
        hx.start(wait_live=False)
        live = ("broker", name, "stall", "sink", *(("perception",) if perception else ()))
        hx.wait_state({n: "live" for n in live}, timeout=60)
        with children() as start:
            start(flood, hx.endpoints, stop, results)
            for _ in range(hogs):
                start(idle_hog, stop)
            time.sleep(1.0)  # the flood is flowing and stall's queues are filling
            progress(f"loaded: {count} chat messages at {RATE:g}/s beside the flood")
            out = phase("loaded", hx, count, fake)
            stop.set()
            out.update(results.get(timeout=30))
            if perception:
                out.update(perception_figures(hx))
        return out
    finally:
        stop.set()
        hx.cleanup()


def perception_figures(hx: Hex) -> dict[str, Any]:
    """What the perception actor took in, analysed and dropped during the loaded phase."""
    from hexbus.ask import ask
    from schemas import PerceptionState, PerceptionStatus

    state, _ = asyncio.run(ask(hx.endpoints, PerceptionStatus(), PerceptionState, timeout=10))
    (source,) = state.sources
    return {
        "perception_frames_in": source.frames_in,
        "perception_frames_analysed": source.frames_analysed,
        "perception_frames_dropped": source.frames_dropped,
        "perception_rate_hz_at_end": state.rate_hz,
        "perception_governed": state.governed,
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument(
        "--discord",
        action="store_true",
        help="the responder is the Discord actor on a loopback Discord server (a DM → chat.ack)",
    )
    p.add_argument(
        "--perception",
        action="store_true",
        help="the loaded phase also runs perception on a 1080p 30 fps video at full rate",
    )
    p.add_argument(
        "--idle-hogs",
        type=int,
        default=0,
        metavar="N",
        help="the loaded phase also runs N processes spinning at SCHED_IDLE (a control for --perception)",
    )
    p.add_argument(
        "--perception-rate",
        type=float,
        default=30.0,
        help="perception's rate_hz with --perception (30: every frame; 5: the shipped default)",
    )
    args = p.parse_args()
    count = 60 if args.quick else 600  # 30 s a phase: p99 is then the 6th-worst sample, not the 2nd
    result: dict[str, Any] = {
        "bench": "isolation",
        "quick": args.quick,
        "rate_per_s": RATE,
        "flood_blob_bytes": FLOOD_BLOB,
        "flood_target_rate_per_s": FLOOD_RATE,
        "responder": "discord" if args.discord else "echo",
        "perception": args.perception,
        "perception_rate_hz": args.perception_rate if args.perception else None,
        "idle_hogs": args.idle_hogs,
    }
    if args.discord:
        from tests.support.fakediscord import FakeDiscord

        for run_phase in (idle_phase, loaded_phase):
            with FakeDiscord(
                token="bench-token"
            ) as fake:  # a fresh server per phase, like a fresh Hex
                result.update(run_phase(count, fake))
    else:
        result.update(idle_phase(count))
        result.update(
            loaded_phase(
                count,
                perception=args.perception,
                perception_rate=args.perception_rate,
                hogs=args.idle_hogs,
            )
        )
    idle, loaded = result.get("idle_p99_ms"), result.get("loaded_p99_ms")
    result["loaded_over_idle_p99"] = round(loaded / idle, 2) if idle and loaded else None
    result["loaded_over_idle_p50"] = (
        round(result["loaded_p50_ms"] / result["idle_p50_ms"], 2)
        if result.get("idle_p50_ms") and result.get("loaded_p50_ms")
        else None
    )
    emit(result)


if __name__ == "__main__":
    main()
