"""The supervisor with real processes: hangs, flapping, hot restart, reload, clean stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import psutil
import pytest

from hexbus.bus import BusClient
from schemas import ProbeDurable, ProbeVolatile
from tests.support.busclient import ask_count
from tests.support.harness import FAST_BUS, HexFactory, actor_toml, poll_for

pytestmark = pytest.mark.process


async def publish(endpoints, events, name="tester") -> None:  # type: ignore[no-untyped-def]
    client = BusClient(endpoints, name)
    client.start()
    for event in events:
        await client.publish(event)
    assert await client.flush(30)
    await client.close()


@pytest.mark.slow
def test_hung_actor_is_killed_and_restarted_within_its_heartbeat_timeout(
    hex_factory: HexFactory,
) -> None:
    timeout = 1.5
    hx = hex_factory(
        FAST_BUS
        + actor_toml(
            "hang",
            "actors.diag.actor:HangActor",
            heartbeat_timeout_s=timeout,
            max_restarts=10,
            backoff_initial_s=0.05,
        )
    ).start()
    first = hx.pid("hang")

    async def trigger() -> None:
        client = BusClient(hx.endpoints, "trigger")
        await asyncio.sleep(0.3)
        client.publish_volatile(ProbeVolatile(n=1, note="hang"), key="hang")
        await asyncio.sleep(0.1)
        await client.close()

    asyncio.run(trigger())
    blocked_at = time.monotonic()
    poll_for(
        lambda: hx.status()["hang"]["pid"] not in (0, first),
        timeout + 3,
        interval=0.02,
        what="hung actor replaced",
    )
    replaced_after = time.monotonic() - blocked_at
    assert replaced_after <= timeout + 1.0, f"replaced after {replaced_after:.2f}s"
    assert not psutil.pid_exists(first) or psutil.Process(first).status() == psutil.STATUS_ZOMBIE
    status = hx.wait_state({"hang": "live"})
    assert status["hang"]["restarts"] == 1
    assert "hung: no heartbeat" in hx.log()


@pytest.mark.slow
def test_actor_that_crashes_at_start_is_marked_failed_and_others_keep_running(
    hex_factory: HexFactory,
) -> None:
    config = (
        FAST_BUS
        + actor_toml(
            "flappy",
            "actors.diag.actor:CrashActor",
            max_restarts=3,
            restart_period_s=30,
            backoff_initial_s=0.01,
            backoff_max_s=0.05,
        )
        + actor_toml("counter", "actors.diag.actor:CounterActor")
    )
    hx = hex_factory(config).start(wait_live=False)
    status = hx.wait_state({"flappy": "failed", "counter": "live", "broker": "live"}, timeout=30)
    assert status["flappy"]["restarts"] == 3
    assert "max_restarts = 3" in status["flappy"]["reason"]
    asyncio.run(publish(hx.endpoints, [ProbeDurable(n=1)]))
    poll_for(
        lambda: asyncio.run(ask_count(hx.endpoints)) == (1, 1), 10, what="counter still serving"
    )
    out = hx.cli("status")
    assert out.returncode == 0 and "flappy: " in out.stdout and "failed" in out.stdout
    # Restarting a failed actor by hand gives it a fresh intensity budget.
    assert hx.command("restart", "flappy").ok


@pytest.mark.slow
def test_hot_restart_keeps_state_and_sees_events_published_meanwhile(
    hex_factory: HexFactory,
) -> None:
    hx = hex_factory(FAST_BUS + actor_toml("counter", "actors.diag.actor:CounterActor")).start()
    asyncio.run(publish(hx.endpoints, [ProbeDurable(n=n) for n in range(1, 101)]))
    poll_for(lambda: asyncio.run(ask_count(hx.endpoints)) == (100, 5050), 15, what="100 counted")
    old = hx.pid("counter")
    out = hx.cli("restart", "counter", "--wait", "20")
    assert out.returncode == 0, out.stderr
    assert "live again" in out.stdout
    assert hx.pid("counter") != old
    asyncio.run(publish(hx.endpoints, [ProbeDurable(n=n) for n in range(101, 111)]))
    poll_for(lambda: asyncio.run(ask_count(hx.endpoints)) == (110, 6105), 15, what="110 counted")
    assert "restored" in hx.log() and '"restored": true' in hx.log()


def test_actor_with_bad_actor_config_fails_once_with_its_message(hex_factory: HexFactory) -> None:
    hx = hex_factory(
        FAST_BUS
        + actor_toml("hang", "actors.diag.actor:HangActor", config={"hang_after_s": "soon"})
    ).start(wait_live=False)
    status = hx.wait_state({"hang": "failed"}, timeout=20)
    assert status["hang"]["restarts"] == 0
    assert "actors.hang.config.hang_after_s: expected float, got str" in hx.log()


@pytest.mark.slow  # a few seconds of real processes
def test_reload_starts_added_stops_removed_and_restarts_only_changed(
    hex_factory: HexFactory,
) -> None:
    base = (
        FAST_BUS
        + actor_toml("counter", "actors.diag.actor:CounterActor")
        + actor_toml("echo", "actors.diag.actor:EchoActor")
    )
    hx = hex_factory(base).start()
    counter_pid, echo_pid = hx.pid("counter"), hx.pid("echo")
    hx.config_path.write_text(
        FAST_BUS
        + actor_toml("counter", "actors.diag.actor:CounterActor")
        + actor_toml("sink", "actors.diag.actor:SinkActor")
    )
    out = hx.cli("reload")
    assert out.returncode == 0, out.stderr
    assert "added ['sink']" in out.stdout and "removed ['echo']" in out.stdout
    status = hx.wait_state({"sink": "live", "counter": "live"})
    assert "echo" not in status
    assert status["counter"]["pid"] == counter_pid
    assert (
        not psutil.pid_exists(echo_pid) or psutil.Process(echo_pid).status() == psutil.STATUS_ZOMBIE
    )
    # A changed spec restarts just that actor.
    hx.config_path.write_text(
        hx.config_path.read_text().replace(
            'module = "actors.diag.actor:SinkActor"',
            'module = "actors.diag.actor:SinkActor"\nstop_grace_s = 2.0',
        )
    )
    sink_pid = hx.pid("sink")
    out = hx.cli("reload")
    assert "restarted ['sink']" in out.stdout, out.stdout
    hx.wait_state({"sink": "live"})
    assert hx.pid("sink") != sink_pid and hx.pid("counter") == counter_pid
    # A broken file changes nothing and says why.
    hx.config_path.write_text("[actors.x]\nmodule = 'nope.nothing:X'\n")
    out = hx.cli("reload")
    assert out.returncode == 1 and "no module named 'nope.nothing'" in out.stderr


def test_sigint_on_hexbus_run_leaves_no_process_behind(hex_factory: HexFactory) -> None:
    hx = hex_factory(
        FAST_BUS
        + actor_toml("counter", "actors.diag.actor:CounterActor")
        + actor_toml("hang", "actors.diag.actor:HangActor", stop_grace_s=1.0)
    ).start()
    pids = [hx.pid(n) for n in ("broker", "counter", "hang")]
    assert hx.stop() == 0
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    log = [json.loads(line) for line in hx.log().splitlines() if line.startswith("{")]
    assert any(e["event"] == "supervisor.stopped" for e in log)


def test_supervisor_killed_outright_takes_its_children_with_it(hex_factory: HexFactory) -> None:
    hx = hex_factory(FAST_BUS + actor_toml("counter", "actors.diag.actor:CounterActor")).start()
    pids = [hx.pid(n) for n in ("broker", "counter")]
    assert hx.proc is not None
    os.kill(hx.proc.pid, signal.SIGKILL)
    poll_for(
        lambda: (
            not any(
                psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                for p in pids
            )
        ),
        10,
        what="children gone",
    )


@pytest.mark.slow
def test_lifecycle_changes_are_durable_events_on_the_bus(hex_factory: HexFactory) -> None:
    hx = hex_factory(FAST_BUS + actor_toml("counter", "actors.diag.actor:CounterActor")).start()
    os.kill(hx.pid("counter"), signal.SIGKILL)
    hx.wait_state({"counter": "live"})

    async def lifecycle() -> list[str]:
        client = BusClient(hx.endpoints, "reader")
        feed = client.durable(["sys.actor.counter"], after=0)
        topics: list[str] = []
        async for envelope, _ in feed:
            if envelope is not None:
                topics.append(envelope.topic)
            elif feed.live:
                break
        await client.close()
        return topics

    def four() -> list[str] | None:
        found = asyncio.run(lifecycle())
        return found if len(found) >= 4 else None

    topics = poll_for(four, 10, what="lifecycle")
    assert topics[:4] == [
        "sys.actor.counter.spawn",
        "sys.actor.counter.exit",
        "sys.actor.counter.restart",
        "sys.actor.counter.spawn",
    ]


@pytest.mark.slow  # about 7 s of blocking work
def test_blocking_work_offloaded_never_stops_heartbeats(hex_factory: HexFactory) -> None:
    hx = hex_factory(
        FAST_BUS
        + actor_toml(
            "busy", "actors.diag.actor:BusyActor", heartbeat_timeout_s=1.0, config={"work_s": 2.5}
        )
    ).start()
    pid = hx.pid("busy")

    async def ask(note: str) -> ProbeVolatile:
        client = BusClient(hx.endpoints, "boss")
        client.subscribe("probe.volatile.boss")
        await asyncio.sleep(0.3)
        client.publish_volatile(ProbeVolatile(n=0, note=note), key="busy", correlation="job")
        async for envelope, _ in client.volatile():
            if envelope.correlation == "job":
                await client.close()
                return envelope.body  # type: ignore[return-value]
        raise AssertionError("unreachable")

    thread_reply = asyncio.run(asyncio.wait_for(ask("thread"), 15))
    assert thread_reply.note == "done:thread" and thread_reply.n == pid
    process_reply = asyncio.run(asyncio.wait_for(ask("process"), 30))
    assert (
        process_reply.note == "done:process" and process_reply.n != pid
    )  # it ran in a child process
    status = hx.status()["busy"]
    assert status["pid"] == pid and status["restarts"] == 0


def test_actor_over_its_memory_limit_is_killed_and_restarted(hex_factory: HexFactory) -> None:
    hx = hex_factory(
        FAST_BUS
        + "[supervisor]\nstatus_interval_s = 0.2\n"
        + actor_toml(
            "hog",
            "actors.diag.actor:HogActor",
            memory_limit_mb=120,
            max_restarts=10,
            config={"grow_mb_per_s": 200},
        )
    ).start()
    first = hx.pid("hog")
    poll_for(lambda: hx.status()["hog"]["restarts"] >= 1, 20, what="hog restarted")
    assert hx.pid("hog") != first
    assert "memory: RSS" in hx.log() and "over memory_limit_mb = 120" in hx.log()


def test_gpu_limit_without_nvml_is_a_logged_note_not_a_failure(hex_factory: HexFactory) -> None:
    hx = hex_factory(
        FAST_BUS + actor_toml("counter", "actors.diag.actor:CounterActor", gpu_memory_limit_mb=1000)
    ).start()
    log = hx.log()
    if '"gpu.measured"' in log:
        pytest.skip("this machine has NVML; the limit is enforced instead")
    assert '"gpu.limits_skipped"' in log
    assert hx.status()["counter"]["state"] == "live"


@pytest.mark.slow
def test_two_restart_requests_at_once_never_run_two_processes(hex_factory: HexFactory) -> None:
    hx = hex_factory(FAST_BUS + actor_toml("counter", "actors.diag.actor:CounterActor")).start()
    first = hx.pid("counter")
    assert (
        hx.command("restart", "counter").ok and hx.command("restart", "counter").ok
    )  # the second mid-way
    poll_for(
        lambda: (
            hx.status()["counter"]["restarts"] == 2 and hx.status()["counter"]["state"] == "live"
        ),
        30,
        what="both restarts done",
    )
    time.sleep(0.5)
    status = hx.status()["counter"]
    assert status["state"] == "live" and status["pid"] != first
    alive = [p for p in hx.processes() if "CounterActor" in " ".join(p.cmdline())]
    assert len(alive) == 1, [p.pid for p in alive]
