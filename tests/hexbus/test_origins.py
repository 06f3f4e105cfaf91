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

from hexbus import codec
from hexbus.bus import BusClient, BusRefused
from hexbus.codec import Envelope, RejectedFrame
from hexbus.config import ConfigError, parse
from hexbus.keys import AllowList, add_host, create_keys
from hexbus.origins import Origins
from schemas import (
    ChatMessage,
    DeadLetter,
    MemoryExport,
    MemoryForget,
    ProbeDurable,
    ProbeVolatile,
    Stop,
    privileged,
)
from tests.hexbus.test_keys import ZapRecorder
from tests.hexbus.test_security import COUNTER, free_port_base, keys_command, make_keys, tcp_bus
from tests.support.harness import Hex

pytestmark = pytest.mark.process

SPEECH = ChatMessage(
    platform="discord", person_id="discord:7", display_name="ana", channel="c1", text="hello"
)


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


def test_a_privileged_origin_must_be_a_host_name_and_a_grant_a_privileged_family() -> None:
    with pytest.raises(ConfigError, match=r"privileged_origins.*not a host name"):
        parse('[bus]\nprivileged_origins = ["local", "../gpu"]\n', source="x.toml")
    with pytest.raises(ConfigError, match=r"origin_grants.gpu1: 'stt.final' is not a privileged"):
        parse('[bus]\norigin_grants = { gpu1 = ["stt.final"] }\n', source="x.toml")


def envelope(event: object, session: int = 7, topic: str = "") -> Envelope:
    made = codec.make_envelope(event, event_id="e1", source="stt", session=session, seq=1)  # type: ignore[arg-type]
    return msgspec.structs.replace(made, topic=topic) if topic else made


def test_a_grant_opens_one_family_and_a_letter_carries_only_what_its_origin_may_send() -> None:
    origins = Origins(["local"], {"gpu1": ("chat.message",)})
    speech = ChatMessage(
        platform="discord", person_id="discord:1", display_name="a", channel="c", text="hi"
    )
    origins.check("gpu1", envelope(speech))  # granted
    with pytest.raises(RejectedFrame, match=r"origin gpu2 may not publish chat\.message"):
        origins.check("gpu2", envelope(speech, session=8))
    # A dead letter is not privileged, but `hexbus deadletter retry` applies what it carries.
    forget = codec.encode(envelope(MemoryForget(person_id="discord:1", by="owner"), session=9))
    letter = DeadLetter(
        actor="memory", event_id="x", offset=1, topic="memory.forget", envelope=forget
    )
    with pytest.raises(RejectedFrame, match=r"a letter of memory\.forget"):
        origins.check("gpu1", envelope(letter, session=10))
    origins.check("local", envelope(letter, session=11))
    # Deduplication is by session: nobody writes (or uses up numbers) in another's.
    origins.check("local", envelope(ProbeDurable(n=1), session=12))
    with pytest.raises(RejectedFrame, match="session c belongs to local"):
        origins.check("gpu1", envelope(ProbeDurable(n=1), session=12))
    assert not origins.owns("gpu1", 12) and origins.owns("local", 12)
    # On the volatile lanes a durable family comes only from the broker (observers trust it).
    assert not origins.allows_volatile("gpu1", "stt.final.discord")
    assert origins.allows_volatile("gpu1", "stt.partial.discord")
    assert origins.allows_volatile("local", "stt.final.discord")
    assert not origins.allows("gpu1", "audio." + "x" * 300)  # never a cache entry


def test_this_hosts_own_key_is_local_and_a_renamed_key_is_a_revocation(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "clients").mkdir()
    zmq_auth = pytest.importorskip("zmq.auth")
    zmq_auth.create_certificates(str(keys), "server")
    zmq_auth.create_certificates(str(keys), "client")
    shutil.copyfile(keys / "client.key", keys / "clients" / "client.key")
    own = zmq_auth.load_certificate(str(keys / "client.key"))[0]
    # An earlier folder, not upgraded: its shared client key is this host's.
    assert AllowList(str(keys), ZapRecorder()).names[own] == "local"
    create_keys(keys)  # upgraded: hosts/local.key and hosts/client.key hold the same key
    hosts = AllowList(str(keys), ZapRecorder())
    assert hosts.names[own] == "local"
    add_host(keys, "gpu1")
    assert hosts.revoked() == []
    gpu = zmq_auth.load_certificate(str(keys / "hosts" / "gpu1.key"))[0]
    assert hosts.names[gpu] == "gpu1"
    (keys / "hosts" / "gpu1.key").rename(keys / "hosts" / "laptop.key")
    assert hosts.revoked() == [gpu.decode()]  # its connections still carry the old name
    assert hosts.names[gpu] == "laptop"


@pytest.mark.slow
def test_a_host_admitted_for_speech_cannot_stop_actors_or_touch_memory(
    hex_factory: Callable[[str], Hex], tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    assert make_keys(keys).returncode == 0
    assert keys_command("add-host", "gpu1", str(keys)).returncode == 0
    gpu = tmp_path / "on-the-gpu-host"
    shutil.copytree(keys / "export" / "gpu1", gpu)
    grants = 'origin_grants = { gpu1 = ["chat.message"] }\n'  # stt there: speech is a message
    hx = hex_factory(tcp_bus(free_port_base(), curve_dir=str(keys)) + grants + COUNTER).start()
    counter = hx.pid("counter")
    here = hx.endpoints
    there = msgspec.structs.replace(here, curve_dir=str(gpu))

    async def go() -> tuple[list[BusRefused], list[Envelope]]:
        watcher = BusClient(here, "watcher")
        for prefix in ("probe", "sys.control", "memory", "chat.message"):
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
            await stt.publish(SPEECH, key="discord")  # granted
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
                # A durable family sent on the volatile lane, as if it were the broker's copy.
                forged = msgspec.structs.replace(stt.envelope(ProbeDurable(n=99)), origin="local")
                stt.pub.send_multipart(codec.message_frames(forged))
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
    assert from_stt == {"ProbeDurable", "ProbeVolatile", "ChatMessage"}, from_stt
    assert [e.origin for e in heard if isinstance(e.body, ChatMessage)] == ["gpu1"]
    assert 99 not in durable
    assert any(isinstance(e.body, ProbeVolatile) and e.source == "cli" for e in heard)
    assert hx.pid("counter") == counter and hx.status()["counter"]["restarts"] == 0
    assert '"bus.origin_refused"' in hx.log()
