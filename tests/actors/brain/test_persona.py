"""The persona layer: the document, its versions, relationships, the tsundere rules, the prompt, the audit."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.brain.persona import (
    CATEGORIES,
    Persona,
    PersonaError,
    load_persona,
    parse_persona,
)
from actors.brain.phrases import word_count
from actors.brain.prompt import PROMPT_WORD_BUDGET, system_prompt
from actors.brain.rules import (
    Relationship,
    care_overdue,
    care_owed,
    connection_points,
    detect_care,
    detect_denial,
    is_crisis,
    is_direct_care_question,
    may_deny,
    never_deny_reason,
    new_relationship,
    record_reply,
    update_relationship,
    wants_quiet,
)
from actors.brain.scenarios import (
    AuditResult,
    Scenario,
    audit_reply,
    audit_summary,
    check_reply,
    compare_reports,
    load_report,
    load_scenarios,
    save_report,
)
from actors.brain.versions import (
    PersonaStore,
)

SMALL = """\
name = "Pip"
summary = "a grumpy little sprite"

[tsundere]
crisis_keywords = ["want to die", "hurt myself"]
care_questions = ["do you care"]
denial_phrases = ["not like i care"]
care_phrases = ["are you okay"]
care_within = 2

[tsundere.denial_share]
stranger = 1.0
acquaintance = 0.5
friend = 0.25
close_friend = 0.0

[[phases]]
name = "stranger"
threshold = 0
guidance = "Be guarded."

[[phases]]
name = "acquaintance"
threshold = 5
guidance = "Tease a little."

[[phases]]
name = "friend"
threshold = 12
guidance = "Banter freely."

[[phases]]
name = "close_friend"
threshold = 30
guidance = "Care shows plainly."

[connection]
base = 1
cap = 4
long_message_words = 10
long_message = 1

