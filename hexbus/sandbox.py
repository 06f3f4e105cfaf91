"""The sandbox: code Hex wrote (a proposal's tests, a plugin) runs in a process that cannot
reach the network, sees the rest of the machine read-only, and has resource limits.

Where bubblewrap is installed (Debian's ``bubblewrap``; scripts/test installs it) the process
runs under ``bwrap``: every namespace unshared (no network, its own pids), the whole
filesystem read-only except its work folder (``TMPDIR`` points there too), Hex's data folder, run folder and ``.env``
hidden, capabilities dropped, killed with its parent. Without bubblewrap it falls back to
``unshare`` (a user and network namespace: no network, but the filesystem is writable as
the user's) and, where user namespaces are refused too, to resource limits alone; the report
names which one ran ("isolation"). Limits (``prlimit``) hold in every case: CPU seconds,
address space, file size, open files, and a wall-clock timeout that kills the process group.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import psutil
import structlog

from hexbus.models import THREADS_ENV

log = structlog.get_logger("hexbus.sandbox")
KILL_WAIT_S = 5.0  # the most a kill waits for what the killed process started to die


class SandboxLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    isolation: str = "auto"  # auto | bubblewrap | namespaces | rlimits
    timeout_s: float = 1800.0  # wall clock for one run
    cpu_s: int = 3600
    memory_mb: int = 8192  # address space
    file_mb: int = 64  # the largest file it may write
    open_files: int = 512
    tmpfs_mb: int = 64  # each empty folder it sees (/tmp, /run, home...), under bubblewrap


def private(data_dir: Path, config_dir: Path, run_dir: Path | None) -> tuple[Path, ...]:
    """What a run started by the actor with these folders must not see (its ``hide``): every
    actor's data (``data_dir``'s grandparent), the ``.env`` beside supervisor.toml, and the
    supervisor's run folder."""
    found = (data_dir.parent.parent, config_dir / ".env", run_dir)
    return tuple(p for p in found if p is not None)


def read_written(path: Path, limit: int = 8 << 20, *, tail: bool = False) -> bytes:
    """A file a sandboxed run could write, read from this side: never through a link it left in
    the file's place, and only a regular file (a FIFO there would block the reader for good). At
    most ``limit`` bytes: ``tail``, the last ones; else more is a ValueError."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            raise ValueError(f"{path.name} is not a regular file")
        if tail:
            f.seek(max(0, found.st_size - limit))
            return f.read(limit)
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path.name} is over {limit} bytes")
    return data


@dataclass(frozen=True)
class SandboxRun:
    returncode: int
    output: str  # its stdout and stderr, the tail
    seconds: float
    isolation: str
    timed_out: bool = False


class SandboxError(Exception):
    """The sandbox cannot run as configured: the message names the fix."""


class SandboxStopped(Exception):
    """The run was killed because its owner is stopping (``stop`` was set): no verdict."""


def _masked() -> list[Path]:
    """The folders a sandbox sees empty: temporary and runtime ones, and the home folder."""
    home = Path(os.environ.get("HOME", "/")).resolve()
    found = [Path(p) for p in ("/tmp", "/var/tmp", "/run", "/dev/shm") if Path(p).is_dir()]
    if home != Path("/") and home.is_dir():
        found.append(home)
    return found


def _needed(readable: tuple[Path, ...]) -> list[Path]:
    """What a run needs that a mask may cover: Python, this virtual environment, Hex's code
    and the caller's ``readable`` paths."""
    code = Path(__file__).resolve().parents[1]
    wanted = [Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), code, *readable]
    masks = _masked()
    return [
        p
        for p in dict.fromkeys(wanted)
        if p.exists() and any(p == m or m in p.parents for m in masks)
    ]


