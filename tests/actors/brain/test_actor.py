"""The brain actor in-process (hexbus.testing) on a scripted backend: dispatch, recovery, retries.

The process tests in test_brain_*.py run the same paths on the real model; these run
in well under a second each and pin down what the bus sees.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from actors.brain.actor import BrainActor
from actors.brain.backends import Backend, BackendError
from actors.brain.config import BrainState, PendingMessage
from actors.brain.reply import STATIC
from hexbus import ActorUnusable
from hexbus.codec import Envelope
from hexbus.testing import ActorHarness
from schemas import (
    BargeIn,
    BrainTask,
    BrainTaskResult,
    ChatMessage,
    Event,
    Metric,
    PersonaChanged,
    PersonaRollback,
    QuietMode,
    Reply,
    ReplyChunk,
    ReplyMeta,
    ReplySentence,
)
from tests.support.brain import Script, ScriptedBackend, say
from tests.support.harness import REPO

T = TypeVar("T")
E = TypeVar("E", bound=Event)

META = (
    '{"emotion": "happy", "remember": true, "importance": 0.7, "tags": ["bees"], '
    '"facts": [], "hobbies": ["beekeeping"]}'
)


def brain_with(*backends: ScriptedBackend) -> type[BrainActor]:
    class BrainOverBackends(BrainActor):
        def backends(self) -> list[Backend]:
            return list(backends)

    return BrainOverBackends


def harness(
    tmp_path: Path,
    actor: type[BrainActor],
    state: BrainState | None = None,
    **config: object,
) -> ActorHarness[BrainActor]:
    persona = tmp_path / "persona.toml"
    if not persona.exists():
        shutil.copy(REPO / "persona.toml", persona)
    settings: dict[str, object] = {"persona": str(persona), "seed": 7, "metadata": False}
    settings.update(config)
    return ActorHarness(actor, settings, state, name="brain", data_dir=tmp_path / "data")


def message(text: str, channel: str = "c1", *, direct: bool = True) -> ChatMessage:
    return ChatMessage(
        platform="console",
        person_id="ana",
        display_name="Ana",
        channel=channel,
        text=text,
        direct=direct,
    )


def of_type(h: ActorHarness[BrainActor], kind: type[E]) -> list[E]:
    return [e for e in h.published if isinstance(e, kind)]


async def until(predicate: Callable[[], T | None], what: str, timeout: float = 5.0) -> T:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)
    return value


def reply_to(h: ActorHarness[BrainActor], event_id: str) -> Callable[[], Reply | None]:
    return lambda: next((r for r in of_type(h, Reply) if r.reply_to == event_id), None)


def run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(scenario())


async def live(h: ActorHarness[BrainActor]) -> None:
    await h.setup()
    h.actor.live = True


def test_a_message_streams_chunks_and_sentences_then_a_reply_metrics_and_metadata(
    tmp_path: Path,
) -> None:
    backend = ScriptedBackend(
        [Script(say("Bees are great! They make honey. And wax"))], answers=[META]
    )

    async def scenario() -> ActorHarness[BrainActor]:
        h = harness(tmp_path, brain_with(backend), metadata=True, chunk_interval_ms=0)
        await live(h)
        await h.send(message("I keep bees, do you like them?"), key="console", event_id="m1")
        await until(lambda: of_type(h, ReplyMeta), "the metadata")
        await h.stop()
        return h

    h = run(scenario)
    reply = reply_to(h, "m1")()
    assert reply is not None and reply.status == "complete" and reply.backend == "scripted"
    assert reply.text == "Bees are great! They make honey. And wax"
    chunks = [c for c in of_type(h, ReplyChunk) if c.reply_to == "m1"]
    assert [c.index for c in chunks] == list(range(len(chunks))) and len(chunks) > 1
    assert "".join(c.text for c in chunks) == reply.text
    sentences = [s.text for s in of_type(h, ReplySentence)]
    assert sentences == ["Bees are great!", "They make honey.", "And wax"]
    names = {m.name for m in of_type(h, Metric)}
    assert {"brain.first_chunk", "brain.tokens.completion", "brain.generation"} <= names
    (meta,) = of_type(h, ReplyMeta)
    assert meta.reply_to == "m1" and meta.emotion == "happy" and meta.remember
    state = h.state
    assert not state.pending and "m1" in state.answered
    assert state.profiles["ana"].hobbies == ["beekeeping"]
    turns = state.conversations["console:c1"].turns
    assert [(t.role, t.text) for t in turns] == [
        ("user", "I keep bees, do you like them?"),
        ("assistant", reply.text),
    ]
    # The prompt carried the persona and the message.
    assert backend.prompts[0][0].role == "system" and backend.prompts[0][-1].content.startswith(
        "I keep bees"
    )


def test_a_newer_message_cancels_the_reply_in_flight(tmp_path: Path) -> None:
    backend = ScriptedBackend(
        [Script(["Once", " upon a time.", " There", " was"], hold_after=3), Script(["Fine!"])]
    )

    async def scenario() -> ActorHarness[BrainActor]:
        h = harness(tmp_path, brain_with(backend))
        await live(h)
        await h.send(message("tell me a long story"), key="console", event_id="m1")
        await asyncio.wait_for(backend.holding.wait(), 5)
        await h.send(message("never mind, how are you?"), key="console", event_id="m2")
        await until(reply_to(h, "m2"), "the second reply")
        await h.stop()
        return h

    h = run(scenario)
    first, second = reply_to(h, "m1")(), reply_to(h, "m2")()
    assert first is not None and first.status == "cancelled"
    assert first.text == "Once upon a time. There"
    assert second is not None and second.status == "complete" and second.text == "Fine!"
    assert not [c for c in of_type(h, ReplyChunk) if c.reply_to == "m1" and c.index > 2]
    assert len(of_type(h, Reply)) == 2


def test_pieces_sent_before_the_reply_spoke_are_answered_once_as_one_turn(
    tmp_path: Path,
) -> None:
    """Lines typed in a row: the reply to the first had streamed a word, no sentence, when the
    second came. It starts over on both; the first piece's own final reply points at it."""
    backend = ScriptedBackend(
        [Script(["So", " anyway."], hold_after=1), Script(["Trip sounds fun!"])]
    )

    async def scenario() -> ActorHarness[BrainActor]:
        h = harness(tmp_path, brain_with(backend))
        await live(h)
        await h.send(message("so I was thinking"), key="console", event_id="m1")
        await asyncio.wait_for(backend.holding.wait(), 5)
        await h.send(message("about the trip next week"), key="console", event_id="m2")
        await until(reply_to(h, "m2"), "the merged reply")
        await until(reply_to(h, "m1"), "the first piece's final reply")
        await h.stop()
        return h

    h = run(scenario)
    piece, whole = reply_to(h, "m1")(), reply_to(h, "m2")()
    assert piece is not None and (piece.status, piece.text, piece.merged_into) == (
        "cancelled",
        "",
        "m2",
    )
    assert whole is not None and whole.status == "complete" and whole.merged == ("m1",)
    assert len(of_type(h, Reply)) == 2
    assert backend.prompts[1][-1].content == "so I was thinking\nabout the trip next week"
    turns = h.state.conversations["console:c1"].turns
    assert [(t.role, t.text) for t in turns] == [
        ("user", "so I was thinking\nabout the trip next week"),
        ("assistant", "Trip sounds fun!"),
    ]
    assert not h.state.pending and {"m1", "m2"} <= set(h.state.answered)


