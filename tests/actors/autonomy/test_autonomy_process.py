"""Hex speaks first through real processes (supervisor, broker, brain on a real model, autonomy):
a dated event told in chat becomes her own message when it is due, and not while the person is
in quiet hours (her clock run ahead by a rehearsal offset and ``hexbus reload``); the person's
"stop messaging me first" switches it off for them and nothing she starts reaches them after;
the kill switch stops her initiative at once."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from hexbus.bus import BusClient
from schemas import ChatMessage, Reply
from tests.support.brain import brain_toml
from tests.support.harness import Hex, HexFactory, poll_for

pytestmark = [pytest.mark.process, pytest.mark.slow]

ANA = "discord:501"
UTC = dt.UTC


def autonomy_toml(offset_s: float) -> str:
    return (
        "[actors.autonomy]\n"
        'module = "actors.autonomy.actor:AutonomyActor"\n'
        "[actors.autonomy.config]\n"
        "tick_s = 0.2\n"
        f"clock_offset_s = {offset_s:.1f}\n"
        "[actors.autonomy.config.pacing]\n"
        'quiet = "22:00-09:00"\n'
        'timezone = "UTC"\n'
        "after_activity_s = 60\n"
    )


def run_ahead(hx: Hex, base: str, to: dt.datetime) -> None:
    """Run her clock ahead to ``to`` (a rehearsal), through supervisor.toml and a reload."""
    old = hx.pid("autonomy")
    hx.config_path.write_text(base + autonomy_toml(to.timestamp() - time.time()))
    reloaded = hx.cli("reload", timeout=60)
    assert reloaded.returncode == 0, reloaded.stderr
    hx.wait_restarted("autonomy", old)
    hx.wait_state({"autonomy": "live"})


def why(hx: Hex) -> dict[str, Any]:
    out = hx.cli("autonomy", "why", "--json")
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def waiting(report: dict[str, Any]) -> dict[str, str]:
    """Waiting candidates' kinds of message ("due-after", ...) → why each is silent."""
    return {
        w["candidate"].split(":", 1)[0]: w["verdict"] for w in report["lines"] if not w["dropped"]
    }


def report_with(hx: Hex, kind: str, since: dt.datetime) -> dict[str, Any] | None:
    """The report, once a candidate of ``kind`` waits in it with a verdict her clock reached at
    ``since`` or later (the snapshot's verdicts are older: a round at the new time has run)."""
    report = why(hx)
    fresh = [
        w
        for w in report["lines"]
        if not w["dropped"] and w["candidate"].startswith(kind) and w["at"] >= since.timestamp()
    ]
    return report if fresh else None


