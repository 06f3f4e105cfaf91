from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.memory import store as store_module
from actors.memory.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Memory,
    MemoryStore,
    StoredTurn,
    StoreError,
    migrate,
)
from actors.memory.store import memories as memories_module
from actors.memory.store import people as people_module

ROOT = Path(__file__).resolve().parents[3]
NOW = 1_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MemoryStore]:
    s = MemoryStore(tmp_path / "memory.duckdb", clock=lambda: NOW)
    yield s
    s.close()


def mem(id: str, **fields: object) -> Memory:
    fields.setdefault("text", f"text of {id}")
    return Memory(id=id, **fields)  # type: ignore[arg-type]


def turn(id: str, at: float, **fields: object) -> StoredTurn:
    fields.setdefault("conversation", "c1")
    fields.setdefault("text", f"turn {id}")
    return StoredTurn(id=id, at=at, **fields)  # type: ignore[arg-type]


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


# -- turns ----------------------------------------------------------------------


def test_add_turn_is_idempotent_by_id(store: MemoryStore) -> None:
    first = turn("t1", 1.0, meta={"discord_message": "123"}, role="assistant", source="import")
    assert store.turns.add(first) is True
    assert store.turns.add(turn("t1", 2.0, text="changed")) is False
    assert store.turns.latest("c1") == [first]
    assert store.counts()["turns"] == 1


def test_known_says_which_turn_ids_are_stored(store: MemoryStore) -> None:
    store.turns.add(turn("t1", 1.0))
    store.turns.add(turn("t2", 2.0))
    assert store.turns.known(["t2", "t9", "t1"]) == {"t1", "t2"}
    assert store.turns.known([]) == set()


def test_turns_are_the_latest_window_newest_last(store: MemoryStore) -> None:
    for i in range(10):
        store.turns.add(turn(f"t{i}", float(i)))
    store.turns.add(turn("other", 5.0, conversation="c2"))
    assert [t.id for t in store.turns.latest("c1", limit=3)] == ["t7", "t8", "t9"]
    assert [t.id for t in store.turns.latest("c1", limit=3, before=5.0)] == ["t2", "t3", "t4"]
    assert [t.id for t in store.turns.latest("c2")] == ["other"]
    assert store.turns.latest("nobody") == []


def test_a_turn_with_a_bad_role_is_rejected(store: MemoryStore) -> None:
    with pytest.raises(msgspec.ValidationError):
        store.turns.add(turn("t1", 1.0, role="narrator"))
    assert store.counts()["turns"] == 0


# -- memories -------------------------------------------------------------------


def test_every_field_round_trips(store: MemoryStore) -> None:
    full = Memory(
        id="m_full",
        kind="document",
        text="Chapter 2: the lake house",
        source="document",
        person_id="p1",
        importance=0.25,
        confidence=0.75,
        quote="the lake house",
        turn_ids=("t1", "t2"),
        document="book.pdf#2",
        tags=("places", "family"),
        approved=False,
        created=5.0,
        updated=6.0,
        last_retrieved=7.0,
        archived=True,
        superseded_by="m_other",
        embedding=(0.5, -0.25, 1.0),
    )
    stored = store.memories.add(full)
    assert stored == msgspec.structs.replace(full, label=0)
    assert store.memories.get("m_full") == stored


def test_add_memory_fills_in_times_and_is_idempotent_by_id(store: MemoryStore) -> None:
    first = store.memories.add(mem("m_1", text="likes tea"))
    assert (first.created, first.updated) == (NOW, NOW)
    again = store.memories.add(mem("m_1", text="likes coffee", created=1.0))
    assert again == first
    assert store.counts()["memories"] == 1


def test_embeddings_are_kept_as_float32(store: MemoryStore) -> None:
    stored = store.memories.add(mem("m_1", embedding=(0.1, 0.2)))
    assert stored.embedding is not None and stored.embedding[0] != 0.1
    assert stored.embedding == pytest.approx((0.1, 0.2), rel=1e-6)
    assert store.memories.get("m_1") == stored