def test_replay_publishes_only_the_final_replies_the_journal_does_not_hold(
    tmp_path: Path,
) -> None:
    """Killed after publishing final replies no model wrote (a refusal, a merged turn's pieces)
    and before its snapshot, the brain replays their messages: it must not publish them again,
    and must publish the ones the journal turns out not to have."""
    backend = ScriptedBackend([Script(["Hi."])])

    def final(reply_to: str, **fields: Any) -> Reply:
        return Reply(
            **({"reply_to": reply_to, "channel": "c1", "text": "", "status": "cancelled"} | fields)
        )

    async def scenario() -> tuple[ActorHarness[BrainActor], list[Event]]:
        h = harness(tmp_path, brain_with(backend))
        await h.setup()  # not live: replaying
        await h.send(message(""), key="console", event_id="empty")
        await h.send(message("so"), key="console", event_id="m1")
        await h.send(message("anyway"), key="console", event_id="m2")
        await h.send(message("so"), key="console", event_id="m3")
        await h.send(message("anyway"), key="console", event_id="m4")
        journal: list[tuple[str, dict[str, Any]]] = [
            ("empty", {}),  # the refusal made it out
            ("m2", {"status": "complete", "merged": ("m1",)}),
            ("m1", {"merged_into": "m2"}),  # and so did the piece's own
            ("m4", {"status": "complete", "merged": ("m3",)}),  # but not m3's
        ]
        for reply_to, fields in journal:
            await h.send(final(reply_to, **fields), key="console")
        replayed = list(h.published)
        h.actor.live = True
        await h.actor.on_live()
        await h.stop()
        return h, replayed

    h, replayed = run(scenario)
    assert not [e for e in replayed if isinstance(e, Reply)]
    owed = [(r.reply_to, r.merged_into) for r in of_type(h, Reply)]
    assert owed == [("m3", "m4")]
    assert not h.state.pending and backend.prompts == []


