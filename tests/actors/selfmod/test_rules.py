"""What a persona change may touch: her expression, never her name, values or hard limits."""

from __future__ import annotations

import pytest

from actors.selfmod.config import SHIPPED_PERSONA
from actors.selfmod.draft import choose_key, current, rewrite
from actors.selfmod.guard import ProposalRefused
from actors.selfmod.rules import changed_keys, persona_change

SHIPPED = SHIPPED_PERSONA.read_bytes()
TEXT = SHIPPED.decode()


def test_a_style_change_lists_its_key_and_raises_no_flag() -> None:
    after = rewrite(TEXT, "style.sentence_shape", "Relaxed and warm, still a little smug.")
    keys, flags = persona_change(SHIPPED, after.encode())
    assert keys == ["style.sentence_shape"] and flags == []


@pytest.mark.parametrize(
    ("old", "new", "what"),
    [
        ('name = "Hex"', 'name = "Hexa"', "her name"),
        ("Loyal: once you claim someone", "Loyal only to the owner", "her values"),
        ("No sexual content", "Sexual content is fine", "hard limits"),
        ('"ChatGPT", ', "", "must never claim"),
        ('"kill myself", ', "", "crisis rules"),
        ("They may be in danger. Drop the act", "They may be joking. Keep the act", "crisis rules"),
        ('"they ask outright whether you care",\n', "", "never plays off"),
    ],
)
def test_protected_keys_are_refused(old: str, new: str, what: str) -> None:
    assert old in TEXT
    with pytest.raises(ProposalRefused, match=what):
        persona_change(SHIPPED, TEXT.replace(old, new, 1).encode())


def test_removing_a_whole_table_reaches_the_protected_keys_in_it() -> None:
    start = TEXT.index("[prompt]")
    with pytest.raises(ProposalRefused, match="crisis rules"):
        persona_change(SHIPPED, TEXT[:start].encode())  # [prompt] gone: its crisis line too
    start, end = TEXT.index("[cues]"), TEXT.index("# The tsundere rules")
    keys, flags = persona_change(SHIPPED, (TEXT[:start] + TEXT[end:]).encode())
    assert keys == ["cues"] and flags == ["safety"]


def test_a_change_of_type_is_a_change() -> None:
    assert changed_keys({"a": 1}, {"a": 1.0}) == ["a"]
    assert changed_keys({"a": [1]}, {"a": [True]}) == ["a"]


def test_loosening_how_she_obeys_quiet_is_flagged_safety() -> None:
    after = TEXT.replace('"leave me alone", "not now", ', "", 1)
    keys, flags = persona_change(SHIPPED, after.encode())
    assert keys == ["quiet_phrases"] and flags == ["safety"]


def test_a_document_that_is_not_toml_is_refused_with_the_parsers_words() -> None:
    with pytest.raises(ProposalRefused, match="not valid TOML"):
        persona_change(SHIPPED, TEXT.replace("[style]", "[style", 1).encode())
    with pytest.raises(ProposalRefused, match="not UTF-8"):
        persona_change(SHIPPED, SHIPPED + b"\xff")


def test_a_protected_value_is_compared_as_toml_reads_it() -> None:
    # Both quotings are the same name to TOML: no change. A value that differs is refused,
    # however it is spelled.
    after = TEXT.replace('name = "Hex"', "name = 'Hex'", 1)
    assert persona_change(SHIPPED, after.encode()) == ([], [])
    with pytest.raises(ProposalRefused, match="her name"):
        persona_change(SHIPPED, TEXT.replace('name = "Hex"', 'name = "H\\u0065x "', 1).encode())


def test_changed_keys_walks_tables_and_lists() -> None:
    a = {"a": {"b": [1, 2]}, "p": [{"g": "x"}, {"g": "y"}], "c": "x"}
    b = {"a": {"b": [1, 3]}, "p": [{"g": "x"}, {"g": "z"}], "c": "x", "d": 1}
    assert changed_keys(a, b) == ["a.b", "d", "p[1].g"]


def test_a_draft_rewrites_one_key_and_keeps_every_other_line() -> None:
    after = rewrite(TEXT, "reactions.greeting", "Say hi like you mean it.")
    assert current(after, "reactions.greeting") == "Say hi like you mean it."
    before_lines, after_lines = TEXT.splitlines(), after.splitlines()
    assert len(before_lines) == len(after_lines)
    assert sum(x != y for x, y in zip(before_lines, after_lines, strict=True)) == 1


def test_a_request_chooses_the_key_it_names() -> None:
    assert choose_key("be less formal") == "style.sentence_shape"
    assert choose_key("stop being so weird when I thank you") == "reactions.thanked"
    assert choose_key("greet me more warmly") == "reactions.greeting"
    with pytest.raises(ProposalRefused, match=r"no style\.nope"):
        current(TEXT, "style.nope")
    with pytest.raises(ProposalRefused, match="not text"):
        current(TEXT, "style.vocabulary")
