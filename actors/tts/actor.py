"""The TTS actor: the brain's sentences → speech, each spoken the moment it arrives.

Sentences (``chat.sentence``) are durable and come in order per reply; each
conversation (channel) has one worker that synthesises them off the event loop
and sends ``audio.out`` chunks in order. A person who starts speaking in a
channel while Hex speaks there (``stt.speech``) interrupts it: the queue is
dropped, the sentence being synthesised is discarded, ``tts.speaking`` stop
(interrupted) tells players to flush what they buffered, and a durable
``chat.bargein`` carries what was actually said to the brain.

The state remembers which sentences of recent replies were spoken, so a restart
after a SIGKILL neither repeats them nor loses the rest (sentences older than
``fresh_s`` are not spoken late: a stale sentence is worse than none).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import ClassVar

import msgspec
import structlog

from actors.tts.backends import KokoroConfig, TtsError, VoiceConfig, chunks, make_voice, pcm16_at
from actors.tts.normalize import speakable
from hexbus import Actor, ActorUnusable, on
from schemas import (
    AudioOut,
    BargeIn,
    Metric,
    Reply,
    ReplySentence,
    Speaking,
    SpeechStarted,
    Utterance,
)

log = structlog.get_logger("actors.tts")

KEEP_REPLIES = 500  # replies whose spoken sentences are remembered


class TtsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    voice: VoiceConfig = KokoroConfig()  # type = "kokoro" (default), "piper" or "kokoro-torch"
    out_rate: int = 24000  # audio.out sample rate (the Discord actor converts to 48 kHz stereo)
    chunk_ms: int = 100  # audio per audio.out event
    fresh_s: float = 30.0  # a sentence older than this when it could be spoken is skipped
    phrase_chars: int = (
        60  # a longer sentence is synthesised in phrases (at , ; : and -) of about this size
    )
    # The first phrase of a reply, at most this size where a clause mark allows: the first words
    # play sooner (never cut inside a clause, whose words would then sound like an ending).
    first_phrase_chars: int = 24
    barge_in: bool = True  # a person speaking in the channel stops Hex there
    # Replies on these platforms are spoken; a typed chat (console, Discord text) is not synthesised for nobody.
    platforms: tuple[str, ...] = ("voice",)
    # Replies on these platforms are spoken when they answer something said aloud (the page's
    # voice mode); a line typed there is answered in text only.
    aloud_platforms: tuple[str, ...] = ("web",)


class Queued(msgspec.Struct, kw_only=True):
    sentence: ReplySentence
    published: float  # wall time the brain published it (freshness)


class TtsState(msgspec.Struct, kw_only=True):
    spoken: dict[
        str, list[int]
    ] = {}  # reply_to -> sentence indexes whose audio went out (or were dropped)
    # Accepted but not yet spoken: the journal offset moves past a sentence when it is queued, so after a
    # restart these come from the snapshot, not from replay.
    queued: list[Queued] = []
    # Messages said aloud on an aloud platform (the page), the latest KEEP_REPLIES: their replies
    # are spoken, after a restart too.
    aloud: list[str] = []


@dataclass
class Channel:
    """One conversation's voice: its queue of sentences and what has been said in the current reply."""

    queue: asyncio.Queue[tuple[ReplySentence, float]] = field(default_factory=asyncio.Queue)
    worker: asyncio.Task[None] | None = None
    reply_to: str = ""  # the reply being spoken
    # When each sentence of it starts playing (monotonic, assuming the player plays what it gets at once,
    # back to back): what a person heard by a given moment, and when Hex falls silent.
    timeline: list[tuple[float, str]] = field(default_factory=list)
    audio_until: float = 0.0
    synthesizing: bool = False
    synthesizing_for: int = 0  # the generation of the synthesis in flight
    synthesizing_reply: str = ""  # and the reply it is of
    speaking: bool = False
    stop_timer: asyncio.Task[None] | None = None
    platform: str = ""
    generation: int = 0  # bumped by a barge-in: audio of an older generation is dropped


# Words a spoken clause breaks before ("my favourite | because they ..."): where a first phrase
# with no clause mark in reach is cut, so the first words play sooner without a mid-phrase stop.
_LINK = re.compile(
    r"\s(?=(?:and|but|or|so|because|when|while|if|that|which|who|where|with|for|to|about|as|"
    r"since|until|after|before|though|although|than)\b)",
    re.IGNORECASE,
)


