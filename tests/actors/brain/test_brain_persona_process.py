"""The brain's persona and chat commands through the supervisor: versions, rollback, audit, chat,
and a person's own words switching a capability off for them.

Real processes, real sockets, SmolLM2-135M through llama.cpp. The model is weak, so
these tests assert structure and flow (chunks, sentences, final replies, metadata,
ordering, recovery), never wit.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from hexbus.bus import BusClient
from schemas import Event, Notice, Reply
from tests.support.brain import brain_toml, start_brain
from tests.support.brain_chat import BusChat, wait_for_value
from tests.support.harness import REPO, Hex, HexFactory, poll_for

pytestmark = [pytest.mark.process, pytest.mark.slow]


def test_persona_change_records_a_version_and_rollback_restores_it(hex_factory: HexFactory) -> None:
    hx = start_brain(hex_factory, extra="metadata = false")
    persona = hx.root / "persona.toml"
    original = persona.read_text()

    async def talk() -> None:
        async with BusChat(hx) as chat:
            persona.write_text(original.replace("chaotic", "CHAOTIC", 1))  # an edit, picked up live
            changed = await wait_for_value(
                lambda: chat.persona[-1] if chat.persona else None, 30, "persona change"
            )
            assert changed.version == 2 and not changed.error
            out = hx.cli("persona", "rollback", "1")
            assert out.returncode == 0, out.stderr
            rolled = await wait_for_value(
                lambda: next((p for p in chat.persona if "rollback" in p.note), None),
                30,
                "the rollback",
            )
            # A rollback is itself a version (3, with version 1's text), so it can be undone in turn.
            assert rolled.version == 3 and rolled.note == "rollback to 1" and not rolled.error
            assert persona.read_text() == original
            refused_before = len(chat.persona)
            assert hx.cli("persona", "rollback", "99").returncode == 0
            refused = await wait_for_value(
                lambda: (
                    chat.persona[refused_before] if len(chat.persona) > refused_before else None
                ),
                30,
                "the refusal",
            )
            assert refused.error and "99" in refused.error and refused.version == 3

    asyncio.run(talk())
    assert persona.read_text() == original


def test_hexbus_chat_with_a_pipe_prints_each_reply_and_exits(hex_factory: HexFactory) -> None:
    hx = start_brain(hex_factory, extra="metadata = false")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "hexbus.cli",
            "chat",
            "--run-dir",
            str(hx.run_dir),
            "--person",
            "ana",
        ],
        input="hello Hex\nwhat is 2 + 2?\n",
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) >= 2, out.stdout
    replies = [r for r in _journal_replies(hx) if r.platform == "console"]
    assert len(replies) == 2 and all(r.status == "complete" for r in replies)
    for reply in replies:
        assert reply.text.split()[0] in out.stdout


def _journal_replies(hx: Hex) -> list[Reply]:
    return [e for e in _journal(hx, "chat.reply") if isinstance(e, Reply)]


def test_persona_audit_runs_on_the_packaged_model_saves_reports_and_compares_them(
    tmp_path: Path,
) -> None:
    import json

    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    try:
        config = root / "supervisor.toml"
        config.write_text(brain_toml(root, extra="metadata = false"))

        def audit(*extra: str) -> tuple[dict[str, Any], Path]:
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "hexbus.cli",
                    "persona",
                    "audit",
                    "--config",
                    str(config),
                    "--limit",
                    "4",
                    *extra,
                ],
                capture_output=True,
                text=True,
                timeout=300,
                cwd=REPO,
            )
            assert out.returncode == 0, out.stderr
            report = Path(out.stderr.strip().splitlines()[-1].removeprefix("report saved to "))
            return json.loads(out.stdout), report

        first, first_report = audit()
        assert first["scenarios"] == 4 and set(first["pass_rate"]) >= {
            "name_not_denied",
            "hard_limits_kept",
            "no_denial_in_crisis",
            "length_adapted",
        }
        assert first["served_by"] == {"llamacpp": 4}
        saved = json.loads(first_report.read_text())
        assert len(saved["replies"]) == 4 and all(
            isinstance(r, str) for r in saved["replies"].values()
        )
        second, second_report = audit("--compare", str(first_report))
        assert second_report != first_report and "drift" in second
        assert {"pass_rate_delta", "changed"} <= set(second["drift"])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_person_saying_stop_messaging_me_first_switches_it_off_for_them(
    hex_factory: HexFactory,
) -> None:
    hx = start_brain(hex_factory, extra="metadata = false")
    out = subprocess.run(
        [sys.executable, "-m", "hexbus.cli", "chat", "--run-dir", str(hx.run_dir),
         "--person", "ana"],
        input="honestly, please stop messaging me first\n",
        capture_output=True, text=True, timeout=240, cwd=REPO,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr

    def switched() -> dict[str, bool] | None:
        table = json.loads(hx.cli("capability", "list", "--json").stdout)
        people: dict[str, bool] = next(c for c in table if c["name"] == "speak_first")["people"]
        return people or None

    people = poll_for(switched, 10, what="speak_first switched off for ana")
    (person,) = people
    assert people[person] is False and person.endswith("ana")
    notices = [n for n in _journal(hx, "chat.notice") if isinstance(n, Notice)]
    assert [n.kind for n in notices] == ["capability"]
    assert notices[0].text.startswith("Okay: I won't message you first anymore")
    # Everyone else is untouched, and the reply to the line was still written.
    ben = json.loads(hx.cli("capability", "list", "--json", "--person", "ben").stdout)
    assert next(c for c in ben if c["name"] == "speak_first")["enabled"] is False
    assert [r.status for r in _journal_replies(hx)] == ["complete"]


def _journal(hx: Hex, prefix: str) -> list[Event]:
    async def read() -> list[Event]:
        client = BusClient(hx.endpoints, "reader")
        feed = client.durable([prefix], after=0, wait_ms=0)
        found: list[Event] = []
        async for envelope, _ in feed:
            if envelope is None:
                if feed.live or feed.after >= feed.head:
                    break
                continue
            found.append(envelope.body)
        await client.close()
        return found

    return asyncio.run(read())
