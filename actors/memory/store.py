"""The memory actor's store: turns, memories, people and profiles in one DuckDB file.

Plain library code, no bus. Crash consistency comes from DuckDB's own WAL plus
:meth:`MemoryStore.transaction`, which commits the bus journal offset in the
same transaction as the rows it produced: after a SIGKILL the store holds
exactly the effects of offsets ``1..applied_offset``, so replay neither loses
nor doubles a memory.

Labels (the integer keys of the vector index) come from a DuckDB sequence, so
they only grow and are never reused, even after a delete or a rolled-back
transaction.
"""

from __future__ import annotations

import re
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args

import duckdb
import msgspec

# "turn": a person's own words, verbatim (episodic memory); the others are distilled or given.
Kind = Literal["fact", "summary", "anchor", "journal", "document", "turn"]
Source = Literal["manual", "ai_suggested", "extracted", "document", "import"]

KINDS: Final[tuple[str, ...]] = get_args(Kind)
SOURCES: Final[tuple[str, ...]] = get_args(Source)
PROFILE_KEEP: Final = 32  # hobbies and tastes each; the newest win
ROSTER_KEEP: Final = 200  # known people per profile; the most recently mentioned win
_PAGE: Final = 1000  # rows per query when streaming the whole table

Unit = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class StoreError(Exception):
    """The store cannot be opened or used; the message names the file and the fix."""


class Memory(msgspec.Struct, kw_only=True):
    """One row of ``memories``."""

    id: Annotated[str, msgspec.Meta(min_length=1)]
    label: int = -1  # assigned by the store on insert
    kind: Kind = "fact"
    text: str
    source: Source = "manual"
    person_id: str = ""  # who it is about; "" = general
    importance: Unit = 0.5
    confidence: Unit = 1.0
    quote: str = ""  # provenance: the exact words it came from
    turn_ids: tuple[str, ...] = ()  # provenance: event ids or imported turn ids
    document: str = ""  # provenance for document chunks: file name + chunk number
    tags: tuple[str, ...] = ()
    approved: bool = True  # False = a pending AI suggestion
    created: float = 0.0  # unix seconds; 0 = now
    updated: float = 0.0
    last_retrieved: float = 0.0
    archived: bool = False
    superseded_by: str = ""
    checked: bool = True  # False: a new fact not yet compared with older ones for contradictions
    journal: str = ""  # journal entries: the Markdown file, relative to the journal folder
    journal_hash: str = ""  # sha256 of that file as last written or read
    # Kept so the vector index can be rebuilt without re-embedding (stored as FLOAT[]).
    embedding: tuple[float, ...] | None = None


class Turn(msgspec.Struct, kw_only=True):
    """One conversation turn, live or imported."""

    id: Annotated[str, msgspec.Meta(min_length=1)]
    conversation: str
    platform: str = ""
    channel: str = ""
    person_id: str = ""
    speaker: str = ""
    role: Literal["user", "assistant"] = "user"
    text: str
    at: float
    source: Literal["live", "import"] = "live"
    meta: dict[str, str] = {}
    summarized: bool = False  # folded into a summary memory already


class Profile(msgspec.Struct, kw_only=True):
    """The persona state profile of one person, read by the brain before each reply."""

    person_id: str
    hobbies: tuple[str, ...] = ()
    tastes: tuple[str, ...] = ()  # artistic tastes
    sentiment: str = ""  # how they feel about Hex lately
    roster: dict[str, dict[str, str]] = {}  # people they know: name -> {sentiment, history, ...}
    updated: float = 0.0


