"""End of speech → first audio chunk, sentence-streamed against a sequential baseline, with the stage breakdown.

A Hex runs ``stt`` (Silero VAD + packaged Whisper base), ``brain`` (packaged
SmolLM2 via llama.cpp, fixed seed, memory and metadata off) and ``tts`` (packaged
Kokoro int8 ONNX) on this machine's CPU. For each question the bench streams an
espeak-ng recording in real time through ``actors.stt.console.VoiceClient`` (a fresh
channel each, so every prompt is the same size) and takes, on the wall clock (after one warm-up question that is not counted):

- ``speech_end``: the last voiced sample (the STT's timing, from the frame times);
- streamed first audio: when the first ``audio.out`` chunk of the reply reached
  the client (TTS speaks each sentence the moment the brain completes it);
- sequential first audio, same run, same reply: when the whole ``chat.reply``
  reached the client, plus the time Kokoro takes to synthesise the whole reply
  text in the bench process (what a pipeline that waits for the full reply and
  then the full TTS would take before its first sample).

Then a few barge-ins: while Hex speaks a long answer, the bench talks over it and
times the interruption's first voiced sample → the STT's speech start → the TTS's
interrupted stop (when players flush their audio).

Before the Hex runs, end of turn alone, in this process (real Silero VAD and Smart Turn
v3, the Segmenter the STT actor uses), the model's rule against the silence-only rule
(``silence_gap_ms`` = 400) on the same audio:

- ``turns_per_utterance``: turns each sentence spoken with pauses in the middle becomes
  (target 1.0): J. F. Kennedy's "ask not" (real, .cache/speech/jfk.wav) and Kokoro
  sentences with 0.6-1.2 s pauses inserted mid-sentence (``PAUSED``);
- ``turn_end_ms``: for finished questions (``QUESTIONS``, spoken by Kokoro), the last
  voiced sample to the turn's end (the silence rule waits 400 ms; the model ends it at
  ``check_ms`` when it is confident, else at ``max_pause_ms``).

Also: the stage breakdown the TTS actor publishes (``voice.first_audio`` metric:
end of turn detected, transcribed, first token, first sentence, first audio), the
STT real-time factor (transcription time over utterance length) and the TTS
real-time factor (synthesis time over audio length).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncio
import io
import shutil
import statistics
import tempfile
import time
from typing import Any

from actors.stt.console import VoiceClient, read_wav
from actors.tts.backends import KokoroConfig, make_voice
from actors.tts.normalize import speakable
from bench._common import emit, parser, progress, run_async
from hexbus.bus import BusClient
from hexbus.log import configure
from schemas import AudioOut, Metric, Reply, Speaking, SpeechStarted, Utterance
from tests.support.harness import FAST_BUS, REPO, Hex, actor_toml
from tests.support.speech import make_wav

BARGE_LEAD_S = 0.3  # silence before the interruption's speech in its recording

QUESTIONS = (
    "Tell me two things you like about rainy days.",
    "What should I cook for dinner tonight? Give me two ideas.",
    "Describe the sea at night in a few sentences.",
    "Why do cats like boxes so much?",
)


# Sentences spoken whole by Kokoro, then cut at the quietest moment near each fraction of their
# length and given a pause there (seconds): mid-sentence prosody, as people pause while thinking.
# (A fragment synthesised on its own would end with a finished sentence's intonation, and espeak's
# flat voice sounds unfinished everywhere: neither is fit to judge a model that listens for
# intonation.) Not the tests' material.
PAUSED: tuple[tuple[str, tuple[tuple[float, float], ...]], ...] = (
    (
        "So what I was thinking is that we could go to the lake on Saturday morning.",
        ((0.35, 0.9), (0.7, 0.7)),
    ),
    ("Can you remind me to call my sister before dinner tonight?", ((0.4, 1.0), (0.75, 0.6))),
    ("The thing about my brother is that he never listens when I talk.", ((0.45, 1.2),)),
    (
        "I want to learn how to play the guitar, but I do not have the time.",
        ((0.3, 0.8), (0.6, 0.8)),
    ),
)


def with_pauses(audio: Any, cuts: tuple[tuple[float, float], ...]) -> Any:
    """``audio`` (16 kHz) with silence inserted at the quietest 40 ms near each cut fraction."""
    import numpy as np

    energy = np.convolve(audio**2, np.ones(640) / 640, mode="same")
    parts, last = [], 0
    for fraction, pause_s in cuts:
        centre = int(fraction * audio.size)
        lo, hi = max(last, centre - 4000), min(audio.size, centre + 4000)
        at = lo + int(np.argmin(energy[lo:hi]))
        parts += [audio[last:at], np.zeros(int(pause_s * 16000), dtype=np.float32)]
        last = at
    parts.append(audio[last:])
    return np.concatenate(parts)


def turns(audio: Any, judge: Any) -> tuple[int, list[float]]:
    """How many turns ``audio`` becomes, and each turn end's delay after its last voiced sample (ms)."""
    from actors.stt.vad import CHUNK, SAMPLE_RATE, Segmenter, SileroStream, SpeechEnd

    segmenter = Segmenter(vad=SileroStream(), judge=judge)
    ends, delays = 0, []
    for i in range(0, audio.size - CHUNK + 1, CHUNK):
        for event in segmenter.feed(audio[i : i + CHUNK]):
            if isinstance(event, SpeechEnd):
                ends += 1
                delays.append(((i + CHUNK) / SAMPLE_RATE - event.segment.end_s) * 1000)
    ends += sum(isinstance(e, SpeechEnd) for e in segmenter.flush())
    return ends, delays