def test_invalid_memories_are_rejected(store: MemoryStore) -> None:
    for bad in (mem("m_1", importance=1.5), mem("m_1", kind="rumour"), mem("")):
        with pytest.raises(msgspec.ValidationError):
            store.memories.add(bad)
    assert store.counts()["memories"] == 0


def test_labels_grow_and_are_never_reused(tmp_path: Path) -> None:
    path = tmp_path / "memory.duckdb"
    with MemoryStore(path) as s:
        labels = [s.memories.add(mem(f"m_{i}")).label for i in range(3)]
        s.memories.delete(["m_2"])
        with pytest.raises(RuntimeError), s.transaction():
            labels.append(s.memories.add(mem("m_rolled_back")).label)
            raise RuntimeError
        labels.append(s.memories.add(mem("m_2")).label)
    with MemoryStore(path) as s:
        labels.append(s.memories.add(mem("m_3")).label)
    assert labels == sorted(set(labels)) and len(labels) == 6


def test_update_memory_changes_fields_and_sets_updated(tmp_path: Path) -> None:
    now = [1.0]
    with MemoryStore(tmp_path / "memory.duckdb", clock=lambda: now[0]) as s:
        s.memories.add(mem("m_1", tags=("a",)))
        now[0] = 2.0
        changed = s.memories.update("m_1", text="new text", tags=["b", "c"], confidence=0.3)
        assert (changed.text, changed.tags, changed.confidence) == ("new text", ("b", "c"), 0.3)
        assert changed.updated == 2.0 and changed.created == 1.0
        assert s.memories.get("m_1") == changed
        assert s.memories.update("m_1", approved=False, updated=9.0).updated == 9.0


def test_update_memory_refuses_what_it_cannot_do(store: MemoryStore) -> None:
    before = store.memories.add(mem("m_1"))
    with pytest.raises(KeyError):
        store.memories.update("m_missing", text="x")
    with pytest.raises(ValueError, match="label"):
        store.memories.update("m_1", label=99)
    with pytest.raises(TypeError, match="colour"):
        store.memories.update("m_1", colour="red")
    with pytest.raises(msgspec.ValidationError):
        store.memories.update("m_1", confidence=-0.1)
    assert store.memories.get("m_1") == before


def test_get_many_keeps_the_order_asked_and_skips_missing(store: MemoryStore) -> None:
    for i in range(4):
        store.memories.add(mem(f"m_{i}"))
    assert [m.id for m in store.memories.get_many(["m_2", "nope", "m_0", "m_2"])] == ["m_2", "m_0"]
    assert [m.id for m in store.memories.get_many([3, 1, 42])] == ["m_3", "m_1"]
    np = pytest.importorskip("numpy")
    assert [m.id for m in store.memories.get_many(np.array([2, 0], dtype=np.uint64))] == [
        "m_2",
        "m_0",
    ]
    assert store.memories.get_many([]) == []


def test_all_for_index_streams_every_memory_in_pages(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memories_module, "_PAGE", 3)
    for i in range(8):
        store.memories.add(mem(f"m_{i}", embedding=(float(i),) if i % 2 else None, archived=i == 5))
    rows = list(store.memories.all_for_index())
    assert [r[0] for r in rows] == list(range(8))
    assert rows[1] == (1, "text of m_1", (1.0,), False)
    assert rows[2][2] is None and rows[5][3] is True
    assert len(list(store.memories.export())) == 8


def test_mark_retrieved_never_moves_time_backwards(store: MemoryStore) -> None:
    store.memories.add(mem("m_1"))
    store.memories.add(mem("m_2"))
    store.memories.mark_retrieved(["m_1", "m_2"], at=50.0)
    store.memories.mark_retrieved(["m_1"], at=20.0)
    store.memories.mark_retrieved([], at=99.0)
    assert [m.last_retrieved for m in store.memories.get_many(["m_1", "m_2"])] == [50.0, 50.0]


