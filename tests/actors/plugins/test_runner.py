"""A plugin's runner for real: a sandboxed process asked one event at a time, killed with its
whole group when it overruns, its limits biting, nothing it does reaching the host."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

from actors.plugins.config import RUNNER_LIMITS
from actors.plugins.host import PluginFailure, Runner
from hexbus import sandbox

GREETER = """
TOPICS = ("chat.message",)


def react(event, hex):
    seen = hex.data.setdefault("seen", {})
    seen[event["person"]] = seen.get(event["person"], 0) + 1
    if "good morning" in event["text"].lower():
        hex.note(f"{event['name']} says good morning, message {seen[event['person']]}")
    print("printed lines go to the log, never to the host")
"""


def runner(tmp_path: Path, source: str) -> Runner:
    return Runner("p", source, tmp_path / "run", RUNNER_LIMITS)


def test_events_in_notes_and_data_out(tmp_path: Path) -> None:
    r = runner(tmp_path, GREETER)
    try:
        assert r.start(30) == ("chat.message",)
        assert r.isolation == sandbox.available()[0]
        event = {"person": "ana", "name": "Ana", "text": "Good morning, Hex!"}
        first = r.call(event, {}, 5)
        assert first == {
            "ok": True,
            "notes": ["Ana says good morning, message 1"],
            "data": {"seen": {"ana": 1}},
        }
        again = r.call(event, first["data"], 5)
        assert again["notes"] == ["Ana says good morning, message 2"]
        broken = r.call({"text": "no person"}, {}, 5)  # it raises: an answer, the runner goes on
        assert broken["ok"] is False and "KeyError" in broken["error"]
        assert r.call(event, {}, 5)["ok"]
    finally:
        r.stop()


def test_an_endless_plugin_is_killed_with_everything_it_started(tmp_path: Path) -> None:
    r = runner(
        tmp_path,
        'TOPICS = ("chat.message",)\n\ndef react(event, hex):\n    while True:\n        pass\n',
    )
    r.start(30)
    pid = r.proc.pid
    started = time.monotonic()
    with pytest.raises(PluginFailure, match="too long"):
        r.call({"text": "hi"}, {}, 1.0)
    assert time.monotonic() - started < 30
    assert r.proc is None and not psutil.pid_exists(pid)
    leftovers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(tmp_path) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []


def test_memory_and_data_limits_are_answers_not_crashes(tmp_path: Path) -> None:
    source = (
        'TOPICS = ("chat.message",)\n\n'
        "def react(event, hex):\n"
        '    if event["text"] == "big":\n'
        '        hex.data["x"] = "a" * 20000\n'
        '    elif event["text"] == "huge":\n'
        '        s = "a" * (4 * 1024 ** 3)\n'
    )
    r = runner(tmp_path, source)
    try:
        r.start(30)
        big = r.call({"text": "big"}, {}, 5)
        assert big["ok"] is False and "over 16000 bytes" in big["error"]
        huge = r.call({"text": "huge"}, {}, 10)  # past its address space: MemoryError, answered
        assert huge["ok"] is False and "MemoryError" in huge["error"]
        assert r.call({"text": "fine"}, {}, 5)["ok"]
    finally:
        r.stop()


def test_a_refused_plugin_never_starts(tmp_path: Path) -> None:
    r = runner(
        tmp_path, 'import os\nTOPICS = ("chat.message",)\ndef react(e, h):\n    os.killpg(0, 9)\n'
    )
    with pytest.raises(PluginFailure, match="imports os"):
        r.start(30)
    assert r.proc is None


def test_its_log_replaced_by_a_link_leaks_nothing(tmp_path: Path) -> None:
    """A runner that dies after its log became a link to a secret: the reason read back names
    nothing from the secret (the log is read without following links)."""
    secret = tmp_path / "secret"
    secret.write_text("TOKEN=hunter2\n")
    r = runner(tmp_path, GREETER)
    r.start(30)
    log = r.work / "sandbox.log"
    log.unlink()
    os.symlink(secret, log)
    os.kill(r.proc.pid, 9)
    r.proc.wait()
    with pytest.raises(PluginFailure) as failed:
        r.call({"person": "a", "name": "A", "text": "x"}, {}, 5)
    assert "hunter2" not in str(failed.value)