def test_a_message_that_was_in_flight_when_three_brains_died_is_given_up_on(
    tmp_path: Path,
) -> None:
    """The serving record says m1 was being answered (on "scripted") when the last three
    incarnations died: this one suspends that backend and answers m1 with a failed reply
    instead of trying again; m2 is answered as usual."""
    from actors.brain.actor import STUCK
    from actors.brain.serving import HANG_LIMIT

    backend = ScriptedBackend([Script(["Hello!"])])
    record = tmp_path / "data" / "serving.json"
    record.parent.mkdir(parents=True)
    record.write_text(f'{{"m1": {{"backend": "scripted", "starts": {HANG_LIMIT}}}}}')

    async def scenario() -> ActorHarness[BrainActor]:
        h = harness(tmp_path, brain_with(backend))
        await live(h)
        assert h.actor.backend.healthy() == []  # suspended: it was answering when they died
        await h.send(message("the poison"), key="console", event_id="m1")
        await until(reply_to(h, "m1"), "the given-up reply")
        await h.send(message("hello"), key="console", event_id="m2")
        await until(reply_to(h, "m2"), "the next reply")
        await h.stop()
        return h

    h = run(scenario)
    stuck, fine = reply_to(h, "m1")(), reply_to(h, "m2")()
    assert stuck is not None and (stuck.status, stuck.text) == ("failed", STUCK)
    assert fine is not None and fine.status == "complete"
    assert len(backend.prompts) == 1  # the model was asked for m2 only
    assert record.read_text() == "{}"


def test_a_barge_in_records_what_was_heard_and_quiet_mode_answers_only_direct(
    tmp_path: Path,
) -> None:
    backend = ScriptedBackend([Script(say("Once upon a time there was a goblin."), hold_after=2)])

    async def scenario() -> ActorHarness[BrainActor]:
        h = harness(tmp_path, brain_with(backend))
        await live(h)
        await h.send(message("a story please"), key="console", event_id="m1")
        await asyncio.wait_for(backend.holding.wait(), 5)
        await h.send(BargeIn(channel="c1", person_id="ana", said="Once upon"))
        await until(reply_to(h, "m1"), "the cancelled reply")
        await h.send(QuietMode(scope="channel", target="c1", until=time.time() + 600))
        await h.send(message("talking to myself", direct=False), key="console", event_id="m2")
        await h.stop()
        return h

    h = run(scenario)
    reply = reply_to(h, "m1")()
    assert reply is not None and reply.status == "cancelled" and reply.text == "Once upon"
    quiet = reply_to(h, "m2")()  # heard, not answered: its final reply says nothing
    assert quiet is not None and quiet.status == "cancelled" and not quiet.text
    turns = h.state.conversations["console:c1"].turns
    assert ("assistant", "Once upon", True) in [(t.role, t.text, t.cancelled) for t in turns]
    assert turns[-1].text == "talking to myself" and "m2" in h.state.answered


