"""The ``turns`` table: every conversation turn, live or imported, kept verbatim."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Final, Literal

import msgspec

from actors.memory.store.database import Database


class StoredTurn(msgspec.Struct, kw_only=True):
    """One conversation turn as the memory store keeps it, live or imported."""

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


_COLUMNS: Final[tuple[str, ...]] = tuple(StoredTurn.__struct_fields__)
# Quoted because DuckDB reserves some of them ("at").
_SELECT: Final = ", ".join(f'"{c}"' for c in _COLUMNS)
_INSERT: Final = (
    f"INSERT INTO turns ({_SELECT}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT DO NOTHING"
)
_encode_meta = msgspec.json.Encoder().encode
_decode_meta = msgspec.json.Decoder(dict[str, str]).decode


def _from_row(row: tuple[Any, ...]) -> StoredTurn:
    fields: dict[str, Any] = dict(zip(_COLUMNS, row, strict=True))
    fields["meta"] = _decode_meta(fields["meta"])
    return StoredTurn(**fields)


class TurnTable:
    """Adds and reads turns; a turn's id is its identity, so adding one twice keeps the first."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, turn: StoredTurn) -> bool:
        """Store a turn; False when its id is already stored."""
        turn = msgspec.convert(msgspec.to_builtins(turn), StoredTurn)
        values: list[object] = [getattr(turn, c) for c in _COLUMNS]
        values[_COLUMNS.index("meta")] = _encode_meta(turn.meta).decode()
        with self._db.atomic() as con:
            row = con.execute(_INSERT, values).fetchone()
        return bool(row and row[0])

    def get(self, id: str) -> StoredTurn | None:
        with self._db.locked() as con:
            row = con.execute(f"SELECT {_SELECT} FROM turns WHERE id = ?", [id]).fetchone()
        return _from_row(row) if row else None

    def known(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored already."""
        if not ids:
            return set()
        with self._db.locked() as con:
            rows = con.execute(
                "SELECT id FROM turns WHERE list_contains(?::VARCHAR[], id)", [list(ids)]
            ).fetchall()
        return {r[0] for r in rows}

    def latest(
        self,
        conversation: str,
        limit: int = 50,
        before: float | None = None,
        before_id: str = "",
    ) -> list[StoredTurn]:
        """The latest ``limit`` turns of a conversation (before ``before``; with ``before_id``,
        before that turn in (time, id) order, so turns sharing a time are paged through), newest
        last."""
        with self._db.locked() as con:
            rows = con.execute(
                f"SELECT {_SELECT} FROM turns WHERE conversation = ? "
                'AND (?::DOUBLE IS NULL OR "at" < ?::DOUBLE OR ("at" = ?::DOUBLE AND id < ?)) '
                'ORDER BY "at" DESC, id DESC LIMIT ?',
                [conversation, before, before, before, before_id or "", limit],
            ).fetchall()
        return [_from_row(r) for r in reversed(rows)]

    def conversations(self, prefix: str, limit: int = 50) -> list[dict[str, object]]:
        """The conversations whose id starts with ``prefix``, latest first: how many turns,
        when the first and last were, and the start of the first."""
        with self._db.locked() as con:
            rows = con.execute(
                'SELECT conversation, count(*), min("at"), max("at"), '
                'arg_min(text, "at") FROM turns WHERE starts_with(conversation, ?) '
                'GROUP BY conversation ORDER BY max("at") DESC LIMIT ?',
                [prefix, limit],
            ).fetchall()
        return [
            {
                "conversation": c,
                "turns": int(n),
                "first_at": float(first),
                "last_at": float(last),
                "preview": " ".join(str(text).split())[:120],
            }
            for c, n, first, last, text in rows
        ]

    def unsummarized(self, *, keep: int, batch: int) -> list[StoredTurn]:
        """The oldest ``batch`` unsummarised turns of one conversation, beyond its newest ``keep``.

        Only a full batch is offered (a summary of one turn says nothing); the conversation with the
        oldest such turn goes first. Empty when no conversation has a full batch.
        """
        with self._db.locked() as con:
            rows = con.execute(
                f"""WITH ranked AS (
                    SELECT *, row_number() OVER (PARTITION BY conversation ORDER BY "at" DESC, id DESC) AS age
                    FROM turns),
                eligible AS (SELECT * FROM ranked WHERE age > ? AND NOT summarized),
                full_batch AS (SELECT conversation, min("at") AS oldest FROM eligible
                               GROUP BY conversation HAVING count(*) >= ? ORDER BY oldest LIMIT 1)
                SELECT {_SELECT} FROM eligible WHERE conversation IN (SELECT conversation FROM full_batch)
                ORDER BY "at", id LIMIT ?""",
                [keep, batch, batch],
            ).fetchall()
        return [_from_row(r) for r in rows]

    def mark_summarized(self, ids: Sequence[str]) -> None:
        with self._db.atomic() as con:
            con.execute(
                "UPDATE turns SET summarized = true WHERE list_contains(?::VARCHAR[], id)",
                [list(ids)],
            )

    def forget_person(self, person_id: str) -> dict[str, int]:
        """Remove the person's turns; the rows removed, as ``{"turns": n}``."""
        with self._db.atomic() as con:
            rows = con.execute(
                "DELETE FROM turns WHERE person_id = ? RETURNING 1", [person_id]
            ).fetchall()
        return {"turns": len(rows)}
