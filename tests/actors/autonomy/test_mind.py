"""How much someone is on Hex's mind: any sequence of readings and waits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.autonomy.triggers import Mind, Triggers

T = Triggers()


def approx(x: float) -> object:
    return pytest.approx(x, rel=1e-9, abs=1e-12)


READINGS = st.lists(
    st.tuples(
        st.sampled_from(["worried", "sad", "happy", "amused", "excited", "neutral", "annoyed"]),
        st.floats(0, 5 * 86400),
    ),
    max_size=30,
)


@given(READINGS)
def test_worry_weighs_good_news_eases_and_time_only_fades(
    readings: list[tuple[str, float]],
) -> None:
    mind, now = Mind(), 0.0
    for emotion, wait in readings:
        now += wait
        before = mind.now(now, T)
        mind.read(emotion, now, T)
        after = mind.now(now, T)
        assert after >= 0.0
        if emotion in T.thought_emotions:
            assert after == approx(before + 1.0)
        elif emotion in T.easing_emotions:
            assert after == approx(max(0.0, before - 0.5))
        else:
            assert after == before
        # Left alone, it only fades: halved every half-life.
        later = mind.now(now + T.thought_half_life_s, T)
        assert later == approx(after / 2)
