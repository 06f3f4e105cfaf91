"""People's requests in-process: add, edit, approve, reject, correct and forget, each applied once."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.memory.bank import Refused
from schemas import Fact, MemoryAdd, MemoryCorrect, MemoryEdit, MemoryForget, MemoryQuery, ReplyMeta
from tests.support.memory import OWNER, Parts, open_parts

AT = 1_780_000_000.0


def add(parts: Parts, text: str, offset: int, **fields: object) -> str:
    event = MemoryAdd(text=text, **fields)  # type: ignore[arg-type]
    return parts.edits.add(event, event_id=f"e{offset}", at=AT, offset=offset).id


def ids(parts: Parts, text: str, **fields: object) -> list[str]:
    query = MemoryQuery(text=text, k=10, **fields)  # type: ignore[arg-type]
    return [h.id for h in parts.search.query(query, touch=False)]


def test_an_added_memory_is_found_and_adding_it_again_keeps_one(parts: Parts) -> None:
    first = add(parts, "Ana keeps three beehives on her balcony", 1, person_id="ana")
    again = add(parts, "Ana keeps three beehives on her balcony", 1, person_id="ana")
    assert first == again and parts.store.counts()["memories"] == 1
    assert ids(parts, "does she have insects as pets?", person_id="ana")[:1] == [first]
    assert parts.store.applied_offset == 1


def test_an_empty_memory_is_refused_and_its_offset_applied(parts: Parts) -> None:
    with pytest.raises(Refused, match="empty memory"):
        add(parts, "   ", 4)
    assert parts.store.applied_offset == 4 and parts.store.counts()["memories"] == 0


def test_a_diary_memory_has_its_file_written_before_its_row(parts: Parts) -> None:
    id = add(parts, "The day Hex met the whole server", 1, kind="journal", importance=0.8)
    memory = parts.store.memories.get(id)
    assert memory is not None and memory.kind == "journal" and memory.diary
    assert (
        (parts.bank.diaries.root / memory.diary)
        .read_text()
        .endswith("The day Hex met the whole server\n")
    )


def test_editing_text_reindexes_and_a_diary_file_follows(parts: Parts) -> None:
    id = add(parts, "Ana drives a red car", 1, kind="journal", person_id="ana")
    before = parts.store.memories.get(id)
    assert before is not None
    assert (
        parts.edits.edit(MemoryEdit(id=id, text="Ana rides a blue motorbike"), offset=2) == "edited"
    )
    after = parts.store.memories.get(id)
    assert after is not None and after.text == "Ana rides a blue motorbike"
    assert ids(parts, "motorbike", person_id="ana")[:1] == [id]
    assert "blue motorbike" in (parts.bank.diaries.root / after.diary).read_text()
    assert not (parts.bank.diaries.root / before.diary).exists() or before.diary == after.diary
    assert parts.store.memories.diary_files() == {after.diary: after.diary_hash}


def test_a_suggestion_is_approved_or_rejected(tmp_path: Path) -> None:
    parts = open_parts(tmp_path, suggestions=True)
    try:
        chess, olives = (
            parts.ingest.meta(
                ReplyMeta(
                    reply_to=f"r{i}",
                    person_id="ana",
                    channel="c1",
                    remember=True,
                    facts=(Fact(text=text),),
                ),
                at=AT,
                offset=i,
            )[0].id
            for i, text in enumerate(("Ana plays chess", "Ana hates olives"), start=1)
        )
        assert parts.edits.edit(MemoryEdit(id=chess, approve=True), offset=3) == "approved"
        approved = parts.store.memories.get(chess)
        assert approved is not None and approved.approved and not approved.checked
        assert ids(parts, "chess", person_id="ana")[:1] == [chess]
        assert parts.edits.edit(MemoryEdit(id=olives, approve=False), offset=4) == "rejected"
        assert parts.store.memories.get(olives) is None and parts.store.applied_offset == 4
    finally:
        parts.close()


def test_editing_an_unknown_memory_is_refused(parts: Parts) -> None:
    with pytest.raises(Refused, match="no memory m_nope") as refused:
        parts.edits.edit(MemoryEdit(id="m_nope", approve=True), offset=9)
    assert refused.value.ids == ("m_nope",) and parts.store.applied_offset == 9


def test_a_correction_lowers_confidence_once_even_when_redone(parts: Parts) -> None:
    id = add(parts, "Ana is allergic to peanuts", 1, person_id="ana")
    correction = MemoryCorrect(id=id, note="walnuts, not peanuts", by="ana")
    assert parts.edits.correct(correction, at=AT + 1, offset=2) == (1.0, 0.4)
    parts.edits.correct(correction, at=AT + 1, offset=2)  # the runtime's retry of the same event
    memory = parts.store.memories.get(id)
    assert memory is not None and memory.confidence == 0.4
    assert len(parts.store.memories.corrections(id)) == 1
    hit = parts.search.query(MemoryQuery(text="allergy", person_id="ana"), touch=False)[0]
    assert hit.id == id and hit.hedge


def test_a_correction_that_removes_deletes_the_memory_and_logs_why(parts: Parts) -> None:
    id = add(parts, "Ana is allergic to peanuts", 1, kind="journal", person_id="ana")
    assert parts.edits.correct(MemoryCorrect(id=id, remove=True, by="ana"), at=AT, offset=2) == (
        1.0,
        0.0,
    )
    assert parts.store.memories.get(id) is None and id not in ids(parts, "allergy")
    assert len(parts.store.memories.corrections(id)) == 1
    assert list(parts.bank.diaries.root.rglob("*.md")) == []


def test_forgetting_by_id_and_by_what_a_query_found(parts: Parts) -> None:
    a = add(parts, "Bo plays the cello", 1, person_id="bo")
    b = add(parts, "Bo's birthday is in May", 2, person_id="bo")
    keep = add(parts, "Ana likes tea", 3, person_id="ana")
    forgotten, counts = parts.edits.forget(MemoryForget(ids=(a,)), found=(b, "m_gone"), offset=4)
    assert sorted(forgotten) == sorted((a, b)) and counts == {"memories": 2}
    assert [m.id for m in parts.store.memories.get_many([a, b, keep])] == [keep]
    assert ids(parts, "cello birthday", person_id="bo") == []
    assert ids(parts, "cello birthday") == [keep]  # the indexes forgot them too


def test_only_an_owner_may_forget_a_person_and_then_everything_goes(parts: Parts) -> None:
    add(parts, "Bo plays the cello", 1, person_id="bo")
    add(parts, "Bo's first concert", 2, person_id="bo", kind="journal")
    with pytest.raises(Refused, match="only an owner"):
        parts.edits.forget(MemoryForget(person_id="bo", by="stranger"), offset=3)
    assert parts.store.counts()["memories"] == 2 and parts.store.applied_offset == 3
    forgotten, counts = parts.edits.forget(MemoryForget(person_id="bo", by=OWNER), offset=4)
    assert counts["memories"] == 2 and forgotten == ()
    assert parts.store.counts()["memories"] == 0 and ids(parts, "cello concert") == []
    assert list(parts.bank.diaries.root.rglob("*.md")) == []