def test_archive_older_than_archives_old_unimportant_memories_but_never_anchors(
    store: MemoryStore,
) -> None:
    store.memories.add(mem("old_low", created=10.0, importance=0.1))
    store.memories.add(mem("old_anchor", created=10.0, importance=0.0, kind="anchor"))
    store.memories.add(mem("old_high", created=10.0, importance=0.9))
    store.memories.add(mem("new_low", created=95.0, importance=0.1))
    store.memories.add(mem("old_summary", created=1.0, importance=0.2, kind="summary"))
    archived = store.memories.archive_older_than(age_s=50.0, below_importance=0.5, now=100.0)
    assert archived == ["old_low", "old_summary"]
    assert store.memories.archive_older_than(age_s=50.0, below_importance=0.5, now=100.0) == []
    old = store.memories.get("old_low")
    assert old is not None and old.archived and old.updated == 100.0
    assert store.counts()["memories"] == 5  # archived, not deleted
    labels = {
        m.id: m.label for m in store.memories.get_many(["old_low", "old_anchor", "old_summary"])
    }
    assert labels["old_low"] not in store.memories.candidates()
    assert labels["old_anchor"] in store.memories.candidates()
    assert labels["old_low"] in store.memories.candidates(include_archived=True)


def test_delete_returns_the_rows_and_drops_their_contradictions(store: MemoryStore) -> None:
    a = store.memories.add(mem("m_a", embedding=(1.0,)))
    store.memories.add(mem("m_b"))
    store.memories.record_contradiction("m_a", "m_b", at=1.0)
    store.memories.record_correction(
        "m_b", by="owner", note="wrong", old_confidence=1, new_confidence=0, at=2
    )
    removed = store.memories.delete(["m_b", "m_missing"])
    assert [m.id for m in removed] == ["m_b"]
    assert store.memories.get("m_b") is None and store.memories.contradictions() == []
    assert len(store.memories.corrections("m_b")) == 1  # the audit log of why it went
    assert store.memories.delete([]) == []
    assert store.memories.get("m_a") == msgspec.structs.replace(a, superseded_by="m_b", updated=1.0)


def test_forget_person_removes_every_row_about_them(store: MemoryStore) -> None:
    for who in ("p1", "p2"):
        store.people.upsert(who, who.upper(), "discord", at=1.0)
        store.people.update_profile(who, hobbies=["chess"], at=1.0)
        for i in range(3):
            store.turns.add(turn(f"{who}_t{i}", float(i), person_id=who))
        store.memories.add(mem(f"{who}_m1", person_id=who))
        store.memories.add(mem(f"{who}_m2", person_id=who, archived=True, approved=False))
        store.memories.record_contradiction(f"{who}_m1", f"{who}_m2", at=2.0)
        store.memories.record_correction(
            f"{who}_m1", by=who, note="no", old_confidence=1, new_confidence=0.5, at=3
        )
    before = store.counts()
    labels = [m.label for m in store.memories.about("p1")]
    assert len(labels) == 2

    removed = store.forget_person("p1")

    assert removed == {
        "memories": 2,
        "turns": 3,
        "profiles": 1,
        "people": 1,
        "corrections": 1,
        "contradictions": 1,
    }
    after = store.counts()
    for table, n in removed.items():
        assert after[table] == before[table] - n
    assert store.memories.about("p1") == [] and store.memories.get_many(labels) == []
    assert store.people.get("p1") is None and store.people.profile("p1").hobbies == ()
    assert store.memories.about("p2") != [] and store.people.get("p2") is not None
    assert store.forget_person("p1") == dict.fromkeys(removed, 0)


# -- candidates -------------------------------------------------------------------

PEOPLE = ("", "p1", "p2")
TAGS = ("music", "food", "work")

