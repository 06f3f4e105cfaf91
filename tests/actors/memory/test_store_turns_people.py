"""The memory store's turns, people and profiles, summaries, diary files, export and counts."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.memory.store import Memory, MemoryStore
from actors.memory.store import people as people_module
from tests.support.memory_store import NOW, mem, turn

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
    assert all("embedding" not in e and "said_embedding" not in e for e in exported)
    assert set(exported[0]) == set(Memory.__struct_encode_fields__) - {
        "embedding",
        "said_embedding",
    }


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