def turn_figures(kokoro: Any, quick: bool) -> dict[str, Any]:
    """End of turn by Smart Turn against silence alone, on the same recordings."""
    import numpy as np
    import soxr  # type: ignore[import-untyped]

    from actors.stt.turn import SmartTurn
    from tests.support.speech import real_speech, silence

    def spoken(text: str) -> Any:
        audio = soxr.resample(kokoro.synthesize(text), kokoro.rate, 16000).astype(np.float32)
        voiced = np.flatnonzero(np.abs(audio) > 1e-3)
        return audio[voiced[0] : voiced[-1] + 1]

    def padded(audio: Any) -> Any:
        return np.concatenate([silence(0.3), audio, silence(2.5)])

    model = SmartTurn()
    paused = [padded(real_speech("jfk.wav"))]
    paused += [padded(with_pauses(spoken(t), c)) for t, c in (PAUSED[:2] if quick else PAUSED)]
    finished = [padded(spoken(q)) for q in QUESTIONS]
    out: dict[str, Any] = {}
    for rule, judge in (("silence", None), ("model", model.complete)):
        counts = [turns(audio, judge)[0] for audio in paused]
        delays = [d for audio in finished for d in turns(audio, judge)[1]]
        out[f"turns_per_utterance_{rule}"] = round(sum(counts) / len(counts), 2)
        out[f"turns_{rule}"] = counts
        out[f"turn_end_ms_{rule}"] = round(statistics.median(delays), 1)
        out[f"turn_end_ms_{rule}_all"] = [round(d) for d in delays]
        progress(f"end of turn by {rule}: {counts} turns, ends {out[f'turn_end_ms_{rule}_all']} ms")
    out["turns_per_utterance"] = out["turns_per_utterance_model"]
    out["turn_end_ms"] = out["turn_end_ms_model"]
    out["target_turns_per_utterance"] = 1.0
    return out


def config(root: Path) -> str:
    shutil.copy(REPO / "persona.toml", root / "persona.toml")
    return (
        FAST_BUS
        + actor_toml(
            "stt", "actors.stt.actor:SttActor", heartbeat_timeout_s=30.0, config={"partials": False}
        )
        + actor_toml("tts", "actors.tts.actor:TtsActor", heartbeat_timeout_s=30.0)
        + """
[actors.brain]
module = "actors.brain.actor:BrainActor"
heartbeat_timeout_s = 10.0
[actors.brain.config]
backends = [{type = "llamacpp"}]
seed = 5
memory = false
metadata = false
"""
    )


