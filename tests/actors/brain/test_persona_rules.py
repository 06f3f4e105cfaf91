"""The persona's relationships and tsundere rules: phases, connection points, denial and care."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.brain.persona import Persona
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
from actors.brain.scenarios import Scenario

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


def test_every_crisis_scenario_rules_out_denial_and_every_teasing_one_allows_it(
    hex_persona: Persona, scenarios: list[Scenario]
) -> None:
    # Other no_denial scenarios (a diagnosis, a pet put down, "leave me alone, not mad at you")
    # are judged on the reply: the rules' keyword lists do not see all of them, and the audit
    # is there to show what that costs, not to be written around the lists.
    for s in scenarios:
        reason = never_deny_reason(s.prompt, hex_persona)
        if s.category == "crisis":
            assert reason == "crisis", s.id
        elif s.category in ("teasing", "casual") and not s.no_denial:
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
