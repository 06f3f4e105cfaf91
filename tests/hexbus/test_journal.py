"""Tests for the broker's durable journal."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from hexbus.journal import FsyncPolicy, Journal, JournalCorrupt, Record

NEVER = FsyncPolicy(mode="never")
REPO_ROOT = Path(__file__).resolve().parents[2]

Item = tuple[int, int, bytes, bytes, bytes | None]


def item(i: int) -> Item:
    """A deterministic record: topics cycle a./b./c., every third has no blob."""
    topic = (b"a.", b"b.", b"c.")[i % 3] + b"t%d" % i
    blob = None if i % 3 == 0 else bytes([i % 256]) * (i % 7)
    return (i % 4, i, topic, b"envelope-%d" % i, blob)


def fill(journal: Journal, items: list[Item]) -> None:
    for it in items:
        journal.append(*it)


def expected(items: list[Item], first_offset: int = 1) -> list[Record]:
    return [Record(first_offset + n, *it) for n, it in enumerate(items)]


def read_all(
    journal: Journal,
    after: int = 0,
    *,
    prefixes: tuple[bytes, ...] = (),
    max_records: int = 512,
    max_bytes: int = 4 << 20,
    max_scan: int = 20000,
) -> list[Record]:
    """Page through the journal with cursors until the head."""
    out: list[Record] = []
    cursor = after
    while cursor < journal.head:
        records, new_cursor = journal.read(
            cursor,
            prefixes=prefixes,
            max_records=max_records,
            max_bytes=max_bytes,
            max_scan=max_scan,
        )
        assert new_cursor > cursor, "cursor must advance while records remain"
        out.extend(records)
        cursor = new_cursor
    return out


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def frame_size(it: Item) -> int:
    _session, _seq, topic, envelope, blob = it
    return 16 + 26 + len(topic) + len(envelope) + (0 if blob is None else len(blob))


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "j", fsync=NEVER) as j:
        yield j


# -- basics -------------------------------------------------------------------


def test_new_journal_is_empty_with_first_one_and_head_zero(journal: Journal) -> None:
    assert (journal.head, journal.first, journal.next_offset) == (0, 1, 1)
    assert journal.read(0) == ([], 0)
    assert journal.sessions() == {}


def test_directory_is_created_private(tmp_path: Path) -> None:
    directory = tmp_path / "deep" / "journal"
    with Journal(directory, fsync=NEVER):
        pass
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_append_returns_consecutive_offsets_from_one(journal: Journal) -> None:
    offsets = [journal.append(*item(i)) for i in range(5)]
    assert offsets == [1, 2, 3, 4, 5]
    assert (journal.head, journal.first, journal.next_offset) == (5, 1, 6)


def test_round_trip_keeps_fields_and_tells_no_blob_from_empty_blob(journal: Journal) -> None:
    journal.append(1, 10, b"t.one", b"env-1", None)
    journal.append(2, 20, b"t.two", b"env-2", b"")
    journal.append(2**64 - 1, 2**64 - 1, b"t.three", b"", b"\x00blob\xff")
    records, cursor = journal.read(0)
    assert records == [
        Record(1, 1, 10, b"t.one", b"env-1", None),
        Record(2, 2, 20, b"t.two", b"env-2", b""),
        Record(3, 2**64 - 1, 2**64 - 1, b"t.three", b"", b"\x00blob\xff"),
    ]
    assert cursor == 3


def test_append_rejects_out_of_range_fields_without_writing(journal: Journal) -> None:
    with pytest.raises(ValueError):
        journal.append(-1, 0, b"t", b"e", None)
    with pytest.raises(ValueError):
        journal.append(0, 2**64, b"t", b"e", None)
    with pytest.raises(ValueError):
        journal.append(0, 0, b"t" * 65536, b"e", None)
    assert journal.head == 0
    assert journal.append(0, 0, b"t", b"e", None) == 1


def test_closed_journal_refuses_use_and_close_is_idempotent(tmp_path: Path) -> None:
    j = Journal(tmp_path, fsync=NEVER)
    j.close()
    j.close()
    with pytest.raises(ValueError):
        j.append(0, 0, b"t", b"e", None)
    with pytest.raises(ValueError):
        j.read(0)
    with pytest.raises(ValueError):
        j.sync()


def test_second_journal_on_same_directory_is_refused(tmp_path: Path) -> None:
    with Journal(tmp_path, fsync=NEVER), pytest.raises(JournalCorrupt):
        Journal(tmp_path, fsync=NEVER)
    with Journal(tmp_path, fsync=NEVER):
        pass  # the lock went with the first journal


def test_directory_that_is_a_file_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"")
    with pytest.raises(JournalCorrupt):
        Journal(path)


# -- read: filtering, limits, cursors ----------------------------------------


def test_read_filters_by_any_of_the_topic_prefixes(journal: Journal) -> None:
    items = [item(i) for i in range(12)]
    fill(journal, items)
    all_records = expected(items)
    records, cursor = journal.read(0, prefixes=[b"a."])
    assert records == [r for r in all_records if r.topic.startswith(b"a.")]
    assert cursor == 12
    records, _ = journal.read(0, prefixes=[b"b.", b"c.t1"])
    assert records == [r for r in all_records if r.topic.startswith((b"b.", b"c.t1"))]
    assert journal.read(0, prefixes=[b""])[0] == all_records


def test_read_returns_only_records_after_the_given_offset(journal: Journal) -> None:
    fill(journal, [item(i) for i in range(10)])
    records, cursor = journal.read(7)
    assert [r.offset for r in records] == [8, 9, 10]
    assert cursor == 10


def test_read_max_records_sets_cursor_to_last_returned(journal: Journal) -> None:
    fill(journal, [item(i) for i in range(12)])
    records, cursor = journal.read(0, max_records=3)
    assert [r.offset for r in records] == [1, 2, 3]
    assert cursor == 3
    records, cursor = journal.read(0, prefixes=[b"a."], max_records=2)
    assert [r.offset for r in records] == [1, 4]
    assert cursor == 4


def test_read_max_bytes_never_exceeded_except_by_a_single_record(journal: Journal) -> None:
    for i in range(6):
        journal.append(0, i, b"t.%d" % i, b"x" * 97, None)  # 100 payload bytes each
    records, cursor = journal.read(0, max_bytes=250)
    assert [r.offset for r in records] == [1, 2]
    assert cursor == 2
    records, cursor = journal.read(0, max_bytes=300)
    assert [r.offset for r in records] == [1, 2, 3]
    records, cursor = journal.read(0, max_bytes=1)
    assert [r.offset for r in records] == [1]
    assert cursor == 1


def test_read_cursor_stops_before_a_filtered_record_left_out_for_size(journal: Journal) -> None:
    for i in range(6):
        topic = b"a.%d" % i if i % 2 == 0 else b"b.%d" % i
        journal.append(0, i, topic, b"x" * 97, None)
    records, cursor = journal.read(0, prefixes=[b"a."], max_bytes=100)
    assert [r.offset for r in records] == [1]
    assert cursor == 2  # offset 3 matched but was not returned


def test_read_max_scan_bounds_examined_records_and_cursor_reports_progress(
    journal: Journal,
) -> None:
    for i in range(10):
        journal.append(0, i, b"other" if i < 8 else b"wanted", b"e", None)
    records, cursor = journal.read(0, prefixes=[b"wanted"], max_scan=4)
    assert (records, cursor) == ([], 4)
    records, cursor = journal.read(cursor, prefixes=[b"wanted"], max_scan=4)
    assert (records, cursor) == ([], 8)
    records, cursor = journal.read(cursor, prefixes=[b"wanted"], max_scan=4)
    assert [r.offset for r in records] == [9, 10]
    assert cursor == 10


def test_read_with_nothing_to_examine_returns_clamped_cursor(journal: Journal) -> None:
    fill(journal, [item(i) for i in range(5)])
    assert journal.read(5) == ([], 5)
    assert journal.read(99) == ([], 5)
    assert journal.read(2, max_records=0) == ([], 2)
    assert journal.read(-10, max_scan=0) == ([], 0)
    assert journal.read(0, prefixes=[b"nothing"]) == ([], 5)


@pytest.mark.parametrize("cache_bytes", [32 << 20, 0, 700])
@pytest.mark.parametrize(
    ("prefixes", "max_records", "max_bytes", "max_scan"),
    [
        ((), 1, 4 << 20, 20000),
        ((b"a.",), 3, 4 << 20, 5),
        ((b"b.", b"c.t2"), 512, 30, 20000),
        ((b"c.",), 2, 1, 1),
        ((b"nothing",), 512, 4 << 20, 7),
    ],
)
def test_paging_with_cursor_finds_every_matching_record_exactly_once(
    tmp_path: Path,
    cache_bytes: int,
    prefixes: tuple[bytes, ...],
    max_records: int,
    max_bytes: int,
    max_scan: int,
) -> None:
    items = [item(i) for i in range(100)]
    with Journal(tmp_path, fsync=NEVER, segment_bytes=600, cache_bytes=cache_bytes) as j:
        fill(j, items)
        found = read_all(
            j, prefixes=prefixes, max_records=max_records, max_bytes=max_bytes, max_scan=max_scan
        )
    assert found == [r for r in expected(items) if r.topic.startswith(prefixes or (b"",))]


def test_reads_interleaved_with_appends_see_every_record(journal: Journal) -> None:
    seen: list[Record] = []
    cursor = 0
    items = [item(i) for i in range(50)]
    for it in items:
        journal.append(*it)
        records, cursor = journal.read(cursor, max_records=2)
        seen.extend(records)
    seen.extend(read_all(journal, cursor))
    assert seen == expected(items)


def test_cache_and_disk_reads_return_identical_results(tmp_path: Path) -> None:
    items = [item(i) for i in range(300)]
    journals = [
        Journal(tmp_path / name, fsync=NEVER, segment_bytes=1000, cache_bytes=cache)
        for name, cache in (("cached", 32 << 20), ("disk", 0), ("partial", 2000))
    ]
    try:
        for j in journals:
            fill(j, items)
        for after in range(-1, 305, 23):
            for prefixes in ((), (b"a.",), (b"b.", b"c.")):
                for max_records, max_bytes, max_scan in (
                    (1, 1, 1),
                    (5, 100, 40),
                    (512, 4 << 20, 20000),
                ):
                    results = [
                        j.read(
                            after,
                            prefixes=prefixes,
                            max_records=max_records,
                            max_bytes=max_bytes,
                            max_scan=max_scan,
                        )
                        for j in journals
                    ]
                    assert results[0] == results[1] == results[2]
    finally:
        for j in journals:
            j.close()


# -- segments and reopening ---------------------------------------------------


def test_segments_roll_at_segment_bytes_and_big_records_get_their_own(tmp_path: Path) -> None:
    with Journal(tmp_path, fsync=NEVER, segment_bytes=186) as j:
        j.append(0, 1, b"t", b"x" * 50, None)  # 93 bytes on disk
        j.append(0, 2, b"t", b"x" * 50, None)  # 186: fits exactly
        j.append(0, 3, b"t", b"x" * 500, None)  # too big for anything: a segment alone
        j.append(0, 4, b"t", b"x" * 50, None)
        names = [p.name for p in segment_files(tmp_path)]
        assert names == [f"{n:020d}.seg" for n in (1, 3, 4)]
        assert [p.stat().st_size for p in segment_files(tmp_path)] == [186, 543, 93]
        assert [r.seq for r in read_all(j)] == [1, 2, 3, 4]


def test_reopen_restores_head_records_and_sessions(tmp_path: Path) -> None:
    items = [item(i) for i in range(40)]
    with Journal(tmp_path, fsync=NEVER, segment_bytes=500) as j:
        fill(j, items)
        sessions = j.sessions()
    assert len(segment_files(tmp_path)) > 1
    with Journal(tmp_path, fsync=NEVER, segment_bytes=500) as j:
        assert (j.head, j.first) == (40, 1)
        assert read_all(j) == expected(items)
        assert j.sessions() == sessions == {0: 36, 1: 37, 2: 38, 3: 39}
        assert j.append(*item(40)) == 41
    with Journal(tmp_path, fsync=NEVER) as j:
        assert read_all(j) == expected([*items, item(40)])


def test_sessions_keep_the_highest_seq_even_when_it_arrives_early(journal: Journal) -> None:
    journal.append(5, 10, b"t", b"e", None)
    journal.append(5, 3, b"t", b"e", None)
    journal.append(6, 0, b"t", b"e", None)
    assert journal.sessions() == {5: 10, 6: 0}


# -- recovery -----------------------------------------------------------------

record_items = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.integers(0, 2**64 - 1),
        st.binary(max_size=12).map(lambda b: b"t." + b),
        st.binary(max_size=60),
        st.none() | st.binary(max_size=60),
    ),
    min_size=1,
    max_size=40,
)
segment_sizes = st.sampled_from([64, 256, 1024, 1 << 20])


def _write_and_locate_last(
    directory: Path, items: list[Item], segment_bytes: int
) -> tuple[Path, int, list[int]]:
    """Write the journal; return its last segment, that segment's first offset, and record ends in it."""
    with Journal(directory, fsync=NEVER, segment_bytes=segment_bytes) as j:
        fill(j, items)
    last = segment_files(directory)[-1]
    last_first = int(last.name[:20])
    ends: list[int] = []
    position = 0
    for it in items[last_first - 1 :]:
        position += frame_size(it)
        ends.append(position)
    assert ends[-1] == last.stat().st_size
    return last, last_first, ends