# Each step is applied once, in order, in its own transaction; never edit a
# released step, append a new one.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (  # v1: the initial tables
        "CREATE TABLE meta (key VARCHAR PRIMARY KEY, value BIGINT NOT NULL)",
        "INSERT INTO meta VALUES ('applied_offset', 0)",
        "CREATE SEQUENCE memory_label START 0 MINVALUE 0",
        """CREATE TABLE turns (
            id VARCHAR PRIMARY KEY,
            conversation VARCHAR NOT NULL,
            platform VARCHAR NOT NULL DEFAULT '',
            channel VARCHAR NOT NULL DEFAULT '',
            person_id VARCHAR NOT NULL DEFAULT '',
            speaker VARCHAR NOT NULL DEFAULT '',
            role VARCHAR NOT NULL DEFAULT 'user',
            text VARCHAR NOT NULL,
            "at" DOUBLE NOT NULL,
            source VARCHAR NOT NULL DEFAULT 'live',
            meta VARCHAR NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE memories (
            id VARCHAR PRIMARY KEY,
            label BIGINT NOT NULL UNIQUE,
            kind VARCHAR NOT NULL,
            text VARCHAR NOT NULL,
            source VARCHAR NOT NULL,
            person_id VARCHAR NOT NULL DEFAULT '',
            importance DOUBLE NOT NULL,
            confidence DOUBLE NOT NULL,
            quote VARCHAR NOT NULL DEFAULT '',
            turn_ids VARCHAR[] NOT NULL DEFAULT [],
            tags VARCHAR[] NOT NULL DEFAULT [],
            approved BOOLEAN NOT NULL DEFAULT true,
            created DOUBLE NOT NULL,
            updated DOUBLE NOT NULL,
            last_retrieved DOUBLE NOT NULL DEFAULT 0,
            archived BOOLEAN NOT NULL DEFAULT false,
            superseded_by VARCHAR NOT NULL DEFAULT '',
            embedding FLOAT[]
        )""",
        """CREATE TABLE people (
            person_id VARCHAR PRIMARY KEY,
            display_name VARCHAR NOT NULL DEFAULT '',
            platform VARCHAR NOT NULL DEFAULT '',
            first_seen DOUBLE NOT NULL,
            last_seen DOUBLE NOT NULL
        )""",
        """CREATE TABLE profiles (
            person_id VARCHAR PRIMARY KEY,
            hobbies VARCHAR[] NOT NULL DEFAULT [],
            tastes VARCHAR[] NOT NULL DEFAULT [],
            sentiment VARCHAR NOT NULL DEFAULT '',
            roster VARCHAR NOT NULL DEFAULT '{}',
            updated DOUBLE NOT NULL
        )""",
        """CREATE TABLE contradictions (
            older_id VARCHAR NOT NULL,
            newer_id VARCHAR NOT NULL,
            "at" DOUBLE NOT NULL,
            note VARCHAR NOT NULL DEFAULT ''
        )""",
    ),
    (  # v2: document provenance and the corrections log
        "ALTER TABLE memories ADD COLUMN document VARCHAR NOT NULL DEFAULT ''",
        """CREATE TABLE corrections (
            memory_id VARCHAR NOT NULL,
            "by" VARCHAR NOT NULL,
            note VARCHAR NOT NULL DEFAULT '',
            old_confidence DOUBLE NOT NULL,
            new_confidence DOUBLE NOT NULL,
            "at" DOUBLE NOT NULL
        )""",
    ),
    (  # v3: contradiction checks, journal files, summarised turns
        "ALTER TABLE memories ADD COLUMN checked BOOLEAN NOT NULL DEFAULT true",
        "ALTER TABLE memories ADD COLUMN journal VARCHAR NOT NULL DEFAULT ''",
        "ALTER TABLE memories ADD COLUMN journal_hash VARCHAR NOT NULL DEFAULT ''",
        "ALTER TABLE turns ADD COLUMN summarized BOOLEAN NOT NULL DEFAULT false",
    ),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)

_MEMORY_COLUMNS: Final[tuple[str, ...]] = tuple(Memory.__struct_fields__)
# Quoted because DuckDB reserves some of them ("at", "by").
_MEMORY_SELECT: Final = ", ".join(f'"{c}"' for c in _MEMORY_COLUMNS)
_MEMORY_INSERT: Final = (
    f"INSERT INTO memories ({_MEMORY_SELECT}) VALUES ({', '.join('?' * len(_MEMORY_COLUMNS))})"
)
_TURN_COLUMNS: Final[tuple[str, ...]] = tuple(Turn.__struct_fields__)
_TURN_SELECT: Final = ", ".join(f'"{c}"' for c in _TURN_COLUMNS)
_FROZEN_FIELDS: Final = frozenset({"id", "label"})
_TABLES: Final = ("turns", "memories", "people", "profiles", "corrections", "contradictions")

