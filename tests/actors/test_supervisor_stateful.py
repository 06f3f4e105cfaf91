"""Stateful test of a real supervisor: random kills, hot restarts and publishes, in any order.

After every step, every actor must come back live and the counter must hold
exactly the number of durable events published so far.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from hexbus.bus import BusClient
from schemas import ProbeDurable
from tests.support.busclient import ask_count
from tests.support.harness import FAST_BUS, Hex, actor_toml, poll_for

ACTORS = ("broker", "counter", "echo")
RESTARTABLE = dict(max_restarts=1000, backoff_initial_s=0.02, backoff_max_s=0.2)
CONFIG = (
    FAST_BUS
    + "[supervisor.broker]\nmax_restarts = 1000\nbackoff_initial_s = 0.02\n"
    + actor_toml(
        "counter", "actors.diag.actor:CounterActor", snapshot_interval_s=0.2, **RESTARTABLE
    )
    + actor_toml("echo", "actors.diag.actor:EchoActor", **RESTARTABLE)
)


class SupervisedHex(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.hex = Hex(CONFIG).start()
        self.published = 0
        self.total = 0

    def teardown(self) -> None:
        self.hex.discard()

    @rule(victim=st.sampled_from(ACTORS))
    def sigkill(self, victim: str) -> None:
        pid = self.hex.wait_state({victim: "live"})[victim]["pid"]
        os.kill(pid, signal.SIGKILL)
        poll_for(
            lambda: self.hex.status().get(victim, {}).get("pid") not in (0, pid, None),
            20,
            what=f"{victim} respawned",
        )

    @rule(victim=st.sampled_from(ACTORS))
    def hot_restart(self, victim: str) -> None:
        pid = self.hex.wait_state({victim: "live"})[victim]["pid"]
        assert self.hex.command("restart", victim).ok
        poll_for(
            lambda: self.hex.status().get(victim, {}).get("pid") not in (0, pid, None),
            20,
            what=f"{victim} restarted",
        )

    @rule(count=st.integers(1, 300))
    def publish(self, count: int) -> None:
        first = self.published + 1

        async def send() -> None:
            client = BusClient(self.hex.endpoints, f"stateful-{first}")
            client.start()
            for n in range(first, first + count):
                await client.publish_durable(ProbeDurable(n=n))
            assert await client.flush(30), "broker never acknowledged"
            await client.close()

        asyncio.run(send())
        self.published += count
        self.total += sum(range(first, first + count))

    @precondition(lambda self: self.published > 0)
    @rule()
    def snapshot_then_kill_counter(self) -> None:
        self.sigkill("counter")

    @invariant()
    def everything_live_and_counted_exactly(self) -> None:
        self.hex.wait_state({name: "live" for name in ACTORS}, timeout=30)
        expected = (self.published, self.total)
        poll_for(
            lambda: asyncio.run(ask_count(self.hex.endpoints)) == expected,
            30,
            what=f"counter == {expected}",
        )


@pytest.mark.process
@pytest.mark.slow
def test_supervisor_survives_any_sequence_of_kills_restarts_and_publishes() -> None:
    SupervisedHex.TestCase.settings = settings(
        max_examples=3,
        stateful_step_count=6,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        derandomize=True,
    )
    SupervisedHex.TestCase().runTest()
