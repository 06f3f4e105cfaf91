"""Liveness beyond the heartbeat, in-process: work ages, the runtime's report, the supervisor's rule."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.supervisor.watcher import Policy, Watcher
from hexbus import Actor, NoConfig, NoState, on
from hexbus.config import ConfigError, parse
from hexbus.testing import ActorHarness
from hexbus.work import PendingSince
from schemas import Heartbeat, ProbeDurable
from tests.support.clock import Clock


def test_pending_since_dates_each_key_once_and_forgets_finished_ones() -> None:
    clock = Clock(100.0)
    since = PendingSince(clock)
    assert since.oldest({}) is None
    assert since.oldest({"a": 1}) == 100.0
    clock.now = 105.0
    assert since.oldest({"a": 1, "b": 2}) == 100.0  # a is still the oldest
    clock.now = 107.0
    assert since.oldest({"b": 2}) == 105.0  # a finished
    assert since.oldest({"a": 1, "b": 2}) == 105.0  # a again: new work, dated now (107)
    assert since.seen == {"a": 107.0, "b": 105.0}


def test_work_that_waits_while_other_work_gets_done_is_dated_from_the_last_done() -> None:
    """The chaos soak: five people on one small CPU keep the brain's queue longer than its
    work_timeout_s while it answers steadily; dated from its first sighting, the oldest line
    got the brain restarted as hung, again and again."""
    clock = Clock(100.0)
    since = PendingSince(clock)
    assert since.oldest({"a"}) == 100.0
    clock.now = 190.0
    since.progressed()  # another conversation's reply went out
    clock.now = 250.0
    assert since.oldest({"a", "b"}) == 190.0  # a waited 150 s, but only 60 s without progress
    clock.now = 400.0
    assert since.oldest({"a"}) == 190.0  # nothing done since: stuck for 210 s
    assert since.oldest(set()) is None


@given(st.lists(st.tuples(st.floats(0, 10), st.sets(st.sampled_from("abcdef")))))
def test_pending_since_is_the_first_sighting_of_the_oldest_key_still_pending(
    steps: list[tuple[float, set[str]]],
) -> None:
    clock = Clock(100.0)
    since = PendingSince(clock)
    first: dict[str, float] = {}
    for advance, keys in steps:
        clock.now += advance
        first = {k: first.get(k, clock.now) for k in keys}
        assert since.oldest(keys) == (min(first.values()) if first else None)


class Slow(Actor[NoConfig, NoState]):
    """A durable handler that waits until the test lets it finish."""

    subscribes: ClassVar[tuple[str, ...]] = ("probe.durable",)
    release: asyncio.Event
    owned: float | None = None

    @on(ProbeDurable)
    async def wait(self, event: ProbeDurable) -> None:
        await self.release.wait()

    def oldest_work(self) -> float | None:
        return self.owned


def test_runtime_reports_a_running_handler_and_the_actors_own_work_only_when_live() -> None:
    async def scenario() -> list[float]:
        h = ActorHarness(Slow)
        h.actor.release = asyncio.Event()
        await h.setup()
        seen = [h.runtime.oldest_work_s()]  # nothing pending
        task = asyncio.get_running_loop().create_task(h.send(ProbeDurable(n=1)))
        await asyncio.sleep(0.3)
        seen.append(h.runtime.oldest_work_s())  # the handler has run 0.3 s
        h.runtime.state = "replaying"
        seen.append(h.runtime.oldest_work_s())  # never late before live
        h.runtime.state = "live"
        h.actor.release.set()
        await task
        seen.append(h.runtime.oldest_work_s())
        h.actor.owned = asyncio.get_running_loop().time() - 2.0  # monotonic, two seconds ago
        seen.append(h.runtime.oldest_work_s())
        await h.stop()
        return seen

    idle, running, replaying, done, owned = asyncio.run(scenario())
    assert idle == 0.0 and replaying == 0.0 and done == 0.0
    assert 0.2 <= running < 5.0 and 1.9 <= owned < 5.0


def watcher(work_timeout_s: float) -> Watcher:
    policy = Policy("permanent", 5, 60.0, 0.05, 5.0, 5.0, 5.0, 0, 0, work_timeout_s)
    return Watcher("brain", ["true"], {}, policy)


def test_a_live_actor_is_stuck_once_its_oldest_work_passes_work_timeout_s() -> None:
    w = watcher(10.0)
    w.state = "live"
    w.on_beat(Heartbeat(actor="brain", pid=1, oldest_work_s=8.0))
    now = w.last_beat_at
    assert w.work_s(now) == 8.0 and w.stuck_for(now) is None
    assert w.stuck_for(now + 2.5) == pytest.approx(10.5)  # the age grows between beats
    w.on_beat(Heartbeat(actor="brain", pid=1, oldest_work_s=0.0))  # the work got done
    assert w.stuck_for(w.last_beat_at + 60) is None and w.work_s(w.last_beat_at) == 0.0
    off = watcher(0.0)  # the default: never checked
    off.state = "live"
    off.on_beat(Heartbeat(actor="brain", pid=1, oldest_work_s=1e6))
    assert off.stuck_for(off.last_beat_at) is None
    replaying = watcher(10.0)
    replaying.on_beat(Heartbeat(actor="brain", pid=1, state="replaying", oldest_work_s=99.0))
    assert replaying.stuck_for(replaying.last_beat_at) is None


def test_a_negative_work_timeout_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse(
            '[actors.brain]\nmodule = "actors.diag.actor:EchoActor"\nwork_timeout_s = -1\n',
            "supervisor.toml",
        )
    assert "actors.brain.work_timeout_s" in str(info.value)
