"""What a voice should read aloud from a chat reply: :func:`speakable`.

A reply is written for a screen (markdown, links, emoji, digits); a TTS model
reads every character it is given, so ``**`` comes out as "star star" and
``2026`` as a string of digits or nothing. :func:`speakable` rewrites a reply
into plain speech, in English for numbers and symbols, and promises that its
result holds only letters (of any script, with their combining marks), spaces
and the punctuation ``, . ! ? ; : ' -`` (the apostrophe and hyphen only inside
words). Text with nothing speakable comes back as ``""``.

The rules, in the order they apply:

- Markdown: fenced code (``` or ~~~) is dropped whole, images are dropped,
  ``[text](url)`` keeps its text, inline code keeps its content; emphasis,
  strike-through, headings, list bullets and numbers, blockquotes, rules and
  table pipes go. A heading or list item without end punctuation gets a full
  stop, so items do not run together.
- URLs become their host without ``www.``, with its dots spoken
  (``https://www.example.com/a/b?c`` -> "example dot com": the phonemizer would
  otherwise treat the dots as pauses); e-mail addresses and bare ``name.com``
  hosts read the same way.
- Emoji and other pictographs go: Unicode categories So and Sk, variation
  selectors, joiners and other format characters, enclosing marks (keycaps).
- Numbers are spoken in English: times (``7:05`` -> "seven oh five"), ISO
  dates, currency (``£3.50`` -> "three pounds fifty"), temperatures and angles
  (``21°C`` -> "twenty-one degrees Celsius"), percentages, ordinals, decades
  (``1990s`` -> "nineteen nineties"), version numbers (``3.11.2`` -> "three
  dot eleven dot two"), a few units (``5 km`` -> "five kilometers"), ``10k``,
  operators between numbers (``+ - = * / : ^``), signs, thousands separators and
  decimals (``3.5`` -> "three point five"). Numbers with a leading zero and
  numbers of 22 digits or more are read digit by digit.
- Year rule: a bare four-digit number from 1100 to 2099 (no sign, separator,
  decimals, currency or "#" before it, no letter, ``%``, ``°`` or unit word
  right after it) is read as a year: ``1999`` -> "nineteen ninety-nine",
  ``2026`` -> "twenty twenty-six", ``2005`` -> "two thousand five", ``1900`` ->
  "nineteen hundred". Counts in that range then read the way people often say
  them ("fifteen hundred people"); with a unit they stay cardinal
  (``1500 km`` -> "one thousand five hundred kilometers").
- Symbols: ``&`` -> "and", ``@`` -> "at", ``+`` -> "plus", ``#5`` -> "number
  five", ``~5`` -> "about five"; brackets, dashes and pipes become pauses;
  ``...`` becomes a pause (a comma); runs of punctuation collapse to the
  strongest mark (``!!!`` -> "!", ``?!`` -> "?"); whitespace collapses.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Final

from actors.tts._numbers import cardinal, numbers_to_words, ordinal, year

__all__ = ["cardinal", "ordinal", "speakable", "year"]

# --- characters -------------------------------------------------------------

_FRACTIONS: Final = {
    "½": " one half ",
    "⅓": " one third ",
    "⅔": " two thirds ",
    "¼": " one quarter ",
    "¾": " three quarters ",
}
_PUNCTUATION: Final = str.maketrans(
    {
        "。": ". ",
        "、": ", ",
        "،": ", ",
        "؛": ";",
        "؟": "?",
        "।": ".",
        "॥": ".",
        "\N{LEFT SINGLE QUOTATION MARK}": "'",
        "\N{RIGHT SINGLE QUOTATION MARK}": "'",
        "\N{MODIFIER LETTER APOSTROPHE}": "'",
        "\N{PRIME}": "'",
        "—": ", ",
        "―": ", ",
        "\N{EN DASH}": ", ",
        "(": ", ",
        ")": ", ",
        "[": ", ",
        "]": ", ",
        "{": ", ",
        "}": ", ",
        "|": ", ",
        "•": ", ",
        "·": " ",
        "/": " ",
        "\\": " ",
        "_": " ",
        "*": " ",
        "\n": " ",
        "\t": " ",
    }
)
_KEEP_PUNCTUATION: Final = frozenset(",.!?;:'-")
_STRENGTH: Final = "?!.;:,"  # strongest first


def _is_invisible(ch: str) -> bool:
    """Joiners, variation selectors, keycap frames, control characters: never spoken."""
    if ch in "\n\t":
        return False
    category = unicodedata.category(ch)
    return (
        category in ("Cf", "Cc", "Me")
        or "\ufe00" <= ch <= "\ufe0f"
        or "\U000e0100" <= ch <= "\U000e01ef"
    )


def _clean_characters(text: str) -> str:
    text = html.unescape(text).replace("\r\n", "\n").replace("\r", "\n")
    for fraction, words in _FRACTIONS.items():
        text = text.replace(fraction, words)
    # NFKC folds full-width forms, superscripts, ligatures, "℃" and "…" into plain ones.
    text = unicodedata.normalize("NFKC", text)
    out = []
    for ch in text:
        if _is_invisible(ch):
            continue
        if ch.isdecimal() and not ch.isascii():
            out.append(str(unicodedata.decimal(ch)))
        elif ch == "\u2044":  # fraction slash
            out.append("/")
        elif ch == "\u2212":  # minus sign
            out.append("-")
        else:
            out.append(ch)
    return "".join(out)


# --- markdown ---------------------------------------------------------------

_FENCE = re.compile(r"(`{3,}|~{3,}).*?(?:\1|\Z)", re.S)
_HTML_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_IMAGE = re.compile(r"!\[[^\]\n]*\]\([^)\n]*\)")
_LINK = re.compile(r"\[([^\]\n]*)\]\([^)\n]*\)")
_REF_LINK = re.compile(r"\[([^\]\n]+)\]\[[^\]\n]*\]")
_REF_DEFINITION = re.compile(r"^[ \t]*\[[^\]\n]+\]:[ \t]*\S+.*$", re.M)
_AUTOLINK = re.compile(r"<((?:https?|ftp)://[^<>\s]+|[^<>\s@]+@[^<>\s@]+)>", re.I)
_RULE = re.compile(r"^\s*(?:([-*_=])\s*)(?:\1\s*){2,}$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?\s*$")
_BLOCKQUOTE = re.compile(r"^\s*(?:>\s?)+")
_HEADING = re.compile(r"^\s{0,3}#{1,6}(?:\s+|$)(.*?)(?:\s+#+)?\s*$")
_ITEM = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+")
_INLINE_CODE = re.compile(r"(`{1,2})(.+?)\1")
_STRONG = re.compile(r"(\*\*|__)(?=[^\s*_])(.+?)(?<=[^\s*_])\1")
_EMPHASIS_STAR = re.compile(r"(?<![*\w])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![*\w])")
_EMPHASIS_UNDERSCORE = re.compile(r"(?<![_\w])_(?=[^\s_])(.+?)(?<=[^\s_])_(?![_\w])")
_STRIKE = re.compile(r"~~(.+?)~~")
_ENDS_SENTENCE = re.compile(r"[.!?:;,]\s*$")


def _strip_lines(text: str) -> str:
    """Block markup, line by line; headings and list items end with a stop if they lack one."""
    out: list[str] = []
    for raw in text.split("\n"):
        line = _BLOCKQUOTE.sub("", raw)
        if _RULE.match(line) or (_TABLE_RULE.match(line) and "-" in line):
            line = ""
        block = False
        if heading := _HEADING.match(line):
            line, block = heading.group(1), True
        elif item := _ITEM.match(line):
            line, block = line[item.end() :], True
        if line.lstrip().startswith("|"):
            line, block = ", ".join(c.strip() for c in line.strip().strip("|").split("|")), True
        line = line.strip()
        if not line:
            # A blank line ends a paragraph: make it a sentence end.
            if out and out[-1] and not _ENDS_SENTENCE.search(out[-1]):
                out[-1] += "."
            out.append("")
            continue
        if block and not _ENDS_SENTENCE.search(line):
            line += "."
        out.append(line)
    return " ".join(part for part in out if part)


def _strip_markdown(text: str) -> str:
    text = _FENCE.sub("\n", text)
    text = _HTML_TAG.sub(" ", text)
    text = _REF_DEFINITION.sub("", text)
    text = _IMAGE.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _REF_LINK.sub(r"\1", text)
    text = _AUTOLINK.sub(r" \1 ", text)
    text = _strip_lines(text)
    text = _INLINE_CODE.sub(r"\2", text)
    text = _STRONG.sub(r"\2", _STRONG.sub(r"\2", text))  # twice: ***both*** and nesting
    text = _EMPHASIS_STAR.sub(r"\1", text)
    text = _EMPHASIS_UNDERSCORE.sub(r"\1", text)
    return _STRIKE.sub(r"\1", text)


# --- links ------------------------------------------------------------------

_URL_BODY = r"(?:(?!(?:https?|ftp)://)[^\s<>\"'])*"  # a URL ends where the next one starts
_URL = re.compile(rf"(?:https?|ftp)://{_URL_BODY}|\bwww\.{_URL_BODY}", re.I)
_EMAIL = re.compile(r"\b([\w.+-]+)@([\w-]+(?:\.[\w-]+)+)\b")
_TLDS: Final = "com|org|net|io|dev|ai|app|co|edu|gov|uk|de|fr|jp|me|info|xyz|tv|gg"
_BARE_HOST = re.compile(rf"\b(?:[A-Za-z0-9-]+\.)+(?:{_TLDS})\b(?![\w-]|\.\w)", re.I)


def _say_host(host: str) -> str:
    labels = [label for label in host.split(".") if label]
    return f" {' dot '.join(labels)} " if labels else " "


def _url(m: re.Match[str]) -> str:
    url = m.group(0).rstrip(".,;:!?)]")
    tail = m.group(0)[len(url) :]  # sentence punctuation after the link stays
    rest = re.sub(r"^(?:[a-z]+://)", "", url, flags=re.I)
    host = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")[2].partition(":")[0]
    if host.lower().startswith("www."):
        host = host[4:]
    return _say_host(host) + tail


def _links(text: str) -> str:
    text = _URL.sub(_url, text)
    text = _EMAIL.sub(lambda m: f"{_say_host(m.group(1))}at{_say_host(m.group(2))}", text)
    text = text.replace("@", " at ")
    return _BARE_HOST.sub(lambda m: _say_host(m.group(0)), text)


# --- symbols and the final pass ----------------------------------------------

_ABBREVIATIONS: Final = (
    (re.compile(r"\be\.g\.(?=\W|$)", re.I), "for example"),
    (re.compile(r"\bi\.e\.(?=\W|$)", re.I), "that is"),
    (re.compile(r"\betc\.(?=\W|$)", re.I), "et cetera"),
    (re.compile(r"\bvs\.?(?=\W|$)", re.I), "versus"),
)
_SYMBOLS: Final = (
    ("&", " and "),
    ("+", " plus "),
    ("±", " plus or minus "),
    ("°", " degrees "),
    ("%", " percent "),
)
_ELLIPSIS = re.compile(r"\.{2,}")
_PUNCTUATION_RUN = re.compile(r"\s*[,.!?;:](?:\s*[,.!?;:])*")
_LOOSE_HYPHEN = re.compile(r"(?<![^\W\d_])[-']|[-'](?![^\W\d_])")


def _strongest(m: re.Match[str]) -> str:
    marks = [c for c in m.group(0) if not c.isspace()]
    return min(marks, key=_STRENGTH.index)


def _whitelist(text: str) -> str:
    out: list[str] = []
    for ch in text:
        category = unicodedata.category(ch)
        mark = category[0] == "M" and bool(out) and unicodedata.category(out[-1])[0] in "LM"
        out.append(ch if category[0] == "L" or ch in _KEEP_PUNCTUATION or mark else " ")
    return "".join(out)


def speakable(text: str) -> str:
    """What a TTS voice should read aloud for ``text``: see the module docstring for the rules."""
    text = _clean_characters(text)
    text = _strip_markdown(text)
    text = _links(text)
    for pattern, words in _ABBREVIATIONS:
        text = pattern.sub(words, text)
    text = numbers_to_words(text)
    for symbol, words in _SYMBOLS:
        text = text.replace(symbol, words)
    text = _ELLIPSIS.sub(", ", text)
    text = _whitelist(text.translate(_PUNCTUATION))
    text = _LOOSE_HYPHEN.sub(" ", text)
    text = _PUNCTUATION_RUN.sub(_strongest, text)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"^[\s,.!?;:]+", "", text)
    text = re.sub(r"[\s,;:]+$", "", text)
    text = unicodedata.normalize("NFC", text)  # a mark freed of its joiner composes with its letter
    return text if any(unicodedata.category(c)[0] == "L" for c in text) else ""
