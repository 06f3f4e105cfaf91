"""A real Hex for integration tests: `hexbus run` in a subprocess, on ipc:// in a short temp folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil

from hexbus.config import parse
from hexbus.control import ControlRequest, SupervisorUnreachable, call
from hexbus.endpoints import Endpoints, endpoints

T = TypeVar("T")
HexFactory = Callable[..., "Hex"]  # the hex_factory fixture: make(config, root=None) -> Hex

REPO = Path(__file__).resolve().parents[2]


def poll_for(
    predicate: Callable[[], T | None], timeout: float, interval: float = 0.05, what: str = ""
) -> T:
    """Poll until ``predicate`` returns something truthy; fail the test with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what or predicate} (last: {last!r})"
    )


FAST_BUS = """
[bus]
heartbeat_interval_s = 0.2
[bus.journal]
fsync = "batch"
"""


class Hex:
    """One running supervisor with its broker and actors."""

    def __init__(self, config: str, root: Path | None = None) -> None:
        # ipc paths must stay short, so not pytest's (long) tmp_path.
        self.root = root or Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
        self.run_dir = self.root / "run"
        self.data_dir = self.root / "data"
        self.config_path = self.root / "supervisor.toml"
        self.config_path.write_text(config)
        self.config = parse(config)
        self.endpoints: Endpoints = endpoints(self.config.bus, self.run_dir)
        self.log_path = self.root / "hex.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(
        self,
        wait_live: bool = True,
        env: dict[str, str] | None = None,
        wrap: tuple[str, ...] = (),
    ) -> Hex:
        """Start the supervisor (with ``env`` added to its environment; ``wrap``: a command it
        runs under, such as ``ip netns exec NS``)."""
        env = dict(os.environ, HEXBUS_LOG_JSON="1", **(env or {}))
        self.log_file = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [
                *wrap,
                sys.executable,
                "-m",
                "hexbus.cli",
                "run",
                str(self.config_path),
                "--run-dir",
                str(self.run_dir),
                "--data-dir",
                str(self.data_dir),
            ],
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
        if wait_live:
            broker = [] if self.config.bus.remote else ["broker"]
            names = [*broker, *(n for n, s in self.config.actors.items() if s.enabled)]
            self.wait_state({n: "live" for n in names}, timeout=30)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status(self, patience: float = 60) -> dict[str, Any]:
        """The supervisor's status table; ``{}`` once its process has exited.

        A supervisor that is alive but slow to answer (a 2-core machine busy loading models) is
        asked again for up to ``patience`` seconds: a test reading ``status()["x"]`` must not fail
        on one late reply. ``patience=0``: one try, ``{}`` when it does not answer in time.
        """
        deadline = time.monotonic() + patience
        while True:
            try:
                reply = call(self.endpoints.control, ControlRequest(cmd="status"), timeout=2)
            except SupervisorUnreachable:
                gone = self.proc is None or self.proc.poll() is not None
                if gone or time.monotonic() >= deadline:
                    return {}
                continue
            return reply.data

    def command(self, cmd: str, name: str = "") -> Any:
        return call(self.endpoints.control, ControlRequest(cmd=cmd, name=name), timeout=30)  # type: ignore[arg-type]

    def wait_state(self, wanted: dict[str, str], timeout: float = 20) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            status = self.status()
            ok = all(status.get(n, {}).get("state") == s for n, s in wanted.items())
            return status if ok else None

        try:
            return poll_for(check, timeout, what=f"states {wanted}")
        except AssertionError:
            raise AssertionError(
                f"states {wanted} not reached; status={self.status()}\nlog tail:\n"
                + self.log()[-4000:]
            ) from None

    def wait_restarted(self, name: str, old_pid: int, timeout: float = 60) -> int:
        """Wait until ``name`` is live in a new process (not ``old_pid``); returns its pid.

        (``wait_state`` right after a restart request can see the old process still live.)
        """

        def check() -> int | None:
            found = self.status().get(name, {})
            pid = found.get("pid")
            return pid if found.get("state") == "live" and pid and pid != old_pid else None

        return poll_for(check, timeout, what=f"{name} live again in a new process")

    def pid(self, name: str) -> int:
        """The actor's pid; a supervisor busy past status's 2 s (a loaded machine) is asked again."""
        seen: list[dict[str, Any]] = []

        def found() -> int | None:
            seen[:] = [self.status()]
            pid = seen[0].get(name, {}).get("pid")
            return int(pid) if pid else None

        try:
            return int(poll_for(found, 60, what=f"{name}'s pid in status"))
        except AssertionError:
            raise AssertionError(
                f"no pid for {name} in 60 s; status={seen}\nlog tail:\n" + self.log()[-4000:]
            ) from None

    def cli(
        self, *args: str, timeout: float = 30, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hexbus.cli", *args, "--run-dir", str(self.run_dir)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            input=input,
        )

    def processes(self) -> list[psutil.Process]:
        """Every process started for this Hex (found by its run directory in the environment)."""
        found = []
        marker = str(self.run_dir)
        for proc in psutil.process_iter(["pid", "environ"]):
            try:
                env = proc.info["environ"] or {}
            except (psutil.Error, KeyError):
                continue
            if marker in env.get("HEXBUS_SPEC", ""):
                found.append(proc)
        return found

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for proc in self.processes():
            proc.kill()
        self.log_file.close()
        return self.proc.returncode

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def discard(self) -> None:
        """After a test: SIGKILL the supervisor and everything it started, and remove the
        folder. A graceful stop (seconds each) proves nothing here: tests that care about
        stopping call :meth:`stop` and check it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for proc in self.processes():
            try:
                proc.kill()
            except psutil.Error:
                pass
        if not self.log_file.closed:
            self.log_file.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def snapshot_state(self, actor: str) -> dict[str, Any]:
        import msgspec

        from hexbus.snapshots import SnapshotFile

        snap = msgspec.msgpack.decode(
            (self.data_dir / "actors" / actor / "snapshot.msgpack").read_bytes(), type=SnapshotFile
        )
        state: dict[str, Any] = msgspec.msgpack.decode(snap.state)
        state["_offset"] = snap.offset
        return state


def toml_value(value: Any) -> str:
    """``value`` as TOML: tables inline (``{ key = value }``), strings, numbers and booleans as
    JSON writes them (the same syntax)."""
    if isinstance(value, dict):
        bare = re.compile(r"[A-Za-z0-9_-]+")
        items = (
            f"{k if bare.fullmatch(k) else json.dumps(k)} = {toml_value(v)}"
            for k, v in value.items()
        )
        return "{ " + ", ".join(items) + " }" if value else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def actor_toml(name: str, module: str, **settings: Any) -> str:
    lines = [f"[actors.{name}]", f'module = "{module}"']
    config = settings.pop("config", None)
    for key, value in settings.items():
        lines.append(f"{key} = {toml_value(value)}")
    if config:
        lines.append(f"[actors.{name}.config]")
        lines += [f"{k} = {toml_value(v)}" for k, v in config.items()]
    return "\n".join(lines) + "\n"
