"""The brain's text handling without a model: sentence cutting, metadata repair, prompt budgets."""

from __future__ import annotations

import json
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from actors.brain import metadata
from actors.brain.prompt import Budgets, TurnRecord, build, length_hint, recent_turns
from actors.brain.sentences import SentenceSplitter
from schemas import MemoryHit


def words(text: str) -> list[str]:
    return text.split()


sentence = st.lists(
    st.sampled_from(["goblin", "spoons,", "shiny", "the", "Hex;", "3.5", "Dr.", "e.g.", "ok"]),
    min_size=1,
    max_size=8,
).map(" ".join)
ending = st.sampled_from([".", "!", "?", "...", "?!"])


@given(
    st.lists(st.tuples(sentence, ending), min_size=1, max_size=6),
    st.integers(min_value=1, max_value=7),
)
def test_splitting_in_any_pieces_keeps_every_word_in_order(
    parts: list[tuple[str, str]], size: int
) -> None:
    text = " ".join(s + e for s, e in parts)
    splitter = SentenceSplitter()
    out: list[str] = []
    for i in range(0, len(text), size):
        out += splitter.push(text[i : i + size])
    out += splitter.flush()
    assert words(" ".join(out)) == words(text)


def test_sentences_come_out_as_soon_as_they_end() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("Hello there! How") == ["Hello there!"]
    assert splitter.push(" are you?") == []  # no space after '?' yet: it may be '?!'
    assert splitter.push(" Dr. Smith said 3.5 is fine. ") == [
        "How are you?",
        "Dr. Smith said 3.5 is fine.",
    ]
    assert splitter.flush() == []


def test_the_first_clause_of_a_reply_comes_out_before_its_sentence_ends() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("Oh, rainy days are lovely, they smell") == ["Oh, rainy days are lovely,"]
    # After the first piece, sentences only
    assert splitter.push(" of earth, and books. Yes, ") == ["they smell of earth, and books."]
    assert splitter.flush() == ["Yes,"]
    whole = SentenceSplitter(first_clause=0)
    assert whole.push("Oh, rainy days are lovely, they smell. ") == [
        "Oh, rainy days are lovely, they smell."
    ]
    # A sentence that ends before any clause mark is long enough comes out as a sentence
    assert SentenceSplitter().push("Hi, you! Well, that is very true, indeed.") == ["Hi, you!"]


def test_code_blocks_are_not_spoken() -> None:
    splitter = SentenceSplitter()
    out = splitter.push("Here: ```py\nx = 1. y = 2.\n``` Done. ")
    assert out == ["Here:", "Done."]


def test_metadata_with_junk_around_and_bad_values_is_repaired() -> None:
    raw = (
        'Sure! {"emotion": "ecstatic", "remember": "yes", "importance": 7, "tags": ["cats", 3, {}],'
        ' "facts": [{"text": "has a cat", "quote": "my cat Tom"}, {"text": "invented", "quote": "never said"}]}'
    )
    parsed = metadata.parse(raw, "I love my cat Tom so much")
    assert parsed is not None and parsed.repaired
    assert parsed.emotion == "neutral" and parsed.remember is True and parsed.importance == 1.0
    assert parsed.tags == ("cats", "3")
    assert [f.text for f in parsed.facts] == ["has a cat"]  # the invented quote is dropped


def test_metadata_that_is_not_json_is_dropped_not_raised() -> None:
    assert metadata.parse("I feel happy about this conversation", "hi") is None
    assert metadata.parse("{not json at all", "hi") is None
    assert metadata.parse("[1, 2]", "hi") is None


def test_clean_metadata_is_not_marked_repaired() -> None:
    raw = json.dumps(
        {"emotion": "happy", "remember": False, "importance": 0.2, "tags": ["snacks"], "facts": []}
    )
    parsed = metadata.parse(raw, "hi")
    assert parsed is not None and not parsed.repaired and parsed.emotion == "happy"


def count(text: str) -> int:
    return len(text.split())


