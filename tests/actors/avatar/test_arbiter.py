"""The arbiter: claims by priority with hold times and a fade back to neutral, looks that go
stale, blinks, and a mouth only lip-sync sets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from actors.avatar.arbiter import NEUTRAL, Arbiter, Blinks, gaze_at


def test_a_reply_emotion_outranks_a_mirrored_one_and_both_fade_back_to_neutral() -> None:
    a = Arbiter()
    a.claim("mirror", "worried", priority=1, hold_s=4.0, now=0.0)
    assert a.expression(1.0) == ("worried", 1.0)
    a.claim("reply", "smug", priority=2, hold_s=8.0, now=2.0, fade_s=1.0)
    assert a.expression(3.0) == ("smug", 1.0)  # the reply's, though the mirror's still holds
    expression, weight = a.expression(9.5)  # the last second of the hold: fading
    assert expression == "smug" and weight == pytest.approx(0.5)
    assert a.expression(10.0) == (NEUTRAL, 0.0)  # held out: back to neutral


def test_a_newer_claim_of_a_source_replaces_its_older_one_and_neutral_withdraws() -> None:
    a = Arbiter()
    a.claim("reply", "happy", priority=2, hold_s=8.0, now=0.0)
    a.claim("reply", "sad", priority=2, hold_s=8.0, now=1.0)
    assert a.expression(2.0)[0] == "sad"
    a.claim("reply", NEUTRAL, priority=2, hold_s=8.0, now=3.0)
    assert a.expression(3.0) == (NEUTRAL, 0.0)


def test_among_equal_priorities_the_latest_claim_shows() -> None:
    a = Arbiter()
    a.claim("arrival", "happy", priority=1, hold_s=3.0, now=0.0)
    a.claim("mirror", "worried", priority=1, hold_s=3.0, now=1.0)
    assert a.expression(1.5)[0] == "worried"


@given(
    st.lists(
        st.tuples(st.sampled_from(["reply", "mirror"]), st.sampled_from(["happy", "excited"])),
        max_size=5,
    ),
    st.floats(0, 1),
    st.floats(0, 100),
)
def test_the_mouth_is_lip_syncs_alone(
    claims: list[tuple[str, str]], mouth: float, now: float
) -> None:
    a = Arbiter()
    for source, expression in claims:
        a.claim(source, expression, priority=2, hold_s=8.0, now=now)
    a.look_at(0.5, 0.5, now)
    assert a.frame(now, mouth=mouth, speaking=True).mouth == mouth  # whatever else is going on


def test_she_looks_at_the_person_while_seen_and_back_to_the_middle_after() -> None:
    a = Arbiter(look_fresh_s=3.0)
    a.look_at(0.8, -0.2, now=10.0)
    seen = a.frame(11.0, 0.0)
    assert (seen.gaze_x, seen.gaze_y) == (0.8, -0.2)
    idle = a.frame(14.0, 0.0)
    assert (idle.gaze_x, idle.gaze_y) == (0.0, 0.0)
    assert abs(seen.yaw - a.frame(11.0, 0.0).yaw) < 1e-9  # the same moment, the same face
    a.look_at(5.0, -5.0, now=20.0)
    assert (a.look.x, a.look.y) == (1.0, -1.0)  # type: ignore[union-attr]  # clamped


def test_blinks_come_every_few_seconds_and_close_the_eyes_briefly() -> None:
    blinks = Blinks(seed=7)
    samples = [(t / 100, blinks.eyes_open(t / 100)) for t in range(0, 6000)]  # a minute at 100 Hz
    closed = [t for t, e in samples if e < 0.5]
    starts = [t for i, (t, e) in enumerate(samples) if e < 0.5 and samples[i - 1][1] >= 0.5]
    assert 8 <= len(starts) <= 35  # every 2 to 6 s, some double
    assert len(closed) / len(samples) < 0.05  # eyes open almost all the time
    assert all(0.0 <= e <= 1.0 for _, e in samples)
    same = Blinks(seed=7)
    assert [same.eyes_open(t) for t, _ in samples] == [e for _, e in samples]


class ArbiterMachine(RuleBasedStateMachine):
    """Any interleaving of claims, looks and frames: the frame always shows the strongest live
    claim (latest among equals), weights stay in 0..1, time only moves forward."""

    def __init__(self) -> None:
        super().__init__()
        self.arbiter = Arbiter()
        self.now = 0.0
        self.claims: dict[str, tuple[str, int, float, float, int]] = {}
        self.made = 0

    @rule(
        source=st.sampled_from(["reply", "mirror", "arrival"]),
        expression=st.sampled_from(["happy", "sad", "smug", NEUTRAL]),
        priority=st.integers(0, 3),
        hold=st.floats(0.0, 10.0),
    )
    def claim(self, source: str, expression: str, priority: int, hold: float) -> None:
        self.arbiter.claim(source, expression, priority=priority, hold_s=hold, now=self.now)
        if expression == NEUTRAL or hold <= 0:
            self.claims.pop(source, None)
        else:
            self.made += 1
            self.claims[source] = (expression, priority, self.now, self.now + hold, self.made)

    @rule(dt=st.floats(0.0, 5.0))
    def wait(self, dt: float) -> None:
        self.now += dt

    @invariant()
    def shows_the_strongest_live_claim(self) -> None:
        frame = self.arbiter.frame(self.now, mouth=0.25)
        live = [
            (p, since, made, e)
            for e, p, since, until, made in self.claims.values()
            if self.now < until
        ]
        assert 0.0 <= frame.weight <= 1.0 and frame.mouth == 0.25
        if not live:
            assert frame.expression == NEUTRAL
        else:
            assert frame.expression == max(live)[3] or frame.weight == 0.0


TestArbiterMachine = ArbiterMachine.TestCase


@given(st.floats(0, 1e6))
def test_idle_motion_stays_small(now: float) -> None:
    frame = Arbiter().frame(now, 0.0, speaking=True)
    assert max(abs(frame.yaw), abs(frame.pitch), abs(frame.roll)) < 6.0


def test_she_looks_to_the_side_of_the_picture_the_person_is_on() -> None:
    assert gaze_at(0.0, 0.4, 0.2, 0.2) == pytest.approx((0.8, 0.0))  # picture's left: her left
    assert gaze_at(0.8, 0.0, 0.2, 0.2) == pytest.approx((-0.8, 0.8))  # right, and high
    assert gaze_at(0.0, 0.4, 0.2, 0.2, mirrored=True) == pytest.approx((-0.8, 0.0))
