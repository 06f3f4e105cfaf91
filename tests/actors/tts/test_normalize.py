from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from actors.tts.normalize import cardinal, ordinal, speakable, year


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (40, "forty"),
        (99, "ninety-nine"),
        (100, "one hundred"),
        (101, "one hundred one"),
        (1234, "one thousand two hundred thirty-four"),
        (1_000_000, "one million"),
        (2_000_017, "two million seventeen"),
        (-12, "minus twelve"),
        (
            10**21,
            "one zero zero zero zero zero zero zero zero zero zero zero zero zero zero zero zero zero zero zero zero zero",
        ),
    ],
)
def test_cardinal_reads_integers_in_american_english(n: int, words: str) -> None:
    assert cardinal(n) == words


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (1, "first"),
        (2, "second"),
        (3, "third"),
        (5, "fifth"),
        (12, "twelfth"),
        (20, "twentieth"),
        (21, "twenty-first"),
        (100, "one hundredth"),
        (1003, "one thousand third"),
    ],
)
def test_ordinal_changes_only_the_last_word(n: int, words: str) -> None:
    assert ordinal(n) == words


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (1100, "eleven hundred"),
        (1900, "nineteen hundred"),
        (1905, "nineteen oh five"),
        (1999, "nineteen ninety-nine"),
        (2000, "two thousand"),
        (2005, "two thousand five"),
        (2010, "twenty ten"),
        (2026, "twenty twenty-six"),
        (2099, "twenty ninety-nine"),
    ],
)
def test_year_reads_pairs_of_digits(n: int, words: str) -> None:
    assert year(n) == words


CASES = [
    # markdown
    ("**bold** and *italic* and _under_ and __strong__", "bold and italic and under and strong"),
    ("***both*** ~~gone~~", "both gone"),
    ("Run `ls` now", "Run ls now"),
    ("Look:\n```python\nprint(1)\nx = 2\n```\nDone.", "Look: Done."),
    ("Inline ```rm -rf /``` block", "Inline block"),
    ("# Title\nSome text.", "Title. Some text."),
    ("## Steps ##\n1. Boil water\n2. Add tea", "Steps. Boil water. Add tea."),
    ("Items:\n- apples\n* pears\n+ plums", "Items: apples. pears. plums."),
    ("See [the docs](https://docs.example.com/x) for more", "See the docs for more"),
    ("A cat ![cat](cat.png) sat", "A cat sat"),
    ("> quoted wisdom", "quoted wisdom"),
    ("above\n\n---\n\nbelow", "above. below"),
    ("| a | b |\n|---|---|\n| 1 | 2 |", "a, b. one, two."),
    ("snake_case and <b>html</b>", "snake case and html"),
    # links
    ("https://www.example.com/a/b?c", "example dot com"),
    ("Go to http://localhost:8080/x.", "Go to localhost."),
    ("Visit www.python.org, then rest", "Visit python dot org, then rest"),
    ("Mail ana.lee@example.org today", "Mail ana dot lee at example dot org today"),
    ("I like google.com.", "I like google dot com."),
    ("https://", ""),
    # emoji
    ("Nice 🌞👍🏽", "Nice"),
    ("Family 👨‍👩‍👧 time", "Family time"),
    ("Flags 🇫🇷 ❤️ ©", "Flags"),
    ("🎉🎉🎉", ""),
    # other scripts survive
    ("Привет, мир!", "Привет, мир!"),
    ("こんにちは、世界\N{FULLWIDTH EXCLAMATION MARK}", "こんにちは, 世界!"),
    ("Café naïve", "Café naïve"),
    ("नमस्ते दुनिया", "नमस्ते दुनिया"),
    # numbers
    ("1,234", "one thousand two hundred thirty-four"),
    ("-5 and \N{MINUS SIGN}7", "minus five and minus seven"),
    ("3.5", "three point five"),
    ("0.25 or .5", "zero point two five or point five"),
    ("21st and 2nd and 3rd and 11th", "twenty-first and second and third and eleventh"),
    ("50%", "fifty percent"),
    ("12.5 %", "twelve point five percent"),
    ("$5", "five dollars"),
    ("$1", "one dollar"),
    ("£3.50", "three pounds fifty"),
    ("$0.99", "ninety-nine cents"),
    ("€2.05", "two euros five"),
    ("¥500", "five hundred yen"),
    ("$1.5 million", "one point five million dollars"),
    ("$50k", "fifty thousand dollars"),
    ("-$20", "minus twenty dollars"),
    ("5€ and 50¢", "five euros and fifty cents"),
    ("$2000", "two thousand dollars"),
    ("1999", "nineteen ninety-nine"),
    ("In 2026 we", "In twenty twenty-six we"),
    ("2005", "two thousand five"),
    ("1500 km", "one thousand five hundred kilometers"),
    ("2048 MB", "two thousand forty-eight megabytes"),
    ("2000 dollars", "two thousand dollars"),
    ("1984%", "one thousand nine hundred eighty-four percent"),
    ("3000", "three thousand"),
    ("1,999", "one thousand nine hundred ninety-nine"),
    ("the 1990s and the 80s", "the nineteen nineties and the eighties"),
    ("3:15", "three fifteen"),
    ("7:05", "seven oh five"),
    ("7:00", "seven o'clock"),
    ("7:30 pm", "seven thirty PM"),
    ("See you at 7 p.m. Bye", "See you at seven PM. Bye"),
    ("2026-07-15", "July fifteenth, twenty twenty-six"),
    ("Python 3.11.2", "Python three dot eleven dot two"),
    ("007", "zero zero seven"),
    ("1/2 cup", "one half cup"),
    ("½ cup", "one half cup"),
    ("10k steps", "ten thousand steps"),
    ("~5 min", "about five minutes"),
    ("#1 fan", "number one fan"),
    ("5-10 people", "five to ten people"),
    ("16:9", "sixteen to nine"),
    ("x²", "x two"),
    ("٣ apples", "three apples"),
    ("5️⃣", "five"),
    # symbols
    ("Tom & Jerry", "Tom and Jerry"),
    ("2+2=4", "two plus two equals four"),
    ("3 \N{MULTIPLICATION SIGN} 4", "three times four"),
    ("C++", "C plus plus"),
    ("21°C", "twenty-one degrees Celsius"),
    ("-3.5 °F", "minus three point five degrees Fahrenheit"),
    ("1°C", "one degree Celsius"),
    ("a 90° turn", "a ninety degrees turn"),
    ("e.g. tea, i.e. leaves", "for example tea, that is leaves"),
    # punctuation and whitespace
    ("Wow!!!", "Wow!"),
    ("Really?!?", "Really?"),
    ("Wait... what", "Wait, what"),
    ("Well…", "Well"),
    ("Hex (the bot) said hi", "Hex, the bot, said hi"),
    ("one — two \N{EN DASH} three", "one, two, three"),
    ("It's   a\n\tspaced   out  line", "It's a spaced out line"),
    ("'quoted' \"words\"", "quoted words"),
    ("", ""),
    ("   \n ", ""),
    ("***", ""),
    ("... !!! ???", ""),
    ("AT&T", "AT and T"),
]


