"""Authenticated origins (issue 13, item 7): the broker stamps each durable event with the host
that published it, and honours control, memory, chat and persona requests only from the hosts
allowed to make them, on the durable path and the volatile one alike."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from hexbus.bus import BusClient, BusRefused
from hexbus.codec import Envelope
from hexbus.config import ConfigError, parse
from schemas import (
    MemoryExport,
    MemoryForget,
    ProbeDurable,
    ProbeVolatile,
    Stop,
    privileged,
)
from tests.hexbus.test_security import COUNTER, free_port_base, keys_command, make_keys, tcp_bus
from tests.support.harness import Hex

pytestmark = pytest.mark.process


def test_privileged_families_are_control_memory_chat_and_persona() -> None:
    for topic in (
        "sys.control.stop.brain",
        "sys.redrive",
        "memory.forget",
        "memory.export",
        "memory.query",
        "chat.message.discord",
        "chat.meta",
        "brain.persona",
    ):
        assert privileged(topic), topic
    for topic in ("stt.final", "stt.segment", "audio.out.discord", "tts.speaking", "chat.bargein"):
        assert not privileged(topic), topic
    assert not privileged("memoryx.forget") and not privileged("sys.controlled")


def test_a_privileged_origin_must_be_a_host_name() -> None:
    with pytest.raises(ConfigError, match=r"privileged_origins.*not a host name"):
        parse('[bus]\nprivileged_origins = ["local", "../gpu"]\n', source="x.toml")


@pytest.mark.slow
def test_a_host_admitted_for_speech_cannot_stop_actors_or_touch_memory(
    hex_factory: Callable[[str], Hex], tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    assert make_keys(keys).returncode == 0
    assert keys_command("add-host", "gpu1", str(keys)).returncode == 0
    gpu = tmp_path / "on-the-gpu-host"
    shutil.copytree(keys / "export" / "gpu1", gpu)
    hx = hex_factory(tcp_bus(free_port_base(), curve_dir=str(keys)) + COUNTER).start()
    counter = hx.pid("counter")
    here = hx.endpoints
    there = msgspec.structs.replace(here, curve_dir=str(gpu))

    async def go() -> tuple[list[BusRefused], list[Envelope]]:
        watcher = BusClient(here, "watcher")
        for prefix in ("probe", "sys.control", "memory"):
            watcher.subscribe(prefix)
        heard: list[Envelope] = []

        async def listen() -> None:
            async for envelope, _ in watcher.volatile():
                heard.append(envelope)

        listening = asyncio.ensure_future(listen())
        stt = BusClient(there, "stt")
        stt.start()
        refused: list[BusRefused] = []
        stt.on_refused(refused.append)
        owner = BusClient(here, "cli")
        owner.start()
        try:
            await asyncio.sleep(0.3)  # subscriptions reach the broker
            # Durable: a forget request in the owner's name is refused with the reason, the
            # speech host's own events go on, and the owner's request from here is taken.
            await stt.publish(MemoryForget(person_id="discord:42", by="discord:owner"))
            await stt.publish(ProbeDurable(n=1))
            assert await stt.flush(15), "a refused request stalled the speech host"
            await owner.publish(MemoryForget(ids=("m1",), by="owner"))
            await owner.publish(ProbeDurable(n=2))
            assert await owner.flush(15)
            # Volatile: each round a stop and an export request, then a probe, on one
            # connection (in order): once a probe arrives, the requests before it would have.
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not any(
                e.source == "stt" and isinstance(e.body, ProbeVolatile) for e in heard
            ):
                stt.publish_volatile(Stop(target="counter", reason="rogue"), key="counter")
                stt.publish_volatile(MemoryExport())
                stt.publish_volatile(ProbeVolatile(n=3))
                await asyncio.sleep(0.1)
            owner.publish_volatile(ProbeVolatile(n=4))
            await asyncio.sleep(0.5)
        finally:
            listening.cancel()
            for client in (stt, owner, watcher):
                await client.close()
        return refused, heard

    refused, heard = asyncio.run(go())
    assert [r.topic for r in refused] == ["memory.forget"]
    assert "origin gpu1 may not publish memory.forget" in refused[0].reason
    durable = {e.body.n: e.origin for e in heard if isinstance(e.body, ProbeDurable)}
    assert durable == {1: "gpu1", 2: "local"}
    forgets = [e for e in heard if isinstance(e.body, MemoryForget)]
    assert [(e.source, e.origin) for e in forgets] == [("cli", "local")]
    from_stt = {type(e.body).__name__ for e in heard if e.source == "stt"}
    assert from_stt == {"ProbeDurable", "ProbeVolatile"}, from_stt
    assert any(isinstance(e.body, ProbeVolatile) and e.source == "cli" for e in heard)
    assert hx.pid("counter") == counter and hx.status()["counter"]["restarts"] == 0
    assert '"bus.origin_refused"' in hx.log()
