"""Ingest in-process: live turns, the brain's notes, imported history and documents, on a real
DuckDB file with the real embedding model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import msgspec
import pytest

from actors.memory.bank import Refused
from actors.memory.ingest import speaker_person_id
from schemas import (
    ChatMessage,
    Fact,
    ImportedTurn,
    KnownPerson,
    MemoryDocument,
    MemoryHistory,
    MemoryImport,
    MemoryImportFile,
    MemoryQuery,
    ProfileUpdate,
    Reply,
    ReplyMeta,
)
from tests.support.memory import Parts, open_parts

AT = 1_780_000_000.0


def message(text: str, person: str = "ana", name: str = "Ana") -> ChatMessage:
    return ChatMessage(
        platform="console", person_id=person, display_name=name, channel="c1", text=text
    )


def found(parts: Parts, text: str, **fields: object) -> list[str]:
    return [h.text for h in parts.search.query(MemoryQuery(text=text, **fields), touch=False)]  # type: ignore[arg-type]


def test_a_persons_message_is_kept_as_a_turn_and_searchable_verbatim(parts: Parts) -> None:
    said = "My grandmother taught me to bake rye bread every Sunday"
    stored = parts.ingest.message(message(said), event_id="e1", at=AT, offset=1)
    parts.ingest.message(message("ok"), event_id="e2", at=AT + 1, offset=2)
    assert [(m.kind, m.text, m.turn_ids) for m in stored] == [("turn", said, ("e1",))]
    assert [t.id for t in parts.store.turns.latest("console:c1")] == ["e1", "e2"]
    assert parts.store.people.get("ana") is not None
    assert found(parts, "who showed Ana how to make bread?", person_id="ana")[0] == said
    assert "ok" not in found(parts, "ok", k=10)  # too short to mean anything on its own
    assert parts.store.applied_offset == 2


def test_hexs_own_reply_is_history_never_memory(parts: Parts) -> None:
    reply = Reply(
        reply_to="e1",
        channel="c1",
        platform="console",
        person_id="ana",
        text="I invented the bread machine in 1802, you know.",
    )
    assert parts.ingest.reply(reply, event_id="r1", at=AT, offset=3) is True
    assert [t.role for t in parts.store.turns.latest("console:c1")] == ["assistant"]
    assert parts.store.counts()["memories"] == 0
    cancelled = Reply(reply_to="e2", channel="c1", text="half a", status="cancelled")
    assert parts.ingest.reply(cancelled, event_id="r2", at=AT, offset=4) is False
    assert parts.store.counts()["turns"] == 1 and parts.store.applied_offset == 4


def test_her_own_initiative_is_no_turn_of_the_persons_and_her_message_is_kept(
    parts: Parts,
) -> None:
    opening = msgspec.structs.replace(
        message("My exam is tomorrow"), initiative="their exam has happened: ask how it went"
    )
    assert parts.ingest.message(opening, event_id="e1", at=AT, offset=1) == []
    assert parts.store.counts()["turns"] == 0 and parts.store.applied_offset == 1
    said = Reply(reply_to="e1", channel="c1", text="So? How did the exam go?", platform="console")
    assert parts.ingest.reply(said, event_id="r1", at=AT + 1, offset=2)
    assert [t.role for t in parts.store.turns.latest("console:c1")] == ["assistant"]


def test_with_remember_off_the_history_is_kept_and_nothing_is_remembered(parts: Parts) -> None:
    said = "My grandmother taught me to bake rye bread every Sunday"
    assert parts.ingest.message(message(said), event_id="e1", at=AT, offset=1, remember=False) == []
    assert [t.text for t in parts.store.turns.latest("console:c1")] == [said]  # the chat's history
    meta = ReplyMeta(
        reply_to="e1",
        person_id="ana",
        channel="c1",
        remember=True,
        importance=0.9,
        facts=(Fact(text="Ana bakes rye bread on Sundays", quote=said),),
    )
    assert parts.ingest.meta(meta, at=AT, offset=2, remember=False) == []
    assert parts.store.counts()["memories"] == 0 and parts.store.applied_offset == 2
    assert not found(parts, "rye bread")


def test_redoing_a_message_doubles_nothing(parts: Parts) -> None:
    event = message("I just adopted a grey cat called Pixel")
    first = parts.ingest.message(event, event_id="e1", at=AT, offset=1)
    again = parts.ingest.message(event, event_id="e1", at=AT, offset=1)
    assert [m.label for m in again] == [m.label for m in first]
    assert parts.store.counts()["memories"] == 1 and parts.store.counts()["turns"] == 1
    assert len(parts.search.query(MemoryQuery(text="grey cat", k=10), touch=False)) == 1


def test_a_rolled_back_transaction_is_simply_redone(
    parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = message("I just adopted a grey cat called Pixel")
    calls = []

    def flaky_upsert(*args: object) -> None:
        calls.append(args)
        raise OSError("disk hiccup")

    with monkeypatch.context() as patch:
        patch.setattr(parts.store.people, "upsert", flaky_upsert)
        with pytest.raises(OSError):
            parts.ingest.message(event, event_id="e1", at=AT, offset=7)
    assert calls and parts.store.applied_offset == 0
    assert parts.store.counts()["turns"] == parts.store.counts()["memories"] == 0
    parts.ingest.message(event, event_id="e1", at=AT, offset=7)  # the runtime's retry
    assert parts.store.applied_offset == 7 and parts.store.counts()["memories"] == 1
    assert len(parts.search.query(MemoryQuery(text="grey cat", k=10), touch=False)) == 1


def meta(**fields: object) -> ReplyMeta:
    fields.setdefault("reply_to", "e1")
    fields.setdefault("person_id", "ana")
    return ReplyMeta(channel="c1", **fields)  # type: ignore[arg-type]


def test_facts_from_the_brains_notes_carry_their_provenance(parts: Parts) -> None:
    parts.ingest.message(
        message("I just adopted a grey cat called Pixel!"), event_id="e1", at=AT, offset=1
    )
    cat = Fact(text="Ana has a grey cat named Pixel", quote="adopted a grey cat called Pixel")
    stored = parts.ingest.meta(meta(remember=True, importance=0.5, facts=(cat,)), at=AT, offset=2)
    (fact,) = stored
    assert (fact.kind, fact.source, fact.quote, fact.turn_ids) == (
        "fact",
        "extracted",
        cat.quote,
        ("e1",),
    )
    assert fact.approved and not fact.checked  # compared with older facts later
    assert found(parts, "what pet does Ana have?", person_id="ana", kinds=("fact",)) == [cat.text]


def test_a_repeated_fact_merges_into_the_one_it_repeats(parts: Parts) -> None:
    cat = Fact(text="Ana has a grey cat named Pixel", quote="a grey cat")
    first = parts.ingest.meta(meta(reply_to="e1", remember=True, facts=(cat,)), at=AT, offset=1)
    again = parts.ingest.meta(
        meta(reply_to="e2", remember=True, importance=0.6, facts=(cat,)), at=AT, offset=2
    )
    assert again == []
    merged = parts.store.memories.get(first[0].id)
    assert merged is not None and merged.turn_ids == ("e1", "e2") and merged.importance == 0.6


def test_redoing_the_brains_notes_stores_each_fact_once(parts: Parts) -> None:
    note = meta(remember=True, importance=0.9, facts=(Fact(text="Ana passed her driving test"),))
    first = parts.ingest.meta(note, at=AT, offset=1)
    again = parts.ingest.meta(note, at=AT, offset=1)
    assert {m.id for m in again} == {m.id for m in first}
    assert parts.store.counts()["memories"] == 2  # the fact and the diary entry
    assert len(list(parts.bank.diaries.root.rglob("*.md"))) == 1


def test_a_notable_moment_becomes_a_diary_file_and_small_talk_does_not(parts: Parts) -> None:
    parts.ingest.message(
        message("I passed my driving test today!!"), event_id="e1", at=AT, offset=1
    )
    note = meta(
        emotion="excited",
        remember=True,
        importance=0.9,
        tags=("milestone", "driving"),
        facts=(Fact(text="Ana passed her driving test", quote="passed my driving test"),),
    )
    stored = parts.ingest.meta(note, at=AT, offset=2)
    parts.ingest.meta(meta(reply_to="small-talk", importance=0.2), at=AT, offset=3)
    (diary,) = [m for m in stored if m.kind == "journal"]
    files = list(parts.bank.diaries.root.rglob("*.md"))
    assert [str(f.relative_to(parts.bank.diaries.root)) for f in files] == [diary.diary]
    text = files[0].read_text()
    assert "I passed my driving test today!!" in text and "emotion: excited" in text
    assert parts.store.memories.diary_files() == {diary.diary: diary.diary_hash}


def test_suggested_facts_wait_for_approval(tmp_path: Path) -> None:
    parts = open_parts(tmp_path, suggestions=True)
    try:
        stored = parts.ingest.meta(
            meta(remember=True, facts=(Fact(text="Ana plays chess", quote="I play chess"),)),
            at=AT,
            offset=1,
        )
        assert [(m.source, m.approved) for m in stored] == [("ai_suggested", False)]
        assert found(parts, "chess", person_id="ana") == []  # not in the brain's context yet
    finally:
        parts.close()


def test_profile_updates_merge_into_what_is_known(parts: Parts) -> None:
    parts.ingest.meta(
        meta(
            profile=ProfileUpdate(
                hobbies=("kayaking",),
                sentiment="cheerful",
                people=(KnownPerson(name="Leo", relation="brother"),),
            )
        ),
        at=AT,
        offset=1,
    )
    parts.ingest.meta(
        meta(
            reply_to="e2",
            profile=ProfileUpdate(
                tastes=("jazz",), people=(KnownPerson(name="leo", sentiment="proud"),)
            ),
        ),
        at=AT,
        offset=2,
    )
    profile = parts.store.people.profile("ana")
    assert (profile.hobbies, profile.tastes, profile.sentiment) == (
        ("kayaking",),
        ("jazz",),
        "cheerful",
    )
    assert profile.roster == {"leo": {"relation": "brother", "sentiment": "proud"}}


def imported(id: str, speaker: str, text: str, **fields: object) -> ImportedTurn:
    return ImportedTurn(
        id=id,
        conversation="discord:general",
        speaker=speaker,
        text=text,
        at=AT,
        **fields,  # type: ignore[arg-type]
    )


def test_imported_history_keeps_its_ids_and_a_second_import_adds_nothing(parts: Parts) -> None:
    batch = MemoryImport(
        turns=(
            imported(
                "991", "Maya", "we finally named the new kitten Biscuit", person_id="discord:1001"
            ),
            imported("992", "OldBot", "Biscuit is adorable!", role="assistant"),
            imported("993", "Theo", "my bike chain snapped on the way to work"),
            imported("994", "Theo", "   "),
        ),
        source="old-bot.jsonl",
    )
    counts = parts.ingest.history(batch, offset=1)
    assert counts == {"turns": 3, "already_known": 0, "indexed": 2, "empty": 1}
    hits = parts.search.query(MemoryQuery(text="bicycle broke"), touch=False)
    assert hits[0].turn_ids == ("993",) and hits[0].person_id == speaker_person_id("Theo")
    assert hits[0].source == "import" and speaker_person_id("Theo") == "import:theo"
    assert parts.ingest.history(batch, offset=2)["already_known"] == 3
    assert parts.store.counts()["memories"] == 2


def test_a_document_becomes_chunks_with_provenance(parts: Parts) -> None:
    data = b"# Garage\n\nThe spare key hangs behind the calendar.\n"
    upload = MemoryDocument(
        name="notes.md", tags=("home",), sha256=hashlib.sha256(data).hexdigest()
    )
    stored = parts.ingest.document(upload, data, event_id="d1", at=AT, offset=1)
    assert stored and all(m.kind == "document" and m.tags == ("home",) for m in stored)
    assert stored[0].document.startswith("notes.md #1")
    assert "spare key" in found(parts, "where is the spare key")[0]


@pytest.mark.parametrize(
    ("name", "data", "sha256", "says"),
    [
        ("notes.md", b"hello there", "0" * 64, "arrived damaged"),
        ("letter.docx", b"PK\x03\x04 not really", "", ".pdf"),
    ],
)
def test_a_bad_upload_is_refused_stores_nothing_and_is_not_redone(
    parts: Parts, name: str, data: bytes, sha256: str, says: str
) -> None:
    with pytest.raises(Refused, match=f"{name}.*" if says != ".pdf" else None) as refused:
        parts.ingest.document(
            MemoryDocument(name=name, sha256=sha256), data, event_id="d1", at=AT, offset=5
        )
    assert says in refused.value.detail
    assert parts.store.counts()["memories"] == 0 and parts.store.applied_offset == 5


def test_a_conversations_history_pages_back_and_conversations_are_listed(parts: Parts) -> None:
    def web(channel: str, text: str) -> ChatMessage:
        return ChatMessage(
            platform="web", person_id="owner", display_name="O", channel=channel, text=text
        )

    for i in range(7):
        parts.ingest.message(
            web("owner/main", f"line {i}"), event_id=f"m{i}", at=AT + i, offset=i + 1
        )
    answer = Reply(
        reply_to="m6",
        channel="owner/main",
        platform="web",
        text="the answer",
        recalled=("x1", "x2"),
    )
    parts.ingest.reply(answer, event_id="r6", at=AT + 7, offset=8)
    parts.ingest.message(web("owner/chat-2", "another talk"), event_id="o1", at=AT + 3.5, offset=9)
    parts.ingest.message(message("elsewhere"), event_id="c1", at=AT + 10, offset=10)

    page = parts.search.history(MemoryHistory(conversation="web:owner/main", limit=3))
    assert [t.text for t in page.turns] == ["line 5", "line 6", "the answer"] and page.more
    assert page.turns[-1].role == "assistant"
    assert page.turns[-1].meta == {"reply_to": "m6", "recalled": "x1 x2"}
    older = parts.search.history(
        MemoryHistory(conversation="web:owner/main", before=page.turns[0].at, limit=10)
    )
    assert [t.id for t in older.turns] == [f"m{i}" for i in range(5)] and not older.more

    listed = parts.search.history(MemoryHistory(prefix="web:owner/"))
    assert [(c.conversation, c.turns, c.preview) for c in listed.conversations] == [
        ("web:owner/main", 8, "line 0"),
        ("web:owner/chat-2", 1, "another talk"),
    ]


@pytest.mark.slow  # seconds on two slow cores: the full suite's
def test_a_history_file_part_is_parsed_imported_in_batches_and_redone_safely(
    parts: Parts,
) -> None:
    rows = [
        json.dumps(
            {
                "id": f"h{i}",
                "conversation": "old",
                "speaker": "Sam",
                "text": f"we talked {i}",
                "timestamp": AT + i,
            }
        )
        for i in range(450)
    ]
    rows.insert(10, "{broken")
    raw = ("\n".join(rows) + "\n").encode()
    seen: list[tuple[int, int]] = []
    event = MemoryImportFile(name="old.jsonl", first_line=101)
    counts, problems = parts.ingest.history_file(
        event, raw, offset=5, progress=lambda d, t: seen.append((d, t))
    )
    assert counts["turns"] == 450 and counts["bad_lines"] == 1
    assert problems == [
        "line 111: not JSON (Expecting property name enclosed in double quotes at column 2)"
    ]
    assert seen[-1] == (450, 450) and len(seen) == 3  # three batches of at most 200
    assert parts.store.applied_offset == 5
    again, _ = parts.ingest.history_file(event, raw, offset=5)
    assert again["turns"] == 0 and again["already_known"] == 450
    with pytest.raises(Refused, match="no usable turns"):
        parts.ingest.history_file(MemoryImportFile(name="x.jsonl"), b"{bad\n", offset=6)
    assert parts.store.applied_offset == 6