class OnTheJournal:
    """Every chat.message and chat.reply on the journal, from the start."""

    def __init__(self, hx: Hex) -> None:
        self.hx = hx
        self.messages: list[ChatMessage] = []
        self.ids: list[str] = []
        self.replies: dict[str, Reply] = {}

    def initiatives(self) -> list[tuple[str, ChatMessage]]:
        return [(i, m) for i, m in zip(self.ids, self.messages, strict=True) if m.initiative]

    async def read(self, seconds: float) -> None:
        client = BusClient(self.hx.endpoints, "autonomy-tester")
        client.start()
        try:
            self.messages, self.ids, self.replies = [], [], {}
            feed = client.durable(["chat.message", "chat.reply"], after=0, wait_ms=200)
            deadline = time.monotonic() + seconds
            async for envelope, _ in feed:
                if envelope is not None and isinstance(envelope.body, ChatMessage):
                    self.messages.append(envelope.body)
                    self.ids.append(envelope.id)
                elif envelope is not None and isinstance(envelope.body, Reply):
                    self.replies[envelope.body.reply_to] = envelope.body
                if time.monotonic() > deadline:
                    break
        finally:
            await client.close()

    def until(self, done: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            asyncio.run(self.read(1.0))
            if done(self):
                return
            assert time.monotonic() < deadline, f"timed out waiting for {what}"


async def tell(hx: Hex, text: str) -> str:
    client = BusClient(hx.endpoints, "ana")
    client.start()
    try:
        envelope = await client.publish_durable(
            ChatMessage(
                platform="discord",
                person_id=ANA,
                display_name="Ana",
                channel="9001",
                text=text,
                direct=True,
            ),
            key="discord",
        )
        assert await client.flush(10)
        return envelope.id
    finally:
        await client.close()


def test_a_dated_event_is_followed_up_when_due_never_in_quiet_hours_and_a_veto_holds(
    hex_factory: HexFactory,
) -> None:
    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))  # ipc paths stay short
    base = brain_toml(root)
    hx = hex_factory(base + autonomy_toml(0.0), root=root).start()
    heard = OnTheJournal(hx)
    on = hx.cli("capability", "enable", "speak_first")
    assert on.returncode == 0, on.stderr

    told = asyncio.run(tell(hx, "I have my driving test tomorrow, wish me luck"))
    heard.until(lambda h: told in h.replies, 180, "the brain's reply to Ana")
    tomorrow = dt.datetime.now(UTC).date() + dt.timedelta(days=1)

    # The evening after the test, 23:30: in her quiet hours. Nothing goes; she says why.
    night = dt.datetime.combine(tomorrow, dt.time(23, 30), UTC)
    run_ahead(hx, base, night)
    report = poll_for(lambda: report_with(hx, "due-after", night), 30, what="the follow-up held")
    assert waiting(report) == {"due-after": "quiet hours until 09:00"}, report
    dropped = {
        w["candidate"].split(":", 1)[0]: w["verdict"] for w in report["lines"] if w["dropped"]
    }
    assert dropped == {"due-before": "expired"}  # the morning's "good luck" had its window
    time.sleep(1.0)  # five rounds
    asyncio.run(heard.read(1.0))
    assert not heard.initiatives()

    # The next morning, 09:30: she asks how it went, through the brain, to where Ana talked.
    run_ahead(hx, base, dt.datetime.combine(tomorrow + dt.timedelta(days=1), dt.time(9, 30), UTC))
    heard.until(lambda h: any(i in h.replies for i, _ in h.initiatives()), 180, "her own message")
    ((opening_id, opening),) = heard.initiatives()
    assert opening.person_id == ANA and opening.channel == "9001" and opening.platform == "discord"
    assert "how it went" in opening.initiative and "driving test" in opening.text
    said = heard.replies[opening_id]
    assert said.status == "complete" and said.text.strip() and said.channel == "9001"
    # Unanswered, it gets its one gentle follow-up, a day later.
    assert list(waiting(why(hx))) == ["followup"]

    # Ana: "stop messaging me first". The brain turns her switch off; what she tells Hex next
    # waits, switched off, and nothing Hex starts reaches her, however far her clock runs.
    veto = asyncio.run(tell(hx, "Please stop messaging me first."))
    heard.until(lambda h: veto in h.replies, 180, "the answer to the veto")
    listed = hx.cli("capability", "list", "--person", ANA, "--json")
    switches = {c["name"]: c["enabled"] for c in json.loads(listed.stdout)}
    assert switches["speak_first"] is False, switches
    exam = asyncio.run(tell(hx, "My exam is the day after tomorrow."))
    heard.until(lambda h: exam in h.replies, 180, "the answer about the exam")
    later = dt.datetime.combine(tomorrow + dt.timedelta(days=3), dt.time(19, 0), UTC)
    run_ahead(hx, base, later)
    report = poll_for(lambda: report_with(hx, "due-after", later), 30, what="the exam's follow-up")
    verdicts = [w["verdict"] for w in report["lines"]]
    assert any(re.search(r"switched off", v) for v in verdicts), report
    time.sleep(1.0)
    asyncio.run(heard.read(1.0))
    assert len(heard.initiatives()) == 1

    # The kill switch: her initiative stops with every actor.
    stopped = hx.cli("killswitch")
    assert stopped.returncode == 0, stopped.stderr
    poll_for(
        lambda: hx.status().get("autonomy", {}).get("state") not in ("live", "starting"),
        20,
        what="autonomy stopped by the kill switch",
    )