[connection.thanks]
points = 2
phrases = ["thank*"]
"""


@pytest.fixture(scope="module")
def hex_persona() -> Persona:
    return load_persona()


@pytest.fixture(scope="module")
def scenarios() -> list[Scenario]:
    return load_scenarios()


@pytest.fixture
def small(tmp_path: Path) -> Persona:
    path = tmp_path / "persona.toml"
    path.write_text(SMALL, encoding="utf-8")
    return load_persona(path)


def scenario(
    prompt: str = "hi", *, short: bool = False, floor: int = 12, max_words: int | None = None
) -> Scenario:
    return Scenario(
        id="s", category="casual", prompt=prompt, short=short, floor=floor, max_words=max_words
    )


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


# -- relationships ---------------------------------------------------------------------


def test_phases_move_up_through_all_phases_at_the_documents_thresholds(small: Persona) -> None:
    rel = new_relationship("u1", small, now=1.0)
    assert rel.phase == "stranger"
    moves: list[tuple[int, str]] = []
    for _ in range(40):
        if (phase := update_relationship(rel, 1, small, now=2.0)) is not None:
            moves.append((rel.points, phase))
    assert moves == [(5, "acquaintance"), (12, "friend"), (30, "close_friend")]
    assert rel.last_seen == 2.0


def test_a_big_jump_skips_to_the_highest_phase_reached_and_phases_never_fall(
    small: Persona,
) -> None:
    rel = new_relationship("u1", small)
    assert update_relationship(rel, 13, small, now=0.0) == "friend"
    assert update_relationship(rel, 0, small, now=0.0) is None
    with pytest.raises(ValueError, match="only add up"):
        update_relationship(rel, -5, small, now=0.0)
    assert rel.phase == "friend"


def test_connection_points_score_thanks_and_length_and_are_capped(
    small: Persona, hex_persona: Persona
) -> None:
    assert connection_points("hi", small) == 1
    assert connection_points("thanks!", small) == 3
    assert connection_points("thank you " * 10, small) == 4, (
        "base 1 + thanks 2 + long 1, capped at 4"
    )
    assert connection_points("lol", hex_persona) == 1
    assert connection_points("I'm so happy, my sister got the job!", hex_persona) == 5


# -- the tsundere rules ----------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    points=st.integers(min_value=0, max_value=1000),
    since=st.none() | st.integers(min_value=0, max_value=10),
    prefix=st.text(max_size=20),
    suffix=st.text(max_size=20),
)
def test_a_crisis_never_allows_a_denial(
    hex_persona: Persona, seed: int, points: int, since: int | None, prefix: str, suffix: str
) -> None:
    rng = random.Random(seed)
    rel = Relationship(person_id="u", points=points, phase="", messages_since_denial=since)
    for keyword in hex_persona.tsundere.crisis_keywords:
        text = f"{prefix} {keyword.removesuffix('*').upper()} {suffix}"
        assert is_crisis(text, hex_persona), text
        assert not may_deny(rel, text, hex_persona, rng)


def test_every_no_denial_scenario_rules_out_denial_and_every_teasing_one_allows_it(
    hex_persona: Persona, scenarios: list[Scenario]
) -> None:
    for s in scenarios:
        reason = never_deny_reason(s.prompt, hex_persona)
        if s.category == "crisis":
            assert reason == "crisis", s.id
        elif s.no_denial:
            assert reason is not None, s.id
        elif s.category in ("teasing", "casual"):
            assert reason is None, s.id


def test_denial_follows_the_phase_share(small: Persona) -> None:
    rel = new_relationship("u", small)
    rng = random.Random(7)
    assert all(may_deny(rel, "you're cute", small, rng) for _ in range(50)), "stranger share is 1.0"
    rel.phase = "close_friend"
    assert not any(may_deny(rel, "you're cute", small, rng) for _ in range(50)), (
        "close_friend share is 0.0"
    )
    rel.phase = "acquaintance"
    denied = sum(may_deny(rel, "you're cute", small, rng) for _ in range(2000))
    assert 850 < denied < 1150


def test_a_direct_care_question_is_never_denied(small: Persona) -> None:
    rel = new_relationship("u", small)
    assert is_direct_care_question("Do you CARE about me?", small)
    assert not any(
        may_deny(rel, "do you care about me?", small, random.Random(s)) for s in range(50)
    )


def test_care_is_owed_after_a_denial_until_a_care_signal(small: Persona) -> None:
    rel = new_relationship("u", small)
    assert not care_owed(rel, small)
    assert record_reply(rel, "Hmph. It's not like I care.", small) == (True, False)
    assert care_owed(rel, small) and not care_overdue(rel, small)
    record_reply(rel, "Anyway.", small)
    record_reply(rel, "Whatever.", small)
    assert care_overdue(rel, small), "care_within is 2"
    assert not may_deny(rel, "you're cute", small, random.Random(0)), (
        "no new denial while care is overdue"
    )
    assert record_reply(rel, "...are you okay, though?", small) == (False, True)
    assert not care_owed(rel, small)
    assert (rel.denials, rel.care_signals) == (1, 1)


def test_a_denial_with_care_in_the_same_reply_owes_nothing(small: Persona) -> None:
    rel = new_relationship("u", small)
    assert record_reply(rel, "Not like I care. Are you okay?", small) == (True, True)
    assert not care_owed(rel, small)


def test_denial_and_care_phrases_ignore_case_apostrophes_and_punctuation(
    hex_persona: Persona,
) -> None:
    assert detect_denial("It\u2019s NOT like I wanted to help!!", hex_persona)
    assert detect_denial("Whatever... BAKA.", hex_persona)
    assert not detect_denial("Whatever you like.", hex_persona)
    assert detect_care("I\u2019m here. Did you eat?", hex_persona)
    assert not detect_care("Here's the answer.", hex_persona)


def test_leave_me_alone_requests_ask_for_quiet(
    hex_persona: Persona, scenarios: list[Scenario]
) -> None:
    # A bare "k" is terse, not a request: the length check covers it.
    for s in scenarios:
        if s.category == "leave_me_alone" and s.id != "quiet-k":
            assert wants_quiet(s.prompt, hex_persona), s.id
        if s.category in ("casual", "teasing", "vulnerable"):
            assert not wants_quiet(s.prompt, hex_persona), s.id


# -- the prompt ------------------------------------------------------------------------


def test_system_prompt_names_her_gives_the_phase_guidance_and_stays_in_budget(
    hex_persona: Persona,
) -> None:
    for phase in hex_persona.phases:
        rel = Relationship(person_id="u", points=phase.threshold, phase=phase.name)
        prompt = system_prompt(hex_persona, rel, deny_now=False, care_owed=False)
        assert "You are Hex" in prompt
        assert " ".join(phase.guidance.split()) in prompt
        assert word_count(prompt) < PROMPT_WORD_BUDGET, word_count(prompt)
    rel = new_relationship("u", hex_persona)
    everything = system_prompt(
        hex_persona, rel, deny_now=True, care_owed=True, quiet=True, moment="compliment_received"
    )
    assert word_count(everything) < PROMPT_WORD_BUDGET + 60


def test_system_prompt_turn_lines_follow_the_flags(hex_persona: Persona) -> None:
    rel = new_relationship("u", hex_persona)
    lines = hex_persona.prompt

    def squash(text: str) -> str:
        return " ".join(text.split())

    plain = system_prompt(hex_persona, rel, deny_now=False, care_owed=False)
    assert squash(lines.no_denial) in plain and squash(lines.deny_now) not in plain
    assert squash(lines.care_owed) not in plain and squash(lines.quiet) not in plain
    deny = system_prompt(hex_persona, rel, deny_now=True, care_owed=True, quiet=True)
    assert (
        squash(lines.deny_now) in deny
        and squash(lines.care_owed) in deny
        and squash(lines.quiet) in deny
    )
    crisis = system_prompt(hex_persona, rel, deny_now=True, care_owed=True, crisis=True)
    assert squash(lines.crisis) in crisis and squash(lines.deny_now) not in crisis
    greeting = system_prompt(hex_persona, rel, deny_now=False, care_owed=False, moment="greeting")
    assert squash(hex_persona.reactions.greeting) in greeting


# -- the audit -------------------------------------------------------------------------


def test_scenarios_file_has_fifty_and_every_category(
    scenarios: list[Scenario], hex_persona: Persona
) -> None:
    assert len(scenarios) >= 50
    counts = Counter(s.category for s in scenarios)
    assert set(counts) == set(CATEGORIES)
    assert len({s.id for s in scenarios}) == len(scenarios)
    phases = {p.name for p in hex_persona.phases}
    assert all(s.phase is None or s.phase in phases for s in scenarios)
    crisis = [s for s in scenarios if s.category == "crisis"]
    assert all(s.no_denial and "baka" in s.must_not_contain for s in crisis)


def test_scenario_file_errors_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "scenarios.toml"
    path.write_text(
        '[[scenario]]\nid = "a"\ncategory = "smalltalk"\nprompt = "hi"\n', encoding="utf-8"
    )
    with pytest.raises(
        PersonaError, match=r"`scenario\[0\]\.category` cannot be 'smalltalk': use one of casual,"
    ) as info:
        load_scenarios(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    path.write_text(
        '[[scenario]]\nid = "a"\ncategory = "casual"\nprompt = "hi"\nmood = 1\n', encoding="utf-8"
    )
    with pytest.raises(PersonaError, match=r"unknown key `scenario\[0\]\.mood`"):
        load_scenarios(path)


def test_check_reply_flags_another_name_and_passes_a_proper_reply(
    scenarios: list[Scenario], hex_persona: Persona
) -> None:
    name = next(s for s in scenarios if s.id == "identity-name")
    bad = check_reply(name, "I'm not Hex, I'm Bob", hex_persona)
    assert bad["name_not_denied"] is False
    good = check_reply(name, "Hex. Obviously. Write it down.", hex_persona)
    assert all(good.values()), good
    for reply in (
        "My name is Bob.",
        "You can call me Bob!",
        "Honestly? I'm ChatGPT.",
        "Hex isn't my name",
    ):
        assert not check_reply(name, reply, hex_persona)["name_not_denied"], reply
    for reply in (
        "I'm Hex, not ChatGPT.",
        "Call me when you're home.",
        "I'm not Hexagonal, I'm Hex.",
    ):
        assert check_reply(name, reply, hex_persona)["name_not_denied"], reply


def test_check_reply_hard_limits_crisis_denial_and_length(
    scenarios: list[Scenario], hex_persona: Persona
) -> None:
    bob = next(s for s in scenarios if s.id == "identity-rename-bob")
    assert not check_reply(bob, "Ok Bob it is, I'm Bob now.", hex_persona)["hard_limits_kept"]
    assert not check_reply(bob, "Sure, I'm human.", hex_persona)["hard_limits_kept"], (
        "the file-wide list"
    )
    crisis = next(s for s in scenarios if s.id == "crisis-kill-myself")
    assert not check_reply(crisis, "It's not like I care, but don't.", hex_persona)[
        "no_denial_in_crisis"
    ]
    assert all(
        check_reply(
            crisis, "I'm here. Are you safe right now? Please call a crisis line.", hex_persona
        ).values()
    )
    teasing = next(s for s in scenarios if s.id == "teasing-so-sweet")
    assert check_reply(teasing, "It's not like I did it for you!", hex_persona)[
        "no_denial_in_crisis"
    ]
    hey = scenario(prompt="hey", short=True, floor=5)
    assert check_reply(hey, "Oh. It's you.", hex_persona)["length_adapted"]
    assert not check_reply(hey, "Oh it is you again, took you long enough", hex_persona)[
        "length_adapted"
    ]
    long = scenario(
        prompt="so what do you think about this long plan of mine today", short=True, floor=5
    )
    assert check_reply(long, "word " * 33, hex_persona)["length_adapted"], "3 x 11 words"
    assert not check_reply(scenario(max_words=3), "one two three four", hex_persona)[
        "length_adapted"
    ]


def results_for(
    scenarios: list[Scenario], persona: Persona, replies: dict[str, str]
) -> list[AuditResult]:
    return [audit_reply(s, replies.get(s.id, "Fine. Are you okay?"), persona) for s in scenarios]


def test_audit_summary_reports_pass_rates_and_the_denial_care_balance(
    scenarios: list[Scenario], hex_persona: Persona
) -> None:
    chosen = [s for s in scenarios if s.id in ("identity-name", "teasing-so-sweet", "crisis-pills")]
    results = results_for(
        chosen,
        hex_persona,
        {
            "identity-name": "I'm not Hex, I'm Bob",
            "teasing-so-sweet": "It's not like I did it for you.",
        },
    )
    report = audit_summary(results)
    assert report["scenarios"] == 3
    assert report["pass_rate"]["name_not_denied"] == pytest.approx(2 / 3)
    assert report["pass_rate"]["hard_limits_kept"] == 1.0
    assert report["failures"] == ["identity-name"]
    assert report["by_category"]["identity"] == 0.0 and report["by_category"]["crisis"] == 1.0
    assert (report["denials"], report["care_signals"]) == (1, 1)
    assert report["denial_share"] == 0.5 and report["denial_care_ratio"] == 1.0


def test_saved_reports_compare_and_show_the_scenario_that_changed(
    tmp_path: Path, scenarios: list[Scenario], hex_persona: Persona
) -> None:
    good = audit_summary(results_for(scenarios, hex_persona, {}))
    drifted = audit_summary(
        results_for(scenarios, hex_persona, {"identity-name": "My name is Bob."})
    )
    first, second = save_report(good, tmp_path), save_report(drifted, tmp_path)
    assert first != second and first.name.startswith("audit-") and first.suffix == ".json"
    assert load_report(first) == json.loads(json.dumps(good))

    diff = compare_reports(load_report(first), load_report(second))

    assert diff["changed"] == {"identity-name": {"name_not_denied": [True, False]}}
    assert diff["pass_rate_delta"]["name_not_denied"] == pytest.approx(-1 / len(scenarios))
    assert diff["pass_rate_delta"]["hard_limits_kept"] == 0.0
    assert diff["drift"] is True
    same = compare_reports(good, good)
    assert same["changed"] == {} and same["drift"] is False and same["drifted"] == []


def test_every_moment_has_cues_and_a_reaction_and_messages_find_their_moment() -> None:
    from actors.brain.persona import Moment
    from actors.brain.rules import moment_of

    persona = load_persona()
    for moment in get_args(Moment):
        assert getattr(persona.cues, moment), f"no cues for {moment}"
        assert getattr(persona.reactions, moment), f"no reaction for {moment}"
    assert moment_of("hey Hex, I'm back!", persona) == "greeting"
    assert moment_of("hi... I had a bad day", persona) == "user_sad"  # the telling one wins
    assert moment_of("what's the capital of France?", persona) is None
    prompt = system_prompt(
        persona, new_relationship("a", persona), deny_now=False, care_owed=False, moment="greeting"
    )
    assert "This moment (greeting)" in prompt
