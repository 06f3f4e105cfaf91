"""Snapshots are saved only once the broker holds every effect they record (hexbus.snapshots)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hexbus.snapshots import Snapshots


class Outbox:
    """What Snapshots asks of a bus client: published marks and their acknowledgement."""

    def __init__(self) -> None:
        self.published = 0
        self.acked = 0
        self.entering = 0  # publishers waiting for room, with no seq yet
        self.progress = asyncio.Event()

    def durable_mark(self) -> int:
        return -1 if self.entering else self.published

    def acknowledged(self, mark: int) -> bool:
        return self.acked >= mark

    async def wait_acknowledged(self, mark: int) -> None:
        while self.acked < mark:
            self.progress.clear()
            await self.progress.wait()

    def ack(self, upto: int) -> None:
        self.acked = max(self.acked, upto)
        self.progress.set()


async def inline(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def saver(path: Path, outbox: Outbox) -> Snapshots:
    offload: Callable[..., Awaitable[Any]] = inline
    return Snapshots(path, outbox, offload)


def test_a_snapshot_with_nothing_unacknowledged_is_saved_at_once(tmp_path: Path) -> None:
    async def go() -> None:
        outbox = Outbox()
        snaps = saver(tmp_path / "s", outbox)
        await snaps.take(b"one", 0)
        assert (tmp_path / "s").read_bytes() == b"one" and snaps.waiting == 0

    asyncio.run(go())


def test_a_snapshot_waits_for_its_events_and_a_newer_one_never_goes_back(tmp_path: Path) -> None:
    async def go() -> None:
        outbox = Outbox()
        path = tmp_path / "s"
        snaps = saver(path, outbox)
        await snaps.take(b"old", 0)
        writer = asyncio.ensure_future(snaps.run())
        outbox.published = 3  # a message marked seen; its event is in the outbox
        await snaps.take(b"seen 3", 0)
        outbox.published = 5
        await snaps.take(b"seen 5", 0)
        outbox.published = 7
        await snaps.take(b"seen 7", 0)  # replaces "seen 5": at most two wait
        await asyncio.sleep(0.01)
        assert path.read_bytes() == b"old" and snaps.waiting == 2
        outbox.ack(3)
        await asyncio.sleep(0.01)
        assert path.read_bytes() == b"seen 3" and snaps.waiting == 1
        outbox.ack(7)
        await asyncio.sleep(0.01)
        assert path.read_bytes() == b"seen 7" and snaps.waiting == 0
        writer.cancel()

    asyncio.run(go())


def test_at_a_stop_only_what_the_broker_acknowledged_is_saved(tmp_path: Path) -> None:
    async def go() -> None:
        outbox = Outbox()
        path = tmp_path / "s"
        snaps = saver(path, outbox)
        await snaps.take(b"old", 0)
        outbox.published = 2
        await snaps.take(b"final", 0)
        assert not await snaps.save_ready()  # the broker never answered: the old one stays
        assert path.read_bytes() == b"old"
        outbox.ack(2)
        assert await snaps.save_ready()
        assert path.read_bytes() == b"final"

    asyncio.run(go())


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.tuples(st.booleans(), st.integers(0, 3)), min_size=1, max_size=30))
def test_what_is_saved_is_always_the_newest_snapshot_whose_events_are_all_acknowledged(
    tmp_path_factory: Any, steps: list[tuple[bool, int]]
) -> None:
    path = tmp_path_factory.mktemp("snaps") / "s"

    async def go() -> None:
        outbox = Outbox()
        snaps = saver(path, outbox)
        writer = asyncio.ensure_future(snaps.run())
        taken: list[tuple[int, bytes]] = []
        last = -1  # the index in ``taken`` of what is on disk
        for i, (take, n) in enumerate(steps):
            if take:
                outbox.published += n
                taken.append((outbox.published, b"%d" % i))
                await snaps.take(taken[-1][1], 0)
            else:
                outbox.ack(outbox.acked + n)
            for _ in range(3):
                await asyncio.sleep(0)
            if path.exists():
                on_disk = [data for _, data in taken].index(path.read_bytes())
                # Never one that records an unacknowledged event, never older than before.
                assert taken[on_disk][0] <= outbox.acked and on_disk >= last
                last = on_disk
        outbox.ack(outbox.published)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        if taken:
            assert path.read_bytes() == taken[-1][1]  # once all is acknowledged: the newest
        writer.cancel()

    asyncio.run(go())


def test_no_snapshot_is_taken_while_a_publisher_waits_for_room(tmp_path: Path) -> None:
    # discord_io marks a message seen, then waits to publish it (the outbox is full): a snapshot
    # then would record it seen with its event nowhere yet.
    async def go() -> None:
        outbox = Outbox()
        path = tmp_path / "s"
        snaps = saver(path, outbox)
        await snaps.take(b"old", 0)
        outbox.entering = 1
        assert not await snaps.take(b"seen, unpublished", 1)
        outbox.ack(0)
        assert path.read_bytes() == b"old" and snaps.waiting == 0
        outbox.entering, outbox.published = 0, 1
        assert await snaps.take(b"seen, published", 1)
        outbox.ack(1)
        assert await snaps.save_ready()
        assert path.read_bytes() == b"seen, published"

    asyncio.run(go())


def test_a_save_cancelled_mid_write_finishes_before_a_newer_one_starts(tmp_path: Path) -> None:
    import threading
    import time as clock

    from hexbus.files import write_atomic

    writing = threading.Event()

    def slow_write(path: Path, data: bytes) -> None:
        if data == b"older":  # a slow disk under the first write only
            writing.set()
            clock.sleep(0.3)
        write_atomic(path, data)

    async def slow(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(slow_write if fn is write_atomic else fn, *args)

    async def go() -> None:
        outbox = Outbox()
        path = tmp_path / "s"
        snaps = Snapshots(path, outbox, slow)
        older = asyncio.ensure_future(snaps.take(b"older", 1))
        await asyncio.to_thread(writing.wait, 5)
        older.cancel()  # a stop, while the write runs in its thread
        await snaps.take(b"newer", 2)
        await asyncio.sleep(0.5)  # the older write's thread is done by now, whatever it did
        assert path.read_bytes() == b"newer" and snaps.saved_offset == 2
        assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no temp file left

    asyncio.run(go())


def test_an_atomic_write_with_a_mode_has_it_from_the_start_and_over_an_old_file(
    tmp_path: Path,
) -> None:
    from hexbus.files import write_atomic

    secret = tmp_path / "run" / "token"
    write_atomic(secret, b"one", mode=0o600)
    assert secret.stat().st_mode & 0o777 == 0o600 and secret.read_bytes() == b"one"
    secret.chmod(0o644)  # someone widened it: a write with a mode narrows it again
    write_atomic(secret, b"two", durable=False, mode=0o600)
    assert secret.stat().st_mode & 0o777 == 0o600 and secret.read_bytes() == b"two"
    kept = tmp_path / "persona.toml"
    kept.write_bytes(b"a")
    kept.chmod(0o640)
    write_atomic(kept, b"b")  # no mode: the file keeps its own
    assert kept.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["persona.toml", "run", "token"]


def test_temporary_files_of_a_killed_writer_are_removed_and_a_live_ones_kept(
    tmp_path: Path,
) -> None:
    import os
    import subprocess
    import sys

    from hexbus.files import remove_stale_temps

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = tmp_path / f".epochs.{gone.stdout.strip()}.140000.tmp"
    alive = tmp_path / f".epochs.{os.getpid()}.140001.tmp"
    other = tmp_path / "notes.tmp"  # not write_atomic's: not ours to remove
    for path in (dead, alive, other):
        path.write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == [dead.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, other.name])
