"""The broker's durable journal: appending, and reading back with filters, limits and cursors."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hexbus.journal import Journal, JournalCorrupt, Record
from tests.support.journal import NEVER, expected, fill, item, read_all

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