def test_bad_input_is_answered_in_the_handler_and_a_retry_publishes_the_same_reply(
    tmp_path: Path,
) -> None:
    async def scenario() -> tuple[ActorHarness[BrainActor], list[Envelope]]:
        h = harness(tmp_path, brain_with(ScriptedBackend([Script(["hi"])])))
        await live(h)
        answer = h.bus.on_publish
        attempts: list[Envelope] = []

        async def flaky(envelope: Envelope) -> None:
            if isinstance(envelope.body, Reply):
                attempts.append(envelope)
                if len(attempts) == 1:
                    raise ConnectionError("the outbox went away")
            if answer is not None:
                await answer(envelope)

        h.bus.on_publish = flaky
        await h.send(message("   "), key="console", event_id="m1")
        await h.stop()
        return h, attempts

    h, attempts = run(scenario)
    # The handler raised once and ran again: one reply, published twice under one id.
    assert len(attempts) == 2 and attempts[0].id == attempts[1].id
    body = attempts[1].body
    assert isinstance(body, Reply) and body.status == "failed" and "empty" in body.text
    assert h.state.answered == ["m1"] and not h.state.pending
    assert len(h.errors) == 1  # the failed try was reported


def test_messages_pending_at_a_crash_are_answered_once_live_and_a_replayed_reply_settles_them(
    tmp_path: Path,
) -> None:
    state = BrainState(
        pending={
            "m1": PendingMessage(event_id="m1", offset=1, message=message("hello?")),
            "m2": PendingMessage(event_id="m2", offset=2, message=message("other", "c2")),
        }
    )
    backend = ScriptedBackend([Script(["Hi."])])

    async def scenario() -> ActorHarness[BrainActor]:
        h = harness(tmp_path, brain_with(backend), state=state)
        await h.setup()
        # Replay: our own reply to m2 made it to the journal before the crash.
        await h.send(Reply(reply_to="m2", channel="c2", text="Yo.", platform="console"))
        h.actor.live = True
        await h.actor.on_live()
        await until(reply_to(h, "m1"), "the reply to the pending message")
        await h.stop()
        return h

    h = run(scenario)
    replies = [r.reply_to for r in of_type(h, Reply)]
    assert replies == ["m1"]  # m2's reply was in the journal: it is not answered again
    assert not h.state.pending and {"m1", "m2"} <= set(h.state.answered)


def test_a_failing_backend_gets_a_failed_reply_that_says_so(tmp_path: Path) -> None:
    backend = ScriptedBackend([Script([], error=BackendError("down"))])

    async def scenario() -> ActorHarness[BrainActor]:
        h = harness(tmp_path, brain_with(backend))
        await live(h)
        await h.send(message("hi"), key="console", event_id="m1")
        await until(reply_to(h, "m1"), "the failed reply")
        await h.stop()
        return h

    h = run(scenario)
    reply = reply_to(h, "m1")()
    assert reply is not None and reply.status == "failed" and reply.text == STATIC
    assert [t.role for t in h.state.conversations["console:c1"].turns] == ["user"]


