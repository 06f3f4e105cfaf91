"""The memory store's file: opening, schema migrations, transactions and crash safety."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from actors.memory.store import MIGRATIONS, SCHEMA_VERSION, Memory, MemoryStore, StoreError, migrate
from tests.support.memory_store import mem, turn

ROOT = Path(__file__).resolve().parents[3]


# -- opening and migrations ---------------------------------------------------


def test_new_store_is_at_the_latest_schema_with_offset_zero(store: MemoryStore) -> None:
    assert store.schema_version == SCHEMA_VERSION >= 2
    assert store.applied_offset == 0
    assert store.counts()["memories"] == 0


def test_opening_a_file_that_is_not_duckdb_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "notes.duckdb"
    path.write_text("these are my notes, not a database\n" * 50)
    with pytest.raises(StoreError) as err:
        MemoryStore(path)
    message = str(err.value)
    assert str(path) in message and "not a DuckDB database" in message
    assert "\n" not in message
    assert path.read_text().startswith("these are my notes")  # left untouched


def test_a_zero_byte_file_is_treated_as_new(tmp_path: Path) -> None:
    path = tmp_path / "memory.duckdb"
    path.touch()
    with MemoryStore(path) as s:
        assert s.schema_version == SCHEMA_VERSION


def test_opening_a_file_locked_by_another_process_says_so(tmp_path: Path) -> None:
    path = tmp_path / "memory.duckdb"
    MemoryStore(path).close()
    holder = "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); sys.stdin.read()"
    with subprocess.Popen(
        [sys.executable, "-c", holder, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        try:
            with pytest.raises(StoreError) as err:
                MemoryStore(path)
        finally:
            proc.stdin.close()
            proc.wait(timeout=30)
    assert str(path) in str(err.value) and "locked by another process" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_database_from_a_newer_hex_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "memory.duckdb"
    MemoryStore(path).close()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO schema_version VALUES (?, 0)", [SCHEMA_VERSION + 1])
    con.close()
    with pytest.raises(StoreError, match="written by a newer Hex; upgrade") as err:
        MemoryStore(path)
    assert str(path) in str(err.value)


def test_a_foreign_duckdb_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE sales (amount INTEGER)")
    con.close()
    with pytest.raises(StoreError, match="not a Hex memory store"):
        MemoryStore(path)


def test_a_v1_database_is_migrated_to_the_latest_with_its_rows_intact(tmp_path: Path) -> None:
    path = tmp_path / "memory.duckdb"
    con = duckdb.connect(str(path))
    assert migrate(con, path, MIGRATIONS[:1]) == 0
    con.execute(
        "INSERT INTO memories (id, label, kind, text, source, person_id, importance, confidence, "
        "quote, turn_ids, tags, approved, created, updated, embedding) "
        "VALUES ('m_old', nextval('memory_label'), 'anchor', 'we met at the lake', 'manual', 'p1', "
        "0.9, 0.8, 'lake!', ['t1'], ['place'], true, 10, 11, [0.5, 0.25])"
    )
    con.execute(
        "INSERT INTO turns (id, conversation, text, \"at\") VALUES ('t1', 'c1', 'lake!', 10)"
    )
    con.execute("INSERT INTO people VALUES ('p1', 'Pat', 'discord', 1, 2)")
    con.execute("UPDATE meta SET value = 7 WHERE key = 'applied_offset'")
    assert {r[0] for r in con.execute("SELECT version FROM schema_version").fetchall()} == {1}
    con.close()

    with MemoryStore(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        assert s.applied_offset == 7
        old = s.memories.get("m_old")
        assert old == Memory(
            id="m_old",
            label=0,
            kind="anchor",
            text="we met at the lake",
            person_id="p1",
            importance=0.9,
            confidence=0.8,
            quote="lake!",
            turn_ids=("t1",),
            document="",  # the v2 column, defaulted
            tags=("place",),
            created=10.0,
            updated=11.0,
            embedding=(0.5, 0.25),
        )
        assert [t.id for t in s.turns.latest("c1")] == ["t1"]
        assert s.people.get("p1") == {
            "person_id": "p1",
            "display_name": "Pat",
            "platform": "discord",
            "first_seen": 1.0,
            "last_seen": 2.0,
        }
        # v2's corrections table works, and labels continue after the old ones.
        s.memories.record_correction(
            "m_old", by="p1", note="it was a river", old_confidence=0.8, new_confidence=0.4, at=12
        )
        assert s.memories.add(mem("m_new", document="notes.md#3")).label == 1

    with MemoryStore(path) as s:  # reopening at the latest applies nothing twice
        assert s.schema_version == SCHEMA_VERSION
        assert len(s.memories.corrections("m_old")) == 1
        new = s.memories.get("m_new")
        assert new is not None and new.document == "notes.md#3"


def test_a_failed_migration_step_leaves_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "memory.duckdb"
    con = duckdb.connect(str(path))
    migrate(con, path, MIGRATIONS[:1])
    broken = (*MIGRATIONS[:1], ("ALTER TABLE memories ADD COLUMN extra VARCHAR", "NOT SQL"))
    with pytest.raises(duckdb.Error):
        migrate(con, path, broken)
    columns = {r[0] for r in con.execute("DESCRIBE memories").fetchall()}
    version = con.execute("SELECT max(version) FROM schema_version").fetchone()
    con.close()
    assert "extra" not in columns and version == (1,)


# -- transactions ----------------------------------------------------------------


def test_an_exception_inside_a_transaction_writes_nothing(store: MemoryStore) -> None:
    with store.transaction(offset=3):
        store.memories.add(mem("m_keep"))
    with pytest.raises(RuntimeError, match="boom"), store.transaction(offset=5):
        store.memories.add(mem("m_lost"))
        store.turns.add(turn("t_lost", 1.0))
        store.people.upsert("p1", "Pat", "discord", 1.0)
        raise RuntimeError("boom")
    assert store.applied_offset == 3
    assert store.memories.get("m_lost") is None
    assert store.turns.latest("c1") == []
    assert store.people.get("p1") is None
    assert store.counts()["memories"] == 1


def test_the_offset_commits_with_the_data_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "memory.duckdb"
    with MemoryStore(path) as s, s.transaction(offset=42):
        s.memories.add(mem("m_1"))
    with MemoryStore(path) as s:
        assert s.applied_offset == 42
        assert s.memories.get("m_1") is not None


def test_the_offset_never_moves_backwards(store: MemoryStore) -> None:
    with store.transaction(offset=9):
        store.memories.add(mem("m_1"))
    with store.transaction(offset=4):  # a late redo of an older event
        store.memories.add(mem("m_2"))
    assert store.applied_offset == 9 and store.counts()["memories"] == 2


def test_only_a_journal_rewind_moves_the_offset_back_and_it_keeps_the_memories(
    tmp_path: Path,
) -> None:
    path = tmp_path / "memory.duckdb"
    with MemoryStore(path) as s:
        with s.transaction(offset=100):
            s.memories.add(mem("m_1"))
        s.rewind_offset(250)  # never up
        assert s.applied_offset == 100
        s.rewind_offset(0)  # the journal lost its history and its mark: numbers start again
        with s.transaction(offset=1):
            s.memories.add(mem("m_2"))
    with MemoryStore(path) as s:
        assert s.applied_offset == 1 and s.counts()["memories"] == 2


def test_nested_transactions_are_an_error(store: MemoryStore) -> None:
    with pytest.raises(StoreError, match="nest"), store.transaction(offset=1):
        store.memories.add(mem("m_1"))
        with store.transaction(offset=2):
            pass
    assert store.applied_offset == 0 and store.memories.get("m_1") is None
    with store.transaction(offset=3):  # usable again afterwards
        store.memories.add(mem("m_2"))
    assert store.applied_offset == 3


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    s = MemoryStore(tmp_path / "memory.duckdb")
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.memories.get("m_1")


CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from actors.memory.store import Memory, MemoryStore, StoredTurn

    store = MemoryStore(Path(sys.argv[1]))
    for i in range(1, 201):
        with store.transaction(offset=i):
            store.turns.add(StoredTurn(id=f"t_{i}", conversation="c", text=f"turn {i}", at=float(i)))
            store.memories.add(
                Memory(id=f"m_{i}", text=f"memory {i}", turn_ids=(f"t_{i}",), embedding=(float(i),) * 8)
            )
            store.memories.mark_retrieved([f"m_{i}"], at=float(i))
        print(i, flush=True)
    store.close()
    print("done", flush=True)
    """
)


