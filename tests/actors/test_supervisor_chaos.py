"""Kill anything (the broker included) while events flow: nothing is lost, nothing applied twice."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading

import pytest

from hexbus.bus import BusClient
from schemas import ProbeDurable
from tests.support.busclient import ask_count
from tests.support.harness import FAST_BUS, HexFactory, actor_toml, poll_for

N_EVENTS = 10_000
N_KILLS = 20

RESTARTABLE = dict(
    max_restarts=100,
    restart_period_s=60.0,
    backoff_initial_s=0.02,
    backoff_max_s=0.2,
    heartbeat_timeout_s=5.0,
)
CHAOS_CONFIG = (
    FAST_BUS
    + "[supervisor.broker]\nmax_restarts = 100\nbackoff_initial_s = 0.02\nbackoff_max_s = 0.2\n"
    + actor_toml(
        "counter",
        "actors.diag.actor:CounterActor",
        snapshot_every=500,
        snapshot_interval_s=0.3,
        **RESTARTABLE,
    )
    + actor_toml("echo", "actors.diag.actor:EchoActor", **RESTARTABLE)
)


@pytest.mark.process
@pytest.mark.slow
def test_sigkill_anything_twenty_times_loses_and_duplicates_nothing(
    hex_factory: HexFactory,
) -> None:
    hx = hex_factory(CHAOS_CONFIG).start()
    done = threading.Event()
    errors: list[BaseException] = []

    async def produce() -> None:
        client = BusClient(hx.endpoints, "chaos-producer")
        client.start()
        for n in range(1, N_EVENTS + 1):
            await client.publish_durable(ProbeDurable(n=n))
            if n % 25 == 0:
                await asyncio.sleep(0.02)  # spread the events over the kills
        flushed = await client.flush(timeout=120)
        await client.close()
        if not flushed:
            raise AssertionError("producer outbox never drained")

    def producer() -> None:
        try:
            asyncio.run(produce())
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=producer)
    thread.start()
    rng = random.Random(1234)
    kills: list[str] = []
    during = 0
    for _ in range(N_KILLS):
        victim = rng.choice(["broker", "counter", "echo"])
        before = hx.wait_state({victim: "live"}, timeout=30)[victim]["pid"]
        os.kill(before, signal.SIGKILL)
        kills.append(victim)
        if not done.is_set():
            during += 1
        poll_for(
            lambda v=victim, b=before: hx.status().get(v, {}).get("pid") not in (0, b, None),  # type: ignore[misc]
            30,
            what=f"{victim} respawned",
        )
        done.wait(rng.uniform(0.05, 0.4))
    thread.join(timeout=180)
    assert not thread.is_alive(), "producer stuck"
    assert not errors, errors
    assert {"broker", "counter"} <= set(kills)
    assert during >= N_KILLS // 2, f"only {during} kills happened while events were being published"

    expected = (N_EVENTS, N_EVENTS * (N_EVENTS + 1) // 2)
    hx.wait_state({"broker": "live", "counter": "live", "echo": "live"}, timeout=30)
    poll_for(
        lambda: asyncio.run(ask_count(hx.endpoints)) == expected,
        60,
        what="counter to reach N exactly",
    )
    # Stop gracefully: the final snapshot must hold the exact count too.
    assert hx.stop() == 0
    state = hx.snapshot_state("counter")
    assert (state["count"], state["total"]) == expected
    assert not hx.processes(), "processes left behind"