_json_encode = msgspec.json.Encoder().encode
_decode_meta = msgspec.json.Decoder(dict[str, str]).decode
_decode_roster = msgspec.json.Decoder(dict[str, dict[str, str]]).decode


def migrate(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    steps: Sequence[Sequence[str]] = MIGRATIONS,
    *,
    now: float | None = None,
) -> int:
    """Bring the database behind ``con`` up to ``len(steps)``; returns the version it was at."""
    tables = {row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "schema_version" not in tables:
        if tables:
            raise StoreError(
                f"{path} is a DuckDB database but not a Hex memory store; "
                "point the memory actor at another file"
            )
        con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied DOUBLE)")
    current = _scalar(con, "SELECT max(version) FROM schema_version")
    if current > len(steps):
        raise StoreError(
            f"{path} is at schema version {current} but this Hex knows only {len(steps)}: "
            "it was written by a newer Hex; upgrade"
        )
    for version, statements in enumerate(steps[current:], start=current + 1):
        con.begin()
        try:
            for sql in statements:
                con.execute(sql)
            con.execute(
                "INSERT INTO schema_version VALUES (?, ?)",
                [version, time.time() if now is None else now],
            )
            con.commit()
        except BaseException:
            con.rollback()
            raise
    return current


def _open_error(path: Path, error: duckdb.Error) -> StoreError:
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


def _merge_names(known: Sequence[str], new: Sequence[str], keep: int) -> tuple[str, ...]:
    fresh: list[str] = []
    for name in (n.strip() for n in new):
        if name:
            fresh = [f for f in fresh if f.casefold() != name.casefold()] + [name]
    lowered = {f.casefold() for f in fresh}
    out = [k for k in known if k.casefold() not in lowered] + fresh
    return tuple(out[-keep:])


def _merge_roster(
    known: dict[str, dict[str, str]], new: dict[str, dict[str, str]]
) -> dict[str, dict[str, str]]:
    out = dict(known)
    for name, entry in new.items():
        name = name.strip()
        if not name:
            continue
        old_key = next((k for k in out if k.casefold() == name.casefold()), None)
        old = out.pop(old_key) if old_key is not None else {}
        # Empty values mean "nothing new", so they never erase what is known.
        out[name] = {**old, **{k: v for k, v in entry.items() if v}}
    return dict(list(out.items())[-ROSTER_KEEP:])


def _memory_row(m: Memory) -> list[object]:
    row: list[object] = []
    for name in _MEMORY_COLUMNS:
        value = getattr(m, name)
        row.append(list(value) if isinstance(value, tuple) else value)
    return row


def _memory_from_row(row: tuple[Any, ...]) -> Memory:
    fields: dict[str, Any] = dict(zip(_MEMORY_COLUMNS, row, strict=True))
    fields["turn_ids"] = tuple(fields["turn_ids"])
    fields["tags"] = tuple(fields["tags"])
    if fields["embedding"] is not None:
        fields["embedding"] = tuple(fields["embedding"])
    return Memory(**fields)


def _turn_from_row(row: tuple[Any, ...]) -> Turn:
    fields: dict[str, Any] = dict(zip(_TURN_COLUMNS, row, strict=True))
    fields["meta"] = _decode_meta(fields["meta"])
    return Turn(**fields)


def _checked(memory: Memory) -> Memory:
    """Validate types and ranges (construction alone checks neither)."""
    if memory.embedding is not None:
        # Embedders hand over numpy floats, which msgspec does not take as float.
        memory = msgspec.structs.replace(memory, embedding=tuple(map(float, memory.embedding)))
    return msgspec.convert(msgspec.to_builtins(memory), Memory)


