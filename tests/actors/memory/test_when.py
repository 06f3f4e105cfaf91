"""Time words in a question as date ranges, relative to the conversation's moment."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.memory.when import NUMBERS, spans

moments = st.datetimes(min_value=datetime(1990, 3, 1), max_value=datetime(2090, 12, 31))
month_names = st.sampled_from([m for m in calendar.month_name if m])


def one(text: str, now: datetime) -> tuple[datetime, datetime]:
    (span,) = spans(text, now)
    return span.start, span.end


def test_in_may_in_a_june_2023_conversation_is_may_2023() -> None:
    assert one("When did Ana start the pottery class in May?", datetime(2023, 6, 14, 20)) == (
        datetime(2023, 5, 1),
        datetime(2023, 6, 1),
    )
    # ... and asked in March 2023, it is the May before
    assert one("what did we do in May", datetime(2023, 3, 2)) == (
        datetime(2022, 5, 1),
        datetime(2022, 6, 1),
    )


@given(moments, month_names)
def test_a_month_is_the_latest_one_begun_by_then(now: datetime, name: str) -> None:
    start, end = one(f"we talked about it in {name}", now)
    assert start.day == 1 and calendar.month_name[start.month] == name
    assert end == (start + timedelta(days=32)).replace(day=1)  # one whole month
    assert start <= now and now - start < timedelta(days=366)


@given(moments, st.integers(1, 400))
def test_n_days_ago_is_that_one_day(now: datetime, n: int) -> None:
    start, end = one(f"{n} days ago", now)
    assert end - start == timedelta(days=1) and start.time() == datetime.min.time()
    assert start <= now - timedelta(days=n) < end


@given(moments, st.sampled_from(sorted(NUMBERS)), st.sampled_from(["week", "month", "year"]))
def test_ago_in_words_lies_in_the_past_around_its_distance(
    now: datetime, word: str, unit: str
) -> None:
    n = NUMBERS[word]
    start, end = one(f"{word} {unit}{'s' if n > 1 else ''} ago", now)
    back = {"week": 7.0 * n, "month": 30.44 * n, "year": 365.25 * n}
    width = {"week": 7, "month": 31, "year": 366}
    assert start < end <= start + timedelta(days=width[unit])
    then = now - timedelta(days=back[unit])
    assert start - timedelta(days=3) <= then < end + timedelta(days=3)  # months are 28-31 days


@given(moments)
def test_last_week_is_the_monday_to_sunday_before_this_one(now: datetime) -> None:
    start, end = one("last week", now)
    assert start.weekday() == 0 and end - start == timedelta(weeks=1)
    assert end <= now and now - end < timedelta(weeks=1)
    this_start, _ = one("this week", now)
    assert this_start == end


@given(moments, st.sampled_from(["spring", "summer", "autumn", "fall", "winter"]))
def test_last_season_is_three_months_and_over_before_now(now: datetime, season: str) -> None:
    start, end = one(f"last {season}", now)
    assert start.day == 1 and (end.year - start.year) * 12 + end.month - start.month == 3
    assert end <= now and now - end < timedelta(days=366)


@given(
    moments,
    st.sampled_from(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]),
)
def test_on_a_weekday_is_the_latest_such_day_before_today(now: datetime, day: str) -> None:
    start, end = one(f"on {day}", now)
    assert calendar.day_name[start.weekday()] == day and end - start == timedelta(days=1)
    assert end <= now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=0)
    assert now - start <= timedelta(days=8)


@given(
    st.lists(
        st.sampled_from(
            [
                "I",
                "really",
                "love",
                "pottery",
                "class",
                "with",
                "Ana",
                "and",
                "Tomás",
                "the",
                "lake",
                "may",
                "fall",
                "march",
                "asleep",
                "we",
                "should",
                "go",
                "hiking",
                "soon",
                "night",
                "ago",
            ]
        ),
        max_size=12,
    ),
    moments,
)
def test_words_that_are_not_times_give_no_range(words: list[str], now: datetime) -> None:
    text = " ".join(words)
    # Lower-case "may", "fall" and "march" are a verb, a verb and a walk here
    assert spans(text, now) == [], text


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("on March 3rd", datetime(2023, 3, 3), datetime(2023, 3, 4)),
        ("the 5th of July 2021", datetime(2021, 7, 5), datetime(2021, 7, 6)),
        ("on December 24", datetime(2022, 12, 24), datetime(2022, 12, 25)),  # not yet this year
        ("last weekend", datetime(2023, 6, 10), datetime(2023, 6, 12)),
        ("back in 2022", datetime(2022, 1, 1), datetime(2023, 1, 1)),
        ("last May", datetime(2023, 5, 1), datetime(2023, 6, 1)),
        ("in May 2021", datetime(2021, 5, 1), datetime(2021, 6, 1)),
        ("since April", datetime(2023, 4, 1), datetime(2023, 6, 15)),
        ("last summer", datetime(2022, 6, 1), datetime(2022, 9, 1)),  # this one is not over
        ("in the winter", datetime(2022, 12, 1), datetime(2023, 3, 1)),
        ("yesterday", datetime(2023, 6, 13), datetime(2023, 6, 14)),
        ("the day before yesterday", datetime(2023, 6, 12), datetime(2023, 6, 13)),
    ],
)
def test_examples_asked_on_wednesday_14_june_2023(
    text: str, start: datetime, end: datetime
) -> None:
    assert one(text, datetime(2023, 6, 14, 20, 30)) == (start, end)


def test_several_times_in_one_question_come_in_order_and_none_twice() -> None:
    found = spans("3 days ago, or was it yesterday? Not in May 2021.", datetime(2023, 6, 14))
    assert [s.phrase for s in found] == ["3 days ago", "yesterday", "in May 2021"]
    assert spans("May I ask you something?", datetime(2023, 6, 14)) == []
