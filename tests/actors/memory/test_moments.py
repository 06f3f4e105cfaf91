"""Episodic moments and who a question names: the text a turn is indexed by, names and
nicknames resolved to people, and what both do for retrieval (real DuckDB, real model)."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.memory.moments import BEFORE, CHAT_GAP_S, moment, moments
from actors.memory.names import fold, named
from actors.memory.reindex import Reindex
from actors.memory.store import MIGRATIONS, MemoryStore, StoredTurn, migrate
from schemas import ImportedTurn, MemoryImport, MemoryQuery
from tests.support.memory import Parts, open_parts


def turn(id: str, speaker: str, text: str, at: float, role: str = "user") -> StoredTurn:
    return StoredTurn(
        id=id,
        conversation="import:c",
        speaker=speaker,
        text=text,
        at=at,
        role=role,  # type: ignore[arg-type]
    )


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


# -- the moment text ---------------------------------------------------------------------------


def test_a_moment_is_the_turn_first_then_who_it_answered() -> None:
    before = [
        turn("t1", "Ana", "morning!", 100.0),
        turn("t2", "Tomás", "did you get the green dress with the pockets?", 160.0),
    ]
    text = moment(turn("t3", "Ana", "Yes, that one!", 200.0), before)
    assert text.splitlines() == [
        "Ana to Tomás: Yes, that one!",
        "Ana: morning!",
        "Tomás: did you get the green dress with the pockets?",
    ]


def test_turns_of_another_chat_are_no_context() -> None:
    before = [turn("t1", "Tomás", "night!", 0.0)]
    assert moment(turn("t2", "Ana", "hey you", CHAT_GAP_S + 1.0), before) == "Ana: hey you"


@given(texts=st.lists(st.text(min_size=1), min_size=1, max_size=8))
def test_every_turn_keeps_its_own_words_whole_and_at_most_its_neighbours(texts: list[str]) -> None:
    turns = [turn(f"t{i}", "AB"[i % 2], t, float(i)) for i, t in enumerate(texts)]
    found = moments(turns)
    assert found.keys() == {t.id for t in turns}
    for i, t in enumerate(turns):
        assert found[t.id].startswith(
            f"{t.speaker} to {'AB'[(i + 1) % 2]}: {t.text}" if i else f"{t.speaker}: {t.text}"
        )
        assert len(found[t.id].split("\n")) <= len(t.text.split("\n")) + min(i, BEFORE) * 2 + BEFORE


# -- names -------------------------------------------------------------------------------------

PEOPLE = {"p:ana": "Ana Lima", "p:tomas": "Tomás", "p:priya": "Priya", "p:jo": "Jo"}


def test_names_nicknames_and_accents_resolve_to_people() -> None:
    assert named("When did Pri start the ceramics class?", PEOPLE) == {"p:priya"}
    assert named("what does tomas do to unwind, and with whom?", PEOPLE) == {"p:tomas"}
    assert named("Did ana's sister and TOMÁS ever meet?", PEOPLE) == {"p:ana", "p:tomas"}
    assert named("How is Lima these days?", PEOPLE) == {"p:ana"}  # her surname
    assert named("Did Jo run the half marathon?", PEOPLE) == {"p:jo"}  # short, but whole
    assert named("Did John run?", PEOPLE) == set()  # "jo" is too short to be a start of "john"
    assert named("what did they say about it?", PEOPLE) == set()


@given(
    name=st.sampled_from(["Tomás", "Zoë", "Łukasz", "Ana", "Marie-Hélène"]),
    upper=st.booleans(),
)
def test_case_and_accents_never_matter(name: str, upper: bool) -> None:
    plain = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    asked = plain.upper() if upper else plain.lower()
    assert fold(asked) == fold(name).replace("ł", "ł")
    assert "p" in named(f"what did {asked} say?", {"p": name}) or fold(plain) != fold(name)


# -- what it does for retrieval ----------------------------------------------------------------


def imported(parts: Parts, lines: list[tuple[str, str, str]]) -> None:
    """Import ``(speaker, text, ISO time)`` lines as one conversation."""
    turns = tuple(
        ImportedTurn(
            id=f"t{i:03d}", conversation="import:chat", speaker=speaker, text=text, at=at(when)
        )
        for i, (speaker, text, when) in enumerate(lines)
    )
    parts.ingest.history(MemoryImport(turns=turns, source="chat.jsonl"), offset=None)


def ask(parts: Parts, text: str, when: str, k: int = 3) -> list[tuple[str, str]]:
    hits = parts.search.query(MemoryQuery(text=text, k=k, at=at(when)), touch=False)
    return [(h.turn_ids[0], h.text) for h in hits]


WEDDING = [
    ("Leo", "so Sara's wedding is really happening in june huh", "2023-04-02T18:00:00"),
    ("Mia", "I know!! still can't believe she said yes to Bruno", "2023-04-02T18:01:00"),
    ("Mia", "the ceremony is in Porto and we fly out on the Friday", "2023-04-02T18:01:30"),
    ("Leo", "nice, are you staying with her family?", "2023-04-02T18:02:00"),
    ("Mia", "at an airbnb near the river with my cousins", "2023-04-02T18:03:00"),
    (
        "Mia",
        "my sister lent me a blue dress for the engagement party last year",
        "2023-04-02T18:04:00",
    ),
    ("Leo", "ugh work is killing me this week", "2023-04-20T20:00:00"),
    ("Mia", "same, the quarterly report is due on monday", "2023-04-20T20:01:00"),
    (
        "Leo",
        "did you end up getting the green dress with the pockets for the wedding?",
        "2023-04-20T20:02:00",
    ),
    ("Mia", "Yes, that one!", "2023-04-20T20:02:30"),
    ("Mia", "I need new shoes to go with it though", "2023-04-20T20:03:00"),
    ("Leo", "there's a sale at the shoe place on the high street", "2023-04-20T20:04:00"),
    ("Mia", "the rain has not stopped for three days here", "2023-04-28T09:00:00"),
    ("Mia", "and the cat knocked my coffee over this morning", "2023-04-28T09:00:40"),
]


@pytest.mark.slow  # the real embedding model: seconds
def test_a_short_reply_is_found_through_what_it_answered_and_shown_as_said(parts: Parts) -> None:
    imported(parts, WEDDING)
    hits = ask(parts, "Which dress did Mia pick for Sara's wedding?", "2023-05-01T12:00:00")
    assert ("t009", "Yes, that one!") in hits, hits


@pytest.mark.slow  # the real embedding model: seconds
def test_a_name_in_the_question_prefers_that_persons_words(parts: Parts) -> None:
    imported(
        parts,
        [
            ("Ana", "I go swimming every morning before work", "2023-03-01T08:00:00"),
            ("Tomás", "I go swimming every evening after work", "2023-03-01T08:01:00"),
            ("Ana", "the pool near the station is the best one", "2023-03-01T08:02:00"),
        ],
    )
    assert ask(parts, "When does Tomas go swimming?", "2023-03-05T12:00:00", k=1) == [
        ("t001", "I go swimming every evening after work")
    ]
    assert ask(parts, "When does ana go swimming?", "2023-03-05T12:00:00", k=1) == [
        ("t000", "I go swimming every morning before work")
    ]


@pytest.mark.slow  # the real embedding model: seconds
def test_in_may_means_may_of_the_conversations_year_not_of_today(parts: Parts) -> None:
    imported(
        parts,
        [
            ("Ana", "went to a weekend pottery workshop in the old town", "2022-09-10T10:00:00"),
            ("Ana", "went to a weekend cooking workshop by the harbour", "2023-05-13T10:00:00"),
            ("Ana", "went to a weekend painting workshop at the museum", "2023-06-10T10:00:00"),
        ],
    )
    asked = "2023-06-20T12:00:00"
    assert ask(parts, "What workshop did Ana go to in May?", asked, k=1)[0][0] == "t001"
    assert ask(parts, "What workshop did Ana go to last September?", asked, k=1)[0][0] == "t000"


# -- imported turns archived before v4 come back -----------------------------------------------


def test_imported_turns_that_old_aging_archived_come_back_on_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "memory.duckdb"
    con = duckdb.connect(str(path))
    migrate(con, path, MIGRATIONS[:3])
    for id, source, kind in (("m_import", "import", "turn"), ("m_manual", "manual", "fact")):
        con.execute(
            "INSERT INTO memories (id, label, kind, text, source, person_id, importance, "
            "confidence, quote, turn_ids, tags, approved, created, updated, archived) "
            "VALUES (?, nextval('memory_label'), ?, 'an old day at the lake', ?, '', 0.2, 1.0, "
            "'', [], [], true, 10, 10, true)",
            [id, kind, source],
        )
    con.close()
    with MemoryStore(path) as s:
        back, kept = s.memories.get("m_import"), s.memories.get("m_manual")
        assert back is not None and kept is not None
        assert not back.archived and back.updated > 1_700_000_000 and back.created == 10
        assert kept.archived and kept.updated == 10  # archived by a person's choice: left alone
        assert back.context == ""  # indexed by its text until it is re-indexed


# -- old memories brought up to date -----------------------------------------------------------


@pytest.mark.slow  # the real embedding model: seconds
def test_turns_stored_before_moments_get_theirs_in_the_background(parts: Parts) -> None:
    turns = [
        StoredTurn(
            id=f"t{i:03d}",
            conversation="import:chat",
            speaker=s,
            text=t,
            at=at(w),
            source="import",
            person_id=f"import:{s.lower()}",
        )
        for i, (s, t, w) in enumerate(WEDDING)
    ]
    with parts.store.transaction():
        for t in turns:
            parts.store.turns.add(t)
        stored = [parts.store.memories.add(m) for m in parts.ingest.episodes(turns)]  # no moments
    parts.bank.indexes.add(stored)
    assert all(m.context == "" and m.said_embedding is None for m in stored)
    reindex = Reindex(parts.bank, "minilm:384")
    assert reindex.left() == len(stored) and reindex.progress().startswith("re-indexing")
    while reindex.step(limit=4):
        pass
    assert reindex.left() == 0 and reindex.progress() == ""
    again = parts.store.memories.get_many([m.id for m in stored])
    assert all(m.context and m.said_embedding is not None for m in again)
    assert all(m.updated == s.updated for m, s in zip(again, stored, strict=True))
    hits = ask(parts, "Which dress did Mia pick for Sara's wedding?", "2023-05-01T12:00:00")
    assert ("t009", "Yes, that one!") in hits, hits


@pytest.mark.slow  # the real embedding model: seconds
def test_a_new_embedding_model_re_embeds_every_memory_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    parts = open_parts(tmp_path)
    imported(parts, WEDDING)
    Reindex(parts.bank, "minilm:384")  # the store learns which model embedded it
    before = {m.id: m.embedding for m in parts.store.memories.after(-1, 100)[0]}
    reindex = Reindex(parts.bank, "another-model:384")
    assert reindex.left() == len(before) and reindex.progress().startswith("re-embedding")
    reindex.step(limit=3)
    parts.close()

    parts = open_parts(tmp_path)  # a restart in the middle goes on where it stopped
    reindex = Reindex(parts.bank, "another-model:384")
    assert reindex.left() == len(before) - 3
    while reindex.step(limit=3):
        pass
    assert reindex.left() == 0 and parts.store.setting("reembed_after") is None
    assert Reindex(parts.bank, "another-model:384").left() == 0
    parts.close()
