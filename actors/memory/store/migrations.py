"""The store's schema, as a list of steps: each applied once, in order, in its own transaction.

Never edit a released step: append one. A database at a version this Hex does not
know (written by a newer one) is refused rather than guessed at.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import duckdb

from actors.memory.store.database import StoreError, scalar

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
    (  # v4: episodic moments; imported turns that aging archived by their old dates come back
        "ALTER TABLE memories ADD COLUMN context VARCHAR NOT NULL DEFAULT ''",
        "ALTER TABLE memories ADD COLUMN said_embedding FLOAT[]",
        "CREATE TABLE settings (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)",
        # Before v4, aging counted from when a turn was said, so an imported past was archived
        # an hour after its import. Such rows age again from now.
        "UPDATE memories SET archived = false, updated = epoch(get_current_timestamp()) "
        "WHERE archived AND source = 'import' AND kind = 'turn'",
    ),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


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
    current = scalar(con, "SELECT max(version) FROM schema_version")
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


__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]
