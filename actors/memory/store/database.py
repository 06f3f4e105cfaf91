"""The DuckDB connection the store's tables share: one lock, one transaction at a time.

The bus journal offset lives in the ``meta`` table and is written by
:meth:`Database.transaction` in the same transaction as the rows it produced, so
after a SIGKILL the file holds exactly the effects of offsets ``1..applied_offset``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb


class StoreError(Exception):
    """The store cannot be opened or used; the message names the file and the fix."""


def open_error(path: Path, error: duckdb.Error) -> StoreError:
    """One line saying why DuckDB would not open ``path`` and what to do about it."""
    text = str(error)
    if "not a valid DuckDB database" in text:
        return StoreError(
            f"{path} is not a DuckDB database; move it away or point the memory actor elsewhere"
        )
    if "lock" in text.lower():
        holder = re.search(r"PID \d+", text)
        who = f" ({holder.group(0)})" if holder else ""
        return StoreError(
            f"{path} is locked by another process{who}; stop the other memory actor "
            "or use another path"
        )
    first = text.splitlines()[0] if text else type(error).__name__
    return StoreError(f"{path} cannot be opened: {first}")


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> int:
    """The first column of the first row as an int (0 for none or NULL)."""
    row = con.execute(sql, params).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def dicts(cur: duckdb.DuckDBPyConnection) -> list[dict[str, object]]:
    """The rows of an executed query as dicts keyed by column name."""
    names = [d[0] for d in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


class Database:
    """One DuckDB file, opened once and shared by the store's tables.

    Safe to call from several threads: a re-entrant lock serialises every use of the
    connection, and :meth:`transaction` holds it until the transaction ends. Writes
    made through :meth:`atomic` join the open transaction or commit on their own.
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.RLock()
        self._in_tx = False
        # A zero-byte file holds nothing and DuckDB refuses it; it is what a crash
        # during the very first open leaves behind.
        if self.path.is_file() and self.path.stat().st_size == 0:
            self.path.unlink()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con: duckdb.DuckDBPyConnection | None = duckdb.connect(str(self.path))
        except duckdb.Error as e:
            raise open_error(self.path, e) from None

    def close(self) -> None:
        """Close the file; safe to call twice."""
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    @property
    def _db(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise StoreError(f"{self.path} is closed; open a new MemoryStore")
        return self._con

    @contextmanager
    def locked(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection, for this thread alone until the block ends (reads)."""
        with self._lock:
            yield self._db

    def scalar(self, sql: str, params: list[object] | None = None) -> int:
        with self._lock:
            return scalar(self._db, sql, params)

    @property
    def applied_offset(self) -> int:
        """The bus journal offset whose effects were last committed (0 = none)."""
        return self.scalar("SELECT value FROM meta WHERE key = 'applied_offset'")

    @contextmanager
    def transaction(self, offset: int | None = None) -> Iterator[None]:
        """Commit everything inside atomically, together with ``applied_offset = offset``.

        The offset never moves backwards. An exception rolls everything back (the offset
        included) and propagates. Nesting is a :class:`StoreError`.
        """
        with self._lock:
            if self._in_tx:
                raise StoreError(f"{self.path}: transaction() is already open; do not nest it")
            db = self._db
            db.begin()
            self._in_tx = True
            committed = False
            try:
                yield
                if offset is not None:
                    db.execute(
                        "UPDATE meta SET value = greatest(value, ?) WHERE key = 'applied_offset'",
                        [offset],
                    )
                db.commit()
                committed = True
            finally:
                self._in_tx = False
                if not committed:
                    try:
                        db.rollback()
                    except duckdb.Error:
                        pass  # a failed commit has already rolled back

    @contextmanager
    def atomic(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Join the open transaction, or run in a fresh one."""
        with self._lock:
            if self._in_tx:
                yield self._db
            else:
                with self.transaction():
                    yield self._db
