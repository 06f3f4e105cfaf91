"""One plugin's runner process, seen from the host: started in the sandbox, asked one event at a
time with a deadline, killed (its whole process group) when it overruns or at the end.

Plain and blocking: the actor calls it through ``offload``, one call per plugin at a time.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from actors.plugins.runner import ERROR_CHARS, MAX_NOTES, NOTE_CHARS
from hexbus import sandbox

LINE_LIMIT = 64_000  # one answer, as JSON


class PluginFailure(Exception):
    """The plugin did not answer as it must (would not load, died, overran, spoke nonsense)."""


class Runner:
    def __init__(
        self,
        name: str,
        source: str,
        work: Path,
        limits: sandbox.SandboxLimits,
        hide: tuple[Path, ...] = (),
    ) -> None:
        self.name = name
        self.source = source
        self.work = work
        self.limits = limits
        self.hide = hide
        self.proc: Any = None
        self.topics: tuple[str, ...] = ()
        self.isolation = ""
        self._buffer = b""

    def start(self, timeout: float) -> tuple[str, ...]:
        """Start the runner on a fresh copy of the source; the topics it hears."""
        self.stop()
        # A fresh folder each start: nothing an earlier run left there is read or kept.
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        path = self.work / f"{self.name}.py"
        path.write_text(self.source, encoding="utf-8")
        try:
            self.proc, self.isolation = sandbox.popen(
                self.argv(path), self.work, self.limits, hide=self.hide
            )
        except sandbox.SandboxError as exc:
            raise PluginFailure(str(exc)) from None
        hello = self._read(time.monotonic() + timeout)
        if not hello.get("ready"):
            self.stop()
            raise PluginFailure(
                str(hello.get("error") or "it did not say it was ready")[:ERROR_CHARS]
            )
        topics = hello.get("topics")
        self.topics = tuple(str(t) for t in topics) if isinstance(topics, list) else ()
        return self.topics

    def argv(self, path: Path) -> list[str]:
        """The runner's command line (the host's tests give a runner that breaks the rules)."""
        return [sys.executable, "-I", "-m", "actors.plugins.runner", str(path)]

    def call(self, event: dict[str, Any], data: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One event; its answer (``ok``, ``notes``, ``data`` or ``error``)."""
        if self.proc is None:
            raise PluginFailure("it is not running")
        if self.proc.poll() is not None:
            words = self._last_words()
            self.stop()
            raise PluginFailure(f"it died{words}")
        deadline = time.monotonic() + timeout
        self._write(json.dumps({"event": event, "data": data}).encode() + b"\n", deadline)
        return _shape(self._read(deadline))

    def _write(self, line: bytes, deadline: float) -> None:
        """Hand it one request without ever blocking past ``deadline`` (a runner that stops
        reading its stdin is killed, not waited on)."""
        fd = self.proc.stdin.fileno()
        os.set_blocking(fd, False)
        while line:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                self.stop()
                raise PluginFailure("it stopped reading (killed)")
            try:
                line = line[os.write(fd, line) :]
            except BlockingIOError:
                continue
            except OSError:
                self.stop()
                raise PluginFailure("it died") from None

    def _read(self, deadline: float) -> dict[str, Any]:
        out = self.proc.stdout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([out], [], [], left)[0]:
                self.stop()
                raise PluginFailure("it took too long (killed)")
            chunk = os.read(out.fileno(), 65536)
            if not chunk:
                self.stop()
                raise PluginFailure(f"it died{self._last_words()}")
            self._buffer += chunk
            if len(self._buffer) > LINE_LIMIT:
                self.stop()
                raise PluginFailure(f"an answer over {LINE_LIMIT} bytes")
        line, self._buffer = self._buffer.split(b"\n", 1)
        if self._buffer:  # one line per request: more is a runner no longer keeping the rules
            self.stop()
            raise PluginFailure("it wrote more than its answer (killed)")
        try:
            answer = json.loads(line)
            if not isinstance(answer, dict):
                raise ValueError("not an object")
        except (ValueError, RecursionError):
            self.stop()
            raise PluginFailure("it wrote something that is not an answer") from None
        return answer

    def _last_words(self) -> str:
        try:
            log = sandbox.read_written(self.work / "sandbox.log", 4000, tail=True)
        except (OSError, ValueError):
            return ""
        said = log.decode("utf-8", "replace").strip().splitlines()
        return f": {said[-1][:200]}" if said else ""

    def stop(self) -> None:
        if self.proc is not None:
            sandbox.kill(self.proc)
            self.proc = None
        self._buffer = b""


def _shape(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer as the host uses it, whatever the runner wrote: ``ok``, at most three notes of
    200 characters, a dict of data, an error of 300 characters."""
    if answer.get("ok") is True:
        notes = answer.get("notes")
        data = answer.get("data")
        if isinstance(notes, list) and isinstance(data, dict):
            shaped = [str(n)[:NOTE_CHARS] for n in notes[:MAX_NOTES]]
            return {"ok": True, "notes": shaped, "data": data}
        return {"ok": False, "error": "its answer is malformed"}
    return {"ok": False, "error": str(answer.get("error", "no answer"))[:ERROR_CHARS]}
