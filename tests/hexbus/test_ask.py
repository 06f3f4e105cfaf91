"""One-shot requests from a command (``hexbus.ask``) against a real broker and actor."""

from __future__ import annotations

import asyncio

import pytest

from hexbus import ask as ask_module
from hexbus.ask import AskError, ask
from schemas import ProbeVolatile
from tests.support.harness import FAST_BUS, HexFactory, actor_toml

pytestmark = pytest.mark.process


def test_a_fresh_clients_one_request_is_answered_without_a_resend(
    hex_factory: HexFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh client's first volatile message used to be dropped (the broker did not have its
    subscription yet) and was only answered when sent again 0.5 s later. It now checks its path
    through the broker first: with resends pushed past the timeout, the one request is answered."""
    hx = hex_factory(FAST_BUS + actor_toml("counter", "actors.diag.actor:CounterActor")).start()
    monkeypatch.setattr(ask_module, "RESEND_S", 60.0)
    for _ in range(3):  # three fresh clients, one after another
        answer, _ = asyncio.run(
            ask(hx.endpoints, ProbeVolatile(n=0, note="count?"), ProbeVolatile, key="count")
        )
        assert answer.note == "total=0" and answer.n == 0


@pytest.mark.slow
def test_no_broker_is_one_line_after_the_timeout(hex_factory: HexFactory) -> None:
    hx = hex_factory(FAST_BUS + actor_toml("counter", "actors.diag.actor:CounterActor")).start()
    endpoints = hx.endpoints
    hx.stop()
    with pytest.raises(AskError, match="the broker did not answer within 1s: is Hex running"):
        asyncio.run(
            ask(endpoints, ProbeVolatile(n=0, note="count?"), ProbeVolatile, key="count", timeout=1)
        )


@pytest.mark.slow
def test_an_actors_first_request_of_a_kind_is_answered(
    hex_factory: HexFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An actor subscribes to a kind of answer at its first request of that kind. The
    subscription travels to the responder's PUB on its own, and an answer published before it
    arrived was dropped there: the page's first list of her proposals timed out in CI. The asker
    makes 300 first requests in a row (its subscription made afresh each time): all answered.
    Without the path check, one in four runs lost an answer on a quiet machine, four in six with
    the cores busy."""
    toml = actor_toml("counter", "actors.diag.actor:CounterActor")
    hx = hex_factory(FAST_BUS + toml + actor_toml("asker", "actors.diag.actor:AskerActor")).start()
    monkeypatch.setattr(ask_module, "RESEND_S", 600.0)  # one run of 300, not a second
    answer, _ = asyncio.run(
        ask(
            hx.endpoints,
            ProbeVolatile(n=0, note="ask 300"),
            ProbeVolatile,
            key="asker-go",
            timeout=200,
        )
    )
    assert (answer.n, answer.note) == (300, "")