def test_a_brain_task_is_answered_to_its_requester_once(tmp_path: Path) -> None:
    backend = ScriptedBackend([Script(["x"])], answers=['{"contradicts": true}'])

    async def scenario() -> ActorHarness[BrainActor]:
        h = harness(tmp_path, brain_with(backend))
        await live(h)
        task = BrainTask(kind="contradiction", text="Maya lives in Porto", other="in Lisbon")
        await h.send(task, correlation="q1", source="memory")
        await h.send(task, correlation="q1", source="memory")  # asked again before the answer
        await until(lambda: of_type(h, BrainTaskResult), "the task's result")
        await h.stop()
        return h

    h = run(scenario)
    assert of_type(h, BrainTaskResult) == [BrainTaskResult(contradicts=True)]
    assert len(backend.prompts) == 1  # the repeated request was run once
    envelope = next(e for e, _ in h.bus.published if isinstance(e.body, BrainTaskResult))
    assert envelope.correlation == "q1" and envelope.topic.endswith(".memory")


def test_a_persona_rollback_run_twice_records_one_version(tmp_path: Path) -> None:
    async def scenario() -> ActorHarness[BrainActor]:
        h = harness(tmp_path, brain_with(ScriptedBackend([Script(["x"])])))
        await live(h)
        persona = tmp_path / "persona.toml"
        persona.write_text(persona.read_text().replace("chaotic", "CHAOTIC", 1))
        await h.actor.on_reload()
        rollback = PersonaRollback(version=1)
        await h.send(rollback, event_id="r1")
        await h.redeliver(rollback, event_id="r1", offset=h.offset)  # as a retry would
        await h.stop()
        return h

    h = run(scenario)
    changes = [(p.version, p.note) for p in of_type(h, PersonaChanged)]
    assert changes == [
        (1, "persona.toml loaded"),
        (2, "persona.toml changed"),
        (3, "rollback to 1"),
    ]
    assert h.state.persona_version == 3 and h.actor.store.active == 3


def test_budgets_over_the_context_make_the_brain_unusable_in_one_line(tmp_path: Path) -> None:
    h = harness(
        tmp_path,
        BrainActor,
        backends=[{"type": "llamacpp", "n_ctx": 512}],
    )
    with pytest.raises(ActorUnusable) as info:
        run(h.setup)
    assert "n_ctx = 512" in str(info.value) and "\n" not in str(info.value)


def test_a_missing_model_file_makes_the_brain_unusable_naming_the_path(tmp_path: Path) -> None:
    h = harness(
        tmp_path,
        BrainActor,
        backends=[{"type": "llamacpp", "model_path": "/nonexistent/model.gguf"}],
    )
    with pytest.raises(ActorUnusable) as info:
        run(h.setup)
    reason = str(info.value)
    assert "/nonexistent/model.gguf" in reason and "MODELS.md" in reason and "\n" not in reason


def test_older_turns_fold_into_the_summary_and_a_fresh_observation_reaches_the_prompt(
    tmp_path: Path,
) -> None:
    from schemas import Observation

    backend = ScriptedBackend([Script(["Nice."]), Script(["Cool."]), Script(["Ana keeps bees."])])

    async def scenario() -> ActorHarness[BrainActor]:
        h = harness(tmp_path, brain_with(backend), keep_turns=2, summary_batch=2)
        await live(h)
        await h.send(Observation(text="a person waving", at=time.time()))
        await h.send(message("I keep bees."), key="console", event_id="m1")
        await until(reply_to(h, "m1"), "the first reply")
        await h.send(message("They are blue."), key="console", event_id="m2")
        await until(lambda: h.state.conversations["console:c1"].summary, "the summary")
        await h.stop()
        return h

    h = run(scenario)
    conversation = h.state.conversations["console:c1"]
    assert conversation.summary == "Ana keeps bees."
    assert [t.text for t in conversation.turns] == ["They are blue.", "Cool."]
    assert "What you see right now: a person waving" in backend.prompts[0][-2].content
    asked = backend.prompts[2][-1].content  # the summary request: the two oldest turns
    assert "Ana: I keep bees." in asked and "assistant: Nice." in asked
