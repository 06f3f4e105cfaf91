"""The broker's durable journal on disk: segments, reopening, recovery from damage, retention."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from hexbus.epoch import RESERVE, Start, mark_path, read_starts
from hexbus.journal import Journal, Record
from tests.support.journal import NEVER, Item, expected, fill, item, read_all


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def frame_size(it: Item) -> int:
    _session, _seq, topic, envelope, blob = it
    return 16 + 26 + len(topic) + len(envelope) + (0 if blob is None else len(blob))


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
        assert j.first == 1 or kept == 0  # an emptied only segment goes: numbering jumps
        assert read_all(j) == expected(items[:kept])
        extra: Item = (9, 9, b"t.after", b"env", b"blob")
        offset = j.append(*extra)
        assert offset > len(items)  # no offset handed out before the damage is handed out again
        assert j.read(kept)[0] == [Record(offset, *extra)]
    with Journal(directory, fsync=NEVER) as j:
        assert read_all(j) == [*expected(items[:kept]), Record(offset, *extra)]


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=record_items, segment_bytes=segment_sizes, data=st.data())
def test_recovery_after_truncating_last_segment_keeps_exactly_whole_records(
    items: list[Item], segment_bytes: int, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "journal"  # its mark goes beside it
        last, last_first, ends = _write_and_locate_last(directory, items, segment_bytes)
        cut = data.draw(st.integers(0, ends[-1]), label="cut")
        os.truncate(last, cut)
        kept = last_first - 1 + sum(1 for end in ends if end <= cut)
        _check_recovered(directory, items, kept)


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=record_items, segment_bytes=segment_sizes, data=st.data())
def test_recovery_after_flipping_a_byte_keeps_exactly_the_records_before_it(
    items: list[Item], segment_bytes: int, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "journal"  # its mark goes beside it
        last, last_first, ends = _write_and_locate_last(directory, items, segment_bytes)
        position = data.draw(st.integers(0, ends[-1] - 1), label="position")
        flip = data.draw(st.integers(1, 255), label="flip")
        content = bytearray(last.read_bytes())
        content[position] ^= flip
        last.write_bytes(bytes(content))
        damaged = sum(1 for end in ends if end <= position)  # index within the segment
        _check_recovered(directory, items, last_first - 1 + damaged)


def test_a_torn_tail_after_a_crash_is_cut_and_numbering_goes_past_the_reservation(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "journal"
    items = [item(i) for i in range(5)]
    j = Journal(directory, fsync=NEVER)
    fill(j, items)
    j.sync()
    j._close_fds()  # the process dies here: no clean close, no clean mark
    segment = segment_files(directory)[-1]
    size = segment.stat().st_size
    os.truncate(segment, size - 3)  # the last write was cut short
    with capture_logs() as logs, Journal(directory, fsync=NEVER) as j:
        assert read_all(j) == expected(items[:4])
        assert j.epoch == first_epoch(directory)  # a torn write is no loss of history
        assert j.append(*item(9)) == RESERVE + 1
    tail = size - frame_size(items[-1])
    assert logs == [
        {
            "event": "journal.truncated",
            "log_level": "warning",
            "path": str(segment),
            "position": tail,
            "dropped_bytes": frame_size(items[-1]) - 3,
            "reason": "incomplete record",
        },
        {
            "event": "journal.offsets_skipped",
            "log_level": "info",
            "skipped_from": 5,
            "skipped_to": RESERVE,
            "reason": "unclean stop: no offset the last broker may have handed out is reused",
        },
    ]
    assert segment.stat().st_size == tail


def test_a_tail_cut_after_a_clean_close_is_history_lost(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    items = [item(i) for i in range(5)]
    with Journal(directory, fsync=NEVER) as j:
        fill(j, items)
        epoch = j.epoch
    segment = segment_files(directory)[-1]
    os.truncate(segment, segment.stat().st_size - 3)
    with capture_logs() as logs, Journal(directory, fsync=NEVER) as j:
        assert read_all(j) == expected(items[:4])
        assert j.epoch != epoch
        assert j.epoch_start == Start(j.epoch, 6, 4)  # 5 was handed out, and is gone
        assert j.append(*item(9)) == 6
    assert [log["event"] for log in logs] == ["journal.truncated", "journal.history_lost"]
    assert logs[1]["lost"] == ["offsets 5-5, whole at a clean close, are gone"]


def test_damage_in_a_middle_segment_sets_later_segments_aside_in_a_new_epoch(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "journal"
    items = [item(i) for i in range(30)]
    with Journal(directory, fsync=NEVER, segment_bytes=300) as j:
        fill(j, items)
        epoch = j.epoch
    segments = segment_files(directory)
    assert len(segments) >= 3
    middle = segments[1]
    middle_first = int(middle.name[:20])
    second_record = frame_size(items[middle_first - 1])
    content = bytearray(middle.read_bytes())
    content[second_record + 20] ^= 0xFF  # inside the middle segment's second record
    middle.write_bytes(bytes(content))

    with capture_logs() as logs, Journal(directory, fsync=NEVER) as j:
        assert read_all(j) == expected(items[:middle_first])
        assert (j.epoch != epoch, j.epoch_start.lost_after) == (True, middle_first)
        assert j.append(*item(99)) == 31  # never one of the offsets that were lost
    events = [log["event"] for log in logs]
    assert events == ["journal.truncated"] + ["journal.quarantined"] * (len(segments) - 2) + [
        "journal.history_lost"
    ]
    assert logs[0]["reason"] == "crc mismatch"
    assert sorted(p.name for p in directory.glob("*.corrupt")) == [
        p.name + ".corrupt" for p in segments[2:]
    ]
    with capture_logs() as logs, Journal(directory, fsync=NEVER) as j:
        assert read_all(j) == [*expected(items[:middle_first]), Record(31, *item(99))]
        assert j.read(middle_first) == ([Record(31, *item(99))], 31)
    assert logs == []  # the jump is on record: reopening is quiet


def test_a_deleted_journal_folder_starts_a_new_epoch_above_every_old_offset(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "journal"
    with Journal(directory, fsync=NEVER) as j:
        fill(j, [item(i) for i in range(7)])
        epoch = j.epoch
    shutil.rmtree(directory)
    with capture_logs() as logs, Journal(directory, fsync=NEVER) as j:
        assert (j.epoch != epoch, j.first, j.head) == (True, 8, 7)
        assert j.epoch_start == Start(j.epoch, 8, 0)
        assert j.append(*item(7)) == 8
    assert [log["event"] for log in logs] == ["journal.history_lost"]


def test_a_journal_without_a_mark_goes_on_from_its_head(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    with Journal(directory, fsync=NEVER) as j:
        fill(j, [item(i) for i in range(3)])
        epoch = j.epoch
    mark_path(directory).unlink()  # a journal from before marks, or a mark removed by hand
    with capture_logs() as logs, Journal(directory, fsync=NEVER) as j:
        assert (j.epoch, j.append(*item(3))) == (epoch, 4)
    assert logs == []


def test_a_damaged_mark_is_history_lost(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    with Journal(directory, fsync=NEVER) as j:
        fill(j, [item(i) for i in range(3)])
        epoch = j.epoch
    mark_path(directory).write_bytes(b"garbage")
    with capture_logs() as logs, Journal(directory, fsync=NEVER) as j:
        assert j.epoch != epoch
        assert j.append(*item(3)) == 4
    assert [log["event"] for log in logs] == ["journal.history_lost"]
    assert "damaged" in logs[0]["lost"][0]


def first_epoch(directory: Path) -> str:
    return read_starts(directory)[0].epoch


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
