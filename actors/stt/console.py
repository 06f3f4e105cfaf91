"""``hexbus voice``: a local voice client on the bus (a recording or the microphone in, Hex's voice out).

``--input-wav FILE`` streams a recording as ``audio.frame`` events in real time
(``--fast``: ten times faster), prints each transcript and reply with the time
since the start, and with ``--output-wav`` saves Hex's spoken replies (one WAV
per reply, numbered, when the path is a folder; all of them one after another
when it is a file). ``--mic`` captures and plays with sounddevice, half-duplex:
the microphone is gated while Hex speaks and for ``--echo-guard-ms`` after, so
Hex never hears (and answers) itself.
"""

from __future__ import annotations

import asyncio
import sys
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from hexbus.bus import BusClient
from hexbus.endpoints import Endpoints
from hexbus.pcm import from_pcm16, to_pcm16
from schemas import AudioFrame, AudioOut, Reply, Speaking, Transcript, Utterance

FRAME_MS = 20


class VoiceError(Exception):
    """One line: what went wrong and what to do."""


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the rate of a PCM WAV file."""
    try:
        with wave.open(str(path), "rb") as w:
            rate, width, channels, frames = (
                w.getframerate(),
                w.getsampwidth(),
                w.getnchannels(),
                w.getnframes(),
            )
            raw = w.readframes(frames)
    except FileNotFoundError:
        raise VoiceError(f"{path}: no such file") from None
    except (
        wave.Error,
        EOFError,
        OSError,
        RuntimeError,
        ValueError,
    ) as exc:  # wave raises all of these
        raise VoiceError(
            f"{path} is not a readable PCM WAV file ({exc}); convert it with "
            f"`sox {path.name} -b 16 out.wav`"
        ) from None
    if width not in (1, 2, 4) or channels < 1 or rate <= 0:
        raise VoiceError(
            f"{path}: {8 * width}-bit {channels}-channel audio is not supported; convert it with "
            f"`sox {path.name} -b 16 -c 1 out.wav`"
        )
    if width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128) / 128
    elif width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768
    else:
        samples = np.frombuffer(raw, dtype="<i4").astype(np.float32) / 2**31
    if samples.size == 0:
        raise VoiceError(f"{path} holds no audio")
    return samples.reshape(-1, channels).mean(axis=1), rate


def write_wav(path: Path, pcm: bytes, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


@dataclass
class Spoken:
    """One reply's audio as it arrives: chunks ordered by (sentence, seq)."""

    chunks: dict[tuple[int, int], bytes] = field(default_factory=dict)
    rate: int = 0
    done: bool = False

    def pcm(self) -> bytes:
        return b"".join(self.chunks[k] for k in sorted(self.chunks))