@functools.cache
def _works(argv: tuple[str, ...]) -> bool:
    try:
        return subprocess.run(list(argv), capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def available() -> list[str]:
    """The isolations this machine offers, strongest first."""
    kinds = []
    bwrap = shutil.which("bwrap")
    if bwrap and _works((bwrap, "--ro-bind", "/", "/", "--unshare-all", "--", "true")):
        kinds.append("bubblewrap")
    unshare = shutil.which("unshare")
    if unshare and _works((unshare, "--user", "--map-root-user", "--net", "--", "true")):
        kinds.append("namespaces")
    kinds.append("rlimits")
    return kinds


def choose(limits: SandboxLimits) -> str:
    kinds = available()
    if limits.isolation == "auto":
        return kinds[0]
    if limits.isolation not in kinds:
        fix = "apt-get install bubblewrap" if limits.isolation == "bubblewrap" else "use 'auto'"
        raise SandboxError(
            f"sandbox isolation {limits.isolation!r} does not work here "
            f"(available: {', '.join(kinds)}): {fix}"
        )
    return limits.isolation


def command(
    argv: list[str],
    work: Path,
    isolation: str,
    limits: SandboxLimits,
    *,
    hide: tuple[Path, ...] = (),
    readable: tuple[Path, ...] = (),
    env: dict[str, str] | None = None,
    writable: bool = True,
) -> list[str]:
    """The full command line: ``argv`` run in ``work`` under ``isolation`` and ``limits``;
    ``hide``: made empty; ``readable``: kept visible (read-only) where a mask would cover it;
    ``writable``: whether ``work`` may be written (under bubblewrap)."""
    mib = 1024 * 1024
    prlimit = shutil.which("prlimit")
    limited: list[str] = []
    if prlimit:
        limited = [
            prlimit,
            f"--cpu={limits.cpu_s}",
            f"--as={limits.memory_mb * mib}",
            f"--fsize={limits.file_mb * mib}",
            f"--nofile={limits.open_files}",
            "--core=0",
            "--",
        ]
    (work / "tmp").mkdir(exist_ok=True)
    base_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work),
        "TMPDIR": str(work / "tmp"),  # /tmp is read-only in there, like everything but work
        "LANG": "C.UTF-8",
        "HF_HUB_OFFLINE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",  # nothing from HOME (its work folder) is imported
        # The machine's cap on model threads (hexbus.models.model_threads) holds in there too.
        **{k: os.environ[k] for k in (THREADS_ENV,) if k in os.environ},
        **(env or {}),
    }
    if isolation == "bubblewrap":
        wrap = [
            shutil.which("bwrap") or "bwrap",
            "--ro-bind", "/", "/",
            "--dev", "/dev",
            "--proc", "/proc",
        ]  # fmt: skip
        # Where sockets and people's secrets live (D-Bus, an ssh agent, docker's socket, X11,
        # a home folder): empty. What the run needs from under them comes back, read-only.
        # Each empty folder is a tmpfs of at most tmpfs_mb: what is written there is memory
        # the address-space limit does not count.
        size = str(limits.tmpfs_mb * mib)
        for path in _masked():
            wrap += ["--size", size, "--tmpfs", str(path)]
        for path in _needed(readable):
            wrap += ["--ro-bind", str(path), str(path)]
        for path in hide:
            if path.is_dir():
                wrap += ["--size", size, "--tmpfs", str(path)]
            elif path.exists():
                wrap += ["--ro-bind", "/dev/null", str(path)]
        wrap += ["--bind" if writable else "--ro-bind", str(work), str(work), "--chdir", str(work)]
        wrap += ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        wrap += ["--clearenv"]
        for key, value in base_env.items():
            wrap += ["--setenv", key, value]
        return [*wrap, "--", *limited, *argv]
    # No bubblewrap to kill it with its parent: the kernel does (a SIGKILLed selfmod, the kill
    # switch), through setpriv's parent-death signal.
    setpriv = shutil.which("setpriv")
    orphan_guard = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
    prefix = [*orphan_guard, "env", "-i", *(f"{k}={v}" for k, v in base_env.items())]
    if isolation == "namespaces":
        unshare = shutil.which("unshare") or "unshare"
        return [*prefix, unshare, "--user", "--map-root-user", "--net", "--", *limited, *argv]
    return [*prefix, *limited, *argv]


