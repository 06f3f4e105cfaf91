"""The speak-first governor under a controllable clock: whatever happens, in whatever order,
caps are never exceeded, nothing goes in quiet hours, with the switch off or after expiry, and
an unanswered message gets at most one follow-up."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from actors.autonomy.governor import (
    DAY,
    HOUR,
    Gatekeeper,
    Opening,
    Pacing,
    Person,
    parse_quiet,
    quiet_until,
)
from hexbus.config import ConfigError

START = dt.datetime(2026, 3, 27, 12, 0, tzinfo=dt.UTC).timestamp()  # DST changes that weekend
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
KINDS = ["silence", "due", "arrival", "anniversary", "thought", "followup", "checkin"]


def in_quiet(at: float, tz: str, start_h: int, end_h: int) -> bool:
    """The test's own reading of quiet hours, on whole hours."""
    h = dt.datetime.fromtimestamp(at, ZoneInfo(tz)).hour
    return (start_h <= h < end_h) if start_h < end_h else (h >= start_h or h < end_h)


class Month(RuleBasedStateMachine):
    """A person, Hex's candidates and a clock; whatever the governor allows is sent at once."""

    @initialize(
        tz=st.sampled_from(ZONES),
        start_h=st.integers(0, 23),
        end_h=st.integers(0, 23),
        per_hour=st.integers(0, 3),
        per_day=st.integers(0, 6),
        gap_min=st.integers(0, 300),
    )
    def setup(
        self, tz: str, start_h: int, end_h: int, per_hour: int, per_day: int, gap_min: int
    ) -> None:
        self.tz, self.start_h, self.end_h = tz, start_h, end_h
        quiet = "" if start_h == end_h else f"{start_h:02d}:00-{end_h:02d}:00"
        self.limits = Pacing(
            per_hour=per_hour,
            per_day=per_day,
            min_gap_s=gap_min * 60.0,
            after_activity_s=600.0,
            followup_after_s=6 * HOUR,
            backoff_s=DAY,
            quiet=quiet,
            timezone=tz,
        )
        self.governor = Gatekeeper(self.limits)
        self.person = Person()
        self.now = START
        self.switch = True
        self.frozen = False
        self.energy = "awake"
        self.queue: list[Opening] = []
        self.sent: list[tuple[float, Opening]] = []
        self.heard: list[float] = []
        self.n = 0

    @rule(seconds=st.floats(1, 2 * DAY))
    def wait(self, seconds: float) -> None:
        """Time passes; the queue is tried every few minutes on the way, as the actor does."""
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + 300.0)
            self.person.settle(self.now, self.limits)
            self.try_queue()

    @rule(kind=st.sampled_from(KINDS), ttl=st.floats(60, 3 * DAY), priority=st.integers(0, 3))
    def propose(self, kind: str, ttl: float, priority: int) -> None:
        self.n += 1
        self.queue.append(
            Opening(
                id=f"c{self.n}",
                person_id="p",
                kind=kind,  # type: ignore[arg-type]
                reason="a test",
                created=self.now,
                expires=self.now + ttl,
                priority=priority,
            )
        )
        self.try_queue()

    @rule()
    def they_write(self) -> None:
        self.person.heard(self.now)
        self.heard.append(self.now)

    @rule(on=st.booleans())
    def switch_to(self, on: bool) -> None:
        self.switch = on

    @rule(on=st.booleans())
    def kill_switch(self, on: bool) -> None:
        self.frozen = on

    @rule(energy=st.sampled_from(["awake", "sleepy", "asleep"]))
    def energy_to(self, energy: str) -> None:
        self.energy = energy

    @rule(present=st.sampled_from([None, True, False]))
    def presence(self, present: bool | None) -> None:
        self.person.present = present

    @rule(hours=st.floats(0, 30))
    def do_not_disturb(self, hours: float) -> None:
        self.person.dnd_until = self.now + hours * HOUR

    def try_queue(self) -> None:
        for c in sorted(self.queue, key=lambda c: -c.priority):
            verdict = self.governor.check(
                c,
                self.person,
                self.now,
                switch=self.switch,
                energy=self.energy,  # type: ignore[arg-type]
                frozen=self.frozen,
            )
            if verdict.ok:
                self.check_send(c)
                self.person.spoke_first(self.now, followup=c.kind == "followup")
                self.sent.append((self.now, c))
                self.queue.remove(c)
            else:
                assert verdict.reason
                assert verdict.until == 0.0 or verdict.until > self.now
            if self.now >= c.expires and c in self.queue:
                self.queue.remove(c)

    def check_send(self, c: Opening) -> None:
        """Each rule, judged by the test's own arithmetic at the moment of sending."""
        now = self.now
        assert self.switch and not self.frozen and self.energy == "awake"
        assert now < c.expires
        assert self.person.dnd_until <= now
        assert self.person.present is not False or c.kind == "arrival"
        if self.start_h != self.end_h:
            assert not in_quiet(now, self.tz, self.start_h, self.end_h)
        times = [t for t, _ in self.sent] + [now]
        assert sum(1 for t in times if t > now - HOUR) <= self.limits.per_hour
        assert sum(1 for t in times if t > now - DAY) <= self.limits.per_day
        if self.sent:
            assert now - self.sent[-1][0] >= self.limits.min_gap_s
        # Since the last thing they wrote, at most one opener and then one follow-up.
        last_heard = max(self.heard, default=float("-inf"))
        since = [k for t, k in self.sent if t > last_heard] + [c]
        openers = [k for k in since if k.kind != "followup"]
        if c.kind == "followup":
            assert openers, "a follow-up with nothing to follow"
            after = since[since.index(openers[-1]) + 1 :]
            assert sum(1 for k in after if k.kind == "followup") <= 1

    @invariant()
    def nothing_expired_waits(self) -> None:
        assert all(c.expires > self.now or c not in self.queue for c in self.queue)