@pytest.mark.parametrize(("text", "spoken"), CASES)
def test_speakable(text: str, spoken: str) -> None:
    assert speakable(text) == spoken


def test_mixed_sentence_reads_naturally() -> None:
    text = (
        "**Wow!** It's 21°C at https://weather.example.com/today 🌞 — 50% chance of rain at 3:15."
    )
    assert speakable(text) == (
        "Wow! It's twenty-one degrees Celsius at weather dot example dot com, "
        "fifty percent chance of rain at three fifteen."
    )


def test_markdown_reply_reads_as_sentences() -> None:
    text = (
        "## Plan for 2026\n\nHere's what I'd do:\n\n1. Save **$1,200** (about 10%)\n"
        "2. Read [a book](http://books.example.com) 📚\n\n```sh\nsave --money\n```\nGood luck!!"
    )
    assert speakable(text) == (
        "Plan for twenty twenty-six. Here's what I'd do: Save one thousand two hundred dollars, "
        "about ten percent. Read a book. Good luck!"
    )


def _is_pictograph(ch: str) -> bool:
    return unicodedata.category(ch) in ("So", "Sk", "Cs", "Co", "Cn") or ch in "\ufe0f\u200d"


WORDS = ["hello", "Hex", "rain", "café", "мир", "世界", "naïve", "tea", "It's", "well-known"]
PIECES = st.one_of(
    st.sampled_from(WORDS),
    st.integers(-(10**25), 10**25).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(str),
    st.builds(lambda a, b: f"{a}:{b:02d}", st.integers(0, 30), st.integers(0, 70)),
    st.builds(lambda c, n: f"{c}{n}", st.sampled_from("$£€¥₹#~"), st.integers(0, 10**7)),
    st.builds(
        lambda n, s: f"{n}{s}",
        st.integers(0, 3000),
        st.sampled_from(["%", "°C", "st", "nd", "th", "s", "k", " km"]),
    ),
    st.builds(
        lambda scheme, host, path: f"{scheme}://{host}{path}",
        st.sampled_from(["http", "https", "HTTPS", "ftp"]),
        st.sampled_from(["example.com", "www.a.org", "", "x", "192.168.1.1:80"]),
        st.text(alphabet="/?#=&abc123.-_%", max_size=12),
    ),
    st.sampled_from(
        [
            "**",
            "*",
            "_",
            "__",
            "`",
            "```",
            "~~",
            "#",
            "## ",
            "- ",
            "> ",
            "[",
            "](",
            ")",
            "![",
            "|",
            "\n",
            "\n\n",
        ]
    ),
    st.sampled_from(
        [
            "🌞",
            "👍🏽",
            "👨‍👩‍👧",
            "🇫🇷",
            "❤️",
            "5️⃣",
            "©",
            "™",
            "½",
            "²",
            "٣",
            "…",
            "—",
            "!!!",
            "?!",
            "&",
            "+",
            "=",
            "@",
            "^",
        ]
    ),
    st.text(max_size=8),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(PIECES, max_size=12), st.sampled_from([" ", "", "\n"]))
