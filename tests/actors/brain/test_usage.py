"""What the brain tells the page about usage: each backend's state (awake, sleepy after a rate
limit, asleep until its reset, down after another failure, idle before its first use) and the
tokens per day, backend and person."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from actors.brain.backends import BackendError, BackendOverloaded, ChatTurn, Params
from actors.brain.backends._openai_wire import rate_limits
from actors.brain.backends.fallback import SLEEPY_S, FallbackChain
from hexbus.testing import ActorHarness
from schemas import BrainUsage, BrainUsageReport
from tests.actors.brain.test_actor import (
    brain_with,
    harness,
    live,
    message,
    of_type,
    reply_to,
    run,
    until,
)
from tests.support.brain import (
    MODELS_OK,
    ManualClock,
    Script,
    ScriptedBackend,
    ScriptedServer,
    sse,
)

PARAMS = Params(max_tokens=8, temperature=0.0, seed=0)


def test_backend_states_follow_rate_limits_and_failures() -> None:
    clock = ManualClock()
    limited = ScriptedBackend(
        [Script([], error=BackendOverloaded("429 rate limited", retry_after_s=60)), Script(["ok"])],
        name="cloud",
        clock=clock,
    )
    local = ScriptedBackend([Script(["fine"])], name="local", clock=clock)
    spare = ScriptedBackend([Script(["spare"])], name="spare", clock=clock)
    chain = FallbackChain([limited, local, spare], cooldown_s=30, clock=clock)

    async def ask() -> str:
        stream = chain.stream([ChatTurn("user", "hi")], PARAMS)
        return "".join([p async for p in stream])

    def states(wall: float = 1000.0) -> dict[str, tuple[str, float]]:
        return {s.name: (s.state, s.until) for s in chain.states(wall=lambda: wall)}

    asyncio.run(chain.start())
    assert asyncio.run(ask()) == "fine"  # the cloud was rate limited: the local one answered
    assert states() == {
        "cloud": ("asleep", 1060.0),
        "local": ("awake", 0.0),
        "spare": ("awake", 0.0),
    }
    (cloud,) = [s for s in chain.states() if s.name == "cloud"]
    assert cloud.failures == 1 and "429" in cloud.error
    clock.now += 61  # the reset it named passed: awake again
    assert states()["cloud"] == ("awake", 0.0)
    assert asyncio.run(ask()) == "ok"
    # A limit that named no reset: sleepy for a while after its cooldown, or until it answers.
    chain._failed(limited, BackendOverloaded("out of quota"))
    clock.now += 31
    assert states()["cloud"] == ("sleepy", 0.0)
    clock.now += SLEEPY_S
    assert states()["cloud"] == ("awake", 0.0)
    chain._failed(limited, BackendOverloaded("out of quota"))
    chain._succeeded(limited)
    assert states()["cloud"] == ("awake", 0.0)
    chain._failed(local, BackendError("the model file is gone"))
    assert states()["local"] == ("down", 1030.0)


def test_a_new_backend_is_idle_until_its_first_use() -> None:
    chain = FallbackChain([ScriptedBackend([Script(["x"])], name="a")], cooldown_s=30)
    assert [s.state for s in chain.states()] == ["idle"]


def test_the_usage_report_has_each_days_tokens_per_backend_and_person(tmp_path: Path) -> None:
    async def scenario() -> ActorHarness[Any]:
        h = harness(tmp_path, brain_with(ScriptedBackend([Script(["Hi ", "there."])])))
        await live(h)
        await h.send(message("hello"), event_id="m1")
        await until(reply_to(h, "m1"), "the reply")
        await h.send(BrainUsage(days=7), correlation="u1", source="web")
        await until(lambda: of_type(h, BrainUsageReport), "the report")
        await h.stop()
        return h

    h = run(scenario)
    (report,) = of_type(h, BrainUsageReport)
    (line,) = report.lines
    assert line.backend == "scripted" and line.person == "ana" and line.replies == 1
    assert line.completion_tokens > 0 and len(line.day) == 10
    (backend,) = report.backends
    assert backend.name == "scripted" and backend.state == "awake" and backend.requests == 1


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("6m0s", 360.0),
        ("1.5s", 1.5),
        ("20ms", 0.02),
        ("1h2m3s", 3723.0),
        ("17", 17.0),
        ("soon", None),
        ("5x", None),
    ],
)
def test_reset_durations_read_as_providers_write_them(value: str, seconds: float | None) -> None:
    limits = rate_limits({"x-ratelimit-reset-requests": value}, now=0.0)
    assert (limits.reset_s if limits is not None else None) == seconds


def test_a_provider_saying_its_limit_is_nearly_spent_makes_the_backend_sleepy() -> None:
    near = {
        "x-ratelimit-limit-requests": "1000",
        "x-ratelimit-remaining-requests": "40",
        "x-ratelimit-limit-tokens": "100000",
        "x-ratelimit-remaining-tokens": "81000",
        "x-ratelimit-reset-requests": "2m0s",
        "x-ratelimit-reset-tokens": "4s",
    }

    async def scenario() -> tuple[Any, FallbackChain, list[Any]]:
        async with ScriptedServer(MODELS_OK, sse(["Hi"], headers=near)) as server:
            backend = server.backend("cloud")
            chain = FallbackChain([backend], cooldown_s=30)
            await chain.start()
            stream = chain.stream([ChatTurn("user", "hi")], PARAMS)
            assert "".join([p async for p in stream]) == "Hi"
            await chain.close()
            return backend.limits, chain, chain.states()

    limits, chain, (state,) = asyncio.run(scenario())
    assert limits.remaining_requests == 40 and limits.reset_s == 120.0
    assert limits.share_left() == 0.04
    assert state.state == "sleepy" and abs(state.until - (limits.at + 120.0)) < 0.01
    (later,) = chain.states(wall=lambda: limits.at + 121.0)  # the reset passed: awake again
    assert later.state == "awake" and later.until == 0.0


def test_a_paid_backend_is_used_only_while_the_owner_allows_it() -> None:
    from actors.brain.backends.openai_compat import OpenAICompatBackend, OpenAIConfig
    from actors.brain.energy import switched_off
    from hexbus.capabilities import Capabilities

    def openai(url: str, **kw: Any) -> OpenAICompatBackend:
        return OpenAICompatBackend(OpenAIConfig(base_url=url, model="m", **kw), name="x")

    assert openai("https://api.openai.com/v1").paid
    assert not openai("http://127.0.0.1:8080/v1").paid and not openai("http://localhost/v1").paid
    assert openai("http://127.0.0.1:8080/v1", paid=True).paid

    cloud = ScriptedBackend([Script(["from the cloud"])], name="cloud")
    cloud.paid = True  # type: ignore[attr-defined]
    local = ScriptedBackend([Script(["from here"])], name="local")
    chain = FallbackChain([cloud, local])
    caps = Capabilities()
    chain.refuses = lambda backend: switched_off(backend, caps)

    async def ask() -> str:
        stream = chain.stream([ChatTurn("user", "hi")], PARAMS)
        return "".join([p async for p in stream])

    asyncio.run(chain.start())
    assert asyncio.run(ask()) == "from the cloud"  # paid_backend is on by default
    # One person's own "off" is not the owner's: the backend is everyone's.
    caps.set("paid_backend", False, by="discord:1", owner=False, person_id="discord:1")
    assert asyncio.run(ask()) == "from the cloud"
    caps.set("paid_backend", False, by="owner", owner=True)
    assert asyncio.run(ask()) == "from here"
    assert {s.name: s.state for s in chain.states()} == {"cloud": "off", "local": "awake"}
    (off,) = [s for s in chain.states() if s.name == "cloud"]
    assert "paid_backend is switched off" in off.error
    chain.backends = [cloud]
    with pytest.raises(BackendError, match="no LLM backend may be used: cloud: it costs money"):
        asyncio.run(ask())