TestMonth = Month.TestCase
TestMonth.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_a_quiet_person_gets_a_message_then_one_follow_up_then_silence_that_doubles() -> None:
    lim = Pacing(quiet="", followup_after_s=DAY, backoff_s=2 * DAY, after_activity_s=0)
    g, p, now = Gatekeeper(lim), Person(), START

    def offer(kind: str) -> bool:
        c = Opening(
            id=kind,
            person_id="p",
            kind=kind,  # type: ignore[arg-type]
            reason="r",
            created=now,
            expires=now + 10 * DAY,
        )
        verdict = g.check(c, p, now, switch=True)
        if verdict.ok:
            p.spoke_first(now, followup=kind == "followup")
        return verdict.ok

    assert offer("silence")
    assert not offer("thought")  # awaiting a reply
    assert not offer("followup")  # too soon
    now += DAY
    p.settle(now, lim)
    assert offer("followup")
    now += 5 * HOUR
    p.settle(now, lim)
    assert not offer("followup")  # only one
    now += DAY
    p.settle(now, lim)  # the round ended unanswered: two days off
    assert p.rounds == 1 and p.backoff_until == pytest.approx(now + 2 * DAY)
    assert not offer("thought")
    now += 2 * DAY + 1
    assert offer("thought")
    now += 2 * DAY + 1
    p.settle(now, lim)  # unanswered without a follow-up: the next pause is twice as long
    assert p.rounds == 2 and p.backoff_until == pytest.approx(now + 4 * DAY)
    p.heard(now + 60)  # they answer: everything is forgiven
    assert p.rounds == 0 and p.backoff_until == 0 and p.awaiting_since == 0


def test_refusals_say_why_and_until_when_in_the_persons_time() -> None:
    lim = Pacing(quiet="22:00-08:00", timezone="Europe/Berlin")
    at = dt.datetime(2026, 12, 4, 23, 30, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()
    c = Opening(id="x", person_id="p", kind="due", reason="r", created=at, expires=at + DAY)
    verdict = Gatekeeper(lim).check(c, Person(), at, switch=True)
    assert not verdict.ok and verdict.reason == "quiet hours until 08:00"
    ends = dt.datetime(2026, 12, 5, 8, 0, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()
    assert verdict.until == ends
    tokyo = Person(timezone="Asia/Tokyo")  # 07:30 there: still quiet, until 08:00 Tokyo
    verdict = Gatekeeper(lim).check(c, tokyo, at, switch=True)
    assert verdict.reason == "quiet hours until 08:00" and verdict.until == at + 1800
    assert Gatekeeper(lim).check(c, Person(quiet=""), at, switch=True).ok


def test_a_person_who_said_they_are_overwhelmed_is_left_alone_for_a_while() -> None:
    lim = Pacing(quiet="", mood_hold_s=6 * HOUR)
    p = Person(mood="a bit overwhelmed", mood_at=START)
    c = Opening(
        id="x", person_id="p", kind="thought", reason="r", created=START, expires=START + 2 * DAY
    )
    verdict = Gatekeeper(lim).check(c, p, START + HOUR, switch=True)
    assert not verdict.ok and "overwhelmed" in verdict.reason and verdict.until == START + 6 * HOUR
    assert Gatekeeper(lim).check(c, p, START + 6 * HOUR, switch=True).ok
    assert Gatekeeper(lim).check(c, Person(mood="happy", mood_at=START), START + 60, switch=True).ok


@given(
    tz=st.sampled_from(ZONES),
    start=st.integers(0, 23),
    end=st.integers(0, 23),
    at=st.floats(START, START + 400 * DAY),
)
def test_quiet_until_agrees_with_the_local_clock(tz: str, start: int, end: int, at: float) -> None:
    ends = quiet_until(at, f"{start:02d}:00-{end:02d}:00", tz)
    if start == end:
        assert ends is None
        return
    assert (ends is not None) == in_quiet(at, tz, start, end)
    if ends is not None:
        assert at < ends <= at + DAY + HOUR
        assert not in_quiet(ends, tz, start, end)


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ({"quiet": "10pm-8am"}, "HH:MM-HH:MM"),
        ({"quiet": "25:00-08:00"}, "HH:MM-HH:MM"),
        ({"timezone": "Mars/Olympus"}, "IANA"),
        ({"per_day": -1}, "0 or more"),
    ],
)
def test_bad_settings_are_one_line_naming_the_fix(setting: dict[str, object], words: str) -> None:
    import msgspec

    with pytest.raises((ConfigError, msgspec.ValidationError), match=words):
        msgspec.convert(setting, Pacing)
    assert parse_quiet("") is None
