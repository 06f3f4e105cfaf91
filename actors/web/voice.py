"""Voice in the page: the microphone's audio in as ``audio.frame``, Hex's speech out.

A tab that turns voice on sends ``{"t": "voice", "on": true, "conversation": "main"}``, then
its microphone as ``{"t": "audio", "conversation": "main", "seq": n, "pcm": BASE64}`` (16 kHz
PCM16 mono from the page's AudioWorklet, the browser's echo cancellation and noise suppression
on), ``"end": true`` when push-to-talk is released or voice is turned off. Each becomes a
volatile ``audio.frame`` from source ``web:<actor>:<start>:<tab>`` on platform ``web``, in the tab's
conversation: the STT actor hears it, the person's words come back as ``heard`` (their bubble)
and the reply streams into the chat as typed ones do.

Hex's speech for a conversation (``audio.out``, PCM16 at the TTS rate) goes to the tabs showing
it with voice on as ``{"t": "audio-out", ...}``; ``tts.speaking`` as ``speaking`` (a stop that
was interrupted tells the page to drop what it had not played: a barge-in). The STT actor's
echo guard (actors/stt/echo.py) keeps Hex's own voice, heard back through the speakers, from
interrupting her or becoming a message.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Callable
from typing import Any

from actors.web.hub import Client, Hub
from schemas import AudioFrame, AudioOut, Speaking, Transcript, Utterance

__all__ = ["WebVoice"]

RATE = 16000
MAX_FRAME_BYTES = RATE * 2  # a frame of at most a second
# A tab sends at most real time and a quarter, with a second and a half of slack: more is a
# flood (a tab's bug, or a guest's), dropped and said once every few seconds.
BYTES_PER_S = RATE * 2 * 1.25
BURST_BYTES = RATE * 2 * 1.5
FLOOD_NOTICE_S = 5.0


class WebVoice:
    def __init__(
        self,
        hub: Hub,
        publish_volatile: Callable[..., Any],
        *,
        channel: Callable[[str, str], str],
        display_name: str,
        actor: str,
    ) -> None:
        self.hub, self.publish_volatile = hub, publish_volatile
        self.channel, self.display_name = channel, display_name
        # Unique across web actors and their restarts: the STT keeps one stream per source.
        self.source_prefix = f"web:{actor}:{secrets.token_hex(4)}"
        self.frames_in = 0
        self.buckets: dict[int, tuple[float, float]] = {}  # tab -> (bytes allowed, when)
        self.warned: dict[int, float] = {}
        self.open: dict[int, str] = {}  # tab -> the channel its microphone streams into
        hub.on_leave.append(self.left)

    def left(self, client: Client) -> None:
        """A tab gone with its microphone on: the utterance in progress ends there."""
        channel = self.open.pop(client.id, None)
        self.buckets.pop(client.id, None)
        self.warned.pop(client.id, None)
        if channel is not None:
            self._frame(client, channel, b"", 0, end=True)

    def _allowed(self, client: Client, size: int) -> bool:
        now = time.monotonic()
        allowed, at = self.buckets.get(client.id, (BURST_BYTES, now))
        allowed = min(BURST_BYTES, allowed + (now - at) * BYTES_PER_S)
        if size > allowed:
            self.buckets[client.id] = (allowed, now)
            if now - self.warned.get(client.id, -1e9) >= FLOOD_NOTICE_S:
                self.warned[client.id] = now
                self.hub.send(
                    client,
                    {"t": "error", "text": "audio is arriving faster than real time: dropped"},
                )
            return False
        self.buckets[client.id] = (allowed - size, now)
        return True

    def command(self, client: Client, message: dict[str, Any], conversation: str) -> None:
        """``voice`` (on or off) or ``audio`` from a tab whose conversation was checked."""
        channel = self.channel(client.person_id, conversation)
        if message.get("t") == "voice":
            if message.get("on"):
                client.panels.add("voice")
                self.open[client.id] = channel
            else:
                client.panels.discard("voice")
                if self.open.pop(client.id, None) is not None:
                    self._frame(client, channel, b"", _seq(message.get("seq")), end=True)
            self.hub.send(client, {"t": "voice", "on": "voice" in client.panels})
            return
        if "voice" not in client.panels:
            self.hub.send(client, {"t": "error", "text": "turn voice on before sending audio"})
            return
        try:
            pcm = base64.b64decode(message.get("pcm", ""), validate=True)
        except (binascii.Error, TypeError, ValueError):
            self.hub.send(client, {"t": "error", "text": "audio is base64 PCM16"})
            return
        if len(pcm) > MAX_FRAME_BYTES or len(pcm) % 2:
            self.hub.send(
                client,
                {"t": "error", "text": f"an audio frame is whole samples, at most {RATE} of them"},
            )
            return
        if not self._allowed(client, len(pcm)):
            return
        self.open[client.id] = channel
        self._frame(client, channel, pcm, _seq(message.get("seq")), end=bool(message.get("end")))

    def _frame(self, client: Client, channel: str, pcm: bytes, seq: int, *, end: bool) -> None:
        self.frames_in += 1
        self.publish_volatile(
            AudioFrame(
                source=f"{self.source_prefix}:{client.id}",
                person_id=client.person_id,
                display_name=self.display_name or client.person_id,
                platform="web",
                channel=channel,
                rate=RATE,
                seq=seq,
                at=time.time(),
                end=end,
            ),
            key=f"{self.source_prefix}:{client.id}",
            blob=pcm,
        )

    # -- from the bus ----------------------------------------------------------------------

    def _listeners(self, channel: str) -> list[Client]:
        return [c for c in list(self.hub.clients) if "voice" in c.panels and channel in c.watching]

    def audio(self, event: AudioOut, pcm: bytes) -> None:
        tabs = self._listeners(event.channel)
        if not tabs:
            return
        message = {
            "t": "audio-out",
            "reply_to": event.reply_to,
            "sentence": event.sentence,
            "seq": event.seq,
            "rate": event.rate,
            "last": event.last,
            "text": event.text,
            "pcm": base64.b64encode(pcm).decode("ascii"),
        }
        for client in tabs:
            self.hub.send(client, message)

    def speaking(self, event: Speaking) -> None:
        message = {
            "t": "speaking",
            "state": event.state,
            "interrupted": event.interrupted,
            "reply_to": event.reply_to,
            "said": event.said,
        }
        for client in self._listeners(event.channel):
            self.hub.send(client, message)

    def heard(self, event: Utterance) -> None:
        """What the person said, as the STT heard it: their bubble (an echo is not one)."""
        if event.platform != "web":
            return
        message = {
            "t": "heard",
            "id": event.message_event_id,
            "text": event.text,
            "echo": event.echo,
            "utterance": event.utterance,
        }
        self.hub.to_channel(event.channel, message)

    def hearing(self, event: Transcript) -> None:
        self.hub.to_channel(
            event.channel, {"t": "hearing", "utterance": event.utterance, "text": event.text}
        )


def _seq(value: Any) -> int:
    return value if isinstance(value, int) and 0 <= value < 1 << 62 else 0
