"""The broker's durable journal's fsync policies, and what survives a SIGKILL or a failed fsync."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from hexbus.epoch import RESERVE
from hexbus.journal import FsyncPolicy, Journal, Record
from tests.support.journal import NEVER, expected, fill, item, read_all

REPO_ROOT = Path(__file__).resolve().parents[2]


# -- fsync policies and durability --------------------------------------------


class FsyncSpy:
    """Counts fdatasync calls and the threads that made them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.threads: list[str] = []
        self.called = threading.Event()
        real = os.fdatasync

        def spy(fd: int) -> None:
            self.threads.append(threading.current_thread().name)
            self.called.set()
            real(fd)

        monkeypatch.setattr(os, "fdatasync", spy)


def test_always_mode_fsyncs_on_sync_not_on_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = FsyncSpy(monkeypatch)
    with Journal(tmp_path, fsync=FsyncPolicy(mode="always")) as j:
        fill(j, [item(i) for i in range(3)])
        assert spy.threads == []
        j.sync()
        assert len(spy.threads) == 1
        j.sync()  # nothing new to sync
        assert len(spy.threads) == 1
    with Journal(tmp_path, fsync=NEVER) as j:
        assert read_all(j) == expected([item(i) for i in range(3)])


def test_batch_mode_fsyncs_in_background_after_every_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = FsyncSpy(monkeypatch)
    with Journal(tmp_path, fsync=FsyncPolicy(mode="batch", every=10, interval_ms=60_000)) as j:
        fill(j, [item(i) for i in range(9)])
        assert not spy.called.wait(0.1)
        j.append(*item(9))
        assert spy.called.wait(10)
        assert spy.threads == ["hexbus-journal-fsync"]
    assert "hexbus-journal-fsync" not in [t.name for t in threading.enumerate()]
    with Journal(tmp_path, fsync=NEVER) as j:
        assert read_all(j) == expected([item(i) for i in range(10)])


def test_batch_mode_fsyncs_in_background_after_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = FsyncSpy(monkeypatch)
    with Journal(tmp_path, fsync=FsyncPolicy(mode="batch", every=1000, interval_ms=20)) as j:
        j.append(*item(0))
        assert spy.called.wait(10)
        assert spy.threads == ["hexbus-journal-fsync"]
        assert j.read(0)[0] == expected([item(0)])


def test_never_mode_fsyncs_only_on_close(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = FsyncSpy(monkeypatch)
    j = Journal(tmp_path, fsync=NEVER)
    fill(j, [item(i) for i in range(5)])
    assert not spy.called.wait(0.1)
    j.close()
    assert spy.threads == ["MainThread"]
    with Journal(tmp_path, fsync=NEVER) as j:
        assert read_all(j) == expected([item(i) for i in range(5)])


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from hexbus.journal import FsyncPolicy, Journal

    j = Journal(Path(sys.argv[1]), fsync=FsyncPolicy(mode=sys.argv[2]), segment_bytes=4096)
    for i in range(int(sys.argv[3])):
        j.append(i % 3, i, b"t.%d" % i, b"envelope-%d" % i, b"blob" if i % 2 else None)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.process
@pytest.mark.parametrize("mode", ["never", "batch"])
def test_records_survive_sigkill_right_after_append_without_close(
    tmp_path: Path, mode: str
) -> None:
    count = 500
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), mode, str(count)],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    with Journal(tmp_path, fsync=NEVER) as j:
        # An unclean stop: numbering goes on past every offset the dead one may have handed out.
        assert j.head == RESERVE
        records = read_all(j)
        assert j.append(*item(0)) == RESERVE + 1
    assert records == [
        Record(i + 1, i % 3, i, b"t.%d" % i, b"envelope-%d" % i, b"blob" if i % 2 else None)
        for i in range(count)
    ]


def test_failed_fsync_makes_the_journal_refuse_further_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    j = Journal(tmp_path, fsync=FsyncPolicy(mode="always"))
    j.append(*item(0))
    monkeypatch.setattr(os, "fdatasync", broken)
    with pytest.raises(OSError):
        j.sync()
    with pytest.raises(OSError, match="fsync failed"):
        j.append(*item(1))
    j.close()  # still releases the files
    monkeypatch.undo()
    with Journal(tmp_path, fsync=NEVER) as reopened:
        assert read_all(reopened) == expected([item(0)])
        assert reopened.next_offset > 2  # it never closed cleanly: offset 2 may be out there