memory_specs = st.lists(
    st.fixed_dictionaries(
        {
            "person_id": st.sampled_from(PEOPLE),
            "kind": st.sampled_from(store_module.KINDS),
            "tags": st.lists(st.sampled_from(TAGS), unique=True, max_size=2).map(tuple),
            "created": st.integers(1, 10).map(float),
            "archived": st.booleans(),
            "approved": st.booleans(),
            "superseded_by": st.sampled_from(("", "", "m_newer")),
        }
    ),
    max_size=12,
)
filters = st.fixed_dictionaries(
    {
        "person_id": st.none() | st.sampled_from(PEOPLE),
        "kinds": st.lists(st.sampled_from(store_module.KINDS), unique=True, max_size=2),
        "tags": st.lists(st.sampled_from(TAGS), unique=True, max_size=2),
        "since": st.none() | st.integers(1, 10).map(float),
        "until": st.none() | st.integers(1, 10).map(float),
        "include_archived": st.booleans(),
        "include_pending": st.booleans(),
        "include_superseded": st.booleans(),
    }
)


def passes(m: Memory, f: dict[str, Any]) -> bool:
    return (
        (f["person_id"] is None or m.person_id == f["person_id"])
        and (not f["kinds"] or m.kind in f["kinds"])
        and (not f["tags"] or bool(set(m.tags) & set(f["tags"])))
        and (f["since"] is None or m.created >= f["since"])
        and (f["until"] is None or m.created <= f["until"])
        and (f["include_archived"] or not m.archived)
        and (f["include_pending"] or m.approved)
        and (f["include_superseded"] or not m.superseded_by)
    )


def test_candidates_match_a_python_reference(tmp_path: Path) -> None:
    with MemoryStore(tmp_path / "memory.duckdb") as s:

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(specs=memory_specs, f=filters)
        def check(specs: list[dict[str, Any]], f: dict[str, Any]) -> None:
            with s.transaction():
                stored = [s.memories.add(mem(f"m_{i}", **spec)) for i, spec in enumerate(specs)]
            try:
                expected = sorted(m.label for m in stored if passes(m, f))
                assert s.memories.candidates(**f) == expected
            finally:
                s.memories.delete([m.id for m in stored])

        check()


def test_candidates_default_leaves_out_archived_and_pending(store: MemoryStore) -> None:
    plain = store.memories.add(mem("plain")).label
    archived = store.memories.add(mem("archived", archived=True)).label
    pending = store.memories.add(mem("pending", approved=False, source="ai_suggested")).label
    old = store.memories.add(mem("old", superseded_by="plain")).label
    assert store.memories.candidates() == [plain, old]
    assert store.memories.candidates(include_superseded=False) == [plain]
    assert store.memories.candidates(include_archived=True, include_pending=True) == [
        plain,
        archived,
        pending,
        old,
    ]


# -- corrections and contradictions -------------------------------------------------


def test_contradictions_are_kept_for_review_and_supersede_the_older(store: MemoryStore) -> None:
    store.memories.add(mem("m_old", text="lives in Oslo"))
    new = store.memories.add(mem("m_new", text="lives in Bergen"))
    store.memories.record_contradiction("m_old", "m_new", at=5.0, note="moved")
    assert store.memories.contradictions() == [
        {
            "older_id": "m_old",
            "older_text": "lives in Oslo",
            "newer_id": "m_new",
            "newer_text": "lives in Bergen",
            "at": 5.0,
            "note": "moved",
        }
    ]
    old = store.memories.get("m_old")
    assert old is not None and old.superseded_by == "m_new"
    assert store.memories.candidates(include_superseded=False) == [new.label]
    with pytest.raises(KeyError):
        store.memories.record_contradiction("m_old", "m_missing", at=6.0)


