"""The supervisor's control paths racing each other: restarts after backoff, requested restarts,
the kill switch, reloads and crashes, in any order and at once (issue 13, item 12).

A hypothesis state machine drives a real :class:`Supervisor` on one event loop whose actors are
real processes (``sleep``, so thousands of starts stay fast; the supervisor's logic is the real
one). After every step the loop settles, then: no actor that is not wanted has a process, no
actor has two, and every actor the model says is up is up.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.supervisor.supervisor import BROKER, Supervisor, actor_policy
from actors.supervisor.watcher import Watcher
from hexbus.config import ActorSpec, load
from hexbus.control import ControlRequest

pytestmark = [pytest.mark.process, pytest.mark.slow]

NAMES = ("a", "b", "c")


def toml(names: tuple[str, ...], version: int) -> str:
    lines = ["[bus]", 'transport = "ipc"']
    for name in names:
        lines += [
            f"[actors.{name}]",
            'module = "actors.diag.actor:CounterActor"',
            "backoff_initial_s = 0.01",
            "backoff_max_s = 0.02",
            "max_restarts = 1000",
            "heartbeat_timeout_s = 600",
            "stop_grace_s = 2",
            f"snapshot_every = {1000 + version}",  # a change a reload restarts for
        ]
    return "\n".join(lines) + "\n"


class SleepySupervisor(Supervisor):
    """The real supervisor, whose actors are ``sleep`` processes."""

    def actor_watcher(self, name: str, spec: ActorSpec) -> Watcher:
        return Watcher(name, ["sleep", "1000"], dict(os.environ), actor_policy(spec))


class Races(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.root = Path(tempfile.mkdtemp(prefix="hxr", dir="/tmp"))
        self.config_path = self.root / "supervisor.toml"
        self.version = 0
        self.names: tuple[str, ...] = NAMES
        self.config_path.write_text(toml(self.names, self.version))
        self.sup = SleepySupervisor(
            load(self.config_path), self.config_path, self.root / "run", self.root / "data"
        )
        self.up: set[str] = set(self.names)  # what the model says must be running
        self.run(self._start())

    async def _start(self) -> None:
        for name in self.names:
            watcher = self.sup.actor_watcher(name, self.sup.config.actors[name])
            self.sup.watchers[name] = watcher
            await self.sup.spawn(watcher)

    def run(self, coro: object) -> object:
        return self.loop.run_until_complete(coro)  # type: ignore[arg-type]

    def settle(self) -> None:
        async def quiet() -> None:
            for _ in range(50):  # backoff restarts are 10-20 ms away
                await asyncio.sleep(0.01)
                if not self.sup._background and all(
                    w.restart_handle is None for w in self.sup.watchers.values()
                ):
                    break
            await asyncio.sleep(0.05)

        self.run(quiet())

    # -- steps ---------------------------------------------------------------

    @rule(name=st.sampled_from(NAMES))
    def crash(self, name: str) -> None:
        watcher = self.sup.watchers.get(name)
        if watcher is not None and watcher.running:
            os.kill(watcher.pid, signal.SIGKILL)
        self.settle()  # it comes back after its backoff if it is wanted

    @rule(name=st.sampled_from(NAMES))
    def restart(self, name: str) -> None:
        if name in self.sup.watchers:
            self.run(self.sup.restart(self.sup.watchers[name]))
            self.up.add(name)
        self.settle()

    @rule(keep=st.sets(st.sampled_from(NAMES), max_size=1))
    def killswitch(self, keep: set[str]) -> None:
        self.run(self.sup.killswitch(tuple(k for k in keep if k in self.sup.watchers), "test"))
        self.up &= keep
        self.settle()

    @rule(name=st.sampled_from(NAMES))
    def crash_then_killswitch_at_once(self, name: str) -> None:
        # The crash's restart is due while the kill switch runs: it must not start anything.
        watcher = self.sup.watchers.get(name)
        if watcher is not None and watcher.running:
            os.kill(watcher.pid, signal.SIGKILL)

        async def both() -> None:
            await asyncio.sleep(0.005)
            await self.sup.killswitch((), "test")

        self.run(both())
        self.up.clear()
        self.settle()

    @rule(name=st.sampled_from(NAMES))
    def restart_and_killswitch_at_once(self, name: str) -> None:
        if name not in self.sup.watchers:
            return

        async def both() -> None:
            await asyncio.gather(
                self.sup.restart(self.sup.watchers[name]), self.sup.killswitch((), "test")
            )

        self.run(both())
        self.up.clear()  # the kill switch came after the request: it wins
        self.settle()

    @rule(name=st.sampled_from(NAMES))
    def restart_command_then_killswitch_command(self, name: str) -> None:
        # Both arrive on the control socket back to back: the kill switch came after the
        # restart was asked for, so the actor stays down.
        if name not in self.sup.watchers:
            return

        async def both() -> None:
            restart = asyncio.ensure_future(
                self.sup.command(ControlRequest(cmd="restart", name=name))
            )
            kill = asyncio.ensure_future(self.sup.command(ControlRequest(cmd="killswitch")))
            await asyncio.gather(restart, kill)

        self.run(both())
        self.up.clear()
        self.settle()

    @rule(name=st.sampled_from(NAMES))
    def restart_and_a_killswitch_that_keeps_it(self, name: str) -> None:
        if name not in self.sup.watchers:
            return

        async def both() -> None:
            await asyncio.gather(
                self.sup.restart(self.sup.watchers[name]), self.sup.killswitch((name,), "test")
            )

        self.run(both())
        self.up = {name}  # kept: its restart goes ahead
        self.settle()

    @rule(names=st.sets(st.sampled_from(NAMES), min_size=1))
    def reload(self, names: set[str]) -> None:
        before = set(self.names)
        self.version += 1
        self.names = tuple(sorted(names))
        self.config_path.write_text(toml(self.names, self.version))
        reply = self.run(self.sup.reload())
        assert reply.ok, reply  # type: ignore[attr-defined]
        # Changed ones restart and new ones start; the ones removed are gone.
        self.up = {n for n in self.up if n in names} | (names - before) | (names & before)
        self.settle()

    @precondition(lambda self: len(self.names) > 0)
    @rule()
    def reload_and_killswitch_at_once(self) -> None:
        self.version += 1
        self.config_path.write_text(toml(self.names, self.version))

        async def both() -> None:
            reload = asyncio.ensure_future(self.sup.reload())
            await asyncio.sleep(0.01)  # the reload is restarting something by now
            await self.sup.killswitch((), "test")
            await reload

        self.run(both())
        self.up.clear()
        self.settle()

    # -- what must hold ------------------------------------------------------

    @invariant()
    def no_unwanted_or_doubled_process(self) -> None:
        watchers = {n: w for n, w in self.sup.watchers.items() if n != BROKER}
        for name, watcher in watchers.items():
            if watcher.running:
                assert watcher.wanted, f"{name} runs after it was stopped"
        tracked = {w.pid for w in watchers.values() if w.running}
        children = {
            p.pid
            for p in psutil.Process().children()
            if p.status() != psutil.STATUS_ZOMBIE and p.name() == "sleep"
        }
        assert children == tracked, f"untracked processes: {children - tracked}"
        running = {n for n, w in watchers.items() if w.running}
        assert running == self.up & set(watchers), (running, self.up)

    def teardown(self) -> None:
        async def down() -> None:
            for watcher in self.sup.watchers.values():
                watcher.wanted = False
                if watcher.restart_handle is not None:
                    watcher.restart_handle.cancel()
            await asyncio.gather(*(w.stop(0.5) for w in self.sup.watchers.values()))

        self.run(down())
        self.loop.close()
        os.close(self.sup._lock_fd)


TestRaces = Races.TestCase
TestRaces.settings = settings(
    max_examples=25,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