def _first_cut(phrase: str, around: int) -> list[str]:
    """``phrase`` cut before the linking word nearest ``around`` characters in (within half of
    it either way), or whole when there is none."""
    spots = [
        m.start() for m in _LINK.finditer(phrase) if around // 2 <= m.start() <= around * 3 // 2
    ]
    if not spots:
        return [phrase]
    at = min(spots, key=lambda i: abs(i - around))
    return [phrase[:at], phrase[at + 1 :]]


def phrases_of(text: str, size: int, first: int | None = None) -> list[str]:
    """``text`` in pieces of about ``size`` characters (the first, of about ``first``), cut after a
    comma, semicolon, colon or dash (never inside a clause; text without such a mark stays whole),
    except that a first phrase over one and a half ``first`` is cut before a linking word ("and",
    "because", "with", ...) near ``first`` characters in, where it has one."""
    if not text:
        return []
    if len(text) <= min(size, first or size):
        return [text]
    clauses = re.split(r"(?<=[,;:])\s+|\s+(?=-\s)", text)
    out: list[str] = []
    for clause in clauses:
        limit = first if first is not None and len(out) == 1 else size
        if out and len(out[-1]) + 1 + len(clause) <= limit:
            out[-1] = f"{out[-1]} {clause}"
        else:
            out.append(clause)
    phrases = [p.strip() for p in out if p.strip()]
    if first is not None and phrases and len(phrases[0]) > first * 3 // 2:
        phrases[:1] = _first_cut(phrases[0], first)
    return phrases


