"""One streamed reply: backend pieces become chunks, sentences and the final text.

:class:`ReplyRun` drives one stream of the backend chain to its end and hands
what it makes to a :class:`ReplySink` (the bus in the actor, lists in tests):

* chunks for typed replies: the first piece at once, later ones coalesced for
  ``chunk_interval_s`` (nobody sees 40 ms in a typed reply, and it cuts the bus
  traffic per reply several times), and at every sentence end;
* sentences for the voice, each as soon as it is complete;
* a notice per fallback to the next backend.

A reply cut at its token limit loses its unfinished sentence, in speech and in
the final text. A fallback mid-reply voids what streamed (the next backend
starts over; what was spoken stays spoken). Cancelled, the run raises
:class:`asyncio.CancelledError` as usual, and :meth:`ReplyRun.cancelled` gives
the outcome to record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, Protocol

import msgspec
import structlog

from actors.brain.backends import BackendError, BackendOverloaded, Usage
from actors.brain.backends.fallback import ChainStream, FallbackEvent
from actors.brain.sentences import SentenceSplitter

log = structlog.get_logger("actors.brain.reply")

ReplyStatus = Literal["complete", "cancelled", "failed"]

SLEEPY = "I'm too sleepy to think right now; try me again in a bit."
STATIC = "My head's full of static right now. Give me a minute and ask again?"
EMPTY = "..."  # a complete reply with no words still says something


class ReplyOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """How a reply ended. ``backend`` is the one whose reply ``text`` is; empty unless complete."""

    status: ReplyStatus
    text: str
    backend: str = ""
    usage: Usage = msgspec.field(default_factory=Usage)
    fallbacks: int = 0
    recalled: tuple[str, ...] = ()  # the memories in the prompt


class ReplySink(Protocol):
    """Where a run's output goes."""

    def chunk(self, index: int, text: str) -> None:
        """A piece of the typed reply (never waits: chunks are volatile)."""

    async def sentence(self, index: int, text: str) -> None:
        """A whole sentence, for the voice."""

    async def fallback(self, event: FallbackEvent) -> None:
        """The chain moved on to the next backend."""


class ReplyRun:
    """One reply from one stream of a :class:`~actors.brain.backends.fallback.FallbackChain`.

    Its counters are attributes, so a test (or a log line) can read how far it got:
    ``chunks`` and ``sentences`` sent, ``announced`` fallbacks, ``restarts`` seen.
    """

    def __init__(
        self,
        stream: ChainStream,
        sink: ReplySink,
        *,
        chunk_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.sink = sink
        self.chunk_interval_s = chunk_interval_s
        self.clock = clock
        self.splitter = SentenceSplitter()
        self.unsent: list[str] = []  # pieces not yet sent as a chunk
        self.chunks = 0
        self.chunk_at = 0.0  # when the last chunk went
        self.sentences = 0
        self.announced = 0  # fallback events passed to the sink
        self.restarts = 0  # the stream's restarts already acted on

    async def run(self) -> ReplyOutcome:
        """Stream to the end: complete, or failed when every backend did (with a line saying so)."""
        stream = self.stream
        try:
            async for piece in stream:
                await self._announce()
                if stream.restarts > self.restarts:
                    # The backend failed mid-reply and the next one starts over: what streamed is
                    # void (stream.text is already the new backend's reply alone).
                    self.restarts = stream.restarts
                    self.splitter = SentenceSplitter()
                await self._take(piece)
            self._send_chunk()
            text = stream.text
            if stream.usage.truncated and self.sentences:
                # Cut at the token limit mid-sentence: the half sentence is neither spoken nor kept.
                tail = self.splitter.discard()
                if tail and text.endswith(tail):
                    text = text[: len(text) - len(tail)]
            for sentence in self.splitter.flush():
                await self._speak(sentence)
        except BackendError as exc:
            log.error("brain.all_backends_failed", error=str(exc))
            line = SLEEPY if isinstance(exc, BackendOverloaded) else STATIC
            return ReplyOutcome(status="failed", text=line)
        finally:
            await stream.aclose()
        return ReplyOutcome(
            status="complete",
            text=text.strip() or EMPTY,
            backend=stream.backend,
            usage=stream.usage,
            fallbacks=len(stream.events),
        )

    def cancelled(self, heard: str | None = None) -> ReplyOutcome:
        """The outcome of a run cancelled mid-stream: what streamed, or what the person heard
        before a barge-in cut the voice off (``heard``)."""
        text = self.stream.text if heard is None else heard
        return ReplyOutcome(status="cancelled", text=text.strip())

    async def _announce(self) -> None:
        events = self.stream.events
        for event in events[self.announced :]:
            await self.sink.fallback(event)
        self.announced = len(events)

    async def _take(self, piece: str) -> None:
        self.unsent.append(piece)
        done = self.splitter.push(piece)
        if self.chunks == 0 or done or self.clock() - self.chunk_at >= self.chunk_interval_s:
            self._send_chunk()
        for sentence in done:
            await self._speak(sentence)

    def _send_chunk(self) -> None:
        if not self.unsent:
            return
        self.sink.chunk(self.chunks, "".join(self.unsent))
        self.unsent.clear()
        self.chunks += 1
        self.chunk_at = self.clock()

    async def _speak(self, sentence: str) -> None:
        index = self.sentences
        self.sentences += 1  # counted before it goes: cancelled mid-publish, it may still be out
        await self.sink.sentence(index, sentence)


__all__ = ["ReplyOutcome", "ReplyRun", "ReplySink", "ReplyStatus"]
