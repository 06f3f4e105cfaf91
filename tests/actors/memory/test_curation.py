"""Background upkeep in-process: aging, contradiction checks, summaries and the diary folder,
with the brain's judgements given as plain values."""

from __future__ import annotations

import time
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from actors.memory.curation import Check, without_repeats
from actors.memory.store import Memory
from schemas import BrainTaskResult, Fact, ImportedTurn, MemoryAdd, MemoryImport, MemoryQuery
from tests.support.memory import Parts, open_parts

AT = 1_780_000_000.0
DAY = 86400.0


def add(parts: Parts, text: str, offset: int, **fields: object) -> str:
    event = MemoryAdd(text=text, **fields)  # type: ignore[arg-type]
    return parts.edits.add(event, event_id=f"e{offset}", at=AT, offset=offset).id


def judge(older: Memory, newer: Memory) -> bool:
    """The scripted judge of tests/actors/memory/peers.py: same three first words, then not."""
    old, new = older.text.lower().split(), newer.text.lower().split()
    return old[:3] == new[:3] and old[3:] != new[3:]


def settle_all(parts: Parts) -> list[tuple[str, str]]:
    superseded: list[tuple[str, str]] = []
    while (check := parts.curation.next_check()) is not None:
        contradicted = [older for older in check.rivals if judge(older, check.fact)]
        for older in parts.curation.settle(check, contradicted, at=AT):
            superseded.append((older.id, check.fact.id))
    return superseded


def test_old_unimportant_memories_are_archived_never_anchors(parts: Parts) -> None:
    now = time.time()
    for id, kind, importance in (
        ("trivia", "fact", 0.1),
        ("anchor", "anchor", 0.0),
        ("big", "fact", 0.9),
    ):
        parts.store.memories.add(
            Memory(
                id=id,
                kind=kind,  # type: ignore[arg-type]
                text=f"{id} text",
                importance=importance,
                created=now - 200 * DAY,
                updated=now - 200 * DAY,  # stored then, untouched since
            )
        )
    parts.store.memories.add(Memory(id="fresh", text="fresh text", importance=0.1, created=now))
    # Happened 200 days ago, imported now: it ages from its import
    parts.store.memories.add(
        Memory(id="imported", text="imported text", importance=0.1, created=now - 200 * DAY)
    )
    assert parts.curation.age(now) == ["trivia"]
    assert parts.curation.age(now) == []
    trivia = parts.store.memories.get("trivia")
    assert trivia is not None and trivia.archived  # archived, not deleted


def test_a_newer_contradicting_fact_supersedes_the_older_and_the_pair_is_kept(
    parts: Parts,
) -> None:
    porto = add(parts, "Maya lives in Porto", 1, person_id="maya")
    bridges = add(parts, "Maya loves the bridges of Porto", 2, person_id="maya")
    lisbon = add(parts, "Maya lives in Lisbon", 3, person_id="maya")
    assert settle_all(parts) == [(porto, lisbon)]
    hits = [
        h.id
        for h in parts.search.query(
            MemoryQuery(text="where does Maya live?", person_id="maya", k=10), touch=False
        )
    ]
    assert lisbon in hits and porto not in hits and bridges in hits
    assert parts.store.memories.unchecked() == []
    (pair,) = parts.store.memories.contradictions()
    assert (pair["older_text"], pair["newer_text"]) == (
        "Maya lives in Porto",
        "Maya lives in Lisbon",
    )


def test_a_fact_forgotten_while_the_brain_judged_it_changes_nothing(parts: Parts) -> None:
    porto = add(parts, "Maya lives in Porto", 1, person_id="maya")
    lisbon = add(parts, "Maya lives in Lisbon", 2, person_id="maya")
    first = parts.curation.next_check()
    assert first is not None and first.fact.id == porto and first.rivals == ()
    parts.curation.settle(first, [], at=AT)
    check = parts.curation.next_check()
    assert isinstance(check, Check) and check.fact.id == lisbon
    assert [m.id for m in check.rivals] == [porto]
    parts.bank.remove([lisbon])  # forgotten while the brain was thinking
    assert parts.curation.settle(check, list(check.rivals), at=AT) == []
    older = parts.store.memories.get(porto)
    assert older is not None and older.superseded_by == ""
    assert parts.store.memories.contradictions() == []


def camping(parts: Parts) -> list[str]:
    texts = [
        ("Sam", "we are going camping at Lake Tahoe next weekend"),
        ("Hex", "Fun! Who is going?"),
        ("Sam", "me, my brother Leo and our dog Pepper"),
        ("Hex", "Pepper will love it."),
        ("Sam", "Leo is bringing his new kayak"),
        ("Hex", "Nice."),
        ("Sam", "I still need to buy a sleeping bag"),
        ("Hex", "Get a warm one."),
        ("Sam", "ok"),
        ("Hex", "Anything else?"),
        ("Sam", "nope"),
        ("Hex", "Have fun!"),
    ]
    turns = tuple(
        ImportedTurn(
            id=f"c{i}",
            conversation="discord:sam",
            speaker=who,
            text=text,
            at=AT + 60 * i,
            role="assistant" if who == "Hex" else "user",
        )
        for i, (who, text) in enumerate(texts)
    )
    parts.ingest.history(MemoryImport(turns=turns), offset=1)
    return [t.id for t in turns]


