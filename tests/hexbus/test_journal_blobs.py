"""Large blobs kept in files beside the journal, with a budget of their own (issue 13, item 3).

Real journals on real files: round trips through the cache and the disk, reopens, crashes
between a blob's file and its record, retention of records and of blobs each by its own size,
a subscriber's floor and the blob cap, damaged files, and a full disk (a real tmpfs).
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from hexbus.journal import Journal, Record, _frame_size, only_out_of_space
from tests.support.disk import debris, fill, small_disk
from tests.support.journal import NEVER, Item, expected, read_all

AUDIO = 100_000  # an utterance's audio, about 3 s of 16 kHz PCM16
FILE_AT = 64 << 10


def blob_files(directory: Path) -> list[int]:
    return sorted(int(p.name[:20]) for p in (directory / "blobs").glob("*.blob"))


def segment_bytes_on_disk(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("*.seg"))


def speech(i: int) -> Item:
    return (1, i, b"stt.segment", b"segment-%d" % i, bytes([i % 251]) * AUDIO)


def chat(i: int) -> Item:
    return (2, i, b"chat.message", b"the spare key is under the blue pot, %d" % i, None)


def open_journal(directory: Path, **kwargs: object) -> Journal:
    options: dict[str, object] = {"fsync": NEVER, "blob_file_bytes": FILE_AT}
    options.update(kwargs)
    return Journal(directory, **options)  # type: ignore[arg-type]


def test_large_blobs_live_in_files_named_by_offset_and_read_back_from_cache_and_disk(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "journal"
    items = [speech(i) if i % 2 else chat(i) for i in range(1, 21)]
    items.append((3, 1, b"memory.document", b"doc", b"x" * FILE_AT))  # exactly the threshold
    items.append((3, 2, b"probe.small", b"small", b"y" * (FILE_AT - 1)))  # one byte under it
    with open_journal(directory) as j:
        for it in items:
            j.append(*it)
        assert read_all(j) == expected(items)  # from the cache
        assert j.blob_bytes == 10 * AUDIO + FILE_AT
    assert blob_files(directory) == [*range(1, 21, 2), 21]
    assert segment_bytes_on_disk(directory) < FILE_AT + 4096  # the small blob stays inline
    with open_journal(directory, cache_bytes=0) as j:
        assert read_all(j) == expected(items)  # from the disk, after a reopen
        assert j.read(0, max_records=1)[0] == [Record(1, *items[0])]


def test_a_journal_without_the_threshold_still_reads_blob_files_it_wrote_before(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "journal"
    items = [speech(1), chat(2)]
    with open_journal(directory) as j:
        for it in items:
            j.append(*it)
    with open_journal(directory, blob_file_bytes=None) as j:  # bus.journal.blob_file_kb = 0
        j.append(*speech(3))
        assert read_all(j) == expected([*items, speech(3)])
    assert blob_files(directory) == [1]


blob_sizes = st.one_of(st.none(), st.integers(0, 40), st.integers(60, 300))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(blob_sizes, min_size=1, max_size=30),
    threshold=st.sampled_from([1, 50, 200]),
    crash_after=st.integers(0, 30),
)
def test_any_mix_reads_back_whole_across_a_crash_and_files_without_records_are_removed(
    sizes: list[int | None], threshold: int, crash_after: int
) -> None:
    items: list[Item] = [
        (i % 3, i, b"t.%d" % i, b"env-%d" % i, None if n is None else bytes([i]) * n)
        for i, n in enumerate(sizes, start=1)
    ]
    kept = min(crash_after, len(items))
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "journal"
        j = open_journal(directory, blob_file_bytes=threshold, segment_bytes=512)
        for it in items[:kept]:
            j.append(*it)
        j.sync()
        # The process dies after writing the next blob's file, before its record.
        orphan = j.next_offset
        j._close_fds()
        (directory / "blobs" / f"{orphan:020d}.blob").write_bytes(b"never referred to")
        with open_journal(directory, blob_file_bytes=threshold, cache_bytes=0) as j:
            assert read_all(j) == expected(items[:kept])
            offset = j.append(9, 9, b"t.after", b"env", b"z" * 300)
            assert offset > orphan
            assert j.read(offset - 1)[0] == [Record(offset, 9, 9, b"t.after", b"env", b"z" * 300)]
        assert orphan not in blob_files(directory)


def test_hours_of_speech_do_not_push_chat_out_of_the_records_budget(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    with open_journal(
        directory,
        segment_bytes=16 << 10,
        retention_bytes=64 << 10,
        blob_retention_bytes=1 << 20,
        cache_bytes=0,
    ) as j:
        items = [speech(i) if i % 3 else chat(i) for i in range(1, 61)]  # 40 utterances: 4 MB
        for it in items:
            j.append(*it)
        assert j.enforce_retention(cap_bytes=256 << 10) == 0  # the records are a few kB
        assert j.enforce_blob_retention(cap_bytes=4 << 20) == []  # nobody said they need them
        assert j.blob_bytes <= 1 << 20
        records = read_all(j)
    assert [r.offset for r in records] == list(range(1, 61))  # every record, every chat line
    lost = [r.offset for r in records if r.lost]
    kept = [r.offset for r in records if r.blob is not None and len(r.blob) == AUDIO]
    assert lost and kept and max(lost) < min(kept)  # the oldest audio went, the newest stayed
    assert all(r.blob is None and not r.lost for r in records if r.topic == b"chat.message")
    assert blob_files(directory) == kept


def test_a_subscribers_floor_keeps_blobs_up_to_the_cap_and_past_it_says_what_went(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "journal"
    with open_journal(directory, blob_retention_bytes=2 * AUDIO) as j:
        for i in range(1, 11):
            j.append(*speech(i))
        j.append(*chat(11))

        # A stopped subscriber of speech applied up to 3: the blobs after it stay while under
        # the cap.
        def needed(offset: int, topic: bytes) -> bool:
            return offset > 3 and topic.startswith(b"stt.")

        assert j.enforce_blob_retention(needed=needed, cap_bytes=20 * AUDIO) == []
        assert blob_files(directory) == list(range(4, 11))
        # Past the cap they go anyway, and those it needed are said.
        went = j.enforce_blob_retention(needed=needed, cap_bytes=5 * AUDIO)
        assert went == [(4, b"stt.segment"), (5, b"stt.segment")]
        assert blob_files(directory) == list(range(6, 11))
        # The cache forgets them too: read as lost, as from the disk.
        assert [(r.offset, r.lost) for r in j.read(3, max_records=3)[0]] == [
            (4, True),
            (5, True),
            (6, False),
        ]
        # Nobody who needs speech: they go down to the size limit.
        assert j.enforce_blob_retention(cap_bytes=5 * AUDIO) == []
        assert blob_files(directory) == [9, 10]
        # Records whose segments retention deletes take their blob files with them.
    with open_journal(directory, segment_bytes=1, retention_bytes=1) as j:
        j.append(*chat(12))
        j.enforce_retention()
        assert j.first == 12 and blob_files(directory) == []


def test_old_blobs_go_by_the_journals_age_once_applied(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    with open_journal(directory, retention_age_s=3600) as j:
        for i in range(1, 5):
            j.append(*speech(i))
        for n in (1, 2, 3):
            path = directory / "blobs" / f"{n:020d}.blob"
            os.utime(path, (path.stat().st_atime - 7200, path.stat().st_mtime - 7200))
        assert j.enforce_blob_retention(needed=lambda o, _: o > 1, cap_bytes=1 << 30) == []
        assert blob_files(directory) == [2, 3, 4]  # 2 and 3 are old, but not applied yet
        assert j.enforce_blob_retention(needed=lambda o, _: o > 4, cap_bytes=1 << 30) == []
        assert blob_files(directory) == [4]


def test_a_damaged_or_missing_blob_file_is_read_as_lost_and_said(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    with open_journal(directory) as j:
        for i in range(1, 4):
            j.append(*speech(i))
    (directory / "blobs" / f"{1:020d}.blob").unlink()
    damaged = directory / "blobs" / f"{2:020d}.blob"
    data = bytearray(damaged.read_bytes())
    data[500] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with capture_logs() as logs, open_journal(directory, cache_bytes=0) as j:
        records = read_all(j)
    assert [(r.offset, r.lost, r.blob is None) for r in records] == [
        (1, True, True),
        (2, True, True),
        (3, False, False),
    ]
    assert records[0].envelope == b"segment-1"  # the event itself is kept
    assert [e["offset"] for e in logs if e["event"] == "journal.blob_damaged"] == [2]


def test_a_full_disk_refuses_the_event_whole_and_takes_it_once_there_is_room() -> None:
    with small_disk("4m") as root:
        directory = root / "data" / "journal"
        with open_journal(directory) as j:
            j.append(*chat(1))
            filler = fill(root / "data")
            os.truncate(filler, filler.stat().st_size - 50_000)  # room for a record, not audio
            with pytest.raises(OSError) as caught:
                j.append(*speech(2))
            assert caught.value.errno == errno.ENOSPC and only_out_of_space(caught.value)
            assert blob_files(directory) == [] and debris(root) == []
            assert j.next_offset == 2  # nothing was numbered
            filler.unlink()
            assert j.append(*speech(2)) == 2
            assert read_all(j) == expected([chat(1), speech(2)])
        with open_journal(directory, cache_bytes=0) as j:
            assert read_all(j) == expected([chat(1), speech(2)])


def test_a_needed_blob_is_kept_while_newer_ones_nobody_needs_make_the_room(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "journal"
    with open_journal(directory, blob_retention_bytes=2 * AUDIO) as j:
        j.append(3, 1, b"memory.document", b"doc", b"d" * AUDIO)  # a stopped memory needs it
        for i in range(2, 12):
            j.append(*speech(i))  # stt applied these

        def needed(offset: int, topic: bytes) -> bool:
            return offset > 0 and topic.startswith(b"memory.")

        for _ in range(3):
            assert j.enforce_blob_retention(needed=needed, cap_bytes=5 * AUDIO) == []
            assert blob_files(directory) == [1, 11]


def test_a_reader_of_chat_never_opens_the_files_of_speech_it_skips(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    with open_journal(directory) as j:
        for i in range(1, 11):
            j.append(*(chat(i) if i == 10 else speech(i)))
    for path in (directory / "blobs").glob("*.blob"):
        path.write_bytes(b"damaged")  # read, each would be said to be damaged
    with capture_logs() as logs, open_journal(directory, cache_bytes=0) as j:
        assert j.read(0, prefixes=(b"chat.",))[0] == [Record(10, *chat(10))]
        assert [e for e in logs if e["event"] == "journal.blob_damaged"] == []
        # A reply's byte budget counts a blob in a file by the length its record keeps.
        records, cursor = j.read(0, max_bytes=3 * AUDIO)
        assert len(records) == 2 and cursor == 2
        assert [e["offset"] for e in logs if e["event"] == "journal.blob_damaged"] == [1, 2]


def test_the_cache_counts_a_blob_in_a_file_as_it_evicts_it(tmp_path: Path) -> None:
    with open_journal(tmp_path / "journal", cache_bytes=10 * AUDIO) as j:
        for i in range(1, 200):
            j.append(*(speech(i) if i % 2 else chat(i)))
            live = j._cache[j._cache_lo :]
            assert j._cache_used == sum(_frame_size(r) for r in live)
        assert len(j._cache[j._cache_lo :]) > 10  # it still caches


def test_blobs_of_a_segment_set_aside_are_set_aside_with_it(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    with open_journal(directory, segment_bytes=150) as j:
        for i in range(1, 10):
            j.append(*speech(i))
    segments = sorted(directory.glob("*.seg"))
    assert len(segments) >= 3
    middle = segments[1]
    middle_first = int(middle.name[:20])
    data = bytearray(middle.read_bytes())
    data[20] ^= 0xFF  # its first record is damaged: the segments after it are set aside
    middle.write_bytes(bytes(data))
    with capture_logs() as logs, open_journal(directory) as j:
        kept = [r.offset for r in read_all(j)]
    assert kept == list(range(1, middle_first))
    assert blob_files(directory) == kept
    aside = sorted(int(p.name[:20]) for p in (directory / "blobs" / "corrupt").glob("*.blob"))
    assert aside == list(range(middle_first, 10))
    assert any(e["event"] == "journal.blobs_set_aside" for e in logs)