def run(
    argv: list[str],
    work: Path,
    limits: SandboxLimits,
    *,
    hide: tuple[Path, ...] = (),
    readable: tuple[Path, ...] = (),
    env: dict[str, str] | None = None,
    stop: threading.Event | None = None,
) -> SandboxRun:
    """Run ``argv`` in the sandbox (blocking: call it off the actor's loop). Setting ``stop``
    (its owner stopping) kills the run and everything it started and raises
    :class:`SandboxStopped`: a thread left waiting on a model run of minutes would hold the
    owner's process at exit, and the run its CPU, long after the owner was stopped."""
    isolation = choose(limits)
    full = command(argv, work, isolation, limits, hide=hide, readable=readable, env=env)
    log_path = work / "sandbox.log"
    log_path.unlink(missing_ok=True)
    started = time.monotonic()
    # Read back through the descriptor it was written to: the run may replace the name with a
    # link to a file only this side can read.
    with log_path.open("w+b") as out:
        proc = subprocess.Popen(
            full, cwd=work, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = started + limits.timeout_s
        timed_out = stopped = False
        while True:
            left = deadline - time.monotonic()
            try:
                rc = proc.wait(timeout=max(0.0, min(left, 0.25) if stop is not None else left))
                break
            except subprocess.TimeoutExpired:
                stopped = stop is not None and stop.is_set()
                timed_out = time.monotonic() >= deadline
                if stopped or timed_out:
                    rc = _kill_tree(proc)
                    break
        if stopped:
            raise SandboxStopped("the sandbox run was killed: its owner is stopping")
        size = out.seek(0, os.SEEK_END)
        out.seek(max(0, size - 4000))
        tail = out.read().decode("utf-8", "replace")
    return SandboxRun(rc, tail, time.monotonic() - started, isolation, timed_out)


def popen(
    argv: list[str],
    work: Path,
    limits: SandboxLimits,
    *,
    hide: tuple[Path, ...] = (),
    readable: tuple[Path, ...] = (),
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``argv`` in the sandbox as a long-lived process talking over its stdin and stdout
    (a plugin's runner), ``work`` read-only to it (under bubblewrap: it writes nowhere but its
    tmpfs folders); its stderr goes to ``work/sandbox.log``. The caller stops it with
    :func:`kill`. Returns the process and the isolation it runs under."""
    isolation = choose(limits)
    full = command(argv, work, isolation, limits, hide=hide, readable=readable, writable=False)
    with (work / "sandbox.log").open("wb") as err:
        proc = subprocess.Popen(
            full,
            cwd=work,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
    return proc, isolation


def kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill a sandboxed process and everything it started, and wait until they are gone."""
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()
    _kill_tree(proc)


def _kill_tree(proc: subprocess.Popen[bytes]) -> int:
    """SIGKILL ``proc``'s session group and every process under it (bubblewrap starts its own
    in a session of their own inside its namespace: they die with it, but only after it, a
    moment a loaded machine stretches and no caller should see), and wait until each is dead
    (a zombie is: only its reaping is left, to whoever adopted it); its status."""
    inside: list[psutil.Process] = []
    if proc.returncode is None:  # unreaped, its pid is still its own
        with contextlib.suppress(psutil.Error):
            inside = psutil.Process(proc.pid).children(recursive=True)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for child in inside:
        with contextlib.suppress(psutil.Error):
            child.kill()
    rc = proc.wait()
    deadline = time.monotonic() + KILL_WAIT_S
    while (inside := [p for p in inside if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.01)
    if inside:
        log.warning("sandbox.kill_outlived", pids=[p.pid for p in inside])
    return rc


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