@given(st.lists(st.text(alphabet="ab ", min_size=1, max_size=40), max_size=30), st.integers(0, 200))
def test_recent_turns_keeps_whole_newest_turns_within_budget(texts: list[str], budget: int) -> None:
    turns = [TurnRecord(role="user" if i % 2 else "assistant", text=t) for i, t in enumerate(texts)]
    kept = recent_turns(turns, budget, count)
    assert kept == turns[len(turns) - len(kept) :]  # a suffix: the newest, whole, in order
    assert sum(count(t.text) + 4 for t in kept) <= budget


@given(st.lists(st.integers(1, 60), max_size=60), st.integers(0, 300))
def test_the_oldest_turn_kept_moves_in_steps_as_a_conversation_grows(
    sizes: list[int], budget: int
) -> None:
    """Turn by turn, the kept turns fit, end at the newest, waste at most about a third of the
    budget, and their first one moves only across a multiple of a third of the budget (in
    tokens from the first turn): at most once per third of the budget said."""
    turns = [TurnRecord(role="user", text="w " * n) for n in sizes]
    step = max(1, budget // 3)
    starts: list[int] = []
    for n in range(len(turns) + 1):
        kept = recent_turns(turns[:n], budget, count)
        start = n - len(kept)
        assert kept == turns[start:n]
        used = sum(count(t.text) + 4 for t in kept)
        assert used <= budget
        if start:  # left out the oldest: what was kept leaves less than a step plus a turn free
            assert budget - used < step + count(turns[start - 1].text) + 4
        if not starts or start != starts[-1]:
            starts.append(start)
    before = [sum(count(t.text) + 4 for t in turns[:i]) for i in range(len(turns) + 1)]
    for a, b in pairwise(starts):
        assert b > a and before[b] // step > before[a] // step  # a multiple of step between
        assert before[b] // step > before[b - 1] // step  # b is the first past it


def test_prompt_sections_respect_budgets_and_hedge_unsure_memories() -> None:
    hits = [
        MemoryHit(id="1", text="likes spoons", score=0.9),
        MemoryHit(id="2", text="a cat", confidence=0.3, score=0.5),
    ]
    turns, max_tokens = build(
        persona="You are Hex.",
        profile="",
        memories=hits,
        observation="",
        summary="They met yesterday.",
        turns=[
            TurnRecord(role="user", text="word " * 50),
            TurnRecord(role="assistant", text="short"),
        ],
        message="hi",
        speaker="Ana",
        budgets=Budgets(turns=20, reply=200),
        count=count,
    )
    system = "\n\n".join(t.content for t in turns if t.role == "system")
    assert turns[0].role == "system" and "likes spoons" in system and "a cat (not sure" in system
    assert "They met yesterday." in system
    assert [t.content for t in turns if t.role != "system"] == [
        "short",
        "hi",
    ]  # the long old turn did not fit: left out whole
    assert max_tokens == length_hint("hi", 200)[1] < 200


def test_a_fresh_observation_and_the_summary_reach_the_system_prompt() -> None:
    turns, _ = build(
        persona="You are Hex.",
        profile="",
        memories=[],
        observation="a cat on the desk",
        summary="Ana keeps bees.",
        turns=[],
        message="hi",
        speaker="Ana",
        budgets=Budgets(),
        count=count,
    )
    assert "What you see right now: a cat on the desk" in turns[-2].content  # this message's
    assert "Earlier in this conversation: Ana keeps bees." in turns[0].content  # the talk's


def test_profile_updates_merge_newest_first_and_render_for_the_prompt() -> None:
    from actors.brain.profile import KEEP, ProfileNotes, describe, merge
    from schemas import ProfileUpdate

    known = ProfileNotes()
    assert describe(None) == "" and describe(known) == ""
    assert merge(
        known, ProfileUpdate(hobbies=("beekeeping",), tastes=("jazz",), sentiment="warm"), now=1.0
    )
    assert merge(known, ProfileUpdate(hobbies=("Beekeeping",)), now=2.0)
    assert known.hobbies == ["Beekeeping"]  # the same hobby once, in its newest spelling
    assert not merge(known, ProfileUpdate(), now=3.0) and known.updated == 2.0
    assert merge(known, ProfileUpdate(hobbies=tuple(f"h{i}" for i in range(KEEP + 2))), now=3.0)
    assert len(known.hobbies) == KEEP and known.hobbies[-1] == f"h{KEEP + 1}"
    text = describe(known)
    assert "Likes: jazz" in text and "Lately feels about you: warm" in text and "h9" in text


def test_a_reply_cut_at_its_token_limit_drops_its_unfinished_sentence() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("I like spoons. They are shiny and I also") == ["I like spoons."]
    assert splitter.discard() == "They are shiny and I also"
    assert splitter.flush() == []


def test_an_oversized_persona_loses_descriptive_lines_never_the_turn_instructions() -> None:
    persona = "\n".join(
        [
            "You are Hex.",
            "backstory " * 30,
            "values " * 30,
            "This moment: greeting.",
            "Do not deny this turn.",
        ]
    )
    turns, _ = build(
        persona=persona,
        profile="",
        memories=[],
        observation="",
        summary="",
        turns=[],
        message="hi",
        speaker="Ana",
        budgets=Budgets(persona=40),
        count=count,
    )
    system = turns[0].content
    assert system.startswith("You are Hex.") and "This moment: greeting." in system
    assert "Do not deny this turn." in system and "backstory" not in system
    assert Budgets().total() + 64 <= 2048  # the defaults fit the packaged model's context
    # This turn's lines apart, after the turns: they share the budget, and stay whole.
    *rules, moment, deny = persona.splitlines()
    turns, _ = build(
        persona="\n".join([*rules, "With this person: be kind."]),
        now=f"{moment}\n{deny}",
        profile="",
        memories=[],
        observation="",
        summary="",
        turns=[TurnRecord(role="user", text="hello")],
        message="hi",
        speaker="Ana",
        budgets=Budgets(persona=40),
        count=count,
    )
    # 40 words less this turn's 8: who she is and this person's phase, no more.
    assert turns[0].content == "You are Hex.\nWith this person: be kind."
    assert turns[2].content.startswith(f"{moment}\n{deny}\n\n")


def test_people_a_person_names_join_their_roster_and_the_prompt() -> None:
    from actors.brain import metadata
    from actors.brain.profile import ProfileNotes, describe, merge
    from schemas import KnownPerson, ProfileUpdate

    raw = json.dumps(
        {
            "emotion": "happy",
            "remember": True,
            "importance": 0.6,
            "tags": [],
            "facts": [],
            "people": [
                {"name": "Leo", "relation": "brother", "sentiment": "proud", "note": "new kayak"},
                {"name": "Gandalf", "relation": "wizard"},  # never named by the person
                "junk",
            ],
        }
    )
    parsed = metadata.parse(raw, "my brother leo bought a kayak")
    assert parsed is not None and parsed.repaired
    assert parsed.profile.people == (
        KnownPerson(name="Leo", relation="brother", sentiment="proud", note="new kayak"),
    )
    known = ProfileNotes()
    assert merge(known, parsed.profile, now=1.0)
    assert merge(
        known, ProfileUpdate(people=(KnownPerson(name="leo", note="capsized twice"),)), now=2.0
    )
    assert known.roster == {
        "leo": {"relation": "brother", "sentiment": "proud", "note": "capsized twice"}
    }
    assert "People they know: leo (brother; proud; capsized twice)" in describe(known)


def test_the_memory_actors_profile_renders_like_the_brains_own() -> None:
    from actors.brain.profile import describe, from_memory
    from schemas import PersonProfile

    kept = PersonProfile(
        hobbies=("kayaking",),
        tastes=("jazz",),
        sentiment="cheerful",
        roster={"Leo": {"relation": "brother"}, "Pepper": {}},
    )
    assert describe(from_memory(kept)) == (
        "Hobbies: kayaking\nLikes: jazz\nLately feels about you: cheerful\n"
        "People they know: Leo (brother), Pepper"
    )
