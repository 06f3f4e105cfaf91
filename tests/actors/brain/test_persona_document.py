"""The persona document: loading, its one-line errors, and its recorded versions and rollbacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.brain.persona import Persona, PersonaError, load_persona, parse_persona
from actors.brain.versions import PersonaStore
from tests.support.persona import SMALL

# -- the document ----------------------------------------------------------------------


def test_default_persona_is_hex_with_four_rising_phases(hex_persona: Persona) -> None:
    assert hex_persona.name == "Hex"
    assert "tsundere" in hex_persona.summary and "goblin" in hex_persona.summary
    assert [p.name for p in hex_persona.phases] == [
        "stranger",
        "acquaintance",
        "friend",
        "close_friend",
    ]
    thresholds = [p.threshold for p in hex_persona.phases]
    assert thresholds == sorted(set(thresholds)) and thresholds[0] == 0
    shares = [hex_persona.tsundere.denial_share[p.name] for p in hex_persona.phases]
    assert shares == sorted(shares, reverse=True), "the tsun softens as trust grows"
    assert all(getattr(hex_persona.reactions, f) for f in hex_persona.reactions.__struct_fields__)
    assert hex_persona.hard_limits and hex_persona.values and hex_persona.style.vocabulary


def error_of(tmp_path: Path, text: str | None) -> str:
    path = tmp_path / "persona.toml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(PersonaError) as info:
        load_persona(path)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, f"not one line: {message!r}"
    assert message.startswith(f"{path}: "), message
    return message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "no such file"),
        ("name = \n", "not valid TOML"),
        ("mood = 'grumpy'\n" + SMALL, "unknown key `mood`: remove it or fix its spelling"),
        (
            SMALL.replace("[connection]", "[connection]\nbonus = 2"),
            "unknown key `connection.bonus`: remove it or fix its spelling",
        ),
        (SMALL.replace('name = "Pip"\n', ""), "missing key `name`: add it"),
        (
            SMALL.replace("care_within = 2", 'care_within = "two"'),
            "`tsundere.care_within` must be int, got str: write a whole number",
        ),
        (
            SMALL.replace('summary = "a grumpy little sprite"', 'summary = "x"\nvalues = "loyal"'),
            "`values` must be array, got str: write a list",
        ),
        (
            SMALL.replace("friend = 0.25", "friend = 1.5"),
            "`tsundere.denial_share.friend` must be <= 1.0, got 1.5: use a fraction between 0 and 1",
        ),
        (
            SMALL.replace("friend = 0.25", "friend = -0.1"),
            "`tsundere.denial_share.friend` must be >= 0.0",
        ),
        (
            SMALL.replace("friend = 0.25", "friend = 'lots'"),
            "`tsundere.denial_share.friend` must be a number, got 'lots'",
        ),
        (SMALL.replace("friend = 0.25\n", ""), "`tsundere.denial_share.friend` is missing"),
        (
            SMALL.replace("close_friend = 0.0", "close_friend = 0.0\nbestie = 0.1"),
            "`tsundere.denial_share.bestie` names no phase",
        ),
        (
            SMALL.replace("threshold = 12", "threshold = 5"),
            "`phases[2].threshold` must be greater than phases[1].threshold (5), got 5",
        ),
        (SMALL.replace("threshold = 0", "threshold = 3"), "`phases[0].threshold` must be 0, got 3"),
        (
            SMALL.replace("care_within = 2", "care_within = 0"),
            "`tsundere.care_within` must be >= 1",
        ),
        (
            SMALL.replace(
                'crisis_keywords = ["want to die", "hurt myself"]', "crisis_keywords = []"
            ),
            "`tsundere.crisis_keywords` is empty",
        ),
        (
            SMALL.replace('care_phrases = ["are you okay"]', 'care_phrases = ["are*you"]'),
            "`tsundere.care_phrases[0]` is not a usable phrase",
        ),
    ],
    ids=[
        "missing-file",
        "bad-toml",
        "unknown-key",
        "unknown-nested-key",
        "missing-key",
        "wrong-type",
        "wrong-type-list",
        "share-above-1",
        "share-below-0",
        "share-not-number",
        "share-missing",
        "share-unknown-phase",
        "thresholds-not-increasing",
        "first-threshold",
        "care-within",
        "no-crisis-keywords",
        "bad-phrase",
    ],
)
def test_each_document_error_is_one_line_naming_file_key_and_fix(
    tmp_path: Path, text: str | None, expected: str
) -> None:
    assert expected in error_of(tmp_path, text)


def test_parsed_text_errors_name_the_source() -> None:
    with pytest.raises(PersonaError) as info:
        parse_persona(SMALL.replace("friend = 0.25", "friend = 1.5"))
    assert str(info.value).startswith("persona.toml: `tsundere.denial_share.friend` must be <= 1.0")


def test_small_persona_loads_with_defaults_for_optional_tables(small: Persona) -> None:
    assert small.name == "Pip" and small.backstory == "" and small.reactions.greeting == ""
    assert small.tsundere.care_within == 2 and small.connection.cap == 4


# -- versions --------------------------------------------------------------------------


def test_sync_records_a_version_only_when_the_text_changes(tmp_path: Path) -> None:
    doc = tmp_path / "persona.toml"
    doc.write_text(SMALL, encoding="utf-8")
    store = PersonaStore(tmp_path / "store")
    assert store.active == 0 and store.versions() == []
    assert store.sync(doc) == 1
    assert store.sync(doc) == 1
    doc.write_text(SMALL.replace("Pip", "Pippa"), encoding="utf-8")
    assert store.sync(doc, note="renamed") == 2
    assert store.sync(doc) == 2
    assert [(v.version, v.note) for v in store.versions()] == [(1, ""), (2, "renamed")]
    persona, text = store.get(1)
    assert persona.name == "Pip" and text == SMALL
    assert (tmp_path / "store" / "versions" / "0001.toml").read_text(encoding="utf-8") == SMALL


def test_rollback_restores_the_text_and_the_active_version_and_survives_reopening(
    tmp_path: Path,
) -> None:
    doc = tmp_path / "persona.toml"
    doc.write_text(SMALL, encoding="utf-8")
    store = PersonaStore(tmp_path / "store")
    store.sync(doc)
    changed = SMALL.replace("Pip", "Pippa")
    doc.write_text(changed, encoding="utf-8")
    store.sync(doc)

    persona = store.rollback(1)

    assert persona.name == "Pip"
    assert doc.read_text(encoding="utf-8") == SMALL
    assert store.active == 3 and store.versions()[-1].note == "rollback to 1"
    assert store.sync(doc) == 3, "the file matches the active version: nothing new to record"

    reopened = PersonaStore(tmp_path / "store")
    assert reopened.active == 3 and reopened.source == doc.resolve()
    assert reopened.get(3) == (persona, SMALL)
    assert [v.sha256 for v in reopened.versions()] == [v.sha256 for v in store.versions()]
    reopened.rollback(2)
    assert doc.read_text(encoding="utf-8") == changed and reopened.active == 4


def test_rollback_to_a_missing_version_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    doc = tmp_path / "persona.toml"
    doc.write_text(SMALL, encoding="utf-8")
    store = PersonaStore(tmp_path / "store")
    store.sync(doc)
    with pytest.raises(
        PersonaError, match=r"there is no persona version 7: pick one of 1\.\.1$"
    ) as info:
        store.rollback(7)
    assert "\n" not in str(info.value)
    assert store.active == 1 and len(store.versions()) == 1


def test_rollback_keeps_edits_that_were_never_synced(tmp_path: Path) -> None:
    doc = tmp_path / "persona.toml"
    doc.write_text(SMALL, encoding="utf-8")
    store = PersonaStore(tmp_path / "store")
    store.sync(doc)
    edited = SMALL.replace("Pip", "Pipkin")
    doc.write_text(edited, encoding="utf-8")
    store.rollback(1)
    assert doc.read_text(encoding="utf-8") == SMALL
    assert [v.note for v in store.versions()] == [
        "",
        "unsynced edits, kept before rollback to 1",
        "rollback to 1",
    ]
    assert store.get(2)[1] == edited and store.active == 3
    doc.write_text("name = \n", encoding="utf-8")
    store.rollback(1)
    assert (tmp_path / "store" / "unsynced.toml").read_text(encoding="utf-8") == "name = \n"
    assert doc.read_text(encoding="utf-8") == SMALL and store.active == 3


def test_versions_keep_the_exact_bytes_of_the_file(tmp_path: Path) -> None:
    doc = tmp_path / "persona.toml"
    doc.write_bytes(SMALL.replace("\n", "\r\n").encode("utf-8"))
    store = PersonaStore(tmp_path / "store")
    store.sync(doc)
    doc.write_text(SMALL.replace("Pip", "Pippa"), encoding="utf-8")
    store.sync(doc)
    store.rollback(1)
    assert doc.read_bytes() == SMALL.replace("\n", "\r\n").encode("utf-8")


def test_an_invalid_document_is_never_recorded(tmp_path: Path) -> None:
    doc = tmp_path / "persona.toml"
    doc.write_text(SMALL, encoding="utf-8")
    store = PersonaStore(tmp_path / "store")
    store.sync(doc)
    doc.write_text("oops = 1\n" + SMALL, encoding="utf-8")
    with pytest.raises(PersonaError, match="unknown key `oops`"):
        store.sync(doc)
    assert store.active == 1 and PersonaStore(tmp_path / "store").active == 1


def test_a_version_file_edited_on_disk_is_refused(tmp_path: Path) -> None:
    doc = tmp_path / "persona.toml"
    doc.write_text(SMALL, encoding="utf-8")
    store = PersonaStore(tmp_path / "store")
    store.sync(doc)
    (tmp_path / "store" / "versions" / "0001.toml").write_text(
        SMALL + "# edited\n", encoding="utf-8"
    )
    with pytest.raises(PersonaError, match="changed on disk"):
        store.get(1)


def test_a_damaged_index_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "index.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(PersonaError, match="unreadable persona index") as info:
        PersonaStore(tmp_path / "store")
    assert "\n" not in str(info.value)
