"""Time words in a question, as date ranges: "in May", "two weeks ago", "last summer".

Relative to the moment the question is asked in its conversation (``now``), never to the
clock of the machine: an imported chat from June 2023 that asks "what did we do in May?"
means May 2023. Past by default: a question to a memory asks what happened, so "in May"
asked in March is last year's May, and "last <season>" is the most recent one already over.

Seasons are the northern meteorological ones (spring March-May, summer June-August, autumn
September-November, winter December-February, named by the year its January falls in).
Weeks start on Monday. Expressions that name an event ("before the move") are not times and
give nothing here.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final


@dataclass(frozen=True)
class Span:
    """A stretch of time a question points at: ``start`` inclusive, ``end`` exclusive."""

    start: datetime
    end: datetime
    phrase: str  # the words that said it

    def __contains__(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


MONTHS: Final = {name.lower(): i for i, name in enumerate(calendar.month_name) if name} | {
    name.lower(): i for i, name in enumerate(calendar.month_abbr) if name and name != "May"
}
WEEKDAYS: Final = {name.lower(): i for i, name in enumerate(calendar.day_name)}
NUMBERS: Final = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "a couple of": 2,
    "a few": 3,
    "several": 3,
}
SEASONS: Final = {"spring": 3, "summer": 6, "autumn": 9, "fall": 9, "winter": 12}

_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
_WEEKDAY = "|".join(WEEKDAYS)
_NUMBER = "|".join(sorted(NUMBERS, key=len, reverse=True)) + r"|\d{1,3}"
_SEASON = "|".join(SEASONS)
_PATTERNS: Final = [
    ("ago", rf"\b(?P<n>{_NUMBER})\s+(?P<unit>day|week|month|year)s?\s+ago\b"),
    ("day_before", r"\bthe\s+day\s+before\s+yesterday\b"),
    ("yesterday", r"\b(?:yesterday|last\s+night)\b"),
    ("today", r"\b(?:today|tonight|this\s+(?:morning|afternoon|evening))\b"),
    ("weekend", r"\b(?P<which>last|this)\s+weekend\b"),
    ("unit", r"\b(?P<which>last|this)\s+(?P<unit>week|month|year)\b"),
    ("weekday", rf"\b(?:(?P<which>last|on|this)\s+)?(?P<day>{_WEEKDAY})\b"),
    (
        "season",
        rf"\b(?:(?P<which>last|this|in\s+the|in)\s+)?(?P<season>{_SEASON})(?:\s+(?P<year>\d{{4}}))?\b",
    ),
    (
        "date",
        rf"\b(?:(?P<month1>{_MONTH})\.?\s+(?P<day1>\d{{1,2}})(?:st|nd|rd|th)?"
        rf"|(?P<day2>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<month2>{_MONTH})\.?)"
        rf"(?:,?\s+(?P<year>\d{{4}}))?\b",
    ),
    (
        "month",
        rf"\b(?:(?P<which>last|this|in|during|since)\s+)?(?P<month>{_MONTH})\.?(?:\s+(?P<year>\d{{4}}))?\b",
    ),
    ("year", r"\b(?:in|during|since|of)\s+(?P<year>(?:19|20)\d{2})\b"),
]
_COMPILED: Final = [(kind, re.compile(p, re.IGNORECASE)) for kind, p in _PATTERNS]


def spans(text: str, now: datetime) -> list[Span]:
    """The time ranges ``text`` names, relative to ``now``, in the order they appear (an
    expression inside a longer one is not counted twice)."""
    found: list[tuple[int, Span]] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in _COMPILED:
        for match in pattern.finditer(text):
            a, b = match.span()
            if any(a < y and x < b for x, y in taken):
                continue
            span = _resolve(kind, match, now)
            if span is not None:
                taken.append((a, b))
                found.append((a, span))
    return [s for _, s in sorted(found, key=lambda f: f[0])]


def _day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _month_start(year: int, month: int) -> datetime:
    return datetime(year + (month - 1) // 12, (month - 1) % 12 + 1, 1)


def _months(year: int, month: int, count: int, phrase: str) -> Span:
    return Span(_month_start(year, month), _month_start(year, month + count), phrase)


def _resolve(kind: str, m: re.Match[str], now: datetime) -> Span | None:
    phrase = m.group(0)
    today = _day(now)
    groups = m.groupdict()
    which = (groups.get("which") or "").lower()
    if kind == "ago":
        raw = m.group("n").lower()
        n = int(raw) if raw.isdigit() else NUMBERS[raw]
        unit = m.group("unit").lower()
        if unit == "day":
            return Span(today - timedelta(days=n), today - timedelta(days=n - 1), phrase)
        if unit == "week":
            centre = today - timedelta(weeks=n)
            return Span(centre - timedelta(days=3), centre + timedelta(days=4), phrase)
        if unit == "month":
            return _months(now.year, now.month - n, 1, phrase)
        centre = today - timedelta(days=round(365.25 * n))  # about then: half a year either way
        return Span(centre - timedelta(days=182), centre + timedelta(days=183), phrase)
    if kind == "day_before":
        return Span(today - timedelta(days=2), today - timedelta(days=1), phrase)
    if kind == "yesterday":
        return Span(today - timedelta(days=1), today, phrase)
    if kind == "today":
        return Span(today, today + timedelta(days=1), phrase)
    week = today - timedelta(days=today.weekday())
    if kind == "weekend":
        saturday = week + timedelta(days=5)
        if which == "last" or saturday > today:
            saturday -= timedelta(weeks=1)
        return Span(saturday, saturday + timedelta(days=2), phrase)
    if kind == "unit":
        unit, back = m.group("unit").lower(), 1 if which == "last" else 0
        if unit == "week":
            start = week - timedelta(weeks=back)
            return Span(start, start + timedelta(weeks=1), phrase)
        if unit == "month":
            return _months(now.year, now.month - back, 1, phrase)
        return Span(datetime(now.year - back, 1, 1), datetime(now.year - back + 1, 1, 1), phrase)
    if kind == "weekday":
        if not which and not m.group("day")[0].isupper():
            return None  # "monday" in running text without "on"/"last": too weak a sign
        back = (today.weekday() - WEEKDAYS[m.group("day").lower()]) % 7 or 7
        if which == "this" and back == 7:
            back = 0
        start = today - timedelta(days=back)
        return Span(start, start + timedelta(days=1), phrase)
    if kind == "season":
        if not which and not groups.get("year"):
            return None  # "fall asleep", "summer dress": a season is a time with "last", "in", ...
        first = SEASONS[m.group("season").lower()]
        if groups.get("year"):
            year = int(m.group("year")) - (1 if first == 12 else 0)
            return _months(year, first, 3, phrase)
        year = now.year
        while _month_start(year, first) > now:
            year -= 1
        span = _months(year, first, 3, phrase)
        if which == "last" and now < span.end:  # the most recent one already over
            span = _months(year - 1, first, 3, phrase)
        return span
    if kind == "date":
        month = MONTHS[(m.group("month1") or m.group("month2")).lower().rstrip(".")]
        day = int(m.group("day1") or m.group("day2"))
        year = int(m.group("year")) if m.group("year") else now.year
        if day > calendar.monthrange(year, month)[1]:
            return None
        start = datetime(year, month, day)
        if not m.group("year") and start > today:
            if day > calendar.monthrange(year - 1, month)[1]:
                return None
            start = datetime(year - 1, month, day)
        return Span(start, start + timedelta(days=1), phrase)
    if kind == "month":
        name = m.group("month")
        if not which and not m.group("year") and not name[0].isupper():
            return None  # "may" as a verb, "march" as a walk
        if name.lower() == "may" and not which and not m.group("year"):
            return None  # "May I ..." : only "in May", "last May", "May 2023"
        month = MONTHS[name.lower().rstrip(".")]
        if m.group("year"):
            return _months(int(m.group("year")), month, 1, phrase)
        year = now.year if month <= now.month else now.year - 1
        if which == "last" and month == now.month:
            year -= 1
        span = _months(year, month, 1, phrase)
        return (
            Span(span.start, max(span.end, today + timedelta(days=1)), phrase)
            if which == "since"
            else span
        )
    if kind == "year":
        year = int(m.group("year"))
        end = datetime(year + 1, 1, 1)
        if phrase.lower().startswith("since"):
            end = max(end, today + timedelta(days=1))
        return Span(datetime(year, 1, 1), end, phrase)
    return None
