"""The ``memories`` table and the two logs about memories: corrections and contradictions.

Labels (the integer keys of the vector index) come from a DuckDB sequence, so
they only grow and are never reused, even after a delete or a rolled-back
transaction. It is one cohesive class over one table: every read and write of a memory row
goes through it, so the row's invariants (checked types, narrowed vectors) hold in one place.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Final, Literal, get_args

import msgspec

from actors.memory.store.database import Database, dicts, scalar

# "turn": a person's own words, verbatim (episodic memory); the others are distilled or given.
# "journal" is a diary entry: the name is the wire format's (schemas, `hexbus memory --kind`).
Kind = Literal["fact", "summary", "anchor", "journal", "document", "turn"]
Source = Literal["manual", "ai_suggested", "extracted", "document", "import"]

KINDS: Final[tuple[str, ...]] = get_args(Kind)
SOURCES: Final[tuple[str, ...]] = get_args(Source)
_PAGE: Final = 1000  # rows per query when streaming the whole table

Unit = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class Memory(msgspec.Struct, kw_only=True):
    """One row of ``memories``.

    ``diary`` and ``diary_hash`` are stored (and exported) as ``journal`` and
    ``journal_hash``, the names the database and the export had first.
    """

    id: Annotated[str, msgspec.Meta(min_length=1)]
    label: int = -1  # assigned by the store on insert
    kind: Kind = "fact"
    text: str
    source: Source = "manual"
    person_id: str = ""  # who it is about; "" = general
    importance: Unit = 0.5
    confidence: Unit = 1.0
    quote: str = ""  # provenance: the exact words it came from
    # What is embedded and keyword-indexed when not empty: a turn's moment, with who said it
    # to whom and the turns before (actors/memory/moments.py). ``text`` is what is shown.
    context: str = ""
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
    # Diary entries: the Markdown file, relative to the diary folder, and its sha256 as last
    # written or read.
    diary: str = msgspec.field(default="", name="journal")
    diary_hash: str = msgspec.field(default="", name="journal_hash")
    # Kept so the vector index can be rebuilt without re-embedding (stored as FLOAT[]).
    embedding: tuple[float, ...] | None = None
    # A moment's second vector: the turn alone ("Ana: yep, Tuesday!"), so a long turn is found
    # by its own words even when its context says something else. None for other memories.
    said_embedding: tuple[float, ...] | None = None

    @property
    def searchable(self) -> str:
        """The text the indexes hold for this memory."""
        return self.context or self.text


_FIELDS: Final[tuple[str, ...]] = tuple(Memory.__struct_fields__)
COLUMNS: Final[tuple[str, ...]] = tuple(Memory.__struct_encode_fields__)
_COLUMN_OF: Final = dict(zip(_FIELDS, COLUMNS, strict=True))
# Quoted because DuckDB reserves some of them ("at", "by").
_SELECT: Final = ", ".join(f'"{c}"' for c in COLUMNS)
_INSERT: Final = f"INSERT INTO memories ({_SELECT}) VALUES ({', '.join('?' * len(COLUMNS))})"
_FROZEN: Final = frozenset({"id", "label"})
_VECTORS: Final = ("embedding", "said_embedding")
_SELECT_NO_VECTORS: Final = ", ".join(
    f"NULL AS {c}" if c in _VECTORS else f'"{c}"' for c in COLUMNS
)


def _row(m: Memory) -> list[object]:
    row: list[object] = []
    for name in _FIELDS:
        value = getattr(m, name)
        row.append(list(value) if isinstance(value, tuple) else value)
    return row


def _from_row(row: tuple[Any, ...]) -> Memory:
    fields: dict[str, Any] = dict(zip(_FIELDS, row, strict=True))
    fields["turn_ids"] = tuple(fields["turn_ids"])
    fields["tags"] = tuple(fields["tags"])
    for name in _VECTORS:
        if fields[name] is not None:
            fields[name] = tuple(fields[name])
    return Memory(**fields)


def _checked(memory: Memory) -> Memory:
    """Validate types and ranges (construction alone checks neither)."""
    for name in _VECTORS:
        if (vector := getattr(memory, name)) is not None:
            # Embedders hand over numpy floats, which msgspec does not take as float.
            memory = msgspec.structs.replace(memory, **{name: tuple(map(float, vector))})
    return msgspec.convert(msgspec.to_builtins(memory), Memory)


def _roundtrip(memory: Memory) -> Memory:
    """What a later get returns: embeddings narrowed to float32 like FLOAT[]."""
    narrowed = {
        name: tuple(array("f", vector).tolist())
        for name in _VECTORS
        if (vector := getattr(memory, name)) is not None
    }
    return msgspec.structs.replace(memory, **narrowed) if narrowed else memory


class MemoryTable:
    """Adds, changes, finds and removes memories, and logs corrections and contradictions.

    One cohesive class over one table and the two logs that name its rows; every write
    joins the open transaction or commits on its own.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- one memory -------------------------------------------------------------------

    def add(self, memory: Memory) -> Memory:
        """Store a memory with a fresh label; an id already stored returns the stored row."""
        memory = _checked(memory)
        now = self._db.clock()
        with self._db.atomic() as con:
            if (existing := self._get(con, memory.id)) is not None:
                return existing
            label = scalar(con, "SELECT nextval('memory_label')")
            # created: when it happened (an imported turn's own date); updated: when it was
            # last written here, so aging counts an imported past from its import
            stored = msgspec.structs.replace(
                memory, label=label, created=memory.created or now, updated=memory.updated or now
            )
            con.execute(_INSERT, _row(stored))
        return _roundtrip(stored)

    def update(self, id: str, **changes: object) -> Memory:
        """Change fields of a stored memory (not ``id`` or ``label``); KeyError when missing."""
        if frozen := _FROZEN & changes.keys():
            raise ValueError(f"cannot change {', '.join(sorted(frozen))} of a memory")
        if unknown := changes.keys() - set(_FIELDS):
            raise TypeError(f"Memory has no field(s) {', '.join(sorted(unknown))}")
        with self._db.atomic() as con:
            old = self._get(con, id)
            if old is None:
                raise KeyError(id)
            changes.setdefault("updated", self._db.clock())
            new = _checked(msgspec.structs.replace(old, **changes))
            names = sorted(changes)
            assignments = ", ".join(f'"{_COLUMN_OF[n]}" = ?' for n in names)
            row = _row(new)
            con.execute(
                f"UPDATE memories SET {assignments} WHERE id = ?",
                [*(row[_FIELDS.index(n)] for n in names), id],
            )
        return _roundtrip(new)

    def get(self, id: str) -> Memory | None:
        with self._db.locked() as con:
            return self._get(con, id)

    @staticmethod
    def _get(con: Any, id: str) -> Memory | None:
        row = con.execute(f"SELECT {_SELECT} FROM memories WHERE id = ?", [id]).fetchone()
        return _from_row(row) if row else None

    def by_diary(self, relpath: str) -> Memory | None:
        """The memory kept in that diary file, if any."""
        with self._db.locked() as con:
            row = con.execute(
                f"SELECT {_SELECT} FROM memories WHERE journal = ?", [relpath]
            ).fetchone()
        return _from_row(row) if row else None

    # -- many -------------------------------------------------------------------------

    def get_many(
        self, ids_or_labels: Sequence[str] | Sequence[int], *, vectors: bool = True
    ) -> list[Memory]:
        """Memories by id or by label, in the order asked; missing ones are skipped. Without
        ``vectors`` their embeddings come back None (a search's hits: much less to read)."""
        keys: list[Any] = list(ids_or_labels)
        if not keys:
            return []
        # Labels may arrive as numpy integers straight from the vector index.
        by_label = not isinstance(keys[0], str)
        if by_label:
            keys = [int(k) for k in keys]
        column, cast = ("label", "BIGINT[]") if by_label else ("id", "VARCHAR[]")
        with self._db.locked() as con:
            rows = con.execute(
                f"SELECT {_SELECT if vectors else _SELECT_NO_VECTORS} FROM memories "
                f"WHERE list_contains(?::{cast}, {column})",
                [keys],
            ).fetchall()
        found = {(m.label if by_label else m.id): m for m in map(_from_row, rows)}
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
        with self._db.locked() as con:
            return [int(r[0]) for r in con.execute(sql + " ORDER BY label", params).fetchall()]

    def _where(self, where: str, params: list[object], limit: int | None = None) -> list[Memory]:
        sql = f"SELECT {_SELECT} FROM memories WHERE {where} ORDER BY label"
        if limit is not None:
            sql, params = sql + " LIMIT ?", [*params, limit]
        with self._db.locked() as con:
            rows = con.execute(sql, params).fetchall()
        return [_from_row(r) for r in rows]

    def unchecked(self, limit: int = 20) -> list[Memory]:
        """Facts not yet compared with older ones for contradictions, oldest first."""
        return self._where("NOT checked AND superseded_by = ''", [], limit)

    def without_moment(self, limit: int) -> tuple[list[Memory], int]:
        """Turns stored as memories before they were indexed as their moment (and not edited
        since), oldest first, and how many there are in all."""
        where = "kind = 'turn' AND context = '' AND text = quote AND len(turn_ids) > 0"
        total = self._db.scalar(f"SELECT count(*) FROM memories WHERE {where}")
        return self._where(where, [], limit), total

    def after(self, label: int, limit: int) -> tuple[list[Memory], int]:
        """The memories with a label above ``label``, in label order, and how many there are."""
        total = self._db.scalar("SELECT count(*) FROM memories WHERE label > ?", [label])
        return self._where("label > ?", [label], limit), total

    def pending(self, limit: int = 50) -> list[Memory]:
        """AI-suggested memories waiting for approval, oldest first."""
        return self._where("NOT approved", [], limit)

    def archived(self, limit: int = 50) -> tuple[list[Memory], int]:
        """The memories archived most recently (newest first, at most ``limit``), and how many
        are archived in all."""
        with self._db.locked() as con:
            rows = con.execute(
                f"SELECT {_SELECT} FROM memories WHERE archived ORDER BY updated DESC, label "
                "LIMIT ?",
                [limit],
            ).fetchall()
            total = scalar(con, "SELECT count(*) FROM memories WHERE archived")
        return [_from_row(r) for r in rows], int(total or 0)

    def about(self, person_id: str) -> list[Memory]:
        """Every memory about a person, archived and pending included (e.g. before forgetting)."""
        return self._where("person_id = ?", [person_id])

    def diary_files(self) -> dict[str, str]:
        """Diary file -> the hash DuckDB last saw, for every memory kept in a diary file."""
        with self._db.locked() as con:
            rows = con.execute(
                "SELECT journal, journal_hash FROM memories WHERE journal <> ''"
            ).fetchall()
        return {r[0]: r[1] for r in rows}

    def _pages(self, columns: str, where: str = "true", label_at: int = 0) -> Iterator[Any]:
        """Rows of ``columns`` (the label at ``label_at``) of the memories matching ``where``, by
        label, read a page of _PAGE at a time so the lock is never held for the whole table."""
        last = -1
        while True:
            with self._db.locked() as con:
                rows = con.execute(
                    f"SELECT {columns} FROM memories WHERE label > ? AND ({where}) "
                    "ORDER BY label LIMIT ?",
                    [last, _PAGE],
                ).fetchall()
            yield from rows
            if len(rows) < _PAGE:
                return
            last = int(rows[-1][label_at])

    def all_for_index(self) -> Iterator[tuple[int, str, tuple[float, ...] | None, bool]]:
        """``(label, searchable text, embedding, archived)`` of every memory by label, for index
        rebuilds."""
        columns = "label, CASE WHEN context <> '' THEN context ELSE text END, embedding, archived"
        for label, text, embedding, archived in self._pages(columns):
            yield int(label), text, None if embedding is None else tuple(embedding), archived

    def said_for_index(self) -> Iterator[tuple[int, tuple[float, ...]]]:
        """``(label, said embedding)`` of every memory that has one, by label."""
        for label, vector in self._pages("label, said_embedding", "said_embedding IS NOT NULL"):
            yield int(label), tuple(vector)

    def export(self) -> Iterator[dict[str, object]]:
        """Every memory by label as a JSON-ready dict (stored column names), without its embedding."""
        for row in self._pages(_SELECT, label_at=_FIELDS.index("label")):
            memory = _from_row(row)
            item: dict[str, object] = {
                _COLUMN_OF[name]: getattr(memory, name) for name in _FIELDS if name not in _VECTORS
            }
            item.update(turn_ids=list(memory.turn_ids), tags=list(memory.tags))
            yield item

    # -- changes to many --------------------------------------------------------------

    def mark_retrieved(self, ids: Sequence[str], at: float) -> None:
        """Record that these memories were just used (never moves the time backwards)."""
        if not ids:
            return
        with self._db.atomic() as con:
            con.execute(
                "UPDATE memories SET last_retrieved = greatest(last_retrieved, ?) "
                "WHERE list_contains(?::VARCHAR[], id)",
                [at, list(ids)],
            )

    def archive_older_than(self, age_s: float, below_importance: float, now: float) -> list[str]:
        """Archive (never delete) memories below an importance that nothing has touched for
        ``age_s``: not written (stored, imported, edited) nor retrieved since. When a memory
        happened does not matter: two years of history imported today is today's.

        Anchors are never archived. Returns the ids archived.
        """
        with self._db.atomic() as con:
            rows = con.execute(
                "UPDATE memories SET archived = true, updated = ? "
                "WHERE NOT archived AND kind <> 'anchor' AND importance < ? "
                "AND greatest(updated, last_retrieved) < ? "
                "RETURNING id",
                [now, below_importance, now - age_s],
            ).fetchall()
        return sorted(r[0] for r in rows)

    def delete(self, ids: Sequence[str]) -> list[Memory]:
        """Remove memories and the contradictions naming them; returns the rows removed.

        Corrections stay as the audit log of why a memory went; the caller drops
        the returned labels from the indexes and their diary files.
        """
        if not ids:
            return []
        keys = list(ids)
        with self._db.atomic() as con:
            rows = con.execute(
                f"SELECT {_SELECT} FROM memories WHERE list_contains(?::VARCHAR[], id) "
                "ORDER BY label",
                [keys],
            ).fetchall()
            con.execute("DELETE FROM memories WHERE list_contains(?::VARCHAR[], id)", [keys])
            con.execute(
                "DELETE FROM contradictions WHERE list_contains(?::VARCHAR[], older_id) "
                "OR list_contains(?::VARCHAR[], newer_id)",
                [keys, keys],
            )
        return [_from_row(r) for r in rows]

    def forget_person(self, person_id: str) -> dict[str, int]:
        """Remove the person's memories with the corrections and contradictions naming them."""
        with self._db.atomic() as con:
            ids = [
                r[0]
                for r in con.execute(
                    "SELECT id FROM memories WHERE person_id = ?", [person_id]
                ).fetchall()
            ]

            def removed(sql: str, params: list[object]) -> int:
                return len(con.execute(sql + " RETURNING 1", params).fetchall())

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
            }

    # -- corrections and contradictions -----------------------------------------------

    def record_correction(
        self,
        memory_id: str,
        *,
        by: str,
        note: str,
        old_confidence: float,
        new_confidence: float,
        at: float,
    ) -> bool:
        """Log a correction of a stored memory (KeyError when missing); False when this very
        correction (same memory, person, note and time) is logged already.

        Only logs: the caller lowers the confidence or deletes the memory.
        """
        with self._db.atomic() as con:
            if self._get(con, memory_id) is None:
                raise KeyError(memory_id)
            if scalar(
                con,
                'SELECT count(*) FROM corrections WHERE memory_id = ? AND "by" = ? AND note = ? '
                'AND "at" = ?',
                [memory_id, by, note, at],
            ):
                return False
            con.execute(
                "INSERT INTO corrections VALUES (?, ?, ?, ?, ?, ?)",
                [memory_id, by, note, old_confidence, new_confidence, at],
            )
        return True

    def record_contradiction(
        self, older_id: str, newer_id: str, *, at: float, note: str = ""
    ) -> None:
        """Keep a contradiction for review and mark the older memory superseded by the newer."""
        with self._db.atomic() as con:
            for id in (older_id, newer_id):
                if self._get(con, id) is None:
                    raise KeyError(id)
            con.execute(
                "INSERT INTO contradictions VALUES (?, ?, ?, ?)", [older_id, newer_id, at, note]
            )
            con.execute(
                "UPDATE memories SET superseded_by = ?, updated = ? WHERE id = ?",
                [newer_id, at, older_id],
            )

    def contradictions(self) -> list[dict[str, object]]:
        """Every recorded contradiction with both texts, oldest first."""
        with self._db.locked() as con:
            return dicts(
                con.execute(
                    "SELECT c.older_id, o.text AS older_text, c.newer_id, n.text AS newer_text, "
                    'c."at", c.note FROM contradictions c '
                    "LEFT JOIN memories o ON o.id = c.older_id "
                    'LEFT JOIN memories n ON n.id = c.newer_id ORDER BY c."at", c.older_id'
                )
            )

    def corrections(self, memory_id: str | None = None) -> list[dict[str, object]]:
        """Logged corrections (of one memory, or all), oldest first."""
        with self._db.locked() as con:
            return dicts(
                con.execute(
                    'SELECT memory_id, "by", note, old_confidence, new_confidence, "at" '
                    "FROM corrections WHERE ?::VARCHAR IS NULL OR memory_id = ?::VARCHAR "
                    'ORDER BY "at", memory_id',
                    [memory_id, memory_id],
                )
            )