class TtsActor(Actor[TtsConfig, TtsState]):
    subscribes: ClassVar[tuple[str, ...]] = (
        "chat.sentence",
        "chat.reply",
        "stt.speech",
        "stt.final",
        "metrics.brain",
    )
    config_type = TtsConfig
    state_type = TtsState

    async def setup(self) -> None:
        self.voice = make_voice(self.config.voice)
        try:
            await self.load_model(self.voice.model)
        except TtsError as exc:  # a misconfigured voice; a missing model is ModelMissing
            raise ActorUnusable(str(exc)) from None
        self.channels: dict[str, Channel] = {}
        self.spoken: OrderedDict[str, set[int]] = OrderedDict(
            (k, set(v)) for k, v in self.state.spoken.items()
        )
        self.finished: set[str] = set()  # replies whose final chat.reply arrived
        # Per-turn latency marks, by the chat message's event id (the reply_to of its sentences).
        self.marks: OrderedDict[str, dict[str, float]] = OrderedDict()
        # Messages said aloud on an aloud platform (the page): their replies are spoken.
        self.aloud: OrderedDict[str, None] = OrderedDict.fromkeys(self.state.aloud)
        for queued in self.state.queued:  # accepted before a restart, never spoken: their turn now
            self.enqueue(queued)
        log.info(
            "tts.ready",
            voice=self.voice.name,
            rate=self.voice.rate,
            out_rate=self.config.out_rate,
            resumed=len(self.state.queued),
        )

    def channel(self, name: str) -> Channel:
        found = self.channels.get(name)
        if found is None:
            found = self.channels[name] = Channel()
        if found.worker is None or found.worker.done():
            found.worker = self.spawn(self.speak(name, found), name=f"speak-{name}")
        return found

    def mark_spoken(self, reply_to: str, index: int) -> None:
        self.spoken.setdefault(reply_to, set()).add(index)
        self.spoken.move_to_end(reply_to)
        self.state.queued = [
            q
            for q in self.state.queued
            if (q.sentence.reply_to, q.sentence.index) != (reply_to, index)
        ]
        while len(self.spoken) > KEEP_REPLIES:
            self.spoken.popitem(last=False)
        self.state.spoken = {k: sorted(v) for k, v in self.spoken.items()}
        # Snapshotted at once: a restart replays every sentence of the reply, and only this
        # record keeps what was already said from being said again (at most the one in flight).
        self.state_changed(now=True)

    # -- sentences in ----------------------------------------------------------------------

    @on(ReplySentence)
    async def on_sentence(self, event: ReplySentence) -> None:
        envelope = self.envelope
        aloud = event.platform in self.config.aloud_platforms and event.reply_to in self.aloud
        if event.platform not in self.config.platforms and not aloud:
            return
        if event.index in self.spoken.get(event.reply_to, ()) or any(
            (q.sentence.reply_to, q.sentence.index) == (event.reply_to, event.index)
            for q in self.state.queued
        ):
            return  # spoken or queued already (a restart's replay, or a brain that restarted its reply)
        self.marks.setdefault(event.reply_to, {}).setdefault("first_sentence", time.time())
        while len(self.marks) > 200:
            self.marks.popitem(last=False)
        queued = Queued(
            sentence=event, published=envelope.wall if envelope is not None else time.time()
        )
        self.state.queued.append(queued)
        self.state_changed()
        self.enqueue(queued)

    def enqueue(self, queued: Queued) -> None:
        channel = self.channel(queued.sentence.channel)
        channel.platform = queued.sentence.platform
        channel.queue.put_nowait((queued.sentence, queued.published))

    @on(Reply)
    async def on_reply(self, event: Reply) -> None:
        self.finished.add(event.reply_to)
        if len(self.finished) > KEEP_REPLIES:
            self.finished = set(list(self.finished)[-KEEP_REPLIES // 2 :])
        channel = self.channels.get(event.channel)
        if (
            channel is not None
            and channel.queue.empty()
            and not channel.synthesizing
            and channel.reply_to == event.reply_to
        ):
            self.stop_when_played(event.channel, channel)

    @on(Utterance)
    async def on_utterance(self, event: Utterance) -> None:
        if event.message_event_id and event.platform in self.config.aloud_platforms:
            self.aloud[event.message_event_id] = None
            while len(self.aloud) > KEEP_REPLIES:
                self.aloud.popitem(last=False)
            self.state.aloud = list(self.aloud)
            self.state_changed()
        if event.message_event_id:
            marks = self.marks.setdefault(event.message_event_id, {})
            marks.update(
                speech_end=event.timing.speech_end,
                end_detected=event.timing.end_detected,
                transcribed=event.timing.transcribed,
            )
            while len(self.marks) > 200:
                self.marks.popitem(last=False)

    @on(Metric)
    async def on_metric(self, event: Metric) -> None:
        reply_to = event.labels.get("reply_to", "")
        if event.name == "brain.first_chunk" and reply_to:
            self.marks.setdefault(reply_to, {}).setdefault("first_token", time.time())

    # -- speaking ----------------------------------------------------------------------------

    async def speak(self, name: str, channel: Channel) -> None:
        while True:
            event, published = await channel.queue.get()
            generation = channel.generation
            if time.time() - published > self.config.fresh_s:
                log.info("tts.stale_sentence_skipped", reply_to=event.reply_to, index=event.index)
                self.mark_spoken(event.reply_to, event.index)
                continue
            phrases = phrases_of(
                speakable(event.text),
                self.config.phrase_chars,
                self.config.first_phrase_chars if event.index == 0 else None,
            )
            if not phrases:
                self.mark_spoken(event.reply_to, event.index)
                continue
            seq, synth_s, audio_s, failed = 0, 0.0, 0.0, False
            for n, phrase in enumerate(phrases):
                # A long sentence goes phrase by phrase: its first words play while the rest is synthesised.
                started = time.monotonic()
                channel.synthesizing, channel.synthesizing_for = True, generation
                channel.synthesizing_reply = event.reply_to
                try:
                    audio = await self.offload(self.voice.synthesize, phrase)
                except Exception:
                    log.exception(
                        "tts.synthesis_failed", reply_to=event.reply_to, index=event.index
                    )
                    failed = True
                    break
                finally:
                    channel.synthesizing = False
                if generation != channel.generation:
                    break  # a barge-in came while it was synthesised: never play it
                now = time.monotonic()
                synth_s += now - started
                audio_s += audio.size / max(1, self.voice.rate)
                if channel.reply_to != event.reply_to or not channel.speaking:
                    channel.reply_to, channel.timeline, channel.speaking = event.reply_to, [], True
                    self.bus.publish_volatile(
                        Speaking(channel=name, reply_to=event.reply_to, state="start"), key=name
                    )
                if channel.stop_timer is not None:
                    channel.stop_timer.cancel()
                    channel.stop_timer = None
                play_at = max(now, channel.audio_until)
                channel.timeline.append((play_at, phrase if len(phrases) > 1 else event.text))
                channel.audio_until = play_at + audio.size / max(1, self.voice.rate)
                pcm = pcm16_at(audio, self.voice.rate, self.config.out_rate)
                pieces = chunks(pcm, self.config.out_rate, self.config.chunk_ms) or [b""]
                for i, piece in enumerate(pieces):
                    self.bus.publish_volatile(
                        AudioOut(
                            channel=name,
                            platform=event.platform,
                            reply_to=event.reply_to,
                            sentence=event.index,
                            seq=seq,
                            rate=self.config.out_rate,
                            last=n == len(phrases) - 1 and i == len(pieces) - 1,
                            text=event.text if seq == 0 else "",
                        ),
                        key=name,
                        blob=piece,
                    )
                    seq += 1
                if n == 0:
                    self.first_audio(event)
            if generation != channel.generation:
                continue
            self.mark_spoken(event.reply_to, event.index)
            if failed:
                continue
            self.bus.publish_volatile(
                Metric(
                    name="tts.rtf",
                    value=round(synth_s / max(audio_s, 1e-6), 3),
                    labels={"reply_to": event.reply_to, "channel": event.channel},
                ),
                key="tts",
            )
            if channel.queue.empty() and event.reply_to in self.finished:
                self.stop_when_played(name, channel)

    def stop_when_played(self, name: str, channel: Channel) -> None:
        """Report Hex silent in the channel once the last sentence has played (the echo guard's cue)."""
        if channel.stop_timer is not None:
            channel.stop_timer.cancel()
        delay = max(0.0, channel.audio_until - time.monotonic())
        channel.stop_timer = self.spawn(self.stop_after(delay, name, channel), name=f"quiet-{name}")

    async def stop_after(self, delay: float, name: str, channel: Channel) -> None:
        await asyncio.sleep(delay)
        channel.stop_timer = None  # done: a later cancel() must not reach the report below
        await self.stopped(name, channel, interrupted=False)

    def first_audio(self, event: ReplySentence) -> None:
        """Publish the turn's latency, end of speech to first audio, stage by stage (once per reply)."""
        labels = {"reply_to": event.reply_to, "channel": event.channel}
        marks = self.marks.get(event.reply_to)
        if event.index != 0 or marks is None or "first_audio" in marks:
            return
        marks["first_audio"] = time.time()
        start = marks.get("speech_end") or marks.get("first_sentence", 0.0)
        stages: dict[str, str] = {}
        previous = start
        for stage in (
            "end_detected",
            "transcribed",
            "first_token",
            "first_sentence",
            "first_audio",
        ):
            if stage in marks:
                stages[stage] = f"{(marks[stage] - previous) * 1000:.0f}"
                previous = marks[stage]
        self.bus.publish_volatile(
            Metric(
                name="voice.first_audio",
                value=round((marks["first_audio"] - start) * 1000, 1),
                unit="ms",
                labels={
                    **labels,
                    **stages,
                    "from": "speech_end" if "speech_end" in marks else "first_sentence",
                },
            ),
            key="voice",
        )

    def heard(self, channel: Channel) -> str:
        now = time.monotonic()
        return " ".join(text for start, text in channel.timeline if start <= now)

    async def stopped(self, name: str, channel: Channel, *, interrupted: bool) -> None:
        if not channel.speaking:
            return
        channel.speaking = False
        said = self.heard(channel)
        self.bus.publish_volatile(
            Speaking(
                channel=name,
                reply_to=channel.reply_to,
                state="stop",
                said=said,
                interrupted=interrupted,
            ),
            key=name,
        )

    # -- barge-in ----------------------------------------------------------------------------

    @on(SpeechStarted)
    async def on_speech(self, event: SpeechStarted) -> None:
        channel = self.channels.get(event.channel)
        if not self.config.barge_in or channel is None:
            return
        started = time.monotonic()
        # A synthesis a barge-in already stopped (still finishing, never to be played) is not
        # something to interrupt again: the person's next words would stop her twice.
        synthesizing = channel.synthesizing and channel.synthesizing_for == channel.generation
        if not (synthesizing or not channel.queue.empty() or started < channel.audio_until):
            return  # Hex is silent there: nothing to interrupt
        said = self.heard(channel)
        channel.generation += 1
        channel.audio_until = started  # the player flushes on the stop below
        if channel.stop_timer is not None:
            channel.stop_timer.cancel()
            channel.stop_timer = None
        dropped: list[ReplySentence] = []
        while not channel.queue.empty():
            dropped.append(channel.queue.get_nowait()[0])
        for sentence in dropped:
            self.mark_spoken(
                sentence.reply_to, sentence.index
            )  # never spoken later, after a restart either
        # The reply she was last heard saying (what ``said`` is of: a page may still be playing
        # it past TTS's estimate); before her first sound in this channel, the one being
        # synthesised, else the next one queued.
        reply_to = channel.reply_to or (
            channel.synthesizing_reply if synthesizing else dropped[0].reply_to if dropped else ""
        )
        channel.speaking = False
        self.bus.publish_volatile(
            Speaking(
                channel=event.channel, reply_to=reply_to, state="stop", said=said, interrupted=True
            ),
            key=event.channel,
        )
        await self.publish(
            BargeIn(channel=event.channel, person_id=event.person_id, said=said, reply_to=reply_to),
            key=event.platform,
        )
        log.info(
            "tts.barge_in",
            channel=event.channel,
            reply_to=reply_to,
            said=said[:80],
            dropped=len(dropped),
            ms=round((time.monotonic() - started) * 1000, 2),
        )