def test_corrections_are_logged_per_memory(store: MemoryStore) -> None:
    store.memories.add(mem("m_1"))
    store.memories.add(mem("m_2"))
    store.memories.record_correction(
        "m_1", by="owner", note="not true", old_confidence=1, new_confidence=0.3, at=2
    )
    store.memories.record_correction(
        "m_2", by="p2", note="half true", old_confidence=0.9, new_confidence=0.6, at=1
    )
    assert store.memories.corrections("m_1") == [
        {
            "memory_id": "m_1",
            "by": "owner",
            "note": "not true",
            "old_confidence": 1.0,
            "new_confidence": 0.3,
            "at": 2.0,
        }
    ]
    assert [c["memory_id"] for c in store.memories.corrections()] == ["m_2", "m_1"]
    with pytest.raises(KeyError):
        store.memories.record_correction(
            "m_x", by="o", note="", old_confidence=1, new_confidence=0, at=3
        )


def test_the_same_correction_logged_twice_is_kept_once(store: MemoryStore) -> None:
    store.memories.add(mem("m_1"))
    first = dict(by="ana", note="walnuts", old_confidence=1.0, new_confidence=0.4, at=5.0)
    assert store.memories.record_correction("m_1", **first) is True  # type: ignore[arg-type]
    assert store.memories.record_correction("m_1", **first) is False  # type: ignore[arg-type]
    later = {**first, "at": 6.0}
    assert store.memories.record_correction("m_1", **later) is True  # type: ignore[arg-type]
    assert len(store.memories.corrections("m_1")) == 2


# -- people and profiles -----------------------------------------------------------


def test_upsert_person_keeps_first_seen_and_known_names(store: MemoryStore) -> None:
    store.people.upsert("p1", "Pat", "discord", at=10.0)
    store.people.upsert("p1", "", "", at=20.0)
    store.people.upsert("p1", "Patricia", "web", at=15.0)
    assert store.people.get("p1") == {
        "person_id": "p1",
        "display_name": "Patricia",
        "platform": "web",
        "first_seen": 10.0,
        "last_seen": 20.0,
    }


def test_profile_updates_merge_case_insensitively_keeping_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "memory.duckdb"
    with MemoryStore(path) as s:
        assert s.people.profile("p1").hobbies == () and s.people.profile("p1").updated == 0.0
        s.people.update_profile(
            "p1",
            hobbies=["Chess", "hiking"],
            tastes=["jazz"],
            sentiment="curious",
            roster={"Ann": {"sentiment": "fond", "history": "sister"}},
            at=1.0,
        )
        p = s.people.update_profile(
            "p1",
            hobbies=["chess", " ", "Climbing"],
            tastes=["JAZZ", "Ghibli films"],
            roster={
                "ann": {"history": "sister, moved away", "sentiment": ""},
                "Bo": {"sentiment": "wary"},
            },
            at=2.0,
        )
        assert p.hobbies == ("hiking", "chess", "Climbing")
        assert p.tastes == ("JAZZ", "Ghibli films")
        assert p.sentiment == "curious"  # an empty update keeps it
        assert p.roster == {
            "ann": {"sentiment": "fond", "history": "sister, moved away"},
            "Bo": {"sentiment": "wary"},
        }
        assert p.updated == 2.0
        assert (
            s.people.update_profile("p1", hobbies=["Climbing"], at=3.0).updated == 2.0
        )  # no change
    with MemoryStore(path) as s:
        assert s.people.profile("p1") == p


@given(
    updates=st.lists(
        st.lists(
            st.sampled_from(["Chess", "chess", "CHESS", "Go", "go", "tea", "Tea"]), max_size=4
        ),
        max_size=5,
    )
)
@settings(max_examples=40, deadline=None)
def test_profile_lists_never_hold_case_insensitive_duplicates(updates: list[list[str]]) -> None:
    merged: tuple[str, ...] = ()
    for new in updates:
        merged = people_module.merge_names(merged, new, people_module.PROFILE_KEEP)
        for name in new:  # the newest spelling of each name is what stays
            assert [m for m in merged if m.casefold() == name.casefold()] == [
                [n for n in new if n.casefold() == name.casefold()][-1]
            ]
    assert len({m.casefold() for m in merged}) == len(merged)


