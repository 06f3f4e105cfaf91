"""hexbus.testing drives real actor classes without processes."""

from __future__ import annotations

import asyncio

import pytest

from actors.diag.actor import CounterActor, EchoActor
from hexbus import Actor, NoConfig, NoState, RequestTimeout, on
from hexbus.testing import ActorHarness
from schemas import ChatAck, ChatMessage, DeadLetter, Ping, Pong, ProbeDurable, ProbeVolatile


def message(text: str = "hi") -> ChatMessage:
    return ChatMessage(
        platform="console", person_id="p1", display_name="P", channel="c1", text=text
    )


def test_counter_counts_each_durable_event_once_even_when_redelivered() -> None:
    async def scenario() -> None:
        h = ActorHarness(CounterActor)
        await h.send(ProbeDurable(n=5), event_id="a")
        await h.send(ProbeDurable(n=7), event_id="b")
        await h.redeliver(ProbeDurable(n=7), event_id="b", offset=2)  # same offset: skipped
        await h.redeliver(
            ProbeDurable(n=7), event_id="b", offset=3
        )  # same id at a new offset: skipped
        assert (h.state.count, h.state.total) == (2, 12)

    asyncio.run(scenario())


def test_echo_acks_the_message_it_received() -> None:
    async def scenario() -> None:
        h = ActorHarness(EchoActor)
        out = await h.send(message(), event_id="m1")
        assert out == [ChatAck(message_event_id="m1", channel="c1")]

    asyncio.run(scenario())


class Boom(Actor[NoConfig, NoState]):
    subscribes = ("chat.message",)

    @on(ChatMessage)
    async def explode(self, event: ChatMessage) -> None:
        if event.text == "boom":
            raise ValueError("handler failure")
        await self.publish(ChatAck(message_event_id="ok", channel=event.channel))


def test_a_raising_handler_is_reported_retried_dead_lettered_and_the_actor_goes_on() -> None:
    async def scenario() -> None:
        h = ActorHarness(Boom)
        out = await h.send(message("boom"), event_id="bad")
        errors, letters = out[:-1], out[-1:]
        assert len(errors) == 3 and all(e.change == "error" and e.event_id == "bad" for e in errors)  # type: ignore[attr-defined]
        assert "ValueError: handler failure" in errors[0].reason  # type: ignore[attr-defined]
        assert isinstance(letters[0], DeadLetter) and letters[0].event_id == "bad"
        assert h.runtime.applied == 1
        out = await h.send(message("fine"))
        assert out == [ChatAck(message_event_id="ok", channel="c1")]

    asyncio.run(scenario())


class Asker(Actor[NoConfig, NoState]):
    async def ask(self, timeout: float) -> Pong:
        return await self.request(Ping(target="other"), Pong, key="other", timeout=timeout)


def test_request_gets_the_answer_with_the_same_correlation() -> None:
    async def scenario() -> None:
        h = ActorHarness(Asker)
        h.respond(Ping, lambda ping: Pong(actor="other", nonce=41))
        pong = await h.actor.ask(1.0)
        assert pong.nonce == 41

    asyncio.run(scenario())


def test_request_without_answer_raises_a_clear_timeout() -> None:
    async def scenario() -> None:
        h = ActorHarness(Asker)
        with pytest.raises(
            RequestTimeout, match=r"no sys\.pong answered sys\.control\.ping within 0\.05s"
        ):
            await h.actor.ask(0.05)

    asyncio.run(scenario())


def test_ping_control_is_answered_by_the_runtime() -> None:
    async def scenario() -> None:
        h = ActorHarness(CounterActor)
        out = await h.send(Ping(target="test", nonce=3), key="test", correlation="c")
        assert isinstance(out[0], Pong) and out[0].nonce == 3

    asyncio.run(scenario())


def test_counter_answers_count_requests() -> None:
    async def scenario() -> None:
        h = ActorHarness(CounterActor)
        await h.send(ProbeDurable(n=2))
        out = await h.send(ProbeVolatile(n=0, note="count?"), key="count", correlation="q")
        assert out == [ProbeVolatile(n=1, note="total=2")]

    asyncio.run(scenario())