@pytest.mark.slow
@pytest.mark.process
@pytest.mark.parametrize("seed", range(6))
def test_sigkill_during_a_write_storm_keeps_exactly_the_committed_prefix(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    path = tmp_path / "memory.duckdb"
    target = rng.randint(1, 190)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        acknowledged = 0
        while acknowledged < target:
            line = proc.stdout.readline()
            assert line, f"child died early: {proc.stderr.read()}"
            acknowledged = int(line)
        # A random delay, not a wait: it lands the kill inside a later transaction
        # as often as between two.
        time.sleep(rng.random() * 0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.read()
        proc.stderr.read()

    with MemoryStore(path) as s:
        offset = s.applied_offset
        assert acknowledged <= offset <= 200
        rows = list(s.memories.all_for_index())
        ids = [str(m["id"]) for m in s.memories.export()]
        assert ids == [f"m_{i}" for i in range(1, offset + 1)]  # no gap, no duplicate
        assert len({label for label, *_ in rows}) == offset
        assert [t.id for t in s.turns.latest("c", limit=1000)] == [
            f"t_{i}" for i in range(1, offset + 1)
        ]
        assert all(m.last_retrieved == float(m.id[2:]) for m in s.memories.get_many(ids))
        # The store keeps working after recovery, and labels never go back.
        with s.transaction(offset=offset + 1):
            fresh = s.memories.add(mem("m_after"))
        assert fresh.label > max(label for label, *_ in rows)
