"""Presence and mood hysteresis: what a noisy stream of analyses adds up to."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.perception.governor import Governor
from actors.perception.presence import Change, Presence
from actors.perception.words import duration, moment, picture
from schemas import EMOTIONS

HAPPY = tuple(0.9 if e == "happy" else 0.1 / 6 for e in EMOTIONS)
SAD = tuple(0.9 if e == "sad" else 0.1 / 6 for e in EMOTIONS)


def feed(
    p: Presence,
    start: float,
    seconds: float,
    faces: int,
    hz: float = 5.0,
    mood: tuple[float, ...] = (),
) -> list[Change]:
    changes = []
    n = int(seconds * hz)
    for i in range(n):
        changes += p.see(start + i / hz, faces, [mood] * faces if mood else [])
    return changes


def test_a_person_arrives_after_arrive_s_and_leaves_after_leave_s_and_is_welcomed_back() -> None:
    p = Presence(arrive_s=1.0, leave_s=8.0)
    assert feed(p, 0.0, 0.8, 1) == []  # not yet: a glimpse is not an arrival
    (arrived,) = feed(p, 0.8, 1.0, 1)
    assert arrived.change == "arrived" and arrived.away_s == 0.0 and p.present
    assert feed(p, 2.0, 7.0, 0) == []  # a short absence (a sneeze, a look away) is not leaving
    assert p.present
    (left,) = feed(p, 9.0, 10.0, 0)
    assert left.change == "left" and not p.present
    later = 9.0 + 2 * 3600
    changes = feed(p, later, 2.0, 1)
    assert [c.change for c in changes] == ["arrived"]
    assert abs(changes[0].away_s - (later + 1.0 - 1.6)) < 0.01  # since they were last seen


def test_faces_that_flicker_never_make_a_person_arrive_and_leave_over_and_over() -> None:
    for hz in (4.9, 5.0, 1.25, 0.5):  # the configured rate, and rates the governor lowers to
        p = Presence(arrive_s=1.0, leave_s=8.0, gap_s=0.6)
        # A face found in one frame of three (a poor detector in a dim room) for five minutes.
        changes = []
        for i in range(int(300 * hz)):
            changes += p.see(i / hz, 1 if i % 3 == 0 else 0, [])
        assert [c.change for c in changes] == ["arrived"], hz


@settings(max_examples=300, deadline=None)
@given(
    st.floats(0.05, 2.0),  # the analysis interval (the governor may lower the rate a lot)
    st.lists(st.integers(0, 2), min_size=1, max_size=200),  # faces in each reading
)
def test_any_stream_of_sightings_alternates_arrived_and_left_and_respects_the_delays(
    dt: float, counts: list[int]
) -> None:
    arrive_s, leave_s = 1.0, 4.0
    p = Presence(arrive_s=arrive_s, leave_s=leave_s, gap_s=0.6)
    gap_s = max(0.6, 3.5 * dt)  # two misses in a row are tolerated at any rate
    at = 0.0
    readings: list[tuple[float, int]] = []
    seen: list[tuple[str, float]] = []
    for faces in counts:
        at += dt
        readings.append((at, faces))
        seen += [(c.change, c.at) for c in p.see(at, faces, []) if c.change != "emotion"]
    kinds = [k for k, _ in seen]
    assert kinds == ["arrived", "left"] * (len(kinds) // 2) + ["arrived"] * (len(kinds) % 2)
    assert p.present == (len(kinds) % 2 == 1)
    sighted = [t for t, faces in readings if faces]
    for kind, t in seen:
        if kind == "arrived":
            # Faces in the reading that completed it, and a run of them reaching arrive_s back
            # with no gap longer than gap_s.
            before = [s for s in sighted if s <= t - arrive_s + 1e-9]
            assert before and t in sighted
            run = [s for s in sighted if before[-1] <= s <= t]
            gaps = [b - a for a, b in itertools.pairwise(run)]
            assert all(g <= gap_s + 1e-9 for g in gaps)
        else:  # left: no face for leave_s before it
            assert not [s for s in sighted if t - leave_s < s <= t]


def test_a_mood_counts_once_it_has_led_for_the_hold_time_and_a_blink_of_another_does_not() -> None:
    p = Presence(arrive_s=0.5, leave_s=8.0, hold_s=3.0, half_life_s=1.0)
    changes = feed(p, 0.0, 5.0, 1, mood=HAPPY)
    assert [c.change for c in changes] == ["arrived", "emotion"] and p.emotion == "happy"
    assert feed(p, 5.0, 0.6, 1, mood=SAD) == []  # a frown for half a second
    assert feed(p, 5.6, 3.0, 1, mood=HAPPY) == [] and p.emotion == "happy"
    sad = feed(p, 8.6, 8.0, 1, mood=SAD)
    assert [(c.change, c.emotion, c.previous) for c in sad] == [("emotion", "sad", "happy")]
    assert 0.5 < p.confidence() <= 1.0


def test_the_governor_halves_the_rate_while_busy_and_climbs_back() -> None:
    g = Governor(5.0, min_hz=0.5, high=85, low=60)
    assert g.update(50) == 5.0 and g.reason == ""
    assert g.update(95) == 2.5 and g.reason == "cpu 95%"
    for _ in range(10):
        g.update(99)
    assert g.current == 0.5
    for _ in range(10):
        g.update(30)
    assert g.current == 5.0 and g.reason == ""


def test_pictures_and_moments_read_like_a_person_would_say_them() -> None:
    assert duration(7200) == "2 hours" and duration(20) == "a few seconds"
    assert duration(3 * 86400 + 100) == "3 days" and duration(61) == "1 minute"
    assert moment("arrived", away_s=7200) == "they just came back after 2 hours"
    assert moment("emotion", emotion="sad", previous="happy") == (
        "they now look sad (they looked happy before)"
    )
    text = picture(
        kind="camera", people=1, present=True, attention=True, emotion="happy", scene="still"
    )
    assert text == "one person, looking at the screen; they look happy"
    assert picture(
        kind="camera", people=0, present=False, attention=False, emotion="", scene="dark"
    ) == ("the camera sees only darkness")