def _scalar(db: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> int:
    row = db.execute(sql, params).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


class MemoryStore:
    """One DuckDB file holding the memory actor's state.

    Safe to call from several threads: one lock serialises calls, and a
    :meth:`transaction` holds it until it ends. Methods called outside a
    transaction commit on their own.
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
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
            raise _open_error(self.path, e) from None
        try:
            migrate(self._con, self.path, now=clock())
        except BaseException:
            self._con.close()
            self._con = None
            raise

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        """Close the file; safe to call twice."""
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self._lock:
            return _scalar(self._db, "SELECT max(version) FROM schema_version")

    @property
    def _db(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise StoreError(f"{self.path} is closed; open a new MemoryStore")
        return self._con

    @property
    def applied_offset(self) -> int:
        """The bus journal offset whose effects were last committed (0 = none)."""
        with self._lock:
            return _scalar(self._db, "SELECT value FROM meta WHERE key = 'applied_offset'")

    @contextmanager
    def transaction(self, offset: int | None = None) -> Iterator[None]:
        """Commit everything inside atomically, together with ``applied_offset = offset``.

        An exception rolls everything back (the offset included) and propagates.
        Nesting is a :class:`StoreError`.
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
                    db.execute("UPDATE meta SET value = ? WHERE key = 'applied_offset'", [offset])
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
    def _atomic(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Join the open transaction, or run in a fresh one."""
        with self._lock:
            if self._in_tx:
                yield self._db
            else:
                with self.transaction():
                    yield self._db

    # -- turns -------------------------------------------------------------

    def add_turn(self, turn: Turn) -> bool:
        """Store a turn; False when its id is already stored."""
        turn = msgspec.convert(msgspec.to_builtins(turn), Turn)
        values = [getattr(turn, c) for c in _TURN_COLUMNS]
        values[_TURN_COLUMNS.index("meta")] = _json_encode(turn.meta).decode()
        with self._atomic() as db:
            row = db.execute(
                f"INSERT INTO turns ({_TURN_SELECT}) VALUES ({', '.join('?' * len(values))}) "
                "ON CONFLICT DO NOTHING",
                values,
            ).fetchone()
        return bool(row and row[0])

    def turn(self, id: str) -> Turn | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_TURN_SELECT} FROM turns WHERE id = ?", [id]
            ).fetchone()
        return _turn_from_row(row) if row else None

    def turns(self, conversation: str, limit: int = 50, before: float | None = None) -> list[Turn]:
        """The latest ``limit`` turns of a conversation (before ``before``), newest last."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_TURN_SELECT} FROM turns WHERE conversation = ? "
                'AND (?::DOUBLE IS NULL OR "at" < ?::DOUBLE) ORDER BY "at" DESC, id DESC LIMIT ?',
                [conversation, before, before, limit],
            ).fetchall()
        return [_turn_from_row(r) for r in reversed(rows)]

    # -- memories ----------------------------------------------------------

    def add_memory(self, memory: Memory) -> Memory:
        """Store a memory with a fresh label; an id already stored returns the stored row."""
        memory = _checked(memory)
        now = self._clock()
        with self._atomic() as db:
            if (existing := self._get(memory.id)) is not None:
                return existing
            label = _scalar(db, "SELECT nextval('memory_label')")
            created = memory.created or now
            stored = msgspec.structs.replace(
                memory, label=label, created=created, updated=memory.updated or created
            )
            db.execute(_MEMORY_INSERT, _memory_row(stored))
        return self._roundtrip(stored)

    def update_memory(self, id: str, **changes: object) -> Memory:
        """Change fields of a stored memory (not ``id`` or ``label``); KeyError when missing."""
        if frozen := _FROZEN_FIELDS & changes.keys():
            raise ValueError(f"cannot change {', '.join(sorted(frozen))} of a memory")
        if unknown := changes.keys() - set(_MEMORY_COLUMNS):
            raise TypeError(f"Memory has no field(s) {', '.join(sorted(unknown))}")
        with self._atomic() as db:
            old = self._get(id)
            if old is None:
                raise KeyError(id)
            changes.setdefault("updated", self._clock())
            new = _checked(msgspec.structs.replace(old, **changes))
            names = sorted(changes)
            assignments = ", ".join(f'"{n}" = ?' for n in names)
            db.execute(
                f"UPDATE memories SET {assignments} WHERE id = ?",
                [*(_memory_row(new)[_MEMORY_COLUMNS.index(n)] for n in names), id],
            )
        return self._roundtrip(new)

    def get(self, id: str) -> Memory | None:
        with self._lock:
            return self._get(id)

    def _get(self, id: str) -> Memory | None:
        row = self._db.execute(
            f"SELECT {_MEMORY_SELECT} FROM memories WHERE id = ?", [id]
        ).fetchone()
        return _memory_from_row(row) if row else None

    @staticmethod
    def _roundtrip(memory: Memory) -> Memory:
        """What a later :meth:`get` returns: embeddings narrowed to float32 like FLOAT[]."""
        if memory.embedding is None:
            return memory
        narrowed = array("f", memory.embedding).tolist()
        return msgspec.structs.replace(memory, embedding=tuple(narrowed))

    def get_many(self, ids_or_labels: Sequence[str] | Sequence[int]) -> list[Memory]:
        """Memories by id or by label, in the order asked; missing ones are skipped."""
        keys: list[Any] = list(ids_or_labels)
        if not keys:
            return []
        # Labels may arrive as numpy integers straight from the vector index.
        by_label = not isinstance(keys[0], str)
        if by_label:
            keys = [int(k) for k in keys]
        column, cast = ("label", "BIGINT[]") if by_label else ("id", "VARCHAR[]")
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_MEMORY_SELECT} FROM memories WHERE list_contains(?::{cast}, {column})",
                [keys],
            ).fetchall()
        found = {(m.label if by_label else m.id): m for m in map(_memory_from_row, rows)}
        return [found[k] for k in dict.fromkeys(keys) if k in found]

    def candidates(
        self,
        *,
        person_id: str | None = None,
        kinds: Sequence[str] = (),
        tags: Sequence[str] = (),
        since: float | None = None,
        until: float | None = None,
        include_archived: bool = False,
        include_pending: bool = False,
        include_superseded: bool = True,
    ) -> list[int]:
        """Labels of the memories passing every filter, ascending.

        ``person_id`` matches exactly ("" = general memories only); ``kinds`` and
        ``tags`` match any of theirs; ``since <= created <= until``. Archived and
        pending (unapproved) memories are left out unless asked; superseded ones
        stay in unless ``include_superseded=False`` (retrieval wants that).
        """
        where: list[str] = []
        params: list[object] = []
        if person_id is not None:
            where.append("person_id = ?")
            params.append(person_id)
        if kinds:
            where.append("list_contains(?::VARCHAR[], kind)")
            params.append(list(kinds))
        if tags:
            where.append("list_has_any(tags, ?::VARCHAR[])")
            params.append(list(tags))
        if since is not None:
            where.append("created >= ?")
            params.append(since)
        if until is not None:
            where.append("created <= ?")
            params.append(until)
        if not include_archived:
            where.append("NOT archived")
        if not include_pending:
            where.append("approved")
        if not include_superseded:
            where.append("superseded_by = ''")
        sql = "SELECT label FROM memories"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._lock:
            return [int(r[0]) for r in self._db.execute(sql + " ORDER BY label", params).fetchall()]

    def unsummarized(self, *, keep: int, batch: int) -> list[Turn]:
        """The oldest ``batch`` unsummarised turns of one conversation, beyond its newest ``keep``.

        Only a full batch is offered (a summary of one turn says nothing); the conversation with the
        oldest such turn goes first. Empty when no conversation has a full batch.
        """
        with self._lock:
            rows = self._db.execute(
                f"""WITH ranked AS (
                    SELECT *, row_number() OVER (PARTITION BY conversation ORDER BY "at" DESC, id DESC) AS age
                    FROM turns),
                eligible AS (SELECT * FROM ranked WHERE age > ? AND NOT summarized),
                full_batch AS (SELECT conversation, min("at") AS oldest FROM eligible
                               GROUP BY conversation HAVING count(*) >= ? ORDER BY oldest LIMIT 1)
                SELECT {_TURN_SELECT} FROM eligible WHERE conversation IN (SELECT conversation FROM full_batch)
                ORDER BY "at", id LIMIT ?""",
                [keep, batch, batch],
            ).fetchall()
        return [_turn_from_row(r) for r in rows]

    def mark_summarized(self, turn_ids: Sequence[str]) -> None:
        with self._atomic() as db:
            db.execute(
                "UPDATE turns SET summarized = true WHERE list_contains(?::VARCHAR[], id)",
                [list(turn_ids)],
            )

    def unchecked(self, limit: int = 20) -> list[Memory]:
        """Facts not yet compared with older ones for contradictions, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_MEMORY_SELECT} FROM memories WHERE NOT checked AND superseded_by = '' "
                "ORDER BY label LIMIT ?",
                [limit],
            ).fetchall()
        return [_memory_from_row(r) for r in rows]

    def pending(self, limit: int = 50) -> list[Memory]:
        """AI-suggested memories waiting for approval, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_MEMORY_SELECT} FROM memories WHERE NOT approved ORDER BY label LIMIT ?",
                [limit],
            ).fetchall()
        return [_memory_from_row(r) for r in rows]

    def journal_files(self) -> dict[str, str]:
        """Journal file -> the hash DuckDB last saw, for every memory kept in a journal file."""
        with self._lock:
            rows = self._db.execute(
                "SELECT journal, journal_hash FROM memories WHERE journal <> ''"
            ).fetchall()
        return {r[0]: r[1] for r in rows}

    def by_journal(self, journal: str) -> Memory | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_MEMORY_SELECT} FROM memories WHERE journal = ?", [journal]
            ).fetchone()
        return _memory_from_row(row) if row else None

    def memories_about(self, person_id: str) -> list[Memory]:
        """Every memory about a person, archived and pending included (e.g. before forgetting)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_MEMORY_SELECT} FROM memories WHERE person_id = ? ORDER BY label",
                [person_id],
            ).fetchall()
        return [_memory_from_row(r) for r in rows]

    def all_for_index(self) -> Iterator[tuple[int, str, tuple[float, ...] | None, bool]]:
        """``(label, text, embedding, archived)`` of every memory by label, for index rebuilds."""
        last = -1
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT label, text, embedding, archived FROM memories "
                    "WHERE label > ? ORDER BY label LIMIT ?",
                    [last, _PAGE],
                ).fetchall()
            for label, text, embedding, archived in rows:
                yield int(label), text, None if embedding is None else tuple(embedding), archived
            if len(rows) < _PAGE:
                return
            last = int(rows[-1][0])

    def mark_retrieved(self, ids: Sequence[str], at: float) -> None:
        """Record that these memories were just used (never moves the time backwards)."""
        if not ids:
            return
        with self._atomic() as db:
            db.execute(
                "UPDATE memories SET last_retrieved = greatest(last_retrieved, ?) "
                "WHERE list_contains(?::VARCHAR[], id)",
                [at, list(ids)],
            )

    def archive_older_than(self, age_s: float, below_importance: float, now: float) -> list[str]:
        """Archive (never delete) memories created over ``age_s`` ago below an importance.

        Anchors are never archived. Returns the ids archived.
        """
        with self._atomic() as db:
            rows = db.execute(
                "UPDATE memories SET archived = true, updated = ? "
                "WHERE NOT archived AND kind <> 'anchor' AND created < ? AND importance < ? "
                "RETURNING id",
                [now, now - age_s, below_importance],
            ).fetchall()
        return sorted(r[0] for r in rows)

    def delete(self, ids: Sequence[str]) -> list[Memory]:
        """Remove memories and the contradictions naming them; returns the rows removed.

        Corrections stay as the audit log of why a memory went; the caller drops
        the returned labels from the indexes and the ids from the journals.
        """
        if not ids:
            return []
        keys = list(ids)
        with self._atomic() as db:
            rows = db.execute(
                f"SELECT {_MEMORY_SELECT} FROM memories WHERE list_contains(?::VARCHAR[], id) "
                "ORDER BY label",
                [keys],
            ).fetchall()
            db.execute("DELETE FROM memories WHERE list_contains(?::VARCHAR[], id)", [keys])
            db.execute(
                "DELETE FROM contradictions WHERE list_contains(?::VARCHAR[], older_id) "
                "OR list_contains(?::VARCHAR[], newer_id)",
                [keys, keys],
            )
        return [_memory_from_row(r) for r in rows]

    def forget_person(self, person_id: str) -> dict[str, int]:
        """Remove everything about a person; returns the rows removed per table.

        Covers their memories (with the corrections and contradictions naming
        them), their turns, profile and person row. Call :meth:`memories_about`
        first to learn the labels to drop from the indexes.
        """
        with self._atomic() as db:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM memories WHERE person_id = ?", [person_id]
                ).fetchall()
            ]

            def removed(sql: str, params: list[object]) -> int:
                return len(db.execute(sql + " RETURNING 1", params).fetchall())

            return {
                "corrections": removed(
                    "DELETE FROM corrections WHERE list_contains(?::VARCHAR[], memory_id)", [ids]
                ),
                "contradictions": removed(
                    "DELETE FROM contradictions WHERE list_contains(?::VARCHAR[], older_id) "
                    "OR list_contains(?::VARCHAR[], newer_id)",
                    [ids, ids],
                ),
                "memories": removed("DELETE FROM memories WHERE person_id = ?", [person_id]),
                "turns": removed("DELETE FROM turns WHERE person_id = ?", [person_id]),
                "profiles": removed("DELETE FROM profiles WHERE person_id = ?", [person_id]),
                "people": removed("DELETE FROM people WHERE person_id = ?", [person_id]),
            }

    # -- corrections and contradictions -----------------------------------

    def record_correction(
        self,
        memory_id: str,
        *,
        by: str,
        note: str,
        old_confidence: float,
        new_confidence: float,
        at: float,
    ) -> None:
        """Log a correction of a stored memory (KeyError when missing).

        Only logs: the caller lowers the confidence or deletes the memory.
        """
        with self._atomic() as db:
            if self._get(memory_id) is None:
                raise KeyError(memory_id)
            db.execute(
                "INSERT INTO corrections VALUES (?, ?, ?, ?, ?, ?)",
                [memory_id, by, note, old_confidence, new_confidence, at],
            )

    def record_contradiction(
        self, older_id: str, newer_id: str, *, at: float, note: str = ""
    ) -> None:
        """Keep a contradiction for review and mark the older memory superseded by the newer."""
        with self._atomic() as db:
            for id in (older_id, newer_id):
                if self._get(id) is None:
                    raise KeyError(id)
            db.execute(
                "INSERT INTO contradictions VALUES (?, ?, ?, ?)", [older_id, newer_id, at, note]
            )
            db.execute(
                "UPDATE memories SET superseded_by = ?, updated = ? WHERE id = ?",
                [newer_id, at, older_id],
            )

    def contradictions(self) -> list[dict[str, object]]:
        """Every recorded contradiction with both texts, oldest first."""
        with self._lock:
            cur = self._db.execute(
                "SELECT c.older_id, o.text AS older_text, c.newer_id, n.text AS newer_text, "
                'c."at", c.note FROM contradictions c '
                "LEFT JOIN memories o ON o.id = c.older_id "
                'LEFT JOIN memories n ON n.id = c.newer_id ORDER BY c."at", c.older_id'
            )
            return self._dicts(cur)

    def corrections(self, memory_id: str | None = None) -> list[dict[str, object]]:
        """Logged corrections (of one memory, or all), oldest first."""
        with self._lock:
            cur = self._db.execute(
                'SELECT memory_id, "by", note, old_confidence, new_confidence, "at" FROM corrections '
                'WHERE ?::VARCHAR IS NULL OR memory_id = ?::VARCHAR ORDER BY "at", memory_id',
                [memory_id, memory_id],
            )
            return self._dicts(cur)

    @staticmethod
    def _dicts(cur: duckdb.DuckDBPyConnection) -> list[dict[str, object]]:
        names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    # -- people and profiles -----------------------------------------------

    def upsert_person(self, person_id: str, display_name: str, platform: str, at: float) -> None:
        """Create or refresh a person; an empty name or platform keeps the known one."""
        with self._atomic() as db:
            db.execute(
                "INSERT INTO people VALUES (?, ?, ?, ?, ?) ON CONFLICT (person_id) DO UPDATE SET "
                "display_name = CASE WHEN excluded.display_name = '' THEN people.display_name "
                "ELSE excluded.display_name END, "
                "platform = CASE WHEN excluded.platform = '' THEN people.platform "
                "ELSE excluded.platform END, "
                "first_seen = least(people.first_seen, excluded.first_seen), "
                "last_seen = greatest(people.last_seen, excluded.last_seen)",
                [person_id, display_name, platform, at, at],
            )

    def person(self, person_id: str) -> dict[str, object] | None:
        with self._lock:
            cur = self._db.execute("SELECT * FROM people WHERE person_id = ?", [person_id])
            rows = self._dicts(cur)
        return rows[0] if rows else None

    def profile(self, person_id: str) -> Profile:
        """The person's profile; an empty one when nothing is known."""
        with self._lock:
            return self._profile(person_id)

    def _profile(self, person_id: str) -> Profile:
        row = self._db.execute(
            "SELECT hobbies, tastes, sentiment, roster, updated FROM profiles WHERE person_id = ?",
            [person_id],
        ).fetchone()
        if row is None:
            return Profile(person_id=person_id)
        hobbies, tastes, sentiment, roster, updated = row
        return Profile(
            person_id=person_id,
            hobbies=tuple(hobbies),
            tastes=tuple(tastes),
            sentiment=sentiment,
            roster=_decode_roster(roster),
            updated=updated,
        )

    def update_profile(
        self,
        person_id: str,
        *,
        hobbies: Sequence[str] = (),
        tastes: Sequence[str] = (),
        sentiment: str = "",
        roster: dict[str, dict[str, str]] | None = None,
        at: float,
    ) -> Profile:
        """Fold a structured update in and return the result.

        Lists dedupe case-insensitively, the newest spelling and position
        winning; an empty sentiment or roster value keeps the known one.
        ``updated`` moves only when something changed.
        """
        with self._atomic() as db:
            old = self._profile(person_id)
            new = Profile(
                person_id=person_id,
                hobbies=_merge_names(old.hobbies, hobbies, PROFILE_KEEP),
                tastes=_merge_names(old.tastes, tastes, PROFILE_KEEP),
                sentiment=sentiment.strip() or old.sentiment,
                roster=_merge_roster(old.roster, roster or {}),
                updated=old.updated,
            )
            if new == old:
                return old
            new.updated = at
            db.execute(
                "INSERT OR REPLACE INTO profiles VALUES (?, ?, ?, ?, ?, ?)",
                [
                    person_id,
                    list(new.hobbies),
                    list(new.tastes),
                    new.sentiment,
                    _json_encode(new.roster).decode(),
                    at,
                ],
            )
        return new

    # -- reporting ---------------------------------------------------------

    def export(self) -> Iterator[dict[str, object]]:
        """Every memory by label as a JSON-ready dict, without its embedding."""
        last = -1
        while True:
            with self._lock:
                rows = self._db.execute(
                    f"SELECT {_MEMORY_SELECT} FROM memories WHERE label > ? ORDER BY label LIMIT ?",
                    [last, _PAGE],
                ).fetchall()
            for row in rows:
                memory = _memory_from_row(row)
                item: dict[str, object] = {
                    name: getattr(memory, name) for name in _MEMORY_COLUMNS if name != "embedding"
                }
                item.update(turn_ids=list(memory.turn_ids), tags=list(memory.tags))
                yield item
            if len(rows) < _PAGE:
                return
            last = int(rows[-1][_MEMORY_COLUMNS.index("label")])

    def counts(self) -> dict[str, int]:
        """Rows per table, plus archived, pending and superseded memories."""
        with self._lock:
            db = self._db
            out = {table: _scalar(db, f"SELECT count(*) FROM {table}") for table in _TABLES}
            for name, where in (
                ("archived", "archived"),
                ("pending", "NOT approved"),
                ("superseded", "superseded_by <> ''"),
            ):
                out[name] = _scalar(db, f"SELECT count(*) FROM memories WHERE {where}")
            return out