def test_speakable_never_returns_markup_links_emoji_or_digits(parts: list[str], sep: str) -> None:
    text = sep.join(parts)
    # "http" is only forbidden where it starts a link; free text may spell the word.
    assume(
        "http"
        not in unicodedata.normalize("NFKC", re.sub(r"(?i)(?:https?|ftp)://", " ", text)).casefold()
    )
    out = speakable(text)
    for bad in ("*", "`", "#", "_", "[", "]", "(", ")", "http", "://", "  "):
        assert bad not in out.casefold()
    assert not any(_is_pictograph(c) or c.isdigit() for c in out)
    assert out == out.strip()
    assert out == "" or any(unicodedata.category(c)[0] == "L" for c in out)
    assert speakable(out) == out  # already speakable text is left alone


def test_long_sentences_are_cut_into_phrases_at_clause_marks_only() -> None:
    from actors.tts.actor import phrases_of

    assert phrases_of("", 60) == []
    assert phrases_of("Short and sweet.", 60) == ["Short and sweet."]
    long = (
        "Once upon a time, in a castle by the sea, there lived a dragon who loved spoons; "
        "every night she counted them - all three hundred - before she slept."
    )
    parts = phrases_of(long, 60)
    assert " ".join(parts) == long and len(parts) > 1
    assert parts[0] == "Once upon a time, in a castle by the sea," and all(
        len(p) <= 60 for p in parts
    ), parts
    assert phrases_of("a" * 200, 60) == ["a" * 200]  # no clause mark: never cut inside words


def test_a_replys_first_phrase_is_short_where_a_clause_mark_allows() -> None:
    from actors.tts.actor import phrases_of

    first = "Rainy days are great, they smell of wet earth and old books."
    assert phrases_of(first, 60) == [first]
    assert phrases_of(first, 60, 24) == [
        "Rainy days are great,",
        "they smell of wet earth and old books.",
    ]
    long = (
        "Once upon a time, in a castle by the sea, there lived a dragon who loved spoons; "
        "every night she counted them - all three hundred - before she slept."
    )
    parts = phrases_of(long, 60, 24)
    assert " ".join(parts) == long and parts[0] == "Once upon a time,"
    assert all(len(p) <= 60 for p in parts[1:]), parts  # the rest as before
    assert phrases_of("No clause mark here at all, sorry"[:26], 60, 24) == [
        "No clause mark here at all"
    ]


def test_a_long_first_clause_is_cut_before_a_linking_word_near_the_first_phrase_size() -> None:
    from actors.tts.actor import phrases_of

    first = "Rainy days are my favourite because they bring a cozy feeling to the house."
    assert phrases_of(first, 60, 24) == [
        "Rainy days are my favourite",
        "because they bring a cozy feeling to the house.",
    ]
    assert phrases_of(first, 60) == [first]  # later sentences: clause marks only
    # No linking word within reach of 24 characters: whole, never cut at just any word
    whole = "Absolutely everything tastes wonderful after sunset in autumn."
    assert phrases_of(whole, 80, 24) == [whole]
    # "And" that opens the sentence is no place to cut; the one near 24 characters is
    opening = "And then the little dog ran off with my sandwich into the park."
    assert phrases_of(opening, 80, 24) == [
        "And then the little dog ran off",
        "with my sandwich into the park.",
    ]
