"""Things a person said are coming, and when: "my exam is tomorrow", "the interview is on
Friday", "flying to Lisbon in two weeks", "dentist on March 3rd".

Relative to the moment it was said, in the person's time zone (a line said at 23:50 in Tokyo
about "tomorrow" means Tokyo's tomorrow). Only an event a friend would ask about counts (an
exam, an interview, a flight, a date, surgery...): "I'll do it tomorrow" is not one. Weekday
names mean the next such day ("on Friday" said on a Friday means a week on, unless "today"
is said too), and so does "next Friday": people split on it, and the sooner day is the one a
friend asks about in time.
Dates without a year are the next time that day comes; days past the month's end are no date.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass
from typing import Final

EVENTS: Final = (
    r"exams?|finals?|tests?|quiz|interviews?|appointments?|flights?|trips?|surgery|operation|"
    r"dentist|doctor|checkup|check-up|date|wedding|funeral|birthday|party|concert|gig|game|match|"
    r"race|marathon|presentation|talk|pitch|deadline|defen[cs]e|audition|recital|performance|"
    r"move|moving|first day|hearing|court|results?|scan|therapy|vacation|holiday|meeting|"
    r"competition|tournament|show|premiere|launch|graduation|ceremony|exhibition"
)
EVENT: Final = re.compile(rf"\b({EVENTS})\b", re.IGNORECASE)
MONTHS: Final = (
    {m.lower(): i for i, m in enumerate(calendar.month_name) if m}
    | {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}
    | {"sept": 9}
)
DAYS: Final = {d.lower(): i for i, d in enumerate(calendar.day_name)}
# Short names are words too ("the sun", "I sat"): they count only after "on", "next", "this".
SHORT_DAYS: Final = {d.lower(): i for i, d in enumerate(calendar.day_abbr)} | {
    "tues": 1, "thurs": 3, "weds": 2
}  # fmt: skip
WEEKDAYS: Final = DAYS | SHORT_DAYS
NUMBERS: Final = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "couple of": 2, "few": 3,
}  # fmt: skip
_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
_DAY = "|".join(sorted(DAYS, key=len, reverse=True))
_SHORT = "|".join(sorted(SHORT_DAYS, key=len, reverse=True))
_NUM = "|".join(sorted(NUMBERS, key=len, reverse=True))
PATTERNS: Final = [
    ("after_tomorrow", re.compile(r"\bday after tomorrow\b", re.I)),
    ("tomorrow", re.compile(r"\b(tomorrow|tmrw|tmr)\b", re.I)),
    ("today", re.compile(r"\b(today|tonight|this (morning|afternoon|evening))\b", re.I)),
    ("in", re.compile(rf"\bin (\d{{1,3}}|{_NUM}) (day|week|month)s?\b", re.I)),
    ("next_week", re.compile(r"\bnext (week|month)\b", re.I)),
    ("weekday", re.compile(rf"\b(?:(next|this|on|coming) )?({_DAY})\b", re.I)),
    ("weekday", re.compile(rf"\b(next|this|on|coming) ({_SHORT})\b\.?", re.I)),
    (
        "month_day",
        re.compile(rf"\b({_MONTH})\.? (\d{{1,2}})(?:st|nd|rd|th)?\b(?!:)", re.I),
    ),
    (
        "day_month",
        re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?(?: of)? ({_MONTH})\b", re.I),
    ),
]
PAST: Final = re.compile(
    r"\b(was|were|went|had|did|yesterday|last|ago|finished|passed|failed|got back)\b", re.I
)


@dataclass(frozen=True)
class Coming:
    """An event and the local day it falls on (``exact`` False: "next week", "in a month")."""

    what: str  # the event word as said ("interview")
    day: dt.date
    exact: bool
    phrase: str  # the words that dated it


def coming(text: str, said: dt.datetime) -> Coming | None:
    """The first future event ``text`` dates, said at ``said`` (aware: the person's zone)."""
    event = EVENT.search(text)
    if event is None:
        return None
    today = said.date()
    for kind, pattern in PATTERNS:
        for m in pattern.finditer(text):
            day, exact = _day(kind, m, today)
            if day is None or day < today:
                continue
            if day == today and PAST.search(text):
                continue  # "the exam was today": over
            return Coming(event[1].lower(), day, exact, m[0].strip())
    return None


def _day(kind: str, m: re.Match[str], today: dt.date) -> tuple[dt.date | None, bool]:
    match kind:
        case "after_tomorrow":
            return today + dt.timedelta(days=2), True
        case "tomorrow":
            return today + dt.timedelta(days=1), True
        case "today":
            return today, True
        case "in":
            n = int(m[1]) if m[1].isdigit() else NUMBERS[m[1].lower()]
            unit = m[2].lower()
            days = n * {"day": 1, "week": 7, "month": 30}[unit]
            return today + dt.timedelta(days=days), unit == "day"
        case "next_week":
            if m[1].lower() == "week":
                return today + dt.timedelta(days=7 - today.weekday()), False
            year, month = (
                (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1)
            )
            return dt.date(year, month, 1), False
        case "weekday":
            ahead = (WEEKDAYS[m[2].lower()] - today.weekday()) % 7 or 7
            return today + dt.timedelta(days=ahead), True
        case "month_day":
            return _next_date(today, MONTHS[m[1].lower()], int(m[2])), True
        case "day_month":
            return _next_date(today, MONTHS[m[2].lower()], int(m[1])), True
    return None, False


def _next_date(today: dt.date, month: int, day: int) -> dt.date | None:
    for year in (today.year, today.year + 1):
        if day < 1 or day > calendar.monthrange(year, month)[1]:
            continue
        d = dt.date(year, month, day)
        if d >= today:
            return d
    return None
