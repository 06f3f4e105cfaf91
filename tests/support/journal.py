"""Journal test helpers: deterministic records, and reading a whole journal back page by page."""

from __future__ import annotations

from hexbus.journal import FsyncPolicy, Journal, Record

NEVER = FsyncPolicy(mode="never")


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
