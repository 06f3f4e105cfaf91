"""A barge-in that reaches the brain after the words spoken over Hex (the page's echo guard
holds a barge-in until its words show it is not her own voice)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from actors.brain.actor import BrainActor
from hexbus.testing import ActorHarness
from schemas import BargeIn
from tests.actors.brain.test_actor import brain_with, harness, live, message, reply_to, run, until
from tests.support.brain import Script, ScriptedBackend


def test_a_barge_in_that_comes_after_the_newer_message_only_corrects_what_was_said(
    tmp_path: Path,
) -> None:
    """Speech heard back is checked before it barges in (the page's echo guard), so the words
    spoken over Hex can reach the brain before the barge-in does: the newer message has already
    cancelled the story; the late barge-in must not cancel the reply to the newer message, and
    the story is remembered as only what was heard of it."""
    backend = ScriptedBackend(
        [
            Script(["Once", " upon a time.", " There", " was"], hold_after=3),
            Script(["Dogs", " are", " loyal."], hold_after=1),
        ]
    )

    async def scenario() -> ActorHarness[BrainActor]:
        h = harness(tmp_path, brain_with(backend))
        await live(h)
        await h.send(message("tell me a long story"), key="console", event_id="m1")
        await asyncio.wait_for(backend.holding.wait(), 5)
        await h.send(message("stop, tell me about dogs"), key="console", event_id="m2")
        await until(reply_to(h, "m1"), "the story, cancelled")
        await until(lambda: len(backend.streams) == 2, "the second reply under way")
        await h.send(BargeIn(channel="c1", person_id="ana", said="Once upon", reply_to="m1"))
        await asyncio.sleep(0.2)
        await h.stop()
        return h

    h = run(scenario)
    assert reply_to(h, "m2")() is None  # still answering about dogs: never cancelled by it
    turns = [(t.role, t.text, t.cancelled) for t in h.state.conversations["console:c1"].turns]
    assert ("assistant", "Once upon", True) in turns, turns
    assert not any(text.startswith("Once upon a time") for _, text, _ in turns), turns


def test_a_barge_in_on_a_reply_written_in_full_keeps_only_what_was_heard(tmp_path: Path) -> None:
    """The model writes faster than she speaks: the reply is complete (and recorded so) while its
    sentences are still being spoken, and the barge-in comes after."""
    backend = ScriptedBackend([Script(["Once upon a time.", " There was a goblin."])])

    async def scenario() -> ActorHarness[BrainActor]:
        h = harness(tmp_path, brain_with(backend))
        await live(h)
        await h.send(message("tell me a story"), key="console", event_id="m1")
        await until(reply_to(h, "m1"), "the whole story, written")
        await h.send(BargeIn(channel="c1", person_id="ana", said="Once upon", reply_to="m1"))
        await h.stop()
        return h

    h = run(scenario)
    story = reply_to(h, "m1")()
    assert story is not None and story.status == "complete"  # what was published stays
    turns = [(t.role, t.text, t.cancelled) for t in h.state.conversations["console:c1"].turns]
    assert turns[-1] == ("assistant", "Once upon", True), turns
