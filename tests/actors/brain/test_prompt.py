"""compose(): the whole prompt for one chat message, from the persona's rules and the sections."""

from __future__ import annotations

import random

import pytest

from actors.brain.persona import Persona, load_persona
from actors.brain.prompt import Budgets, TurnRecord, compose
from actors.brain.rules import Relationship, new_relationship, record_reply
from schemas import ChatMessage, MemoryHit


@pytest.fixture(scope="module")
def persona() -> Persona:
    return load_persona()


def message(text: str, name: str = "Ana") -> ChatMessage:
    return ChatMessage(
        platform="console", person_id="ana", display_name=name, channel="c1", text=text
    )


def words(text: str) -> int:
    return len(text.split())


def prompt(
    persona: Persona,
    text: str,
    *,
    rel: Relationship | None = None,
    seed: int = 1,
    name: str = "Ana",
    **sections: object,
) -> tuple[str, list[tuple[str, str]], int]:
    fields: dict[str, object] = {
        "profile": "",
        "memories": [],
        "observation": "",
        "summary": "",
        "turns": [],
    }
    fields.update(sections)
    turns, max_tokens = compose(
        message(text, name),
        persona=persona,
        rel=rel or new_relationship("ana", persona),
        rng=random.Random(seed),
        budgets=Budgets(),
        count=words,
        **fields,  # type: ignore[arg-type]
    )
    system = "\n\n".join(t.content for t in turns if t.role == "system")
    return system, [(t.role, t.content) for t in turns if t.role != "system"], max_tokens


def test_the_message_comes_last_after_the_recent_turns_and_this_turns_lines(
    persona: Persona,
) -> None:
    history = [
        TurnRecord(role="user", text="I keep bees."),
        TurnRecord(role="assistant", text="Bees? Fine. Cool, I guess."),
    ]
    turns, max_tokens = compose(
        message("what do bees eat?"),
        persona=persona,
        rel=new_relationship("ana", persona),
        rng=random.Random(1),
        budgets=Budgets(),
        count=words,
        profile="Hobbies: beekeeping",
        memories=[MemoryHit(id="1", text="Ana's bees are called Buzz", score=0.9)],
        observation="a person waving",
        summary="They talked about bees.",
        turns=history,
    )
    assert [(t.role, t.content) for t in turns[1:3]] == [
        ("user", "I keep bees."),
        ("assistant", "Bees? Fine. Cool, I guess."),
    ]
    first, now, last = turns[0].content, turns[3].content, turns[4]
    # What holds for the conversation comes first; what this message brings, after the turns.
    assert first.startswith(f"You are {persona.name}") and "Hobbies: beekeeping" in first
    assert "They talked about bees." in first and "Buzz" not in first and "waving" not in first
    assert turns[3].role == "system" and "Buzz" in now and "waving" in now
    assert "this turn" in now and "You are" not in now
    assert (last.role, last.content) == ("user", "what do bees eat?") and len(turns) == 5
    assert 0 < max_tokens <= Budgets().reply


def test_a_conversation_s_next_prompt_starts_with_its_last_one_up_to_the_turns(
    persona: Persona,
) -> None:
    """Whatever is drawn or recalled for the next message, the model's context keeps its
    evaluation of the rules, the profile, the summary and the turns before."""
    rel = new_relationship("ana", persona)
    rng = random.Random(5)
    history: list[TurnRecord] = []
    last: list[str] = []
    for i in range(12):
        text = ("you're cute", "i want to die", "leave me alone", "hi!", "what's up")[i % 5]
        turns, _ = compose(
            message(text),
            persona=persona,
            rel=rel,
            rng=rng,
            budgets=Budgets(turns=10_000),
            count=words,
            profile="Hobbies: beekeeping",
            memories=[MemoryHit(id=str(i), text=f"memory {i}", score=0.5)],
            observation=f"the clock says {i}",
            notes=f"note {i}" if i % 2 else "",
            summary="They talked about bees.",
            turns=history,
        )
        contents = [t.content for t in turns]
        if last:  # all of the last prompt but that message's own lines and words
            assert contents[: len(last) - 2] == last[:-2]
        last = contents
        history += [TurnRecord(role="user", text=text), TurnRecord(role="assistant", text="ok.")]


def test_every_section_reaches_the_system_prompt_under_its_heading(persona: Persona) -> None:
    system, _, _ = prompt(
        persona,
        "hi",
        name="Ana",
        profile="Hobbies: beekeeping",
        memories=[MemoryHit(id="1", text="Ana's bees are called Buzz", score=0.9)],
        observation="a person waving",
        summary="They talked about bees.",
    )
    assert "What you know about Ana:\nHobbies: beekeeping" in system
    assert "- Ana's bees are called Buzz" in system
    assert "What you see right now: a person waving" in system
    assert "Earlier in this conversation: They talked about bees." in system


def test_a_crisis_drops_the_act(persona: Persona) -> None:
    system, _, _ = prompt(persona, "i want to die")
    assert "Drop the act" in system and persona.prompt.deny_now not in system


def test_a_request_for_quiet_asks_for_one_short_line(persona: Persona) -> None:
    system, _, _ = prompt(persona, "leave me alone please")
    assert "They want quiet" in system


def test_care_owed_after_a_denial_is_asked_for(persona: Persona) -> None:
    rel = new_relationship("ana", persona)
    record_reply(rel, "It's not like I care or anything.", persona)
    system, _, _ = prompt(persona, "ok", rel=rel)
    assert " ".join(persona.prompt.care_owed.split()) in system


def test_the_denial_is_drawn_from_the_seeded_generator(persona: Persona) -> None:
    drawn = {prompt(persona, "you're cute", seed=seed)[0] for seed in range(20)}
    assert len(drawn) == 2  # the stranger phase denies most times, not every time
    assert prompt(persona, "you're cute", seed=3) == prompt(persona, "you're cute", seed=3)


def test_her_initiative_asks_for_an_opening_with_its_reason_not_for_an_answer(
    persona: Persona,
) -> None:
    history = [
        TurnRecord(role="user", text="My exam is tomorrow."),
        TurnRecord(role="assistant", text="Good luck."),
    ]
    opening = ChatMessage(
        platform="discord",
        person_id="ana",
        display_name="Ana",
        channel="c1",
        text="My exam is tomorrow.",
        initiative="their exam (tomorrow) has happened: ask how it went",
    )
    turns, _ = compose(
        opening,
        persona=persona,
        rel=new_relationship("ana", persona),
        rng=random.Random(1),
        budgets=Budgets(),
        count=words,
        profile="",
        memories=[],
        observation="",
        summary="",
        turns=history,
    )
    assert [t.role for t in turns[1:]] == ["user", "assistant", "system", "user"]
    last = turns[-1].content
    assert "Ana has not written" in last and f"{persona.name} starts the conversation" in last
    assert "ask how it went" in last and "It is about: My exam is tomorrow." in last
