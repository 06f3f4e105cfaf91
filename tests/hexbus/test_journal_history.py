"""Journal histories across several losses, retention across numbering jumps, and a full disk at
reopen: the cases a review found the first cut of epochs got wrong (issue 13, items 1 and 3)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
import zmq
import zmq.asyncio
from structlog.testing import capture_logs

from hexbus import epoch as epoch_module
from hexbus.codec import FetchReply
from hexbus.consumers import Consumers
from hexbus.epoch import RESERVE, mark_path
from hexbus.feed import DurableFeed, Rewind
from hexbus.journal import Journal
from hexbus.log import RateLimitedCounter
from tests.support.journal import NEVER, expected, fill, item, read_all


def crash(j: Journal) -> None:
    j._close_fds()  # the process dies: no clean close, no clean mark


def reconcile(after: int, epoch: str, j: Journal) -> Rewind:
    """What a subscriber at ``after`` of history ``epoch`` does with this journal's answer."""
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.DEALER)
    try:
        feed = DurableFeed(sock, [], after, RateLimitedCounter(None), epoch=epoch)
        since = j.epoch_after(epoch)
        reply = FetchReply(
            req=1,
            next_after=after,
            head=j.head,
            first=j.first,
            count=0,
            epoch=j.epoch,
            epoch_first=since.first,
            lost_after=since.lost_after,
        )
        return feed._reconcile(reply)
    finally:
        sock.close(0)
        ctx.term()


def test_a_subscriber_two_histories_behind_goes_back_for_every_reused_number(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "journal"
    with Journal(directory, fsync=NEVER) as j:
        fill(j, [item(i) for i in range(500)])
        first_history = j.epoch  # a subscriber applied all 500 of it, then stopped
    shutil.rmtree(directory)
    mark_path(directory).unlink()  # folder and mark gone: numbers start again at 1
    with Journal(directory, fsync=NEVER, segment_bytes=2000) as j:
        fill(j, [item(i) for i in range(300)])
        second_history = j.epoch
    last = sorted(directory.glob("*.seg"))[-1]
    os.truncate(last, last.stat().st_size - 10)  # a third history starts at 301
    with Journal(directory, fsync=NEVER) as j:
        assert j.epoch not in (first_history, second_history)
        # Back to 0: the second history's records reused numbers the subscriber had applied.
        assert reconcile(500, first_history, j) == Rewind(j.epoch, 0)
        # A subscriber of the second history at 200 goes on from there.
        assert reconcile(200, second_history, j) == Rewind(j.epoch, 200)


def test_retention_across_a_numbering_jump_cuts_nobody_who_applied_everything(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "journal"
    j = Journal(directory, fsync=NEVER, segment_bytes=200, retention_bytes=1)
    for i in range(3):
        j.append(*item(i))
    crash(j)
    j = Journal(directory, fsync=NEVER, segment_bytes=200, retention_bytes=1)
    assert j.append(*item(3)) == RESERVE + 1
    j.append(*item(4))
    consumers = Consumers(tmp_path / "consumers.json")
    consumers.saw("actor", 3, j.epoch)  # applied the three records before the crash
    assert j.enforce_retention(keep_after=consumers.floor(j, j.first)) >= 1
    assert j.retained_after == 3  # the last record deleted, not the last number skipped
    assert consumers.cut(j, j.retained_after) == {} and consumers.lagging() == {}
    consumers.saw("behind", 1, j.epoch)
    assert consumers.cut(j, j.retained_after) == {"behind": (2, 3)}
    j.close()
    with Journal(directory, fsync=NEVER) as j:
        assert j.retained_after == 3  # kept across a reopen


def test_retention_never_trusts_an_offset_of_an_older_history(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    with Journal(directory, fsync=NEVER) as j:
        fill(j, [item(i) for i in range(500)])
        old = j.epoch
    shutil.rmtree(directory)
    mark_path(directory).unlink()
    consumers = Consumers(tmp_path / "consumers.json")
    consumers.saw("memory", 500, old)  # stopped at 500 of the old history
    with Journal(directory, fsync=NEVER, segment_bytes=2000) as j:
        fill(j, [item(i) for i in range(300)])
        assert consumers.floor(j, j.first) == 0  # it will go back for 1-300: keep them
        assert j.enforce_retention(keep_after=0, cap_bytes=1 << 30) == 0
        assert read_all(j) == expected([item(i) for i in range(300)])


def test_a_full_disk_at_reopen_is_no_loss_of_history_at_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "journal"
    j = Journal(directory, fsync=NEVER)
    fill(j, [item(i) for i in range(10)])
    history = j.epoch
    crash(j)

    def full(path: Path, data: bytes, **_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(epoch_module, "write_atomic", full)
        j = Journal(directory, fsync=NEVER)  # opens on a full disk: starts and mark unsaved
        assert read_all(j) == expected([item(i) for i in range(10)])
        crash(j)  # and dies before any append
    with capture_logs() as logs:
        j = Journal(directory, fsync=NEVER)
    assert "journal.history_lost" not in [log["event"] for log in logs]
    assert j.epoch == history and not list(directory.glob("*.corrupt"))
    assert read_all(j) == expected([item(i) for i in range(10)])
    assert j.append(*item(10)) > RESERVE  # still no number the dead broker may have used
    j.close()