def test_old_turns_fold_into_a_summary_with_their_turns_as_provenance(tmp_path: Path) -> None:
    parts = open_parts(tmp_path, recent_turns=4, summary_batch=8)
    try:
        ids = camping(parts)
        batch = parts.curation.next_batch()
        assert [t.id for t in batch] == ids[:8]  # the newest four stay whole
        result = BrainTaskResult(
            summary="Sam is going camping at Lake Tahoe with Leo and their dog Pepper.",
            facts=(
                Fact(text="Sam has a dog named Pepper", quote="our dog Pepper"),
                Fact(text="Sleeping bags should be warm", quote="Get a warm one."),  # Hex's words
            ),
        )
        stored = parts.curation.fold(batch, result)
        assert [(m.kind, m.source) for m in stored] == [("summary", "import"), ("fact", "import")]
        assert stored[0].turn_ids == tuple(ids[:8]) and stored[1].turn_ids == ("c2",)
        assert parts.curation.next_batch() == []  # each batch is summarised once
    finally:
        parts.close()


def test_a_failed_summary_still_marks_its_turns_done(tmp_path: Path) -> None:
    parts = open_parts(tmp_path, recent_turns=4, summary_batch=8)
    try:
        camping(parts)
        assert parts.curation.fold(parts.curation.next_batch(), BrainTaskResult(error="no")) == []
        assert parts.curation.next_batch() == []
    finally:
        parts.close()


def test_summaries_switched_off_offer_no_batch(tmp_path: Path) -> None:
    parts = open_parts(tmp_path, recent_turns=4, summary_batch=8, summaries=False)
    try:
        camping(parts)
        assert parts.curation.next_batch() == []
    finally:
        parts.close()


def test_the_diary_folder_follows_peoples_edits_additions_and_deletions(parts: Parts) -> None:
    id = add(parts, "Ana passed her driving test today", 1, kind="journal", person_id="ana")
    memory = parts.store.memories.get(id)
    assert memory is not None
    root = parts.bank.diaries.root
    assert parts.curation.sync_diaries().indexed == ()  # nothing changed yet
    path = root / memory.diary
    path.write_text(path.read_text().replace("driving test", "motorbike licence"))
    assert parts.curation.sync_diaries().indexed == (id,)
    edited = parts.store.memories.get(id)
    assert edited is not None and "motorbike licence" in edited.text

    mine = path.parent / "my-own-note.md"
    mine.write_text("Ana's favourite ice cream is pistachio, she told me at the fair.\n")
    (adopted,) = parts.curation.sync_diaries().indexed
    hits = parts.search.query(MemoryQuery(text="ice cream flavour"), touch=False)
    assert hits[0].id == adopted and hits[0].kind == "journal"

    copy = path.parent / "copy.md"
    copy.write_text(path.read_text())
    (twin,) = parts.curation.sync_diaries().indexed
    assert twin != id  # a copy of another entry's file is a memory of its own

    path.unlink()
    assert parts.curation.sync_diaries().forgotten == (id,)
    assert parts.store.memories.get(id) is None
    assert parts.curation.sync_diaries() == parts.curation.sync_diaries()  # nothing comes back


def test_a_broken_diary_file_is_reported_once_and_its_memory_kept(parts: Parts) -> None:
    id = add(parts, "The day Hex first met the whole server", 1, kind="journal")
    memory = parts.store.memories.get(id)
    assert memory is not None
    (parts.bank.diaries.root / memory.diary).write_text("---\ntags: [unclosed\n---\nhalf an edit")
    with capture_logs() as logs:
        for _ in range(3):
            parts.curation.sync_diaries()
    reported = [e for e in logs if e["event"] == "memory.journal_unreadable"]
    assert len(reported) == 1 and reported[0]["file"] == memory.diary
    kept = parts.store.memories.get(id)
    assert kept is not None and kept.text == memory.text
    assert reported[0]["error"] and "\n" not in reported[0]["error"]  # one line to act on


LOOPED = (
    "Rosa: tired. the lab sink is broken and Vicente complained about it in a meeting like "
    "it's my fault. the people said it was their fault. the people said it was their fault. "
    "The people said it was their fault! the people said it was their fault. the people,"
)


def test_a_summary_stuck_in_a_loop_is_stored_saying_each_thing_once(tmp_path: Path) -> None:
    assert without_repeats(LOOPED) == (
        "Rosa: tired. the lab sink is broken and Vicente complained about it in a meeting like "
        "it's my fault. the people said it was their fault."
    )
    assert without_repeats("Ana met Ben. Ana met Ben in May, not June.") == (
        "Ana met Ben. Ana met Ben in May, not June."
    )
    assert without_repeats("They talked about the move and") == "They talked about the move and"
    assert without_repeats("Dr. Lee called on Monday. Dr. Lee left on Friday.") == (
        "Dr. Lee called on Monday. Dr. Lee left on Friday."
    )
    assert without_repeats(
        "- Ana likes green tea.\n- Bo likes coffee.\n- Ana likes green tea."
    ) == ("- Ana likes green tea.\n- Bo likes coffee.")
    parts = open_parts(tmp_path)
    turns = [
        ImportedTurn(id=f"t{i}", conversation="c", speaker="Rosa", text=f"line {i}", at=AT + i)
        for i in range(3)
    ]
    parts.ingest.history(MemoryImport(turns=tuple(turns)), offset=None)
    stored = parts.curation.fold(
        parts.store.turns.unsummarized(keep=0, batch=3), BrainTaskResult(summary=LOOPED)
    )
    assert [m.text.count("their fault") for m in stored if m.kind == "summary"] == [1]


SENTENCES = st.lists(
    st.sampled_from(["Ana moved to Lisbon.", "She hates the rain!", "Ben visits in May?", "ok…"]),
    max_size=12,
)


@given(SENTENCES)
def test_without_repeats_keeps_the_first_saying_of_each_sentence_in_order(said: list[str]) -> None:
    out = without_repeats(" ".join(said))
    once = [s for i, s in enumerate(said) if s == "ok…" or s not in said[:i]]
    assert out == " ".join(once)
    assert without_repeats(out) == out
