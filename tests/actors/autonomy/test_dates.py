"""Events people mention, dated from the moment and the zone they said it in."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.autonomy.dates import coming

# Wednesday 2026-12-02, 21:00 in Berlin.
SAID = dt.datetime(2026, 12, 2, 21, 0, tzinfo=ZoneInfo("Europe/Berlin"))


@pytest.mark.parametrize(
    ("text", "what", "day", "exact"),
    [
        ("got a job interview tomorrow morning!!", "interview", "2026-12-03", True),
        ("dentist tmrw, not looking forward to it", "dentist", "2026-12-03", True),
        ("ugh my driving test is on thursday, pray for me", "test", "2026-12-03", True),
        ("my sister's wedding is on saturday", "wedding", "2026-12-05", True),
        ("the exam is next Wednesday", "exam", "2026-12-09", True),  # said on a Wednesday
        ("I have my thesis defense on the 14th of December", "defense", "2026-12-14", True),
        ("exam on Jan 20 and I know nothing", "exam", "2027-01-20", True),
        ("exam on Dec 1st", "exam", "2027-12-01", True),  # yesterday's date: next year's
        ("the results come out in 3 days", "results", "2026-12-05", True),
        ("flight to Lisbon in two weeks", "flight", "2026-12-16", False),
        ("big presentation next week, haven't even started the slides", "presentation",
         "2026-12-07", False),
        ("concert tonight!!! finally", "concert", "2026-12-02", True),
        ("surgery on the day after tomorrow, scared", "surgery", "2026-12-04", True),
        ("my first day is on mon. kinda nervous", "first day", "2026-12-07", True),
    ],
)  # fmt: skip
def test_an_event_and_its_day(text: str, what: str, day: str, exact: bool) -> None:
    found = coming(text, SAID)
    assert found is not None, text
    assert (found.what, found.day.isoformat(), found.exact) == (what, day, exact)


@pytest.mark.parametrize(
    "text",
    [
        "I'll clean the kitchen tomorrow",  # no event a friend asks about
        "the exam was today, it went fine",  # over
        "my interview went well today",
        "I sat the test last week",
        "the sun is out, lovely",  # "sun" is not Sunday
        "exam on February 30",  # no such day
        "interview at 10:30",  # a time, no day
        "",
    ],
)
def test_no_event_or_no_future_day(text: str) -> None:
    assert coming(text, SAID) is None


def test_tomorrow_is_the_speakers_tomorrow() -> None:
    late_in_tokyo = dt.datetime(2026, 12, 2, 23, 50, tzinfo=ZoneInfo("Asia/Tokyo"))
    found = coming("interview tomorrow", late_in_tokyo)
    assert found is not None and found.day == dt.date(2026, 12, 3)


@given(
    text=st.text(max_size=80),
    words=st.lists(
        st.sampled_from(
            ["exam", "tomorrow", "on", "friday", "sat", "in", "3", "days", "march", "31st",
             "next", "week", "was", "the", "of", "may", "2", "interview", "today"]
        ),
        max_size=8,
    ),
    said=st.datetimes(
        min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2035, 12, 31),
        timezones=st.sampled_from([ZoneInfo("UTC"), ZoneInfo("Asia/Kolkata")]),
    ),
)  # fmt: skip
def test_any_text_gives_nothing_or_a_day_not_in_the_past(
    text: str, words: list[str], said: dt.datetime
) -> None:
    found = coming(text + " " + " ".join(words), said)
    if found is not None:
        assert found.day >= said.date()
        assert found.day <= said.date() + dt.timedelta(days=400)
