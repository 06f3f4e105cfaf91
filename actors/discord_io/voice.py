"""Discord voice ↔ bus audio: Hex's speech into a voice channel, each member's voice out of it.

The two sides speak different formats. The bus carries mono little-endian PCM16 at a declared
rate (``audio.out`` from TTS, typically 24 kHz; ``audio.frame`` to STT, 16 kHz preferred, one
stream per speaker). Discord carries opus at 48 kHz stereo in 20 ms frames.

- Speaking: :class:`BusAudioSource` takes ``audio.out`` chunks, resamples them to 48 kHz with a
  streaming soxr resampler, duplicates mono to stereo and hands discord.py 3840-byte frames
  (20 ms of 48 kHz stereo s16le). discord.py encodes them with libopus, DAVE-encrypts the opus
  (``dave_session.encrypt_opus`` in ``VoiceClient._get_voice_packet``), then transport-encrypts.
- Hearing: :class:`UserAudioSink` gets each member's opus from discord-ext-voice-recv, which
  undoes only the transport encryption. Since March 2026 Discord requires DAVE end-to-end
  encryption, and voice-recv 0.5.2a179 does not decrypt it (upstream issues #53 and #64, PRs #58
  and #62 unmerged): what it calls opus is still DAVE ciphertext. The sink decrypts it with the
  session discord.py keeps for sending (``voice_client._connection.dave_session``), decodes it
  with one libopus decoder per member, downmixes to mono and resamples to ``out_rate``.

Threads: ``feed``/``finish``/``clear`` run on the asyncio loop; discord.py's player thread calls
``read`` every 20 ms. voice-recv's packet-router thread calls ``write``; its sink-event-router
thread calls the listeners (holding the router's lock, so never at the same time as ``write``);
a stopper thread calls ``cleanup``. The sink hands audio back to the loop with
``call_soon_threadsafe``: the callbacks never run on voice-recv's threads.
"""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import structlog

try:
    import davey
    import soxr  # type: ignore[import-untyped]

    with warnings.catch_warnings():
        # discord.py 2.7 and voice-recv import audioop, deprecated in 3.11; the warning is theirs.
        warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
        import discord
        from discord.ext import voice_recv
        from discord.opus import Decoder as OpusDecoder
        from discord.opus import OpusError
except ImportError as exc:
    raise ImportError(f"Discord voice needs {exc.name}: pip install 'hex[discord]'") from exc

from hexbus.pcm import from_pcm16, to_pcm16

__all__ = ["DISCORD_RATE", "FRAME_BYTES", "BusAudioSource", "OnAudio", "OnEnd", "UserAudioSink"]

log = structlog.get_logger("actors.discord_io.voice")

DISCORD_RATE: Final = OpusDecoder.SAMPLING_RATE  # 48000
FRAME_BYTES: Final = OpusDecoder.FRAME_SIZE  # 3840: 960 samples x 2 channels x 2 bytes
BYTES_PER_MS: Final = FRAME_BYTES // OpusDecoder.FRAME_LENGTH
SILENCE: Final = bytes(FRAME_BYTES)
PASSTHROUGH_ERROR: Final = "UnencryptedWhenPassthroughDisabled"

Samples = npt.NDArray[np.float32]
OnAudio = Callable[[int, str, bytes, int], object]  # user id, display name, mono PCM16, rate
# User id, display name, and whether they left (else they stopped sending: silent, or held up).
OnEnd = Callable[[int, str, bool], object]


def _stream(rate: int, out_rate: int) -> Any:
    """A mono float32 soxr streaming resampler, or None where the rates already agree."""
    return None if rate == out_rate else soxr.ResampleStream(rate, out_rate, 1, dtype="float32")


def _flush(resampler: Any) -> Samples:
    """What a streaming resampler still holds (its delay line), leaving it ready for a new signal."""
    if resampler is None:
        return np.zeros(0, dtype=np.float32)
    tail: Samples = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
    resampler.clear()
    return tail


