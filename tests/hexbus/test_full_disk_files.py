"""The runtime's small files on a real full disk (a 1 MiB tmpfs; root only, skipped with the
reason elsewhere): the crash marker every actor maps and the broker's table of durable
subscribers. Each one used to kill its process once the disk was full."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import structlog

from hexbus.consumers import Consumer, Consumers
from tests.support import disk
from tests.support.disk import fill

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def full_disk() -> Iterator[Path]:
    """A folder on a 1 MiB tmpfs (filled by each test when it wants)."""
    with disk.small_disk("1m") as root:
        yield root / "data"


# In its own process: a store through a map into a page the full disk cannot give is a SIGBUS,
# which would take pytest down with it.
MARKER = """
import os, sys
from pathlib import Path
from hexbus.deadletter import CrashMarker
from tests.support.disk import fill

folder = Path(sys.argv[1])
old = folder / "old" / "inflight"  # an earlier process made it and never wrote it: a hole
old.parent.mkdir()
old.write_bytes(b"")
os.truncate(old, 21)
filler = fill(folder)
for path in (old, folder / "new" / "inflight"):  # and one made on the full disk
    marker = CrashMarker(path)
    assert marker.unkept, "a marker with no room to live in says it is kept"
    marker.start(7, "seven")  # was a SIGBUS
    marker.finish(7)
    marker.start(8, "eight")
    marker.close()
filler.unlink()  # room again: the next event's start keeps the marker in its file
marker = CrashMarker(old)
marker.start(9, "nine")
assert not marker.unkept
marker.close()  # the process dies while handling 9
again = CrashMarker(old)
assert (again.crashed_offset, again.crashes) == (9, 1), (again.crashed_offset, again.crashes)
assert again.crashes_at(9, "nine") == 1 and again.crashes_at(9, "other") == 0
print("ok")
"""


def test_a_crash_marker_on_a_full_disk_lives_in_memory_instead_of_killing_its_actor(
    full_disk: Path,
) -> None:
    """An actor restarted on a full disk died of SIGBUS at its first event, again at each
    restart, until the supervisor gave up on it ("failed"): the crash marker's map had no page."""
    ran = subprocess.run(
        [sys.executable, "-c", MARKER, str(full_disk)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    said = ran.stdout + ran.stderr
    assert ran.returncode == 0 and said.rstrip().endswith("ok"), (ran.returncode, said)
    assert said.count("actor.crash_marker_unkept") == 2, said  # once for each marker


def test_the_brokers_subscriber_table_waits_for_room_instead_of_killing_the_broker(
    full_disk: Path,
) -> None:
    """Retention saves the table every ``retention_check_s``; on a full disk the write raised
    ENOSPC out of the broker's loop, and the broker died."""
    path = full_disk / "consumers.json"
    table = Consumers(path)
    table.saw("memory", 5)
    table.save()
    filler = fill(full_disk)
    table.saw("memory", 9)
    with structlog.testing.capture_logs() as logs:
        table.save()
        table.saw("memory", 12)
        table.save()
    assert [entry["event"] for entry in logs] == ["broker.consumers_unsaved"]  # said once
    assert "No space left" in table.unsaved and table.dirty
    saved = msgspec.json.decode(path.read_bytes(), type=dict[str, Consumer])
    assert saved["memory"].saved == 5  # the old table, whole
    assert disk.debris(full_disk) == []
    filler.unlink()
    with structlog.testing.capture_logs() as logs:
        table.save()
    assert [entry["event"] for entry in logs] == ["broker.consumers_saved"]
    assert not table.unsaved and not table.dirty
    assert msgspec.json.decode(path.read_bytes(), type=dict[str, Consumer])["memory"].saved == 12
    assert Consumers(path).by_name["memory"].saved == 12
