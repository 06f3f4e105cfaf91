"""Retrieval in-process: hybrid ranking, who may see what, anchors, profiles and the review list."""

from __future__ import annotations

import time

from actors.memory.store import Memory
from schemas import MemoryAdd, MemoryQuery, ProfileUpdate, ReplyMeta
from tests.support.memory import Parts

AT = 1_780_000_000.0


def add(parts: Parts, text: str, offset: int, **fields: object) -> str:
    event = MemoryAdd(text=text, **fields)  # type: ignore[arg-type]
    return parts.edits.add(event, event_id=f"e{offset}", at=AT, offset=offset).id


def query(parts: Parts, text: str, **fields: object) -> list[str]:
    return [h.id for h in parts.search.query(MemoryQuery(text=text, **fields), touch=False)]  # type: ignore[arg-type]


def test_memories_are_found_by_meaning_and_by_exact_words(parts: Parts) -> None:
    bees = add(parts, "Ana keeps three beehives on her balcony", 1, person_id="ana", importance=0.8)
    add(parts, "Ana's favourite colour is teal", 2, person_id="ana")
    movie = add(parts, "The Discord server's movie night is on Fridays", 3)
    add(parts, "Bo is learning the cello", 4, person_id="bo")
    hits = parts.search.query(
        MemoryQuery(text="does she have any insects as pets?", person_id="ana")
    )
    assert hits[0].id == bees and hits[0].source == "manual" and hits[0].score > 0
    assert all(h.person_id in ("ana", "") for h in hits)  # nothing about Bo leaks into Ana's
    assert query(parts, "movie night")[0] == movie


def test_hits_are_marked_retrieved_unless_asked_not_to(parts: Parts) -> None:
    id = add(parts, "Ana keeps three beehives on her balcony", 1)
    query(parts, "beehives")  # touch=False
    memory = parts.store.memories.get(id)
    assert memory is not None and memory.last_retrieved == 0.0
    before = time.time()
    parts.search.query(MemoryQuery(text="beehives"))
    memory = parts.store.memories.get(id)
    assert memory is not None and memory.last_retrieved >= before


def test_anchors_about_the_person_come_beside_the_hits(parts: Parts) -> None:
    anchor = add(parts, "Ana met Hex on her birthday", 1, person_id="ana", kind="anchor")
    add(parts, "Ana's favourite colour is teal", 2, person_id="ana")
    assert anchor in query(parts, "favourite colour", person_id="ana", k=1)
    assert anchor not in query(parts, "favourite colour", person_id="bo", k=1)


def test_archived_memories_only_when_asked(parts: Parts) -> None:
    old = add(parts, "the weather was cloudy", 1)
    parts.store.memories.update(old, archived=True)
    assert query(parts, "cloudy weather") == []
    assert query(parts, "cloudy weather", include_archived=True) == [old]


def test_an_empty_query_finds_nothing(parts: Parts) -> None:
    add(parts, "Ana keeps three beehives on her balcony", 1)
    assert query(parts, "  ") == []


def test_the_answer_brings_the_persons_profile_once_one_is_known(parts: Parts) -> None:
    assert parts.search.answer(MemoryQuery(text="kayak", person_id="sam")).profile is None
    parts.ingest.meta(
        ReplyMeta(
            reply_to="r1",
            person_id="sam",
            channel="c1",
            profile=ProfileUpdate(hobbies=("kayaking",), sentiment="cheerful"),
        ),
        at=AT,
        offset=1,
    )
    profile = parts.search.answer(MemoryQuery(text="kayak", person_id="sam")).profile
    assert profile is not None and profile.hobbies == ("kayaking",)
    assert parts.search.answer(MemoryQuery(text="kayak", person_id="ana")).profile is None


def test_review_lists_pending_suggestions_and_contradictions(parts: Parts) -> None:
    parts.store.memories.add(Memory(id="p1", text="Ana plays chess", approved=False))
    parts.store.memories.add(Memory(id="old", text="Maya lives in Porto"))
    parts.store.memories.add(Memory(id="new", text="Maya lives in Lisbon"))
    parts.store.memories.record_contradiction("old", "new", at=AT)
    review = parts.search.review(10)
    assert [h.id for h in review.pending] == ["p1"]
    assert [(c.older_text, c.newer_text) for c in review.contradictions] == [
        ("Maya lives in Porto", "Maya lives in Lisbon")
    ]


def test_each_hit_says_what_its_score_was_made_of(parts: Parts) -> None:
    bees = add(parts, "Ana keeps three beehives on her balcony", 1, person_id="ana", importance=0.9)
    add(parts, "the weather was cloudy on Tuesday", 2)
    (top, *_) = parts.search.query(MemoryQuery(text="beehives", person_id="ana"), touch=False)
    assert top.id == bees and top.importance == 0.9 and not top.pending and not top.archived
    parts_ = top.parts
    assert {"semantic", "keyword", "recency", "importance", "confidence", "fused"} <= set(parts_)
    assert parts_["keyword"] == 1.0 and parts_["semantic"] > 0.3 and parts_["importance"] == 0.9
    assert all(0.0 <= v <= 1.0 for v in parts_.values())
    weights = parts.search.config.weights
    rebuilt = sum(
        getattr(weights, name) * parts_[name]
        for name in ("semantic", "keyword", "recency", "importance", "confidence", "fused")
    )
    rebuilt += sum(
        getattr(weights, b if b != "exact" else "exact_bonus")
        for b in ("person", "when", "exact")
        if b in parts_
    )
    assert abs(rebuilt - top.score) < 1e-3  # the parts are the whole score


def test_memories_by_id_come_in_the_order_asked_whatever_their_state(parts: Parts) -> None:
    first = add(parts, "Ana keeps three beehives on her balcony", 1, person_id="ana")
    second = add(parts, "Bo is learning the cello", 2, person_id="bo")
    general = add(parts, "movie night is on Fridays", 3)
    parts.store.memories.update(first, archived=True)
    asked = (general, "no-such-id", first, second)
    assert query(parts, "", ids=asked) == [general, first, second]
    (archived,) = parts.search.query(MemoryQuery(text="", ids=(first,)), touch=False)
    assert archived.archived and archived.parts == {}
    # A person's query never shows someone else's memory, even by its id.
    assert query(parts, "", ids=asked, person_id="bo") == [general, second]


def test_browsing_lists_the_newest_memories_the_filters_allow(parts: Parts) -> None:
    old = add(parts, "Ana keeps three beehives on her balcony", 1, person_id="ana", tags=("home",))
    add(parts, "Bo is learning the cello", 2, person_id="bo", tags=("music",))
    new = add(parts, "Ana repainted the hives teal", 3, person_id="ana", tags=("home",))
    assert query(parts, "", browse=True, person_id="ana") == [new, old]
    assert query(parts, "", browse=True, tags=("music",)) != []
    assert query(parts, "", browse=True, tags=("home",), k=1) == [new]
    parts.store.memories.update(new, archived=True)
    assert query(parts, "", browse=True, person_id="ana") == [old]
    assert query(parts, "", browse=True, person_id="ana", include_archived=True) == [new, old]