class BusAudioSource(discord.AudioSource):
    """Hex's speech for one playback: bus PCM in, 20 ms frames of 48 kHz stereo out.

    Fed from the loop with :meth:`feed`, read by discord.py's player thread. While the feed is
    open and nothing is queued (TTS still synthesising the next sentence) :meth:`read` returns
    silence, so playback timing stays continuous, for at most ``idle_timeout_s``; then, or once
    :meth:`finish` has been called and everything queued is read, or right after :meth:`clear`,
    it returns ``b""`` and the player ends. An ended source stays ended: play a new one.
    """

    def __init__(self, *, idle_timeout_s: float = 2.0) -> None:
        self._lock = threading.Lock()
        self._queued = bytearray()  # 48 kHz stereo s16le, not yet read
        self._rate = 0
        self._resampler: Any = None
        self._finished = False
        self._ended = False
        self._idle_since: float | None = None
        self.idle_timeout_s = idle_timeout_s
        self.frames_read = 0

    def feed(self, pcm16_mono: bytes, rate: int) -> None:
        """Queue mono PCM16 at ``rate``; ignored once the source is finished or ended."""
        if rate <= 0:
            raise ValueError(f"audio rate must be positive, got {rate}")
        samples = from_pcm16(pcm16_mono)
        with self._lock:
            if self._finished or self._ended:
                return
            if rate != self._rate:
                self._queue(_flush(self._resampler))
                self._rate, self._resampler = rate, _stream(rate, DISCORD_RATE)
            if self._resampler is not None:
                samples = self._resampler.resample_chunk(samples)
            self._queue(samples)

    def finish(self) -> None:
        """No more audio will be fed: play what is queued, then end."""
        with self._lock:
            if not (self._finished or self._ended):
                self._queue(_flush(self._resampler))
                self._resampler = None
                self._finished = True

    def clear(self) -> None:
        """Barge-in: drop everything queued and end at the next read."""
        with self._lock:
            self._queued.clear()
            self._resampler = None
            self._ended = True

    def read(self) -> bytes:
        with self._lock:
            if self._ended:
                return b""
            if len(self._queued) >= FRAME_BYTES or (self._finished and self._queued):
                frame = bytes(self._queued[:FRAME_BYTES]).ljust(FRAME_BYTES, b"\0")
                del self._queued[:FRAME_BYTES]
                self._idle_since = None
                self.frames_read += 1
                return frame
            now = time.monotonic()
            if self._idle_since is None:
                self._idle_since = now
            if self._finished or now - self._idle_since >= self.idle_timeout_s:
                self._ended = True
                return b""
            return SILENCE

    def is_opus(self) -> bool:
        return False

    def cleanup(self) -> None:
        self.clear()

    @property
    def queued_ms(self) -> float:
        """Audio queued and not yet read, in milliseconds (the resampler's few samples aside)."""
        with self._lock:
            return len(self._queued) / BYTES_PER_MS

    @property
    def ended(self) -> bool:
        """True once :meth:`read` returned ``b""`` or :meth:`clear` was called."""
        with self._lock:
            return self._ended

    def _queue(self, mono48: Samples) -> None:
        if mono48.size:
            self._queued += to_pcm16(np.repeat(mono48, 2))


@dataclass
class _Speaker:
    """One member's receive state: their own opus decoder and resampler keep streams apart."""

    name: str
    decoder: OpusDecoder
    resampler: Any
    ssrc: int | None = None
    warned: set[str] = field(default_factory=set)  # log events already logged for them


