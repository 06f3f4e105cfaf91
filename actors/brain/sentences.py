"""Cut a streamed reply into sentences as soon as each one is complete, for TTS.

A sentence ends at ``.``, ``!``, ``?`` or ``…`` (runs of them count as one,
closing quotes and brackets stay with it) followed by whitespace, or at a
blank line. Common abbreviations, decimals and initials do not end one. Text
inside a code block is never spoken as sentences: it is held until the fence
closes and then dropped from the spoken stream (the written reply keeps it).
"""

from __future__ import annotations

import re
from typing import Final

_END: Final = re.compile(r"""([.!?…]+["')\]]*)(\s+)|(\n\s*\n)""")
_ABBREVIATIONS: Final = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "a.m",
        "p.m",
        "approx",
        "dept",
        "est",
        "fig",
        "no",
        "vol",
        "u.s",
    }
)
_MIN_CHARS: Final = 2


_CLAUSE: Final = re.compile(r"[,;:](\s+)")
FIRST_CLAUSE_CHARS: Final = 16


class SentenceSplitter:
    """Feed pieces with :meth:`push`; it returns the sentences completed so far. :meth:`flush` ends.

    The first piece of a reply also ends at a comma, semicolon or colon once it is
    ``first_clause`` characters long ("Rainy days are lovely," before the rest of the sentence
    is written): TTS starts on it while the model writes on. 0 cuts at sentence ends only.
    """

    def __init__(self, first_clause: int = FIRST_CLAUSE_CHARS) -> None:
        self._buffer = ""
        self._in_code = False
        self._first_clause = first_clause
        self._emitted = False

    def push(self, piece: str) -> list[str]:
        self._buffer += piece
        out: list[str] = []
        while True:
            if self._in_code:
                end = self._buffer.find("```")
                if end < 0:
                    return out
                self._buffer = self._buffer[end + 3 :]
                self._in_code = False
                continue
            fence = self._buffer.find("```")
            search_in = self._buffer if fence < 0 else self._buffer[:fence]
            cut = self._find_end(search_in)
            if cut is None:
                if fence < 0:
                    return out
                out += self._emit(self._buffer[:fence])
                self._buffer = self._buffer[fence + 3 :]
                self._in_code = True
                continue
            out += self._emit(self._buffer[:cut])
            self._buffer = self._buffer[cut:]

    def discard(self) -> str:
        """Drop the unfinished tail (a reply cut at its token limit) and return it."""
        rest, self._buffer, self._in_code = self._buffer, "", False
        return rest

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer, ""
        if self._in_code:
            self._in_code = False
            return []
        return self._emit(rest)

    def _find_end(self, text: str) -> int | None:
        end = self._sentence_end(text)
        if self._emitted or not self._first_clause:
            return end
        for match in _CLAUSE.finditer(text, self._first_clause - 1):
            if end is None or match.end() < end:
                return match.end()
            break
        return end

    def _sentence_end(self, text: str) -> int | None:
        for match in _END.finditer(text):
            if match.group(3):
                return match.end()
            before = text[: match.start(1)]
            word = before.rsplit(None, 1)[-1].lower() if before.split() else ""
            abbreviation = word.rstrip(".") in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())
            if match.group(1) == "." and abbreviation:
                continue
            return match.end()
        return None

    def _emit(self, text: str) -> list[str]:
        sentence = " ".join(text.split())
        if len(sentence) >= _MIN_CHARS and any(c.isalnum() for c in sentence):
            self._emitted = True
            return [sentence]
        return []
