"""ReplyRun on a scripted backend: chunks, sentences, truncation, fallbacks, cancellation, the outcome."""

from __future__ import annotations

import asyncio

import pytest

from actors.brain.backends import BackendError, BackendOverloaded, ChatTurn, Params
from actors.brain.backends.fallback import FallbackChain, FallbackEvent
from actors.brain.reply import EMPTY, SLEEPY, STATIC, ReplyOutcome, ReplyRun
from tests.support.brain import Script, ScriptedBackend, say

TURNS = [ChatTurn("user", "hi")]
PARAMS = Params(max_tokens=32)


class Sink:
    """Records what a run hands over, in order."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.sentences: list[str] = []
        self.fallbacks: list[FallbackEvent] = []
        self.log: list[tuple[str, int, str]] = []

    def chunk(self, index: int, text: str) -> None:
        assert index == len(self.chunks)
        self.chunks.append(text)
        self.log.append(("chunk", index, text))

    async def sentence(self, index: int, text: str) -> None:
        assert index == len(self.sentences)
        self.sentences.append(text)
        self.log.append(("sentence", index, text))

    async def fallback(self, event: FallbackEvent) -> None:
        self.fallbacks.append(event)


def reply_run(
    *backends: ScriptedBackend, interval: float = 1e9, sink: Sink | None = None
) -> tuple[ReplyRun, Sink]:
    chain = FallbackChain(list(backends), cooldown_s=60)
    sink = sink or Sink()
    run = ReplyRun(
        chain.stream(TURNS, PARAMS), sink, chunk_interval_s=interval, clock=backends[0].clock
    )
    return run, sink


def play(*backends: ScriptedBackend, interval: float = 1e9) -> tuple[ReplyOutcome, ReplyRun, Sink]:
    run, sink = reply_run(*backends, interval=interval)
    outcome = asyncio.run(run.run())
    return outcome, run, sink


def test_the_first_piece_goes_at_once_and_later_ones_wait_for_a_sentence_end() -> None:
    backend = ScriptedBackend([Script(["Hi", " there", "! How", " are", " you", "?"])])
    outcome, run, sink = play(backend)
    assert sink.chunks == ["Hi", " there! How", " are you?"]
    assert "".join(sink.chunks) == outcome.text == "Hi there! How are you?"
    assert run.chunks == 3


def test_pieces_are_coalesced_for_the_chunk_interval() -> None:
    # Floats move the scripted clock: the run sends a chunk once 40 ms have passed since the last.
    backend = ScriptedBackend([Script(["a", " b", 0.02, " c", 0.03, " d", " e", 0.05, " f"])])
    _, _, sink = play(backend, interval=0.04)
    assert sink.chunks == ["a", " b c d", " e f"]


def test_an_interval_of_zero_sends_every_piece() -> None:
    backend = ScriptedBackend([Script(["a", " b", " c"])])
    _, _, sink = play(backend, interval=0.0)
    assert sink.chunks == ["a", " b", " c"]


def test_sentences_go_as_soon_as_each_ends_and_the_last_at_the_end() -> None:
    text = "Hello there! Dr. Smith said 3.5 is fine. And then"
    backend = ScriptedBackend([Script(say(text, 4))])
    outcome, run, sink = play(backend)
    assert sink.sentences == ["Hello there!", "Dr. Smith said 3.5 is fine.", "And then"]
    assert run.sentences == 3 and outcome.text == text
    # Each sentence goes right after the chunk that completed it, never before its words.
    first = sink.log.index(("sentence", 0, "Hello there!"))
    assert "".join(t for kind, _, t in sink.log[:first] if kind == "chunk").startswith(
        "Hello there!"
    )


def test_a_reply_cut_at_its_token_limit_drops_its_unfinished_sentence() -> None:
    backend = ScriptedBackend(
        [Script(say("I like spoons. They are shiny and I also"), truncated=True)]
    )
    outcome, _, sink = play(backend)
    assert sink.sentences == ["I like spoons."]
    assert outcome.status == "complete" and outcome.text == "I like spoons."
    assert "".join(sink.chunks) == "I like spoons. They are shiny and I also"  # what streamed


def test_a_cut_reply_without_one_whole_sentence_is_kept_whole() -> None:
    backend = ScriptedBackend([Script(say("Spoons are the best thing"), truncated=True)])
    outcome, _, sink = play(backend)
    assert outcome.text == "Spoons are the best thing"
    assert sink.sentences == ["Spoons are the best thing"]


def test_the_outcome_names_the_backend_and_carries_its_usage() -> None:
    backend = ScriptedBackend([Script(["  Hi", " there.  "])], name="local")
    outcome, _, _ = play(backend)
    assert outcome.status == "complete" and outcome.text == "Hi there."
    assert outcome.backend == "local" and outcome.fallbacks == 0
    assert outcome.usage.completion_tokens == 2 and outcome.usage.prompt_tokens == 7


def test_a_reply_with_no_words_still_says_something() -> None:
    outcome, _, sink = play(ScriptedBackend([Script([" ", "\n"])]))
    assert outcome.status == "complete" and outcome.text == EMPTY and sink.sentences == []


def test_a_backend_dying_mid_reply_hands_over_and_the_new_reply_starts_over() -> None:
    dying = ScriptedBackend(
        [Script(["Once upon", " a time. The", " goblin"], error=BackendError("boom"))],
        name="first",
    )
    second = ScriptedBackend([Script(say("Hello! I am fine."))], name="second")
    outcome, run, sink = play(dying, second)
    assert outcome.backend == "second" and outcome.fallbacks == 1
    assert outcome.text == "Hello! I am fine."  # the dead backend's words are void
    assert run.restarts == 1
    assert [(e.from_name, e.to_name, e.partial) for e in sink.fallbacks] == [
        ("first", "second", True)
    ]
    # What was spoken stays spoken; the half sentence it left is never spoken.
    assert sink.sentences == ["Once upon a time.", "Hello!", "I am fine."]


@pytest.mark.parametrize(
    ("error", "line"),
    [(BackendError("down"), STATIC), (BackendOverloaded("no quota", retry_after_s=5), SLEEPY)],
)
def test_when_every_backend_fails_the_reply_says_so_in_a_line(
    error: BackendError, line: str
) -> None:
    outcome, _, _ = play(ScriptedBackend([Script([], error=error)]))
    assert outcome == ReplyOutcome(status="failed", text=line)


def test_cancelled_mid_stream_the_chunks_stop_and_the_outcome_is_what_streamed() -> None:
    async def scenario() -> tuple[ReplyOutcome, ReplyOutcome, Sink, ScriptedBackend]:
        backend = ScriptedBackend(
            [Script(["Once", " upon a time.", " There", " was"], hold_after=3)]
        )
        run, sink = reply_run(backend, interval=0.0)
        task = asyncio.get_running_loop().create_task(run.run())
        await asyncio.wait_for(backend.holding.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return run.cancelled(), run.cancelled(heard="Once upon"), sink, backend

    cancelled, heard, sink, backend = asyncio.run(scenario())
    assert sink.chunks == ["Once", " upon a time.", " There"]  # nothing after the cancel
    assert sink.sentences == ["Once upon a time."]
    assert cancelled == ReplyOutcome(status="cancelled", text="Once upon a time. There")
    assert heard.text == "Once upon"  # a barge-in: what the person heard
    assert backend.streams[0].closed
