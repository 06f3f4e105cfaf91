"""How the persona's phrase lists match text: whole words, case, apostrophes and punctuation aside.

Every phrase list in persona.toml and audit_scenarios.toml (cues, crisis keywords,
denial and care phrases) is matched by :func:`matches`; a trailing ``*`` matches
any ending ("thank*" matches "thanks" and "thankful").
"""

from __future__ import annotations

import functools
import re

_APOSTROPHES = re.compile(r"['\u2018\u2019\u02bc`]")
_NON_WORD = re.compile(r"[^\w\s]|_")


def normalize(text: str) -> str:
    """Casefold, drop apostrophes, turn punctuation into spaces: "I'm  here!" -> "im here"."""
    return " ".join(_NON_WORD.sub(" ", _APOSTROPHES.sub("", text.casefold())).split())


@functools.lru_cache(maxsize=256)
def _pattern(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    parts = []
    for phrase in phrases:
        prefix = phrase.endswith("*")
        body = re.escape(normalize(phrase.removesuffix("*")))
        parts.append(rf"(?<!\w){body}" + (r"\w*" if prefix else r"(?!\w)"))
    return re.compile("|".join(parts)) if parts else None


def matches(text: str, phrases: tuple[str, ...]) -> bool:
    """Whether any phrase occurs in the text as whole words (a trailing ``*`` matches any ending)."""
    pattern = _pattern(phrases)
    return pattern is not None and pattern.search(normalize(text)) is not None


def word_count(text: str) -> int:
    return len(text.split())