def test_profile_lists_keep_only_the_newest(store: MemoryStore) -> None:
    hobbies = [f"hobby {i}" for i in range(people_module.PROFILE_KEEP + 5)]
    p = store.people.update_profile("p1", hobbies=hobbies, at=1.0)
    assert p.hobbies == tuple(hobbies[-people_module.PROFILE_KEEP :])


# -- reporting ---------------------------------------------------------------------


def test_export_gives_json_ready_dicts_without_embeddings(store: MemoryStore) -> None:
    store.memories.add(mem("m_1", tags=("a",), turn_ids=("t1",), embedding=(1.0, 2.0)))
    store.memories.add(mem("m_2", kind="anchor", approved=False))
    exported = list(store.memories.export())
    assert json.loads(json.dumps(exported)) == exported
    assert [e["id"] for e in exported] == ["m_1", "m_2"]
    assert exported[0]["tags"] == ["a"] and exported[0]["turn_ids"] == ["t1"]
    assert all("embedding" not in e for e in exported)
    assert set(exported[0]) == set(Memory.__struct_encode_fields__) - {"embedding"}


def test_counts_cover_every_table(store: MemoryStore) -> None:
    store.memories.add(mem("m_1", archived=True))
    store.memories.add(mem("m_2", approved=False))
    store.turns.add(turn("t1", 1.0))
    store.people.upsert("p1", "Pat", "discord", at=1.0)
    assert store.counts() == {
        "turns": 1,
        "memories": 2,
        "people": 1,
        "profiles": 0,
        "corrections": 0,
        "contradictions": 0,
        "archived": 1,
        "pending": 1,
        "superseded": 0,
    }


# -- summaries, contradiction checks, diary files --------------------------------


def test_unsummarized_offers_a_full_batch_beyond_the_recent_window_oldest_conversation_first(
    store: MemoryStore,
) -> None:
    for i in range(10):
        store.turns.add(turn(f"a{i}", 100 + i, conversation="a"))
    for i in range(6):
        store.turns.add(turn(f"b{i}", 50 + i, conversation="b"))
    # b is older but has only 6 - 3 = 3 turns beyond its window: not a full batch of 4.
    batch = store.turns.unsummarized(keep=3, batch=4)
    assert [t.id for t in batch] == ["a0", "a1", "a2", "a3"]
    store.turns.mark_summarized([t.id for t in batch])
    assert [t.id for t in store.turns.unsummarized(keep=3, batch=3)] == ["b0", "b1", "b2"]
    store.turns.mark_summarized(["b0", "b1", "b2"])
    # a has a4..a6 left beyond its window (a7..a9 are the newest three): 3 < 4.
    assert store.turns.unsummarized(keep=3, batch=4) == []
    assert [t.id for t in store.turns.unsummarized(keep=3, batch=3)] == ["a4", "a5", "a6"]


def test_unchecked_facts_come_oldest_first_until_checked_or_superseded(store: MemoryStore) -> None:
    store.memories.add(mem("old", checked=False))
    store.memories.add(mem("new", checked=False))
    store.memories.add(mem("fine"))
    assert [m.id for m in store.memories.unchecked()] == ["old", "new"]
    store.memories.record_contradiction("old", "new", at=NOW)
    store.memories.update("new", checked=True)
    assert store.memories.unchecked() == []


def test_diary_files_and_lookup_by_file(store: MemoryStore) -> None:
    store.memories.add(mem("j1", kind="journal", diary="2026/01/02/a.md", diary_hash="h1"))
    store.memories.add(mem("f1"))
    assert store.memories.diary_files() == {"2026/01/02/a.md": "h1"}
    found = store.memories.by_diary("2026/01/02/a.md")
    assert found is not None and found.id == "j1"
    assert store.memories.by_diary("nope.md") is None
    assert store.turns.get("missing") is None
