"""The memory store's memory rows: fields, updates, deletion, candidates and corrections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.memory import store as store_module
from actors.memory.store import Memory, MemoryStore
from actors.memory.store import memories as memories_module
from tests.support.memory_store import NOW, mem, turn

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
    # Stored long ago (updated), or happened long ago but stored now (the store's clock, NOW)
    store.memories.add(mem("old_low", created=10.0, updated=10.0, importance=0.1))
    store.memories.add(mem("old_anchor", created=10.0, updated=10.0, importance=0.0, kind="anchor"))
    store.memories.add(mem("old_high", created=10.0, updated=10.0, importance=0.9))
    store.memories.add(mem("new_low", created=95.0, updated=95.0, importance=0.1))
    store.memories.add(mem("old_summary", created=1.0, updated=1.0, importance=0.2, kind="summary"))
    store.memories.add(mem("imported_low", created=10.0, importance=0.1))  # stored at NOW
    store.memories.add(mem("used_low", created=10.0, updated=10.0, importance=0.1))
    store.memories.mark_retrieved(["used_low"], 90.0)  # retrieved lately
    assert store.memories.get("imported_low").updated == NOW  # type: ignore[union-attr]
    archived = store.memories.archive_older_than(age_s=50.0, below_importance=0.5, now=100.0)
    assert archived == ["old_low", "old_summary"]
    assert store.memories.archive_older_than(age_s=50.0, below_importance=0.5, now=100.0) == []
    # Two years of history imported today ages from today
    assert "imported_low" not in store.memories.archive_older_than(50.0, 0.5, now=NOW + 49.0)
    assert store.memories.archive_older_than(50.0, 0.5, now=NOW + 51.0) == ["imported_low"]
    old = store.memories.get("old_low")
    assert old is not None and old.archived and old.updated == 100.0
    newest, total = store.memories.archived(limit=2)
    assert total == 5 and [m.id for m in newest] == ["imported_low", "new_low"]
    assert store.counts()["memories"] == 7  # archived, not deleted
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


@pytest.mark.slow
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