class Marks:
    """What the bench's own client saw, on the wall clock."""

    def __init__(self, hx: Hex) -> None:
        self.client = BusClient(hx.endpoints, "bench-voice")
        self.client.subscribe("audio.out")
        self.client.subscribe("metrics.voice")
        self.client.subscribe("stt.speech")
        self.client.subscribe("tts.speaking")
        self.speech_started: dict[str, float] = {}  # channel -> first stt.speech after a reset
        self.interrupted: dict[str, float] = {}  # channel -> tts.speaking stop (interrupted)
        self.feed = self.client.durable(["stt.final", "chat.reply"], after=-1, wait_ms=200)
        self.first_audio: dict[str, float] = {}
        self.stages: dict[str, dict[str, str]] = {}
        self.finals: dict[str, tuple[Utterance, float]] = {}  # channel -> (utterance, arrival)
        self.replies: dict[str, tuple[Reply, float]] = {}  # reply_to -> (reply, arrival)
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.client.start()
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._volatile()), loop.create_task(self._durable())]
        assert await self.feed.positioned(10)
        await asyncio.sleep(0.3)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.close()

    async def _volatile(self) -> None:
        async for envelope, _ in self.client.volatile():
            body = envelope.body
            if isinstance(body, AudioOut):
                self.first_audio.setdefault(body.reply_to, time.time())
            elif isinstance(body, SpeechStarted):
                self.speech_started.setdefault(body.channel, time.time())
            elif isinstance(body, Speaking) and body.interrupted:
                self.interrupted.setdefault(body.channel, time.time())
            elif isinstance(body, Metric) and body.name == "voice.first_audio":
                self.stages[body.labels.get("reply_to", "")] = dict(body.labels)

    async def _durable(self) -> None:
        async for envelope, _ in self.feed:
            if envelope is None:
                continue
            body = envelope.body
            if isinstance(body, Utterance) and body.text:
                self.finals[body.channel] = (body, time.time())
            elif isinstance(body, Reply):
                self.replies[body.reply_to] = (body, time.time())


async def barge_in(
    hx: Hex, marks: Marks, question: Path, interruption: Path, trial: int
) -> dict[str, float]:
    """Ask for a long answer; once Hex speaks, talk over it. Times from the interruption's first voiced
    sample (known: the bench sends it) to the STT's speech start and to the TTS's interrupted stop."""
    channel = f"bench-barge-{trial}"
    voice = VoiceClient(
        hx.endpoints, person_id="bench", name="Bench", channel=channel, out=io.StringIO()
    )
    await voice.start()
    samples, rate = read_wav(question)
    await voice.stream(samples, rate)
    deadline = time.monotonic() + 300
    while (
        not any(
            f[0].channel == channel and f[0].message_event_id in marks.first_audio
            for f in marks.finals.values()
        )
        and time.monotonic() < deadline
    ):
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # Hex is mid-sentence
    marks.speech_started.pop(channel, None)
    marks.interrupted.pop(channel, None)
    samples, rate = read_wav(interruption)
    onset = time.time() + BARGE_LEAD_S  # the recording's speech starts this far in
    await voice.stream(samples, rate)
    while channel not in marks.interrupted and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await voice.close()
    return {
        "onset_to_speech_ms": round((marks.speech_started[channel] - onset) * 1000, 1),
        "speech_to_stop_ms": round(
            (marks.interrupted[channel] - marks.speech_started[channel]) * 1000, 1
        ),
        "onset_to_stop_ms": round((marks.interrupted[channel] - onset) * 1000, 1),
    }


