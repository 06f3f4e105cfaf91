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
from actors.tts.backends import KokoroConfig, PiperConfig, make_voice
from actors.tts.normalize import speakable
from bench._common import emit, parser, progress, run_async
from bench._turns import turn_figures
from hexbus.bus import BusClient
from hexbus.log import configure
from schemas import AudioOut, Metric, Reply, Speaking, SpeechStarted, Utterance
from tests.support.harness import FAST_BUS, REPO, Hex, actor_toml
from tests.support.speech import make_wav

BARGE_LEAD_S = 0.3  # silence before the interruption's speech in its recording
STAGES = ("end_detected", "transcribed", "first_token", "first_sentence", "first_audio")

QUESTIONS = (
    "Tell me two things you like about rainy days.",
    "What should I cook for dinner tonight? Give me two ideas.",
    "Describe the sea at night in a few sentences.",
    "Why do cats like boxes so much?",
)


def spoken_wav(voice: Any, text: str, path: Path) -> None:
    """``text`` said by ``voice`` (a TTS backend), as the 16 kHz PCM16 WAV a microphone would give, with
    0.3 s of silence before and 1.5 s after."""
    import numpy as np
    import soxr  # type: ignore[import-untyped]

    from actors.stt.console import write_wav
    from hexbus.pcm import to_pcm16
    from tests.support.speech import silence

    audio = soxr.resample(voice.synthesize(text), voice.rate, 16000).astype(np.float32)
    write_wav(path, to_pcm16(np.concatenate([silence(0.3), audio, silence(1.5)])), 16000)


def config(root: Path, voice: str) -> str:
    shutil.copy(REPO / "persona.toml", root / "persona.toml")
    return (
        FAST_BUS
        + actor_toml(
            "stt", "actors.stt.actor:SttActor", heartbeat_timeout_s=30.0, config={"partials": False}
        )
        + actor_toml("tts", "actors.tts.actor:TtsActor", heartbeat_timeout_s=30.0)
        + f"[actors.tts.config.voice]\ntype = {voice!r}\n"
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
        self.stopped: set[str] = set()  # replies Hex has finished saying
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
            elif isinstance(body, Speaking) and body.state == "stop":
                self.stopped.add(body.reply_to)
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


async def idle(marks: Marks, reply_to: str, limit_s: float = 120.0) -> None:
    """Until Hex has said the whole reply (its ``tts.speaking`` stop): the person listens before
    asking again, so the next question never races the last answer's synthesis for the CPU."""
    deadline = time.monotonic() + limit_s
    while reply_to not in marks.stopped and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


async def measure(
    hx: Hex,
    wavs: list[tuple[str, Path]],
    kokoro: Any,
    barge: tuple[Path, Path] | None = None,
    trials: int = 0,
) -> tuple[list[dict[str, Any]], list[dict[str, float]]]:
    marks = Marks(hx)
    await marks.start()
    rows = []
    barges: list[dict[str, float]] = []
    try:
        for i, (voice_name, wav) in enumerate(wavs):
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
            await idle(marks, utterance.message_event_id)
            text = speakable(reply.text)
            began = time.perf_counter()
            audio = await asyncio.to_thread(kokoro.synthesize, text)
            synth_s = time.perf_counter() - began
            audio_s = audio.size / kokoro.rate
            end = utterance.timing.speech_end
            row = {
                "voice": voice_name,
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
                    if k in STAGES
                },
            }
            if i == 0:
                progress(
                    f"warm-up done ({row['streamed_s']} s to first audio): models loaded and caches warm"
                )
                continue
            progress(
                f"{channel} ({voice_name}): streamed {row['streamed_s']} s, sequential {row['sequential_s']} s, "
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
    p.add_argument(
        "--voice",
        default="kokoro",
        choices=("kokoro", "piper"),
        help="Hex's TTS voice (kokoro: the default; piper: the faster one, an optional extra)",
    )
    args = p.parse_args()
    configure("bench", "warning")
    work = Path(tempfile.mkdtemp(prefix="hxvoice"))
    questions = QUESTIONS[:2] if args.quick else QUESTIONS
    kokoro = make_voice(KokoroConfig())
    kokoro.load()
    # Piper's US English voice asks (not Hex's voice; Kokoro's Japanese voice packs speak English
    # with an accent that Whisper's language detection takes for Japanese)
    asker = make_voice(PiperConfig())
    asker.load()
    wavs: list[tuple[str, Path]] = []
    for i, question in enumerate(("Hello there, how are you?", *questions)):
        wav = work / f"q{i}.wav"
        make_wav(wav, [0.3, question, 1.5])
        wavs.append(("espeak", wav))
    for i, question in enumerate(questions):
        wav = work / f"k{i}.wav"
        spoken_wav(asker, question, wav)
        wavs.append(("piper", wav))
    long_question, interruption = work / "long.wav", work / "stop.wav"
    make_wav(
        long_question,
        [0.3, "Tell me a long story about a dragon and a knight, with many details.", 1.5],
    )
    make_wav(interruption, [BARGE_LEAD_S, "Wait, stop, stop please.", 1.0])
    turn = turn_figures(kokoro, args.quick, QUESTIONS)
    hx = Hex(FAST_BUS)
    if args.config:
        given = Path(args.config).resolve()
        shutil.copy(
            given.parent / "persona.toml", hx.root / "persona.toml"
        )  # the brain's persona beside it
        hx = Hex(given.read_text(), root=hx.root)
    else:
        hx = Hex(config(hx.root, args.voice), root=hx.root)
    try:
        progress("starting stt, brain and tts")
        hx.start()
        rows, barges = run_async(
            measure(
                hx,
                wavs,
                kokoro
                if args.voice == "kokoro"
                else asker,  # Hex's voice, for the sequential figure
                (long_question, interruption),
                2 if args.quick else 3,
            )
        )
    finally:
        hx.stop()
        hx.cleanup()
    natural = [r for r in rows if r["voice"] == "piper"]
    flat = [r for r in rows if r["voice"] == "espeak"]
    streamed = statistics.median(r["streamed_s"] for r in natural)
    sequential = statistics.median(r["sequential_s"] for r in natural)
    emit(
        {
            "voice": args.voice,
            "first_audio_streamed_s": round(streamed, 3),
            "first_audio_sequential_s": round(sequential, 3),
            "first_audio_ratio": round(streamed / sequential, 3),
            # The same questions in espeak-ng's flat voice, whose prosody the end-of-turn model
            # mostly cannot read (the figure the issue first measured, 3.47 s)
            "first_audio_streamed_espeak_s": round(
                statistics.median(r["streamed_s"] for r in flat), 3
            ),
            "first_audio_sequential_espeak_s": round(
                statistics.median(r["sequential_s"] for r in flat), 3
            ),
            "stages_ms": {
                voice: {
                    stage: round(statistics.median(float(r["stages_ms"][stage]) for r in group))
                    for stage in STAGES
                    if all(stage in r["stages_ms"] for r in group)
                }
                for voice, group in (("piper", natural), ("espeak", flat))
            },
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
