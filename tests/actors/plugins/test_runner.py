"""A plugin's runner for real: a sandboxed process asked one event at a time, killed with its
whole group when it overruns, its limits biting, nothing it does reaching the host."""

from __future__ import annotations

import os
import sys
import threading
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


class Escaped(Runner):
    """A runner as a plugin that got past the first two walls would make it: any Python, in the
    sandbox. What the host does with it is the third wall's test."""

    def argv(self, path: Path) -> list[str]:
        return [sys.executable, "-I", str(path)]


HELLO = 'import sys, json, time\nprint(json.dumps({"ready": True, "topics": ["chat.message"]}), flush=True)\n'


def escaped(tmp_path: Path, body: str) -> Escaped:
    r = Escaped("x", HELLO + body, tmp_path / "run", RUNNER_LIMITS)
    r.start(30)
    return r


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("time.sleep(600)\n", "stopped reading"),  # its stdin fills: the host never blocks
        ("sys.stdin.readline()\nprint('{}\\n{}', flush=True)\ntime.sleep(600)\n", "more than"),
        ("sys.stdin.readline()\nprint('[' * 5000, flush=True)\ntime.sleep(600)\n", "not an answer"),
    ],
    ids=["not reading", "two answers", "deep nesting"],
)
@pytest.mark.slow
def test_a_runner_breaking_the_protocol_is_killed_never_waited_on(
    tmp_path: Path, body: str, why: str
) -> None:
    r = escaped(tmp_path, body)
    started = time.monotonic()
    with pytest.raises(PluginFailure, match=why):
        r.call({"text": "x" * 300_000}, {}, 2.0)
    assert time.monotonic() - started < 30 and r.proc is None


def test_a_runners_answer_is_reshaped_whatever_it_wrote(tmp_path: Path) -> None:
    body = (
        "sys.stdin.readline()\n"
        'print(json.dumps({"ok": True, "notes": {"a": 1}, "data": {}}), flush=True)\n'
        "sys.stdin.readline()\n"
        'print(json.dumps({"ok": False, "error": "e" * 60000}), flush=True)\n'
        "sys.stdin.readline()\n"
        'print(json.dumps({"ok": True, "notes": ["n" * 900] * 9, "data": {}}), flush=True)\n'
        "time.sleep(600)\n"
    )
    r = escaped(tmp_path, body)
    try:
        assert r.call({}, {}, 5) == {"ok": False, "error": "its answer is malformed"}
        assert len(r.call({}, {}, 5)["error"]) == 300
        assert r.call({}, {}, 5)["notes"] == ["n" * 200] * 3
    finally:
        r.stop()


def test_even_an_escaped_runner_writes_nowhere_and_its_tmpfs_is_small(tmp_path: Path) -> None:
    body = (
        "import os, errno\n"
        "sys.stdin.readline()\n"
        "found = []\n"
        "for path, size in ((os.getcwd() + '/x', 10), ('/tmp/big', 16 << 20), ('/etc/x', 10)):\n"
        "    try:\n"
        "        with open(path, 'wb') as f:\n"
        "            f.write(b'a' * size)\n"
        "        found.append(path + ': written')\n"
        "    except OSError as exc:\n"
        "        found.append(path + ': ' + errno.errorcode[exc.errno])\n"
        'print(json.dumps({"ok": True, "notes": found, "data": {}}), flush=True)\n'
        "time.sleep(600)\n"
    )
    if "bubblewrap" not in sandbox.available():
        pytest.skip("bubblewrap is not installed (scripts/test installs it)")
    r = escaped(tmp_path, body)
    try:
        notes = r.call({}, {}, 20)["notes"]
    finally:
        r.stop()
    assert notes[0].endswith("EROFS")  # its own folder is read-only to it
    assert notes[1].endswith(("ENOSPC", "EFBIG"))  # /tmp is a 4 MiB tmpfs (and files are 1 MiB)
    assert notes[2].endswith("EROFS")


def test_a_fifo_in_place_of_its_log_never_blocks_the_host(tmp_path: Path) -> None:
    r = runner(tmp_path, GREETER)
    r.start(30)
    log = r.work / "sandbox.log"
    log.unlink()
    os.mkfifo(log)
    os.kill(r.proc.pid, 9)
    r.proc.wait()
    outcome: list[BaseException] = []
    caller = threading.Thread(target=lambda: outcome.append(_failure(r)), daemon=True)
    caller.start()
    caller.join(20)
    assert not caller.is_alive(), "the host blocked on a FIFO"
    assert isinstance(outcome[0], PluginFailure) and "died" in str(outcome[0])


def _failure(r: Runner) -> BaseException:
    try:
        r.call({"person": "a", "name": "A", "text": "x"}, {}, 5)
    except PluginFailure as exc:
        return exc
    raise AssertionError("no failure")
