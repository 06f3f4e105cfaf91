"""The memory actor's store: turns, memories, people and profiles in one DuckDB file.

Plain library code, no bus, split by what it holds: :mod:`.turns`, :mod:`.memories`
(with the corrections and contradictions logs), :mod:`.people` (with profiles),
:mod:`.migrations` (the schema) and :mod:`.database` (the connection they share).

Crash consistency comes from DuckDB's own WAL plus :meth:`MemoryStore.transaction`,
which commits the bus journal offset in the same transaction as the rows it
produced: after a SIGKILL the store holds exactly the effects of offsets
``1..applied_offset``, so replay neither loses nor doubles a memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Final

from actors.memory.store.database import Database, StoreError
from actors.memory.store.memories import KINDS, SOURCES, Kind, Memory, MemoryTable, Source
from actors.memory.store.migrations import MIGRATIONS, SCHEMA_VERSION, migrate
from actors.memory.store.people import PeopleTable, ProfileRow
from actors.memory.store.turns import StoredTurn, TurnTable

_TABLES: Final = ("turns", "memories", "people", "profiles", "corrections", "contradictions")


class MemoryStore:
    """One DuckDB file holding the memory actor's state, as three tables that share a connection.

    ``turns``, ``memories`` and ``people`` hold the rows; :meth:`transaction` makes any
    mix of their writes one atomic commit with the bus offset. Safe to call from several
    threads; methods called outside a transaction commit on their own.
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._db = Database(self.path, clock=clock)
        try:
            with self._db.locked() as con:
                migrate(con, self.path, now=clock())
        except BaseException:
            self._db.close()
            raise
        self.turns = TurnTable(self._db)
        self.memories = MemoryTable(self._db)
        self.people = PeopleTable(self._db)

    def close(self) -> None:
        """Close the file; safe to call twice."""
        self._db.close()

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return self._db.scalar("SELECT max(version) FROM schema_version")

    @property
    def applied_offset(self) -> int:
        """The bus journal offset whose effects were last committed (0 = none)."""
        return self._db.applied_offset

    def setting(self, key: str) -> str | None:
        """A value the store keeps about itself (the embedding model, a re-index cursor)."""
        with self._db.locked() as con:
            row = con.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
        return None if row is None else str(row[0])

    def set_setting(self, key: str, value: str | None) -> None:
        """Keep ``value`` under ``key``; None removes it. Joins an open transaction."""
        with self._db.atomic() as con:
            if value is None:
                con.execute("DELETE FROM settings WHERE key = ?", [key])
            else:
                con.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", [key, value])

    def transaction(self, offset: int | None = None) -> AbstractContextManager[None]:
        """Commit everything inside atomically, together with ``applied_offset = offset``.

        The offset never moves backwards. An exception rolls everything back (the offset
        included) and propagates. Nesting is a :class:`StoreError`.
        """
        return self._db.transaction(offset)

    def rewind_offset(self, offset: int) -> None:
        """Lower the committed offset to ``offset``: the journal lost history and hands out
        the numbers above it again (the one time it moves backwards; see hexbus.epoch)."""
        with self._db.atomic() as con:
            con.execute(
                "UPDATE meta SET value = least(value, ?) WHERE key = 'applied_offset'", [offset]
            )

    def forget_person(self, person_id: str) -> dict[str, int]:
        """Remove everything about a person; returns the rows removed per table.

        Covers their memories (with the corrections and contradictions naming
        them), their turns, profile and person row. Read ``memories.about`` first
        to learn the labels to drop from the indexes.
        """
        with self._db.atomic():
            return {
                **self.memories.forget_person(person_id),
                **self.turns.forget_person(person_id),
                **self.people.forget_person(person_id),
            }

    def counts(self) -> dict[str, int]:
        """Rows per table, plus archived, pending and superseded memories."""
        out = {table: self._db.scalar(f"SELECT count(*) FROM {table}") for table in _TABLES}
        for name, where in (
            ("archived", "archived"),
            ("pending", "NOT approved"),
            ("superseded", "superseded_by <> ''"),
        ):
            out[name] = self._db.scalar(f"SELECT count(*) FROM memories WHERE {where}")
        return out


__all__ = [
    "KINDS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SOURCES",
    "Kind",
    "Memory",
    "MemoryStore",
    "ProfileRow",
    "Source",
    "StoreError",
    "StoredTurn",
    "migrate",
]
