"""The sandbox, for real: no network, a read-only machine, hidden data, limits that bite."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hexbus import sandbox
from hexbus.sandbox import SandboxLimits

ISOLATIONS = sandbox.available()
STRONG = pytest.mark.skipif(
    "bubblewrap" not in ISOLATIONS, reason="bubblewrap is not installed (scripts/test installs it)"
)


def run(code: str, work: Path, **limits: object) -> sandbox.SandboxRun:
    return sandbox.run(
        [sys.executable, "-c", code],
        work,
        SandboxLimits(isolation="bubblewrap", **limits),  # type: ignore[arg-type]
        hide=(work.parent / "data", work.parent / ".env"),
    )


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "memory.duckdb").write_text("private")
    (tmp_path / ".env").write_text("DISCORD_TOKEN=secret\n")
    (tmp_path / "outside.txt").write_text("untouched\n")
    w = tmp_path / "work"
    w.mkdir()
    return w


@STRONG
def test_it_writes_its_work_folder_and_nothing_else(work: Path) -> None:
    outside = work.parent / "outside.txt"
    planted = Path(sys.prefix) / "planted.py"
    code = (
        "import pathlib\n"
        "pathlib.Path('result.txt').write_text('ok')\n"
        f"for target in [{str(outside)!r}, '/etc/hex-was-here', {str(planted)!r}]:\n"
        "    try:\n"
        "        pathlib.Path(target).write_text('x')\n"
        "        print('WROTE', target)\n"
        "    except OSError as exc:\n"
        "        print('refused', target, exc.errno)\n"
    )
    out = run(code, work)
    assert out.returncode == 0, out.output
    # /tmp is the sandbox's own (empty, in memory): a write there never reaches the real one.
    assert f"WROTE {planted}" not in out.output and "WROTE /etc" not in out.output, out.output
    assert (work / "result.txt").read_text() == "ok"
    assert outside.read_text() == "untouched\n"
    assert not planted.exists()
    assert out.isolation == "bubblewrap"


@STRONG
def test_it_cannot_reach_unix_sockets_in_tmp_or_run(work: Path) -> None:
    import socket

    path = work.parent / "agent.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)
    code = (
        "import socket\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        f"print('connect', s.connect_ex({str(path)!r}) == 0)\n"
    )
    try:
        out = run(code, work)
    finally:
        listener.close()
    assert "connect False" in out.output, out.output


@STRONG
def test_the_log_is_read_back_from_what_it_wrote_not_from_a_link(work: Path) -> None:
    secret = work.parent / ".env"
    code = (
        "import os, sys\n"
        "print('innocent output', flush=True)\n"
        "os.unlink('sandbox.log')\n"
        f"os.symlink({str(secret)!r}, 'sandbox.log')\n"
    )
    out = run(code, work)
    assert "innocent output" in out.output and "secret" not in out.output


@pytest.mark.slow
@pytest.mark.parametrize("isolation", [k for k in ISOLATIONS if k != "bubblewrap"])
def test_a_weaker_isolation_still_dies_with_its_parent(work: Path, isolation: str) -> None:
    import os
    import signal
    import subprocess
    import time

    import psutil

    marker = work / "marker"
    sleeper = work / "sleeper.py"
    sleeper.write_text(f"import time\nopen({str(marker)!r}, 'w')\ntime.sleep(120)\n")
    runner_code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from hexbus import sandbox\n"
        f"sandbox.run([sys.executable, {str(sleeper)!r}], Path({str(work)!r}),\n"
        f"            sandbox.SandboxLimits(isolation={isolation!r}))\n"
    )
    runner = subprocess.Popen([sys.executable, "-c", runner_code])
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert time.monotonic() < deadline, "the sandboxed run never started"
            time.sleep(0.05)
        inside = [
            p
            for p in psutil.process_iter(["pid", "cmdline"])
            if str(sleeper) in " ".join(p.info["cmdline"] or ()) and p.pid != runner.pid
        ]
        assert inside
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait()
        for p in inside:
            p.wait(timeout=10)  # raises if it outlives its parent
    finally:
        runner.kill()


@STRONG
def test_it_has_no_network(work: Path) -> None:
    code = (
        "import socket\n"
        "for host in [('1.1.1.1', 53), ('127.0.0.1', 22)]:\n"
        "    s = socket.socket(); s.settimeout(2)\n"
        "    print('connect', s.connect_ex(host) == 0)\n"
    )
    out = run(code, work)
    assert out.output.count("connect False") == 2, out.output


@STRONG
def test_it_cannot_see_hexs_data_or_secrets(work: Path) -> None:
    code = (
        "import os, pathlib\n"
        f"print('data', os.listdir({str(work.parent / 'data')!r}))\n"
        f"print('env', repr(pathlib.Path({str(work.parent / '.env')!r}).read_text()))\n"
        "print('token', os.environ.get('DISCORD_TOKEN'))\n"
    )
    out = run(code, work)
    assert "data []" in out.output or "data ['work']" in out.output, out.output
    assert "secret" not in out.output


@STRONG
def test_it_cannot_signal_processes_outside(work: Path) -> None:
    import os

    code = f"import os\ntry:\n    os.kill({os.getpid()}, 0)\n    print('REACHED')\nexcept OSError as e:\n    print('no such', e.errno)\n"
    out = run(code, work)
    assert "REACHED" not in out.output and "no such" in out.output


def test_a_run_past_its_time_is_killed(work: Path) -> None:
    out = sandbox.run(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        work,
        SandboxLimits(timeout_s=1.0),
    )
    assert out.timed_out and out.seconds < 30


@pytest.mark.slow
def test_a_run_whose_owner_stops_is_killed_with_what_it_started(work: Path) -> None:
    """An actor's stop sets ``stop``: the run and its children die, and no verdict comes back
    (the thread waiting on a model run of minutes would otherwise hold the actor's exit)."""
    import threading
    import time

    import psutil

    marker = work / "marker"
    code = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(marker)!r}, 'w')\n"
        "time.sleep(120)\n"
    )
    stop = threading.Event()
    raised: list[BaseException] = []

    def owner() -> None:
        try:
            sandbox.run([sys.executable, "-c", code], work, SandboxLimits(), stop=stop)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=owner)
    thread.start()
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline and thread.is_alive(), "the run never started"
        time.sleep(0.05)
    me = psutil.Process()
    started = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "time.sleep(120)" in " ".join(p.info["cmdline"] or ()) and p.pid != me.pid
    ]
    assert len(started) >= 2, started  # the run and its child
    stop.set()
    thread.join(30)
    assert not thread.is_alive(), "the run went on after stop"
    assert len(raised) == 1 and isinstance(raised[0], sandbox.SandboxStopped), raised
    _, alive = psutil.wait_procs(started, timeout=10)
    assert not alive, alive


def test_a_file_over_the_size_limit_cannot_be_written(work: Path) -> None:
    code = "open('big', 'wb').write(b'x' * (3 << 20))\nprint('WROTE')"
    out = sandbox.run([sys.executable, "-c", code], work, SandboxLimits(file_mb=1))
    assert out.returncode != 0 and "WROTE" not in out.output
    assert (work / "big").stat().st_size <= 1 << 20


def test_an_isolation_this_machine_lacks_is_refused_with_the_fix(work: Path) -> None:
    kinds = sandbox.available()
    assert kinds[-1] == "rlimits"
    if "bubblewrap" in kinds:
        return
    with pytest.raises(sandbox.SandboxError, match="apt-get install bubblewrap"):
        sandbox.choose(SandboxLimits(isolation="bubblewrap"))
