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
        argv = [sys.executable, "-I", "-m", "actors.plugins.runner", str(path)]
        try:
            self.proc, self.isolation = sandbox.popen(argv, self.work, self.limits, hide=self.hide)
        except sandbox.SandboxError as exc:
            raise PluginFailure(str(exc)) from None
        hello = self._read(time.monotonic() + timeout)
        if not hello.get("ready"):
            self.stop()
            raise PluginFailure(str(hello.get("error") or "it did not say it was ready"))
        self.topics = tuple(str(t) for t in hello.get("topics", ()))
        return self.topics

    def call(self, event: dict[str, Any], data: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One event; its answer (``ok``, ``notes``, ``data`` or ``error``)."""
        if self.proc is None:
            raise PluginFailure("it is not running")
        if self.proc.poll() is not None:
            words = self._last_words()
            self.stop()
            raise PluginFailure(f"it died{words}")
        line = json.dumps({"event": event, "data": data}).encode() + b"\n"
        try:
            self.proc.stdin.write(line)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.stop()
            raise PluginFailure("it died") from None
        return self._read(time.monotonic() + timeout)

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
        try:
            answer = json.loads(line)
            if not isinstance(answer, dict):
                raise ValueError("not an object")
        except ValueError:
            self.stop()
            raise PluginFailure("it wrote something that is not an answer") from None
        return answer

    def _last_words(self) -> str:
        try:  # never through a link the plugin may have left in the log's place
            fd = os.open(self.work / "sandbox.log", os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as f:
                said = f.read(64_000).decode("utf-8", "replace").strip().splitlines()
        except OSError:
            return ""
        return f": {said[-1][:200]}" if said else ""

    def stop(self) -> None:
        if self.proc is not None:
            sandbox.kill(self.proc)
            self.proc = None
        self._buffer = b""
