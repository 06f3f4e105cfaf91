"""The hexbus command line against a real running Hex."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hexbus.bus import BusClient
from schemas import CapabilityChanged, Event
from tests.support.harness import FAST_BUS, REPO, Hex, HexFactory, actor_toml, poll_for

pytestmark = pytest.mark.process

MESSAGE = json.dumps(
    {
        "platform": "console",
        "person_id": "me",
        "display_name": "Me",
        "channel": "c1",
        "text": "hello",
    }
)


def test_status_json_is_keyed_by_actor_with_pid_state_restarts(hex_factory: HexFactory) -> None:
    hx = hex_factory(FAST_BUS + actor_toml("echo", "actors.diag.actor:EchoActor")).start()
    out = hx.cli("status", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) == {"broker", "echo"}
    for entry in data.values():
        assert entry["pid"] > 0 and entry["state"] == "live" and entry["restarts"] == 0
        assert {
            "uptime_s",
            "rss_bytes",
            "last_heartbeat_s",
            "events_in",
            "events_out",
            "dropped",
        } <= set(entry)
    table = hx.cli("status").stdout.splitlines()
    assert table[0].split() == [
        "ACTOR",
        "PID",
        "STATE",
        "UPTIME",
        "RESTARTS",
        "RSS",
        "HEARTBEAT",
        "IN",
        "OUT",
        "DROPPED",
        "WORK",
        "DETAIL",
    ]
    assert any(line.startswith("echo ") and " live " in line for line in table)


@pytest.mark.slow
def test_send_validates_against_the_schema_and_tail_shows_the_conversation(
    hex_factory: HexFactory,
) -> None:
    hx = hex_factory(FAST_BUS + actor_toml("echo", "actors.diag.actor:EchoActor")).start()
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hexbus.cli",
            "tail",
            "chat",
            "--run-dir",
            str(hx.run_dir),
            "--count",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    ) as tail:

        def sent_and_seen() -> bool:
            out = hx.cli("send", "chat.message.console", MESSAGE)
            assert out.returncode == 0, out.stderr
            assert "durable, acknowledged" in out.stdout
            return tail.poll() is not None  # tail exits after two lines: the message and its ack

        poll_for(sent_and_seen, 20, interval=0.2, what="tail to print the message and its ack")
        lines = (tail.stdout.read() if tail.stdout else "").splitlines()
    # tail may subscribe between one send's message and its ack, so the order of the two lines varies.
    messages = [line for line in lines if line.split()[1] == "chat.message.console"]
    acks = [line for line in lines if line.split()[1] == "chat.ack"]
    assert len(lines) == 2 and messages and acks, lines
    assert '"text":"hello"' in messages[0]
    assert " @" in messages[0]  # durable events show their journal offset
    assert "<echo>" in acks[0]


@pytest.mark.slow
def test_send_rejects_bad_events_with_one_clear_line(hex_factory: HexFactory) -> None:
    hx = hex_factory(FAST_BUS).start()
    cases = {
        ("chat.message", '{"text": "no platform"}'): "Object missing required field `platform`",
        ("chat.message", "{not json"): "not valid JSON",
        ("nonsense.topic", "{}"): "no event type for topic 'nonsense.topic'",
        (
            "chat.message",
            '{"platform": "irc", "person_id": "a", "display_name": "a", "channel": "c",'
            ' "text": "x"}',
        ): "Invalid enum value 'irc'",
    }
    for (topic, body), expected in cases.items():
        out = hx.cli("send", topic, body)
        assert out.returncode == 2, (topic, body, out)
        assert out.stderr.count("\n") == 1 and out.stderr.startswith("hexbus: ")
        assert expected in out.stderr


def test_tail_shows_blob_sizes_not_bytes_and_json_mode(hex_factory: HexFactory) -> None:
    import asyncio

    from hexbus.bus import BusClient
    from schemas import ProbeVolatile

    hx = hex_factory(FAST_BUS).start()
    tail = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hexbus.cli",
            "tail",
            "probe",
            "--json",
            "--run-dir",
            str(hx.run_dir),
            "--count",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )

    async def flood() -> None:
        client = BusClient(hx.endpoints, "blobber")
        for n in range(100):
            client.publish_volatile(ProbeVolatile(n=n), key="x", blob=b"\x00" * 70_000)
            await asyncio.sleep(0.05)
            if tail.poll() is not None:
                break
        await client.close()

    try:
        asyncio.run(flood())
        out, _ = tail.communicate(timeout=10)
    finally:
        if tail.poll() is None:  # not left running into a later test's ResourceWarning
            tail.kill()
            tail.communicate()
    record = json.loads(out.splitlines()[0])
    assert record["topic"] == "probe.volatile.x" and record["blob_bytes"] == 70_000
    assert record["body"]["type"] == "probe.volatile"


def test_commands_without_a_running_hex_say_how_to_start_one(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hexbus.cli", "status", "--run-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    assert out.returncode == 1
    assert "no Hex is running" in out.stderr and "hexbus run supervisor.toml" in out.stderr


def test_second_supervisor_on_the_same_run_dir_is_refused(hex_factory: HexFactory) -> None:
    hx = hex_factory(FAST_BUS).start()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "hexbus.cli",
            "run",
            str(hx.config_path),
            "--run-dir",
            str(hx.run_dir),
            "--data-dir",
            str(hx.root / "other"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    assert out.returncode == 2
    assert "already running" in out.stderr and "--run-dir" in out.stderr
    assert hx.status()["broker"]["state"] == "live"


@pytest.mark.slow  # a few seconds of real processes
def test_killswitch_stops_every_actor_but_the_kept_ones_until_each_is_restarted(
    hex_factory: HexFactory,
) -> None:
    hx = hex_factory(
        FAST_BUS
        + actor_toml("echo", "actors.diag.actor:EchoActor")
        + actor_toml("counter", "actors.diag.actor:CounterActor")
        + actor_toml("sink", "actors.diag.actor:SinkActor")
    ).start()
    out = hx.cli("killswitch", "--keep", "echo", timeout=60)
    assert out.returncode == 0, out.stderr
    assert "stopped counter, sink" in out.stdout and "hexbus restart" in out.stdout
    status = hx.status()
    assert status["counter"]["state"] == "stopped" and status["sink"]["state"] == "stopped"
    assert "kill switch" in status["counter"]["reason"]
    assert status["echo"]["state"] == "live" and status["broker"]["state"] == "live"
    time.sleep(1.0)  # nothing brings them back by itself
    assert hx.status()["counter"]["state"] == "stopped"
    assert hx.cli("restart", "counter", "--wait", "10").returncode == 0
    assert hx.status()["counter"]["state"] == "live"
    bad = hx.cli("killswitch", "--keep", "nobody")
    assert bad.returncode != 0 and "no actor named nobody" in bad.stderr


async def first_durable(hx: Hex, prefix: str) -> Event:
    """The first durable event under ``prefix`` in the journal."""
    client = BusClient(hx.endpoints, "journal-reader")
    try:
        async for envelope, _ in client.durable([prefix], after=0, wait_ms=200):
            if envelope is not None:
                return envelope.body
        raise AssertionError("the feed ended")
    finally:
        await client.close()


@pytest.mark.slow  # two supervisor starts
def test_capability_switches_are_listed_set_refused_kept_and_announced(
    hex_factory: HexFactory,
) -> None:
    from hexbus.control import ControlRequest, call

    hx = hex_factory(FAST_BUS + actor_toml("echo", "actors.diag.actor:EchoActor")).start()
    listed = json.loads(hx.cli("capability", "list", "--json").stdout)
    by_name = {c["name"]: c for c in listed}
    assert by_name["camera"]["enabled"] is False and by_name["answer"]["enabled"] is True
    assert all({"name", "enabled", "default", "description"} <= set(c) for c in listed)
    # Off under an off parent is not "off against its default": no note until an owner sets one.
    assert "(default" not in hx.cli("capability", "list").stdout
    out = hx.cli("capability", "enable", "speak_first")
    assert out.returncode == 0 and out.stdout.strip() == "speak_first is on for everyone"
    announced = asyncio.run(first_durable(hx, "capability.changed"))
    assert isinstance(announced, CapabilityChanged)
    assert (announced.name, announced.enabled, announced.via) == ("speak_first", True, "cli")
    assert [(s.name, s.enabled) for s in announced.switches] == [("speak_first", True)]
    out = hx.cli("capability", "disable", "speak_first.discord", "--person", "ana")
    assert out.stdout.strip() == "speak_first.discord is off for ana"
    mine = json.loads(hx.cli("capability", "list", "--json", "--person", "ana").stdout)
    assert {c["name"]: c["enabled"] for c in mine}["speak_first.discord"] is False
    text = hx.cli("capability", "list").stdout
    assert "on   speak_first " in text and "ana off" in text, text
    assert "(default off)" in next(line for line in text.splitlines() if " speak_first " in line)

    # An interface asking for someone who is not an owner: only their own "off".
    def ask(**fields: object) -> object:
        return call(hx.endpoints.control, ControlRequest(cmd="capability", **fields), timeout=10)  # type: ignore[arg-type]

    refused = ask(capability="camera", enabled=True, by="ben", via="discord", owner=False)
    assert not refused.ok and refused.error == "only an owner may switch camera for everyone"  # type: ignore[attr-defined]
    allowed = ask(capability="speak_first", enabled=False, person="ben", by="ben", owner=False)
    assert allowed.ok  # type: ignore[attr-defined]
    unknown = hx.cli("capability", "enable", "telepathy")
    assert unknown.returncode == 1 and "no capability 'telepathy'" in unknown.stderr

    # Kept across a restart of the whole of Hex.
    assert hx.stop() == 0
    hx.start()
    again = {c["name"]: c for c in json.loads(hx.cli("capability", "list", "--json").stdout)}
    assert again["speak_first"]["enabled"] is True
    assert again["speak_first"]["people"] == {"ben": False}
    assert again["speak_first.discord"]["people"] == {"ana": False}

    # A damaged file stops the start with one line naming it, never a silent reset.
    assert hx.stop() == 0
    (hx.data_dir / "capabilities.json").write_text("{oops")
    hx.start(wait_live=False)
    assert hx.proc is not None and hx.proc.wait(timeout=30) != 0
    assert "capabilities.json is damaged" in hx.log()