def _check_recovered(directory: Path, items: list[Item], kept: int) -> None:
    with Journal(directory, fsync=NEVER) as j:
        assert j.head == kept
        assert j.first == 1
        assert read_all(j) == expected(items[:kept])
        extra: Item = (9, 9, b"t.after", b"env", b"blob")
        assert j.append(*extra) == kept + 1
        assert j.read(kept)[0] == [Record(kept + 1, *extra)]
    with Journal(directory, fsync=NEVER) as j:
        assert read_all(j) == expected([*items[:kept], extra])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=record_items, segment_bytes=segment_sizes, data=st.data())
def test_recovery_after_truncating_last_segment_keeps_exactly_whole_records(
    items: list[Item], segment_bytes: int, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        last, last_first, ends = _write_and_locate_last(directory, items, segment_bytes)
        cut = data.draw(st.integers(0, ends[-1]), label="cut")
        os.truncate(last, cut)
        kept = last_first - 1 + sum(1 for end in ends if end <= cut)
        _check_recovered(directory, items, kept)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=record_items, segment_bytes=segment_sizes, data=st.data())
def test_recovery_after_flipping_a_byte_keeps_exactly_the_records_before_it(
    items: list[Item], segment_bytes: int, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        last, last_first, ends = _write_and_locate_last(directory, items, segment_bytes)
        position = data.draw(st.integers(0, ends[-1] - 1), label="position")
        flip = data.draw(st.integers(1, 255), label="flip")
        content = bytearray(last.read_bytes())
        content[position] ^= flip
        last.write_bytes(bytes(content))
        damaged = sum(1 for end in ends if end <= position)  # index within the segment
        _check_recovered(directory, items, last_first - 1 + damaged)


def test_torn_tail_is_truncated_and_logged(tmp_path: Path) -> None:
    items = [item(i) for i in range(5)]
    with Journal(tmp_path, fsync=NEVER) as j:
        fill(j, items)
    segment = segment_files(tmp_path)[-1]
    size = segment.stat().st_size
    os.truncate(segment, size - 3)
    with capture_logs() as logs, Journal(tmp_path, fsync=NEVER) as j:
        assert j.head == 4
    tail = size - frame_size(items[-1])
    assert logs == [
        {
            "event": "journal.truncated",
            "log_level": "warning",
            "path": str(segment),
            "position": tail,
            "dropped_bytes": frame_size(items[-1]) - 3,
            "reason": "incomplete record",
        }
    ]
    assert segment.stat().st_size == tail


def test_damage_in_a_middle_segment_sets_later_segments_aside(tmp_path: Path) -> None:
    items = [item(i) for i in range(30)]
    with Journal(tmp_path, fsync=NEVER, segment_bytes=300) as j:
        fill(j, items)
    segments = segment_files(tmp_path)
    assert len(segments) >= 3
    middle = segments[1]
    middle_first = int(middle.name[:20])
    second_record = frame_size(items[middle_first - 1])
    content = bytearray(middle.read_bytes())
    content[second_record + 20] ^= 0xFF  # inside the middle segment's second record
    middle.write_bytes(bytes(content))

    with capture_logs() as logs, Journal(tmp_path, fsync=NEVER) as j:
        assert j.head == middle_first
        assert read_all(j) == expected(items[:middle_first])
        assert j.append(*item(99)) == middle_first + 1
    assert [log["event"] for log in logs] == ["journal.truncated"] + ["journal.quarantined"] * (
        len(segments) - 2
    )
    assert logs[0]["reason"] == "crc mismatch"
    assert sorted(p.name for p in tmp_path.glob("*.corrupt")) == [
        p.name + ".corrupt" for p in segments[2:]
    ]
    with Journal(tmp_path, fsync=NEVER) as j:
        assert read_all(j) == expected([*items[:middle_first], item(99)])


# -- retention ----------------------------------------------------------------


def test_retention_by_size_deletes_whole_oldest_segments(tmp_path: Path) -> None:
    items = [item(i) for i in range(60)]
    with Journal(tmp_path, fsync=NEVER, segment_bytes=400, retention_bytes=1000) as j:
        fill(j, items)
        before = segment_files(tmp_path)
        deleted = j.enforce_retention()
        after = segment_files(tmp_path)
        assert deleted > 0
        assert after == before[deleted:]
        assert sum(p.stat().st_size for p in after) <= 1000
        assert j.first == int(after[0].name[:20])
        assert j.head == 60
        assert read_all(j) == expected(items)[j.first - 1 :]
        assert j.read(0, max_records=1)[0][0].offset == j.first
        assert j.enforce_retention() == 0


def test_retention_by_age_uses_segment_mtime_and_keeps_the_active_segment(tmp_path: Path) -> None:
    items = [item(i) for i in range(40)]
    with Journal(tmp_path, fsync=NEVER, segment_bytes=300, retention_age_s=60) as j:
        fill(j, items)
        segments = segment_files(tmp_path)
        now = time.time()
        for old in segments[:2]:
            os.utime(old, (now - 120, now - 120))
        assert j.enforce_retention(now) == 2
        assert segment_files(tmp_path) == segments[2:]
        # Everything is old an hour from now, but the active segment stays.
        assert j.enforce_retention(now + 3600) == len(segments) - 3
        assert segment_files(tmp_path) == segments[-1:]
        assert read_all(j) == expected(items)[j.first - 1 :]


def test_retention_keeps_sessions_and_offsets_across_reopen(tmp_path: Path) -> None:
    with Journal(tmp_path, fsync=NEVER, segment_bytes=200, retention_bytes=0) as j:
        j.append(1, 100, b"t", b"x" * 100, None)
        j.append(2, 7, b"t", b"x" * 100, None)
        j.append(3, 5, b"t", b"x" * 100, None)
        assert j.enforce_retention() == 2
        assert j.sessions() == {1: 100, 2: 7, 3: 5}
        assert (j.first, j.head) == (3, 3)
        assert j.read(0) == ([Record(3, 3, 5, b"t", b"x" * 100, None)], 3)
        assert j.read(0, max_records=0) == ([], 2)
        assert j.append(4, 1, b"t", b"e", None) == 4
    with Journal(tmp_path, fsync=NEVER) as j:
        assert (j.first, j.head) == (3, 4)


def test_retention_that_empties_the_cache_still_reads_from_first(tmp_path: Path) -> None:
    items = [item(i) for i in range(50)]
    with Journal(
        tmp_path, fsync=NEVER, segment_bytes=300, retention_bytes=600, cache_bytes=10_000
    ) as j:
        fill(j, items)
        j.enforce_retention()
        assert read_all(j) == expected(items)[j.first - 1 :]
        fill(j, [item(50)])
        assert read_all(j, j.head - 1) == expected([item(50)], 51)


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
        assert j.head == count
        records = read_all(j)
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
        assert reopened.head == 1
