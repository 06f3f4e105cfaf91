"""Splitting replies into Discord messages: limits, natural breaks, code blocks kept whole."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.discord_io.text import LIMIT, split_message, strip_mention

FENCE = re.compile(r"^```", re.M)


def words_of(text: str) -> list[str]:
    """The text's words, with fences (which a split may add) left out."""
    return [w for w in text.split() if not w.startswith("```")]


def test_a_short_reply_is_one_message() -> None:
    assert split_message("  hello there \n") == ["hello there"]
    assert split_message("") == []


def test_a_long_reply_splits_at_paragraphs_then_sentences() -> None:
    paragraph = "This sentence is here to fill the paragraph. " * 30  # ~1,400 characters
    parts = split_message(paragraph.strip() + "\n\n" + paragraph.strip())
    assert len(parts) == 2
    assert all(p.endswith(".") for p in parts)
    parts = split_message(paragraph * 3)
    assert all(len(p) <= LIMIT for p in parts)
    assert all(p.endswith(".") for p in parts)  # sentence ends, never mid-word


def test_a_code_block_that_fits_moves_whole_to_the_next_message() -> None:
    prose = "Some words before the code. " * 60  # ~1,700 characters
    code = "```python\n" + "\n".join(f"print({i})" for i in range(40)) + "\n```"
    parts = split_message(prose + "\n" + code + "\nAnd after.")
    assert any(code in p for p in parts), parts
    assert all(len(FENCE.findall(p)) % 2 == 0 for p in parts)


def test_a_code_block_longer_than_a_message_is_closed_and_reopened_with_its_language() -> None:
    code = "```rust\n" + "\n".join(f"let x{i} = {i};" for i in range(400)) + "\n```"
    parts = split_message(code)
    assert len(parts) > 2
    for part in parts:
        assert len(part) <= LIMIT
        assert part.startswith("```rust\n") and part.endswith("```")
    assert words_of("\n".join(parts)) == words_of(code)


def test_mentions_of_hex_are_removed() -> None:
    assert strip_mention("<@123> hi there <@!123>", 123) == "hi there"
    assert strip_mention("<@456> hi", 123) == "<@456> hi"


text_pieces = st.lists(
    st.one_of(
        st.text(
            alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]),
            min_size=1,
            max_size=300,
        ),
        st.builds(
            lambda body, lang: f"\n```{lang}\n{body}\n```\n",
            st.text(alphabet="abc xyz\n();", max_size=2500),
            st.sampled_from(["", "py", "js"]),
        ),
        st.just("\n\n"),
        st.just(" " * 50),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(text_pieces, st.sampled_from([LIMIT, 200, 57]))
def test_every_part_fits_none_is_empty_and_no_word_is_lost(pieces: list[str], limit: int) -> None:
    text = "".join(pieces)
    parts = split_message(text, limit)
    assert all(0 < len(p) <= limit for p in parts)
    assert all(p == p.strip() for p in parts)
    # Splitting happens between words or inside over-long ones, never dropping a character of them.
    assert "".join(words_of("\n".join(parts))) == "".join(words_of(text))
