"""A person's words that switch a capability off (or back on) for them: paraphrases both ways.

The phrasings are written the way people write in chat (lower case, typos of apostrophes,
politeness, anger), none of them copied from the patterns."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.brain.vetoes import asks_what_she_can_do, capability_notice, veto
from hexbus.capabilities import Capabilities
from schemas import ChatMessage

OFF = [
    ("stop messaging me first", "speak_first"),
    ("Please don't message me first anymore.", "speak_first"),
    ("can you stop texting me out of nowhere", "speak_first"),
    ("dont dm me unless i message you first", "speak_first"),
    ("no more messaging me randomly ok?", "speak_first"),
    ("I'd like you to stop reaching out to me on your own", "speak_first"),
    ("never text me first again", "speak_first"),
    ("stop starting conversations with me", "speak_first"),
    ("only message me when i message you", "speak_first"),
    ("quit pinging me unprompted", "speak_first"),
    ("don\u2019t look at my screen", "screen"),  # a phone's apostrophe
    ("stop watching my screen pls", "screen"),
    ("please stop reading my monitor", "screen"),
    ("stop looking at me through the webcam", "camera"),
    ("don't use the camera", "camera"),
    ("turn off the webcam", "camera"),
    ("stop joining my calls", "join_voice"),
    ("stop remembering things about me", "remember"),
    ("don't save what i tell you", "remember"),
]
ON = [
    ("you can message me first, i don't bite", "speak_first"),
    ("feel free to text me whenever", "speak_first"),
    ("it's ok to start conversations with me", "speak_first"),
    ("you can look at my screen again", "screen"),
    ("go ahead and use the camera", "camera"),
]
NEITHER = [
    "why do you message me first?",
    "please don't ever stop messaging me first, i love it",
    "stop messaging me",  # answering is not theirs to switch here: quiet mode
    "tell my brother to stop messaging me first",
    "i messaged you first yesterday",
    "look at this screenshot of my screen",
    "the camera on my phone broke",
    "don't stop",
    "i don't mind you texting me first",
    "stop it lol",
    "",
]


@pytest.mark.parametrize(("text", "capability"), OFF)
def test_a_request_to_stop_switches_it_off(text: str, capability: str) -> None:
    found = veto(text)
    assert found is not None and (found.capability, found.enabled) == (capability, False), text
    assert found.confirmation


@pytest.mark.parametrize(("text", "capability"), ON)
def test_a_request_to_allow_takes_the_veto_back(text: str, capability: str) -> None:
    found = veto(text)
    assert found is not None and (found.capability, found.enabled) == (capability, True), text


@pytest.mark.parametrize("text", NEITHER)
def test_questions_wishes_and_other_people_switch_nothing(text: str) -> None:
    assert veto(text) is None


@given(st.text(max_size=200))
def test_any_text_gives_nothing_or_a_known_switch(text: str) -> None:
    found = veto(text)
    if found is not None:
        assert found.confirmation and found.phrase


@pytest.mark.parametrize(
    ("text", "asks"),
    [
        ("what can you do?", True),
        ("so what are you able to do exactly", True),
        ("can you see me right now?", True),
        ("what are your permissions", True),
        ("what can you do about my sister lol", True),  # close enough: the list does no harm
        ("what did you do today", False),
        ("I can see you're busy", False),
    ],
)
def test_asked_what_she_can_do(text: str, asks: bool) -> None:
    assert asks_what_she_can_do(text) is asks


def test_the_answer_is_the_switches_for_that_person() -> None:
    caps = Capabilities()
    caps.set("camera", True, by="cli", owner=True)
    caps.set("camera", False, by="ana", owner=False, person_id="ana")

    def ask(person: str) -> str:
        event = ChatMessage(
            platform="discord", person_id=person, display_name=person, channel="1", text="?"
        )
        return capability_notice(caps, event).text

    ana, ben = ask("ana"), ask("ben")
    may_not = ". Off:"
    assert "look through the webcam" in ana.split(may_not)[1]
    assert "look through the webcam" in ben.split(may_not)[0]
    assert "start a conversation on her own" in ben.split(may_not)[1]  # off by default