class UserAudioSink(voice_recv.AudioSink):
    """Each member's voice as mono PCM16 at ``out_rate``, delivered on ``loop``.

    ``on_audio(user_id, name, pcm16, rate)`` gets every decoded 20 ms (less the resampler's
    delay at the start of a stream); ``on_end(user_id, name, left)``, if given, follows the last
    audio when voice-recv reports that a member stopped speaking (200 ms without packets:
    ``left`` false) or left (true). Discord sends nothing while a member is silent, nor while
    their packets are held up on the way, so a stop is a pause of unknown length, not an end.

    ``write`` never raises: an exception on voice-recv's router thread would stop receiving for
    everyone. Frames that cannot be used are counted (``unknown_dropped``, ``dave_errors``,
    ``decode_errors``, ``write_errors``) and logged once per member.
    """

    def __init__(
        self,
        on_audio: OnAudio,
        loop: asyncio.AbstractEventLoop,
        *,
        out_rate: int = 16000,
        on_end: OnEnd | None = None,
    ) -> None:
        if out_rate <= 0:
            raise ValueError(f"out_rate must be positive, got {out_rate}")
        self._lock = threading.Lock()
        self._speakers: dict[int, _Speaker] = {}
        super().__init__()
        self._voice_client = None  # voice-recv's AudioReader sets it when listening starts
        self.on_audio = on_audio
        self.on_end = on_end
        self.loop = loop
        self.out_rate = out_rate
        self.unknown_dropped = 0
        self.dave_decrypted = 0
        self.passthrough = 0
        self.dave_errors = 0
        self.decode_errors = 0
        self.write_errors = 0

    def wants_opus(self) -> bool:
        return True

    def write(self, user: discord.Member | discord.User | None, data: voice_recv.VoiceData) -> None:
        try:
            with self._lock:
                self._write(user, data)
        except Exception:
            self.write_errors += 1
            if self.write_errors == 1:
                log.exception("discord.voice.write_failed", user_id=getattr(user, "id", None))

    def cleanup(self) -> None:
        with self._lock:
            self._speakers.clear()

    @voice_recv.AudioSink.listener()  # type: ignore[untyped-decorator]
    def on_voice_member_speaking_stop(self, member: discord.Member) -> None:
        with self._lock:
            self._end(member.id, forget=False)

    @voice_recv.AudioSink.listener()  # type: ignore[untyped-decorator]
    def on_voice_member_disconnect(self, member: discord.Member | None, ssrc: int | None) -> None:
        with self._lock:
            if member is not None:
                gone = [member.id]
            else:  # not in the member cache: find them by the SSRC they spoke with
                gone = [
                    u for u, s in self._speakers.items() if s.ssrc is not None and s.ssrc == ssrc
                ]
            for user_id in gone:
                self._end(user_id, forget=True)

    @property
    def users(self) -> frozenset[int]:
        """Members with receive state (heard since they last left)."""
        with self._lock:
            return frozenset(self._speakers)

    # -- on the router thread, under the lock ---------------------------------------------------

    def _write(
        self, user: discord.Member | discord.User | None, data: voice_recv.VoiceData
    ) -> None:
        ssrc: int | None = getattr(data.packet, "ssrc", None)
        user_id = user.id if user is not None else self._user_for(ssrc)
        if user_id is None:
            self.unknown_dropped += 1
            return
        name = getattr(user, "display_name", None) or str(user_id)
        speaker = self._speakers.get(user_id)
        payload: bytes | None = data.opus or None  # b"": voice-recv's stand-in for a lost packet
        if speaker is None:
            if payload is None:
                return  # nothing to conceal before a member's first packet
            decoder = OpusDecoder()  # type: ignore[no-untyped-call]
            speaker = _Speaker(name, decoder, _stream(DISCORD_RATE, self.out_rate))
            self._speakers[user_id] = speaker
        speaker.name, speaker.ssrc = name, ssrc
        if payload is not None:
            payload = self._open(user_id, bytes(payload), speaker)
            if payload is None:
                return
        try:
            pcm = speaker.decoder.decode(payload, fec=False)  # None: libopus conceals the loss
        except OpusError as exc:
            self.decode_errors += 1
            self._warn_once(speaker, "discord.voice.decode_failed", user_id, exc)
            return
        mono: Samples = from_pcm16(pcm).reshape(-1, 2).mean(axis=1, dtype=np.float32)
        if speaker.resampler is not None:
            mono = speaker.resampler.resample_chunk(mono)
        if mono.size:
            self._deliver(self.on_audio, user_id, name, to_pcm16(mono), self.out_rate)

    def _user_for(self, ssrc: int | None) -> int | None:
        """The member behind an SSRC whose Member object voice-recv could not find in the cache."""
        vc = self.voice_client
        if vc is None or ssrc is None:
            return None
        found: int | None = vc._get_id_from_ssrc(ssrc)
        return found

    def _open(self, user_id: int, payload: bytes, speaker: _Speaker) -> bytes | None:
        """Undo DAVE with discord.py's session; None when the frame cannot be used."""
        session = self._dave_session()
        if session is None:
            self.passthrough += 1  # no end-to-end encryption in this call (yet, or any more)
            return payload
        try:
            opened = session.decrypt(user_id, davey.MediaType.audio, payload)
        except Exception as exc:  # davey raises ValueError; a re-key on the loop may race us
            if PASSTHROUGH_ERROR in str(exc):
                self.passthrough += 1  # an unencrypted frame (silence, a transition): usable as is
                return payload
            self.dave_errors += 1
            self._warn_once(speaker, "discord.voice.dave_decrypt_failed", user_id, exc)
            return None
        self.dave_decrypted += 1
        return bytes(opened)

    def _dave_session(self) -> davey.DaveSession | None:
        """discord.py's DAVE session where the call is end-to-end encrypted and keyed, else None."""
        vc = self.voice_client
        if vc is None:
            return None
        session = vc._connection.dave_session
        if session is None or not session.ready or vc._connection.dave_protocol_version == 0:
            return None
        return session

    def _end(self, user_id: int, *, forget: bool) -> None:
        speaker = self._speakers.pop(user_id, None) if forget else self._speakers.get(user_id)
        if speaker is None:
            return
        tail = _flush(speaker.resampler)
        if tail.size:
            self._deliver(self.on_audio, user_id, speaker.name, to_pcm16(tail), self.out_rate)
        if self.on_end is not None:
            self._deliver(self.on_end, user_id, speaker.name, forget)

    def _deliver(self, callback: Callable[..., object], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the loop is closed: the actor is shutting down and nobody is listening

    def _warn_once(self, speaker: _Speaker, event: str, user_id: int, exc: Exception) -> None:
        if event not in speaker.warned:
            speaker.warned.add(event)
            log.warning(event, user_id=user_id, name=speaker.name, error=str(exc))
