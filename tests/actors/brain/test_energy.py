"""Her energy from the backends' limits and her own token budgets: awake, sleepy, asleep, and
what each does to a reply."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.brain.backends import ChatTurn
from actors.brain.config import UsageRow
from actors.brain.energy import (
    SLEEPY_LINE,
    EnergyConfig,
    Meter,
    Reading,
    describe,
    from_backends,
    from_budget,
    worst,
)
from hexbus.config import ConfigError
from schemas import BackendState, BrainEnergy, ChatMessage

NOW = dt.datetime(2026, 12, 4, 15, 0).timestamp()
TODAY = time.strftime("%Y-%m-%d", time.localtime(NOW))
MIDNIGHT = dt.datetime(2026, 12, 5, 0, 0).timestamp()


def backend(name: str, state: str, until: float = 0.0) -> BackendState:
    return BackendState(name=name, state=state, until=until)  # type: ignore[arg-type]


def meter(
    usage: dict[str, UsageRow], states: list[BackendState] | None = None, **config: object
) -> Meter:
    return Meter(
        EnergyConfig(**config),  # type: ignore[arg-type]
        lambda: usage,
        lambda: states or [backend("local", "awake")],
        BrainEnergy(state="awake"),
        clock=lambda: NOW,
    )


def row(tokens: int) -> UsageRow:
    return UsageRow(prompt_tokens=tokens // 2, completion_tokens=tokens - tokens // 2, replies=1)


def test_the_backend_the_next_reply_goes_to_sets_her_state() -> None:
    assert from_backends([backend("cloud", "awake"), backend("local", "asleep")]) == Reading()
    assert from_backends([backend("cloud", "sleepy", NOW + 60)]).state == "sleepy"
    # A backend that is down is a fault, not tiredness: the next one serves.
    assert from_backends([backend("cloud", "down"), backend("local", "idle")]) == Reading()
    # Every backend that is up is rate-limited: asleep until the first wakes.
    asleep = from_backends(
        [
            backend("cloud", "asleep", NOW + 90),
            backend("x", "down"),
            backend("y", "asleep", NOW + 30),
        ]
    )
    assert asleep.state == "asleep" and asleep.until == NOW + 30 and "cloud, y" in asleep.why
    # The first is limited, the second is not: she answers with the second, awake.
    assert (
        from_backends([backend("cloud", "asleep", NOW + 90), backend("local", "awake")]).state
        == "awake"
    )


@given(
    spent=st.integers(0, 20_000),
    budget=st.integers(0, 10_000),
    share=st.floats(0.01, 0.99),
)
def test_a_budget_makes_her_sleepy_near_its_end_and_asleep_past_it_until_midnight(
    spent: int, budget: int, share: float
) -> None:
    r = from_budget(spent, budget, share, MIDNIGHT, "her")
    if not budget:
        assert r == Reading()
    elif spent >= budget:
        assert r.state == "asleep" and r.until == MIDNIGHT
    elif budget - spent <= share * budget:
        assert r.state == "sleepy" and r.until == MIDNIGHT
    else:
        assert r.state == "awake"


def test_the_worst_reading_wins() -> None:
    sleepy, asleep = Reading("sleepy", 5.0, "a"), Reading("asleep", 9.0, "b")
    assert worst(Reading(), sleepy, asleep) == asleep and worst(Reading(), sleepy) == sleepy


def test_her_day_and_each_persons_day_count_todays_tokens_only() -> None:
    usage = {
        f"{TODAY}|local|ana": row(900),
        f"{TODAY}|cloud|bo": row(50),
        "2026-11-30|local|ana": row(10_000),  # another day
    }
    m = meter(usage, tokens_per_day=1000, tokens_per_person_day=1000)
    assert m.spent(NOW) == (950, {"ana": 900, "bo": 50})
    assert m.reading().state == "sleepy"  # 50 of 1000 left
    assert m.reading("ana").state == "sleepy" and m.reading("bo").state == "sleepy"
    usage[f"{TODAY}|local|ana"] = row(1000)
    asleep = m.reading("ana")
    assert asleep.state == "asleep" and asleep.until == MIDNIGHT
    m = meter(usage, tokens_per_person_day=1000)  # only people's budgets
    assert m.reading("ana").state == "asleep" and m.reading("bo").state == "awake"
    event = m.changed()
    assert event is not None and event.state == "awake" and event.people == {"ana": "asleep"}
    assert m.changed() is None  # nothing new to publish


def test_sleepy_replies_are_shorter_and_told_once_per_spell() -> None:
    m = meter({})
    turns = [ChatTurn("system", "You are Hex."), ChatTurn("user", "hi")]
    assert m.shape(turns, 200, Reading()) == (turns, 200)
    shaped, cap = m.shape(turns, 200, Reading("sleepy"))
    assert cap == 100 and shaped[0].content.endswith(SLEEPY_LINE) and shaped[1] == turns[1]
    turns = [ChatTurn("system", "You are Hex."), ChatTurn("user", "hi"), ChatTurn("system", "Now")]
    shaped, _ = m.shape([*turns, ChatTurn("user", "yo")], 200, Reading("sleepy"))
    assert shaped[:2] == turns[:2] and shaped[2].content == f"Now\n\n{SLEEPY_LINE}"
    message = ChatMessage(
        platform="web", person_id="ana", display_name="Ana", channel="c1", text="hi"
    )
    told = m.notice("web:c1", message, Reading("sleepy"))
    assert told is not None and told.kind == "sleepy" and told.channel == "c1"
    assert m.notice("web:c1", message, Reading("sleepy")) is None
    assert m.notice("web:c2", message, Reading("sleepy")) is not None


def test_asleep_she_says_when_she_wakes_and_status_says_why() -> None:
    m = meter({}, [backend("cloud", "asleep", NOW + 3600)])
    reading = m.reading()
    outcome = m.asleep(reading)
    assert outcome.status == "failed" and "awake again at 16:00" in outcome.text
    event = m.changed()
    assert event is not None and describe(event).startswith("asleep until 16:00: cloud")


def test_bad_energy_settings_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="sleepy_share"):
        EnergyConfig(sleepy_share=1.5)
    with pytest.raises(ConfigError, match="budgets"):
        EnergyConfig(tokens_per_day=-1)


def test_a_backends_own_budget_puts_it_to_sleep_until_midnight_and_the_next_one_answers() -> None:
    from hexbus.capabilities import Capabilities
    from tests.support.brain import ScriptedBackend

    usage = {f"{TODAY}|cloud|ana": row(5000), f"{TODAY}|local|ana": row(100)}
    states = [backend("cloud", "awake"), backend("local", "awake")]
    m = meter(usage, states, backend_tokens_per_day={"cloud": 5000, "local": 1000})
    cloud, local = m.states()
    assert (cloud.state, cloud.until, local.state) == ("asleep", MIDNIGHT, "awake")
    assert "5000 tokens for today are spent" in cloud.error
    assert m.reading().state == "awake"  # the local one answers
    caps = Capabilities()
    assert "5000 tokens" in m.refuses(ScriptedBackend([], name="cloud"), caps)
    assert m.refuses(ScriptedBackend([], name="local"), caps) == ""
    usage[f"{TODAY}|local|ana"] = row(900)  # 10% of its budget left: sleepy
    assert m.reading().state == "sleepy"
    usage[f"{TODAY}|local|ana"] = row(1000)
    asleep = m.reading()
    assert asleep.state == "asleep" and asleep.until == MIDNIGHT
