"""Who a question is about: names and nicknames in its words, resolved to the people Hex knows.

"When did Pri start the ceramics class?" names Priya; "what does tomas do to unwind"
names Tomás. A word names a person when it is one of the words of their display name, or
when one is the start of the other and the shorter has at least :data:`MIN_PREFIX` letters
("Pri" for Priya, "Jonno" for Jon); a nickname that is not a shortening ("Marquitos" for
Marco) is not found. Accents and case never matter. A word that could be several people
names all of them: the ranking boosts, never filters, so a wrong guess costs little.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from typing import Final

from actors.memory.keyword import STOPWORDS, words

MIN_PREFIX: Final = 3


def fold(text: str) -> str:
    """Case- and accent-free: "Tomás" and "TOMAS" are one word."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _same(word: str, name: str) -> bool:
    if word == name:
        return True
    short, long = sorted((word, name), key=len)
    return len(short) >= MIN_PREFIX and long.startswith(short)


def named(text: str, people: Mapping[str, str]) -> set[str]:
    """The ids of ``people`` (id -> display name) whose name or nickname ``text`` mentions."""
    asked = {w for w in (fold(w) for w in words(text)) if w not in STOPWORDS and not w.isdigit()}
    if not asked:
        return set()
    found: set[str] = set()
    for person_id, name in people.items():
        parts: Iterable[str] = (fold(w) for w in words(name))
        if any(_same(w, part) for part in parts if len(part) > 1 for w in asked):
            found.add(person_id)
    return found
