"""How long a SIGKILLed actor takes to be live again, seen from the bus.

A Hex runs ``counter`` (CounterActor: it subscribes to a durable family, so it
replays before it goes live) with ``backoff_initial_s = 0.001``,
``max_restarts = 1000`` and ``restart_period_s = 60``. Each iteration reads
its pid from the supervisor, SIGKILLs it, and times (``time.monotonic()``)
until the first ``sys.heartbeat.counter`` Heartbeat with a NEW pid and state
``live`` arrives on a BusClient in this process (the runtime sends one the
moment it goes live), then waits 0.3 s. There is no baseline process: the
figures are absolute, with the split of each restart into stages:

- ``to_spawn``: kill -> the supervisor's ``sys.actor.counter.spawn`` event
  (stamped when the supervisor publishes it, just after the new process exists;
  it includes noticing the exit and the 1 ms backoff),
- ``to_first_beat``: spawn -> the new process's first heartbeat (interpreter
  start, imports, sockets),
- ``to_live``: first heartbeat -> the live heartbeat (setup and catching up
  with the journal),
- ``delivery``: the live heartbeat's send stamp -> its arrival here.

The stamps are the envelopes' ``mono`` (CLOCK_MONOTONIC, system-wide), so the
stages are comparable across processes. A stage is missing when its event was
not seen (volatile heartbeats sent before the new process's subscription is
forwarded are dropped by design).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncio
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from bench._common import emit, parser, percentile, progress, run_async, summary
from hexbus.bus import BusClient
from schemas import ActorLifecycle, Heartbeat
from tests.support.harness import FAST_BUS, Hex, actor_toml

NAME = "counter"
PAUSE_S = 0.3
TIMEOUT_S = 15.0

CONFIG = FAST_BUS + actor_toml(
    NAME,
    "actors.diag.actor:CounterActor",
    backoff_initial_s=0.001,
    max_restarts=1000,
    restart_period_s=60,
)


@dataclass
class Sightings:
    """What the bus showed about each pid of the actor (monotonic seconds)."""

    spawn_mono: dict[int, float] = field(default_factory=dict)
    first_beat_mono: dict[int, float] = field(default_factory=dict)
    live_mono: dict[int, float] = field(default_factory=dict)
    live_seen: dict[int, float] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, envelope_mono_ns: int, body: Any) -> None:
        now = time.monotonic()
        stamp = envelope_mono_ns / 1e9
        if isinstance(body, Heartbeat):
            self.first_beat_mono.setdefault(body.pid, stamp)
            if body.state == "live" and body.pid not in self.live_seen:
                self.live_mono[body.pid] = stamp
                self.live_seen[body.pid] = now
                self.changed.set()
        elif isinstance(body, ActorLifecycle) and body.change == "spawn":
            self.spawn_mono.setdefault(body.pid, stamp)

    async def live_other_than(self, pid: int, timeout: float) -> int | None:
        """Wait for a live heartbeat from a pid that is not ``pid`` and has not been live before."""
        deadline = time.monotonic() + timeout
        known = set(self.live_seen)
        while True:
            fresh = [p for p in self.live_seen if p not in known and p != pid]
            if fresh:
                return fresh[0]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                pass


async def watch(client: BusClient, seen: Sightings) -> None:
    async for envelope, _ in client.volatile():
        seen.record(envelope.mono, envelope.body)


async def restarts(hx: Hex, iterations: int) -> dict[str, Any]:
    client = BusClient(hx.endpoints, "bench-restart")
    client.subscribe(f"sys.heartbeat.{NAME}")
    client.subscribe(f"sys.actor.{NAME}.spawn")
    seen = Sightings()
    watcher = asyncio.create_task(watch(client, seen))
    stages: dict[str, list[float]] = {
        k: [] for k in ("total", "to_spawn", "to_first_beat", "to_live", "delivery")
    }
    failures = 0
    try:
        await seen.live_other_than(
            0, TIMEOUT_S
        )  # the subscription is in place: a periodic beat arrived
        for i in range(iterations):
            old = await asyncio.to_thread(hx.pid, NAME)
            if old <= 0:  # never os.kill(0, ...): that is this whole process group
                raise RuntimeError(f"{NAME} has no pid (status: {hx.status().get(NAME)})")
            killed = time.monotonic()
            os.kill(old, signal.SIGKILL)
            new = await seen.live_other_than(old, TIMEOUT_S)
            if new is None:
                failures += 1
                progress(f"restart {i + 1}: no live heartbeat within {TIMEOUT_S:g}s")
                continue
            add_stages(stages, seen, new, killed)
            progress(f"restart {i + 1}: {stages['total'][-1] * 1000:.0f} ms (pid {old} -> {new})")
            await asyncio.sleep(PAUSE_S)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await client.close()
    return {"stages": stages, "failures": failures}


def add_stages(stages: dict[str, list[float]], seen: Sightings, pid: int, killed: float) -> None:
    stages["total"].append(seen.live_seen[pid] - killed)
    spawn, first, live = (
        seen.spawn_mono.get(pid),
        seen.first_beat_mono.get(pid),
        seen.live_mono[pid],
    )
    stages["delivery"].append(seen.live_seen[pid] - live)
    if spawn is not None:
        stages["to_spawn"].append(spawn - killed)
        if first is not None:
            stages["to_first_beat"].append(first - spawn)
    if first is not None:
        stages["to_live"].append(live - first)


def report(run: dict[str, Any]) -> dict[str, Any]:
    stages = run["stages"]
    total = stages.pop("total")
    out: dict[str, Any] = {"failures": run["failures"], **summary(total, "restart_s")}
    out["restart_median_s"] = out.pop("restart_s_p50", None)
    out["restart_p95_s"] = round(percentile(total, 95), 3) if total else None
    out["restart_max_s"] = out.pop("restart_s_max", None)
    for stage, values in stages.items():
        out.update(summary([1000 * v for v in values], f"{stage}_ms", 1))
    if total and stages["to_spawn"]:
        out["fraction_before_spawn"] = round(
            percentile(stages["to_spawn"], 50) / percentile(total, 50), 3
        )
    return out


def main() -> None:
    args = parser(__doc__).parse_args()
    iterations = 10 if args.quick else 50
    hx = Hex(CONFIG)
    try:
        progress("starting Hex with counter")
        hx.start()
        run = run_async(restarts(hx, iterations))
        status = hx.status().get(NAME, {})
    finally:
        hx.cleanup()
    result: dict[str, Any] = {
        "bench": "restart",
        "quick": args.quick,
        "iterations": iterations,
        "backoff_initial_s": 0.001,
        **report(run),
    }
    result["supervisor_restarts"] = status.get("restarts")
    result["final_state"] = status.get("state")
    emit(result)


if __name__ == "__main__":
    main()