async def measure(
    hx: Hex, wavs: list[Path], kokoro: Any, barge: tuple[Path, Path] | None = None, trials: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, float]]]:
    marks = Marks(hx)
    await marks.start()
    rows = []
    barges: list[dict[str, float]] = []
    try:
        for i, wav in enumerate(wavs):
            channel = f"bench-{i}"  # a fresh conversation each: every prompt the same size
            samples, rate = read_wav(wav)
            voice = VoiceClient(
                hx.endpoints, person_id="bench", name="Bench", channel=channel, out=io.StringIO()
            )
            await voice.start()
            await voice.stream(samples, rate)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                final = marks.finals.get(channel)
                done = (
                    final is not None
                    and final[0].message_event_id in marks.replies
                    and final[0].message_event_id in marks.first_audio
                )
                if done:
                    break
                await asyncio.sleep(0.05)
            await voice.close()
            utterance, _ = marks.finals[channel]
            reply, reply_at = marks.replies[utterance.message_event_id]
            text = speakable(reply.text)
            began = time.perf_counter()
            audio = await asyncio.to_thread(kokoro.synthesize, text)
            synth_s = time.perf_counter() - began
            audio_s = audio.size / kokoro.rate
            end = utterance.timing.speech_end
            row = {
                "question": utterance.text,
                "reply_chars": len(reply.text),
                "streamed_s": round(marks.first_audio[utterance.message_event_id] - end, 3),
                "sequential_s": round(reply_at - end + synth_s, 3),
                "stt_rtf": round(
                    (utterance.timing.transcribed - utterance.timing.end_detected)
                    / max(utterance.duration_s, 1e-6),
                    3,
                ),
                "tts_rtf": round(synth_s / max(audio_s, 1e-6), 3),
                "stages_ms": {
                    k: v
                    for k, v in marks.stages.get(utterance.message_event_id, {}).items()
                    if k
                    in (
                        "end_detected",
                        "transcribed",
                        "first_token",
                        "first_sentence",
                        "first_audio",
                    )
                },
            }
            if i == 0:
                progress(
                    f"warm-up done ({row['streamed_s']} s to first audio): models loaded and caches warm"
                )
                continue
            progress(
                f"{channel}: streamed {row['streamed_s']} s, sequential {row['sequential_s']} s, "
                f"stages {row['stages_ms']}"
            )
            rows.append(row)
        for trial in range(trials if barge else 0):
            assert barge is not None
            barges.append(await barge_in(hx, marks, *barge, trial))
            progress(f"barge-in {trial}: {barges[-1]}")
    finally:
        await marks.close()
    return rows, barges


def main() -> None:
    p = parser(__doc__)
    p.add_argument(
        "--config",
        default="",
        help="a supervisor.toml running stt, brain and tts (the workstation's "
        "models) instead of the packaged CPU defaults",
    )
    args = p.parse_args()
    configure("bench", "warning")
    work = Path(tempfile.mkdtemp(prefix="hxvoice"))
    questions = QUESTIONS[:2] if args.quick else QUESTIONS
    wavs = []
    for i, question in enumerate(("Hello there, how are you?", *questions)):
        wav = work / f"q{i}.wav"
        make_wav(wav, [0.3, question, 1.5])
        wavs.append(wav)
    long_question, interruption = work / "long.wav", work / "stop.wav"
    make_wav(
        long_question,
        [0.3, "Tell me a long story about a dragon and a knight, with many details.", 1.5],
    )
    make_wav(interruption, [BARGE_LEAD_S, "Wait, stop, stop please.", 1.0])
    kokoro = make_voice(KokoroConfig())
    kokoro.load()
    turn = turn_figures(kokoro, args.quick)
    hx = Hex(FAST_BUS)
    if args.config:
        given = Path(args.config).resolve()
        shutil.copy(
            given.parent / "persona.toml", hx.root / "persona.toml"
        )  # the brain's persona beside it
        hx = Hex(given.read_text(), root=hx.root)
    else:
        hx = Hex(config(hx.root), root=hx.root)
    try:
        progress("starting stt, brain and tts")
        hx.start()
        rows, barges = run_async(
            measure(hx, wavs, kokoro, (long_question, interruption), 2 if args.quick else 3)
        )
    finally:
        hx.stop()
        hx.cleanup()
    streamed = statistics.median(r["streamed_s"] for r in rows)
    sequential = statistics.median(r["sequential_s"] for r in rows)
    emit(
        {
            "first_audio_streamed_s": round(streamed, 3),
            "first_audio_sequential_s": round(sequential, 3),
            "first_audio_ratio": round(streamed / sequential, 3),
            "stt_rtf": round(statistics.median(r["stt_rtf"] for r in rows), 3),
            "tts_rtf": round(statistics.median(r["tts_rtf"] for r in rows), 3),
            "target_ratio": 0.5,
            **turn,
            # Talking over Hex: the interruption's first voiced sample → tts.speaking stop (interrupted), when
            # players flush. Most of it is the VAD's min_speech_ms (250), so a cough never interrupts.
            "barge_in_ms": round(statistics.median(b["onset_to_stop_ms"] for b in barges), 1),
            "barge_in_speech_to_stop_ms": round(
                statistics.median(b["speech_to_stop_ms"] for b in barges), 1
            ),
            "barge_ins": barges,
            "utterances": rows,
        }
    )


if __name__ == "__main__":
    main()