class VoiceClient:
    def __init__(
        self,
        endpoints: Endpoints,
        *,
        person_id: str,
        name: str,
        channel: str,
        out: TextIO,
        output: Path | None = None,
    ) -> None:
        self.client = BusClient(endpoints, "voice")
        self.person_id, self.name, self.channel = person_id, name, channel
        self.source = f"voice:{channel}:{person_id}"
        self.out, self.output = out, output
        for topic in (f"audio.out.{channel}", f"tts.speaking.{channel}", f"stt.partial.{channel}"):
            self.client.subscribe(topic)
        self.feed = self.client.durable(
            [f"stt.final.{channel}", "chat.reply"], after=-1, wait_ms=300
        )
        self.started = time.monotonic()
        self.finals: list[Utterance] = []
        self.replies: dict[str, Reply] = {}  # by reply_to (the chat message event id)
        self.spoken: dict[str, Spoken] = {}
        self.saved: list[Path] = []
        self.speaking_until = 0.0  # monotonic: Hex is (or was just) heard until then
        self.on_audio: Callable[[AudioOut, bytes], None] | None = None
        self.on_stop: Callable[[Speaking], None] | None = None
        self.changed = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.seq = 0

    def say(self, line: str) -> None:
        self.out.write(f"[{time.monotonic() - self.started:7.2f}] {line}\n")
        self.out.flush()

    async def start(self) -> None:
        self.client.start()
        loop = asyncio.get_running_loop()
        self.tasks += [loop.create_task(self._volatile()), loop.create_task(self._durable())]
        if not await self.feed.positioned(10):
            raise VoiceError(
                "the broker did not answer within 10 s: is Hex running (`hexbus status`)?"
            )
        await asyncio.sleep(0.3)  # the subscriptions reach the broker before the first frame

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.close(flush_timeout=2)

    async def _volatile(self) -> None:
        async for envelope, blob in self.client.volatile():
            body = envelope.body
            if isinstance(body, AudioOut) and body.channel == self.channel:
                spoken = self.spoken.setdefault(body.reply_to, Spoken())
                spoken.rate = body.rate
                spoken.chunks[(body.sentence, body.seq)] = blob or b""
                if self.on_audio is not None:
                    self.on_audio(body, blob or b"")
            elif isinstance(body, Speaking) and body.channel == self.channel:
                if body.state == "stop":
                    if body.reply_to in self.spoken:
                        self.spoken[body.reply_to].done = True
                    if body.interrupted:
                        self.say(f"(Hex stopped: interrupted after {body.said!r})")
                    if self.on_stop is not None:
                        self.on_stop(body)
                    self.changed.set()
            elif isinstance(body, Transcript) and body.source == self.source:
                self.say(f"… {body.text}")

    async def _durable(self) -> None:
        async for envelope, _ in self.feed:
            if envelope is None:
                continue
            body = envelope.body
            if isinstance(body, Utterance) and body.source == self.source:
                self.finals.append(body)
                if body.text:
                    self.say(f"you: {body.text}")
                self.changed.set()
            elif isinstance(body, Reply) and body.channel == self.channel:
                self.replies[body.reply_to] = body
                # A reply closed before a word (cancelled by a barge-in or a newer line, or
                # answered with the rest of its turn) says nothing: no empty "Hex:" line.
                if body.text.strip() or body.status == "failed":
                    status = "" if body.status == "complete" else f" ({body.status})"
                    self.say(f"Hex: {body.text}{status}")
                self.changed.set()

    def frame(self, samples: np.ndarray, rate: int, *, end: bool = False) -> None:
        self.client.publish_volatile(
            AudioFrame(
                source=self.source,
                person_id=self.person_id,
                display_name=self.name,
                platform="voice",
                channel=self.channel,
                rate=rate,
                seq=self.seq,
                at=time.time(),
                end=end,
            ),
            key=self.channel,
            blob=to_pcm16(samples),
        )
        self.seq += 1

    async def stream(self, samples: np.ndarray, rate: int, *, speed: float = 1.0) -> None:
        """Send a recording frame by frame, paced like a microphone (``speed`` times real time)."""
        step = rate * FRAME_MS // 1000
        begun = time.monotonic()
        for i, start in enumerate(range(0, samples.size, step)):
            last = start + step >= samples.size
            self.frame(samples[start : start + step], rate, end=last)
            delay = begun + (i + 1) * FRAME_MS / 1000 / speed - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    def pending(self) -> list[str]:
        """What the turn still waits for: transcripts without a reply, replies whose voice is unfinished."""
        waiting = []
        for final in self.finals:
            if not final.text:
                continue
            reply = self.replies.get(final.message_event_id)
            if reply is None:
                waiting.append(f"a reply to {final.text!r}")
            elif (
                reply.status == "complete"
                and reply.text.strip()
                and not self.spoken.get(final.message_event_id, Spoken()).done
            ):
                waiting.append(f"Hex's voice for {reply.text[:40]!r}")
        return waiting

    async def settle(self, timeout: float, quiet_s: float) -> None:
        """Wait until every transcript is answered and spoken, and nothing new came for ``quiet_s``."""
        deadline = time.monotonic() + timeout
        while True:
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                waiting = self.pending()
                if waiting:
                    raise VoiceError(f"gave up after {timeout:g}s waiting for {', '.join(waiting)}")
                return
            try:
                await asyncio.wait_for(self.changed.wait(), min(left, quiet_s))
            except TimeoutError:
                if not self.pending():
                    return

    def save(self) -> list[Path]:
        """Write the spoken replies in the order their messages were transcribed."""
        if self.output is None:
            return []
        order = [f.message_event_id for f in self.finals if f.message_event_id in self.spoken]
        order += [r for r in self.spoken if r not in order]
        spoken = [(r, self.spoken[r]) for r in order if self.spoken[r].chunks]
        if not spoken:
            return []
        if self.output.suffix.lower() == ".wav" and not self.output.is_dir():
            rate = spoken[0][1].rate
            gap = b"\0\0" * (rate // 2)
            write_wav(self.output, gap.join(s.pcm() for _, s in spoken if s.rate == rate), rate)
            return [self.output]
        paths = []
        for n, (_, s) in enumerate(spoken, start=1):
            path = self.output / f"reply-{n:03d}.wav"
            write_wav(path, s.pcm(), s.rate)
            paths.append(path)
        return paths


async def run_file(
    endpoints: Endpoints,
    path: Path,
    *,
    output: Path | None,
    fast: bool,
    person_id: str,
    name: str,
    channel: str,
    timeout: float,
    out: TextIO = sys.stdout,
) -> VoiceClient:
    samples, rate = read_wav(path)
    voice = VoiceClient(
        endpoints, person_id=person_id, name=name, channel=channel, out=out, output=output
    )
    await voice.start()
    try:
        voice.say(
            f"streaming {path.name}: {samples.size / rate:.1f} s at {rate} Hz"
            + (" (10x)" if fast else "")
        )
        await voice.stream(samples, rate, speed=10.0 if fast else 1.0)
        await voice.settle(timeout, quiet_s=3.0)
        for saved in voice.save():
            voice.say(f"saved {saved}")
    finally:
        await voice.close()
    return voice


def check_mic() -> tuple[Any, dict[str, Any]]:
    """sounddevice and the default input device, or a VoiceError saying what is missing."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:
        raise VoiceError(
            f"--mic needs sounddevice and PortAudio ({str(exc).splitlines()[0]}): "
            "pip install 'hex[voice]' and apt-get install libportaudio2"
        ) from None
    try:
        device = sd.query_devices(kind="input")
        sd.query_devices(kind="output")
    except Exception as exc:  # PortAudioError, ValueError: no device of that kind
        raise VoiceError(
            f"no audio device ({str(exc).splitlines()[0]}): plug in a microphone and speakers, "
            "or use --input-wav"
        ) from None
    return sd, dict(device)


async def run_mic(
    endpoints: Endpoints,
    *,
    person_id: str,
    name: str,
    channel: str,
    echo_guard_ms: int,
    out: TextIO = sys.stdout,
) -> None:
    sd, device = check_mic()
    rate = int(device.get("default_samplerate") or 16000)
    voice = VoiceClient(endpoints, person_id=person_id, name=name, channel=channel, out=out)
    loop = asyncio.get_running_loop()
    playback: asyncio.Queue[tuple[np.ndarray, int]] = asyncio.Queue()
    guard = echo_guard_ms / 1000

    def heard(event: AudioOut, pcm: bytes) -> None:
        playback.put_nowait((from_pcm16(pcm), event.rate))
        voice.speaking_until = (
            max(voice.speaking_until, time.monotonic()) + len(pcm) / 2 / event.rate
        )

    def stopped(event: Speaking) -> None:
        if event.interrupted:
            while not playback.empty():
                playback.get_nowait()
            voice.speaking_until = time.monotonic()

    voice.on_audio, voice.on_stop = heard, stopped

    def captured(data: Any, frames: int, at: Any, status: Any) -> None:
        if time.monotonic() < voice.speaking_until + guard:
            return  # half-duplex: the mic is gated while Hex speaks (and the echo dies away)
        loop.call_soon_threadsafe(voice.frame, np.asarray(data, dtype=np.float32).reshape(-1), rate)

    await voice.start()
    voice.say(f"listening on {device['name']} at {rate} Hz; Ctrl-C to stop")
    try:
        with sd.InputStream(
            samplerate=rate,
            channels=1,
            dtype="float32",
            blocksize=rate * FRAME_MS // 1000,
            callback=captured,
        ):
            while True:
                chunk, chunk_rate = await playback.get()
                await asyncio.to_thread(sd.play, chunk, chunk_rate, blocking=True)
    finally:
        await voice.close()
