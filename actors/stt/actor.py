"""The STT actor: each speaker's audio frames → voice activity → Whisper → the person's chat message.

Speakers are independent: every source (a Discord user, the local mic, a web
client) has its own resampler and segmenter, and transcriptions run on a pool of
threads (faster-whisper's ``num_workers``), so one person's long utterance never
delays another's final transcript.

An ended utterance is journaled (``stt.segment``, its audio as the blob) before it
is transcribed; the final transcript (``stt.final``) and the person's
``chat.message`` follow, with ids derived from the utterance. The actor reads
both back from the journal, so after a SIGKILL the segments without a final are
transcribed on restart and nothing a person finished saying is lost. Audio that
arrives while the actor is down is lost: frames are volatile by design.

A source's finals are published in the order its turns ended, though transcriptions run
concurrently (a guess made in a pause can finish before the turn it revises).

Why one cohesive class past 500 lines: segmenting, guessing in pauses, joining a turn to the one it
continues and publishing in order all read and write the same per-source state, and split
apart they would pass it back and forth.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import ClassVar

import msgspec
import numpy as np
import structlog

from actors.stt.echo import EchoConfig, EchoGuard
from actors.stt.sources import RATE, Guess, LastTurn, Source, wall
from actors.stt.turn import SmartTurn, TextTurn, TurnConfig
from actors.stt.vad import (
    Pause,
    Segmenter,
    SileroStream,
    SpeechEnd,
    SpeechStart,
    VadConfig,
    VadEvent,
)
from actors.stt.whisper import Whisper, WhisperConfig
from hexbus import Actor, LazyModel, on
from hexbus.codec import derived_id
from hexbus.models import ModelMissing
from hexbus.pcm import from_pcm16, to_pcm16
from hexbus.work import PendingSince
from schemas import (
    AudioFrame,
    ChatMessage,
    Metric,
    ReplySentence,
    Segment,
    Speaking,
    SpeechStarted,
    Timing,
    Transcript,
    Utterance,
)

log = structlog.get_logger("actors.stt")

ANSWERED_KEEP = 1024  # reply_to ids of spoken replies remembered
REJOIN_GAP_S = 1.0  # the longest pause kept between a turn and its continuation
QUIET_TICK_S = 0.04  # how often a quiet stream's silence is fed: the VAD's own chunk is 32 ms


class SttConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    vad: VadConfig = VadConfig()
    turn: TurnConfig = TurnConfig()
    whisper: WhisperConfig = WhisperConfig()
    partials: bool = True  # volatile transcripts while the person is still talking
    partial_interval_ms: int = 1000
    echo: EchoConfig = EchoConfig()
    idle_source_s: float = (
        300.0  # a source silent this long is forgotten (its resampler and VAD state)
    )


class PendingSegment(msgspec.Struct, kw_only=True):
    segment: Segment
    audio: bytes  # PCM16 16 kHz


class SttState(msgspec.Struct, kw_only=True):
    """Segments journaled but not yet transcribed, by utterance id (normally none or one, a few
    hundred KB at most), so a snapshot taken between the two still holds the audio."""

    pending: dict[str, PendingSegment] = {}


class SttActor(Actor[SttConfig, SttState]):
    subscribes: ClassVar[tuple[str, ...]] = (
        "audio.frame",
        "stt.segment",
        "stt.final",
        "chat.sentence",
        "tts.speaking",  # the echo guard: where Hex is speaking
    )
    config_type = SttConfig
    state_type = SttState

    async def setup(self) -> None:
        # One session for every speaker: it is asked once per pause, on the loop (about 35 ms).
        # Loaded before Whisper, whose load time `hexbus status` then shows.
        self.turn = (
            await self.load_model(LazyModel("smart-turn-v3.2", SmartTurn))
            if self.config.turn.model
            else None
        )
        self.text_turn = await self.text_judge()
        self.whisper = Whisper(self.config.whisper)
        # A missing model fails here (the actor is then unusable, with its one line in
        # `hexbus status`), not on the first frame.
        await self.load_model(self.whisper.model)
        self.vad_model_check = await self.offload(SileroStream)
        self.sources: dict[str, Source] = {}
        self.inflight: set[str] = set()  # utterances being transcribed by this process
        self.done: set[str] = set()  # utterances whose final this process has seen or sent
        self.pending_since = PendingSince()
        # Messages whose reply has said a sentence: a piece after that is a new turn, not
        # one to transcribe again with them (the brain merges only before the first sentence).
        self.answered: OrderedDict[str, None] = OrderedDict()
        self.echo = EchoGuard(self.config.echo)
        log.info(
            "stt.ready",
            model=self.config.whisper.model or "packaged whisper base",
            device=self.config.whisper.device,
        )

    async def text_judge(self) -> TextTurn | None:
        """The words' second opinion on doubtful pauses; without its model the audio decides
        alone (a warning says how to install it)."""
        turn = self.config.turn
        if not (turn.model and turn.text):
            return None
        try:
            return await self.load_model(LazyModel("smollm2-turn", TextTurn))
        except ModelMissing as exc:
            log.warning("stt.text_turn_missing", reason=str(exc))
            return None

    # -- audio in ----------------------------------------------------------------------

    def source(self, frame: AudioFrame) -> Source:
        found = self.sources.get(frame.source)
        if found is not None and found.rate == frame.rate:
            found.frame = frame
            found.seen = time.monotonic()
            return found
        import soxr  # type: ignore[import-untyped]

        resampler = (
            None
            if frame.rate == RATE
            else soxr.ResampleStream(frame.rate, RATE, 1, dtype="float32")
        )
        created = Source(
            frame=frame,
            segmenter=Segmenter(
                self.config.vad,
                judge=self.turn.complete if self.turn is not None else None,
                turn=self.config.turn,
            ),
            rate=frame.rate,
            resampler=resampler,
        )
        self.sources[frame.source] = created
        self.forget_idle()
        return created

    def forget_idle(self) -> None:
        cutoff = time.monotonic() - self.config.idle_source_s
        for name in [
            n for n, s in self.sources.items() if s.seen < cutoff and not s.segmenter.in_speech
        ]:
            del self.sources[name]

    @on(AudioFrame)
    async def on_frame(self, frame: AudioFrame) -> None:
        if frame.rate <= 0:
            log.warning("stt.bad_frame", source=frame.source, rate=frame.rate)
            return
        src = self.source(frame)
        samples = from_pcm16(self.blob or b"")
        if src.resampler is not None:
            samples = src.resampler.resample_chunk(samples, last=frame.end)  # type: ignore[attr-defined]
        if src.paused is not None and not frame.paused:
            src.paused = None  # more audio: the silence fed stood in for the gap
        events = self.feed(src, samples, frame.at or time.time())
        if frame.end:
            events += src.segmenter.flush()
        await self.segmented(src, frame, events)
        if frame.paused and src.paused is None and not frame.end:
            src.paused, src.paused_wall, src.quiet_fed = time.monotonic(), time.time(), 0
            self.spawn(self.quiet(frame.source, src), name="quiet")
        if frame.end:
            self.sources.pop(frame.source, None)
        elif (
            self.config.partials
            and src.paused is None
            and src.segmenter.in_speech
            and not src.partial_busy
            and not self.inflight  # final transcripts first: on CPU a partial costs about a second
            and (src.guess is None or src.guess.task.done())
            and time.monotonic() - src.last_partial
            >= (self.config.echo.partial_ms if src.held else self.config.partial_interval_ms) / 1000
        ):
            src.partial_busy = True
            src.last_partial = time.monotonic()
            self.spawn(
                self.partial(src, src.utterance, src.segmenter.speech_audio()), name="partial"
            )

    async def quiet(self, name: str, src: Source) -> None:
        """A stream gone quiet: silence, as time passes, until more audio comes; once the turn
        is settled (ended, and past the time a continuation would rejoin it) the stream is
        forgotten, as at its end. A quiet stream is never the end of a turn by itself."""
        settle_s = (self.config.turn.rejoin_ms + self.config.turn.max_pause_ms) / 1000
        started = src.paused
        while started is not None and src.paused == started and self.sources.get(name) is src:
            since = time.monotonic() - started
            due = int(since * RATE) - src.quiet_fed
            if due > 0:
                silence = np.zeros(due, dtype=np.float32)
                events = self.feed(src, silence, src.paused_wall + src.quiet_fed / RATE)
                src.quiet_fed += due
                await self.segmented(src, src.frame, events)
            if since >= settle_s and not src.segmenter.in_speech:
                del self.sources[name]
                return
            await asyncio.sleep(QUIET_TICK_S)

    def feed(self, src: Source, samples: np.ndarray, at: float) -> list[VadEvent]:
        """Samples at 16 kHz into the source's segmenter; ``at`` is the first one's wall time."""
        src.anchors.append((src.received, at))
        events = src.segmenter.feed(samples) if samples.size else []
        src.received += samples.size
        return events

    async def segmented(self, src: Source, frame: AudioFrame, events: list[VadEvent]) -> None:
        """What the segmenter said of the audio just fed: speech started, a pause, a turn ended."""
        for event in events:
            if isinstance(event, SpeechStart):
                src.utterance = derived_id(
                    self.name,
                    f"{self.bus.session:x}",
                    frame.source,
                    str(src.received),
                    str(time.time_ns()),
                )
                src.speech_start = wall(src, event.at_s)
                src.last_partial = time.monotonic()
                last, src.last_turn = src.last_turn, None
                if (
                    last is not None
                    and event.at_s - last.end_s <= self.config.turn.rejoin_ms / 1000
                ):
                    src.continues = last
                started = SpeechStarted(
                    utterance=src.utterance,
                    source=frame.source,
                    person_id=frame.person_id,
                    channel=frame.channel,
                    platform=frame.platform,
                )
                src.suspect = self.echo.guarded(frame.platform, frame.channel)
                src.held = started if src.suspect else None  # its first words decide
                src.hers = False
                if not src.suspect:
                    self.bus.publish_volatile(started, key=frame.channel)
            elif isinstance(event, Pause):
                self.guess(src, event)
                if event.complete is not None and self.text_turn is not None and src.guess:
                    self.spawn(self.second_opinion(src, src.guess), name="second-opinion")
            elif isinstance(event, SpeechEnd):
                await self.ended(src, event)

    async def partial(self, src: Source, utterance: str, audio: np.ndarray) -> None:
        try:
            result = await self.offload(self.whisper.transcribe, audio)
        finally:
            src.partial_busy = False
        if result is not None and src.utterance == utterance and src.segmenter.in_speech:
            frame = src.frame
            verdict = self.echo.echo(frame.channel, result.text, final=False)
            if verdict:
                # Her words: a later partial's garbage (Whisper on a cut word) does not release
                # it as a person's; its final still decides.
                src.hers = True
            elif src.held is not None and verdict is False and not src.hers:
                self.bus.publish_volatile(src.held, key=frame.channel)  # a person: barge in
                src.held, src.suspect = None, False  # and their final is theirs
            self.bus.publish_volatile(
                Transcript(
                    utterance=utterance,
                    source=frame.source,
                    person_id=frame.person_id,
                    channel=frame.channel,
                    text=result.text,
                ),
                key=frame.channel,
            )

    def joined(self, src: Source, audio: np.ndarray, audio_start_s: float) -> np.ndarray:
        """The audio to transcribe for a turn whose own audio is ``audio``: the earlier turn's
        first when the person went on from it (the pause between kept, at most REJOIN_GAP_S of
        it: Whisper invents words in silence) and no reply to it has spoken yet."""
        earlier = src.continues
        if earlier is None or earlier.message_id in self.answered:
            return audio
        gap = min(max(0.0, audio_start_s - earlier.end_s), REJOIN_GAP_S)
        return np.concatenate([earlier.audio, np.zeros(int(gap * RATE), dtype=np.float32), audio])

    def guess(self, src: Source, pause: Pause) -> None:
        """The person paused: transcribe the turn so far now (once per pause), so that if the
        pause ends it, the transcript is ready (or nearly) when it does. Thrown away if they go on."""
        audio = self.joined(src, pause.audio, pause.end_s - pause.audio.size / RATE)
        if src.guess is not None and (src.guess.end_s, src.guess.size) == (pause.end_s, audio.size):
            return
        task = self.spawn(self.offload(self.whisper.transcribe, audio), name="guess")
        src.guess = Guess(pause.end_s, audio.size, task)

    async def second_opinion(self, src: Source, guess: Guess) -> None:
        """The audio model doubts the person is done: read their words. If they read as
        finished, the turn ends now instead of at ``max_pause_ms``."""
        assert self.text_turn is not None
        try:
            result = await guess.task
        except Exception:
            return  # the turn's final transcribes it again (and says so if that fails too)
        if result is None or src.guess is not guess:
            return
        complete = await self.offload(self.text_turn.complete, result.text)
        if src.guess is not guess or complete < self.config.turn.text_threshold:
            return  # the person went on (or the pause ended the turn meanwhile), or not finished
        for event in src.segmenter.end_pause(guess.end_s):
            if isinstance(event, SpeechEnd):
                log.info(
                    "stt.turn_ended_by_words", source=src.frame.source, complete=round(complete, 3)
                )
                await self.ended(src, event)

    async def ended(self, src: Source, end: SpeechEnd) -> None:
        """Journal the utterance's audio, then transcribe it (off the loop, concurrently with others)."""
        frame = src.frame
        utterance = src.utterance or derived_id(frame.source, str(time.time_ns()))
        src.utterance = ""
        held, src.held = src.held, None
        audio = self.joined(src, end.segment.audio, end.segment.audio_start_s)
        speech_start, revises = wall(src, end.segment.start_s), ""
        earlier, src.continues = src.continues, None
        if earlier is not None and audio is not end.segment.audio:
            speech_start, revises = earlier.speech_start, earlier.message_id
        guess, src.guess = src.guess, None
        if guess is not None and (guess.end_s, guess.size) != (end.segment.end_s, audio.size):
            guess = None  # the person went on after that pause
        if not end.segment.cut:
            src.last_turn = LastTurn(
                derived_id(utterance, "message"), audio, end.segment.end_s, speech_start
            )
        segment = Segment(
            utterance=utterance,
            source=frame.source,
            person_id=frame.person_id,
            display_name=frame.display_name,
            platform=frame.platform,
            channel=frame.channel,
            speech_start=speech_start,
            speech_end=wall(src, end.segment.end_s),
            end_detected=time.time(),
            cut=end.segment.cut,
            revises=revises,
            complete=-1.0 if end.segment.complete is None else round(end.segment.complete, 3),
            held=src.suspect,
        )
        src.suspect = False
        blob = to_pcm16(audio)
        self.inflight.add(utterance)
        # In the state before it is journaled: a snapshot taken before the final still holds it.
        self.state.pending[utterance] = PendingSegment(segment=segment, audio=blob)
        self.state_changed()
        await self.publish(
            segment, key=frame.channel, blob=blob, event_id=derived_id(utterance, "segment")
        )
        after, src.published = src.published, asyncio.Event()
        self.spawn(
            self.finish(segment, audio, guess, held, after=after, published=src.published),
            name="final",
        )

    # -- transcripts ---------------------------------------------------------------------

    async def finish(
        self,
        segment: Segment,
        audio: np.ndarray,
        guess: Guess | None = None,
        held: SpeechStarted | None = None,
        *,
        after: asyncio.Event | None = None,
        published: asyncio.Event | None = None,
    ) -> None:
        """Transcribe one utterance and publish its final (and its message); with ``after``,
        only once the source's previous final is out. ``published`` is set when this one is
        (or has failed)."""
        try:
            await self.transcribed(segment, audio, guess, held, after)
        finally:
            if published is not None:
                published.set()

    async def transcribed(
        self,
        segment: Segment,
        audio: np.ndarray,
        guess: Guess | None,
        held: SpeechStarted | None,
        after: asyncio.Event | None,
    ) -> None:
        self.inflight.add(segment.utterance)
        try:
            try:
                result = await guess.task if guess is not None else None
            except Exception:
                guess = None  # it failed: transcribe again (and log there, if it fails again)
            if guess is None:
                result = await self.offload(self.whisper.transcribe, audio)
        except Exception:
            log.exception("stt.transcribe_failed", utterance=segment.utterance)
            self.inflight.discard(segment.utterance)
            return
        if after is not None:
            await after.wait()
        transcribed = time.time()
        heard = result.text if result is not None else ""
        echo = (
            segment.held
            and result is not None
            and bool(self.echo.echo(segment.channel, heard, final=True))
        )
        if echo:
            log.info("stt.echo_dropped", utterance=segment.utterance, text=heard[:120])
            result = None  # Hex's own voice: no message, and no barge-in
        elif held is not None and result is not None:
            self.bus.publish_volatile(held, key=segment.channel)  # late, but a person spoke
        message_id = derived_id(segment.utterance, "message") if result is not None else ""
        final = Utterance(
            utterance=segment.utterance,
            source=segment.source,
            person_id=segment.person_id,
            display_name=segment.display_name,
            platform=segment.platform,
            channel=segment.channel,
            text=result.text if result is not None else "",
            language=result.language if result else "",
            avg_logprob=result.avg_logprob if result else 0.0,
            no_speech_prob=result.no_speech_prob if result else 1.0,
            duration_s=round(audio.size / RATE, 3),
            cut=segment.cut,
            timing=Timing(
                speech_start=segment.speech_start,
                speech_end=segment.speech_end,
                end_detected=segment.end_detected,
                transcribed=transcribed,
            ),
            message_event_id=message_id,
            echo=echo,
        )
        # The final first: it is what marks the segment done; an empty one records "nothing said"
        # (noise that passed the VAD, or a hallucination the guard refused).
        await self.publish(
            final, key=segment.channel, event_id=derived_id(segment.utterance, "final")
        )
        if result is not None:
            await self.publish(
                ChatMessage(
                    platform=segment.platform,
                    person_id=segment.person_id,
                    display_name=segment.display_name or segment.person_id,
                    channel=segment.channel,
                    text=result.text,
                    message_id=segment.utterance,
                    direct=True,
                    revises=segment.revises,
                ),
                key=segment.platform,
                event_id=message_id,
            )
            log.info(
                "stt.final",
                utterance=segment.utterance,
                source=segment.source,
                text=result.text[:120],
                seconds=round(transcribed - segment.end_detected, 3),
            )
        else:
            log.info("stt.nothing_said", utterance=segment.utterance, source=segment.source)
        for name, value in (
            ("stt.end_of_turn", segment.end_detected - segment.speech_end),
            ("stt.transcribe", transcribed - segment.end_detected),
        ):
            self.bus.publish_volatile(
                Metric(
                    name=name,
                    value=round(value * 1000, 1),
                    unit="ms",
                    labels={"utterance": segment.utterance, "source": segment.source},
                ),
                key="stt",
            )
        self.done.add(segment.utterance)
        self.inflight.discard(segment.utterance)
        self.pending_since.progressed()
        if self.state.pending.pop(segment.utterance, None) is not None:
            self.state_changed()

    # -- the journal's view: what was segmented but never finished ----------------------------

    @on(Segment)
    async def on_segment(self, event: Segment) -> None:
        envelope = self.envelope
        if (
            envelope is None
            or event.utterance in self.done
            or event.utterance in self.state.pending
        ):
            return
        self.state.pending[event.utterance] = PendingSegment(segment=event, audio=self.blob or b"")
        self.state_changed()
        if self.live:
            self.resume(event.utterance)

    @on(ReplySentence)
    async def on_sentence(self, event: ReplySentence) -> None:
        self.echo.sentence(event)
        self.answered[event.reply_to] = None
        if len(self.answered) > ANSWERED_KEEP:
            self.answered.popitem(last=False)

    @on(Speaking)
    async def on_speaking(self, event: Speaking) -> None:
        self.echo.state(event)

    @on(Utterance)
    async def on_final(self, event: Utterance) -> None:
        self.done.add(event.utterance)
        if len(self.done) > 10_000:
            self.done = set(list(self.done)[-5_000:])
        if self.state.pending.pop(event.utterance, None) is not None:
            self.state_changed()

    def oldest_work(self) -> float | None:
        """The utterance journaled longest ago and not yet transcribed (a transcription that
        failed stays pending: past work_timeout_s, the next process tries it again)."""
        return self.pending_since.oldest(self.state.pending)

    async def on_live(self) -> None:
        for utterance in list(self.state.pending):
            self.resume(utterance)

    def resume(self, utterance: str) -> None:
        found = self.state.pending.get(utterance)
        if found is None or utterance in self.inflight:
            return
        log.info("stt.resuming", utterance=utterance, source=found.segment.source)
        self.inflight.add(utterance)
        self.spawn(self.finish(found.segment, from_pcm16(found.audio)), name="resume")
