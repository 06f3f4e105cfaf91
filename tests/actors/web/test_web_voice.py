"""Voice in the page, in a real browser against a real Hex: Chromium's fake microphone plays an
espeak-ng recording through getUserMedia and the page's AudioWorklet; Whisper hears it, the
brain answers, Kokoro speaks, the page plays it; then the person speaks over her and she stops,
the part she had not said dropped.

Speaking over her must happen while she speaks, whenever that is on a loaded machine, and the fake
microphone plays its file on its own clock. So the test mixes a second voice into the microphone's
stream (``MIXER``) and plays it once the page is playing her answer."""

from __future__ import annotations

import base64
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest

from actors.tts.normalize import speakable
from hexbus.pcm import to_pcm16
from schemas import BargeIn, Reply
from tests.support.brain import brain_toml
from tests.support.harness import Hex, HexFactory, actor_toml, poll_for
from tests.support.speech import espeak, make_wav
from tests.support.web import artifact, chromium, journaled, page_of, web_toml

pytestmark = [pytest.mark.process, pytest.mark.slow]

STT = actor_toml("stt", "actors.stt.actor:SttActor", heartbeat_timeout_s=30.0)
TTS = actor_toml("tts", "actors.tts.actor:TtsActor", heartbeat_timeout_s=30.0)
QUESTION = "Tell me a long story about a goblin who collects silver spoons, please."
OVER = "Stop! Tell me about dogs instead."

# Wraps getUserMedia: the page gets the fake microphone mixed with what ``hexSay(base64 PCM16 at
# 48 kHz)`` plays, through the same AudioWorklet and websocket as any microphone.
MIXER = """
(() => {
  const media = navigator.mediaDevices;
  const real = media.getUserMedia.bind(media);
  media.getUserMedia = async (constraints) => {
    const stream = await real(constraints);
    const mix = new AudioContext({ sampleRate: 48000 });
    const out = mix.createMediaStreamDestination();
    mix.createMediaStreamSource(stream).connect(out);
    window.hexSay = (b64) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const pcm = new Int16Array(bytes.buffer);
      const buffer = mix.createBuffer(1, pcm.length, 48000);
      buffer.getChannelData(0).set(Float32Array.from(pcm, (x) => x / 32768));
      const voice = mix.createBufferSource();
      voice.buffer = buffer;
      voice.connect(out);
      voice.start();
      return buffer.duration;
    };
    return out.stream;
  };
})();
"""


def start(hex_factory: HexFactory) -> Hex:
    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    brain = brain_toml(root, extra="metadata = false\nmemory = false")
    return hex_factory(brain + STT + TTS + web_toml(), root=root).start()


def until(page: Any, expression: str, timeout: float) -> Any:
    try:
        return poll_for(lambda: page.evaluate(expression), timeout, interval=0.1, what=expression)
    except AssertionError as e:  # say where the voice was (a CI log shows only this)
        stats = page.evaluate("JSON.stringify(hex.voice.stats)")
        raise AssertionError(f"{e}; the page's voice: {stats[:3000]}") from None


def test_spoken_question_answered_aloud_and_speaking_over_her_stops_her(
    hex_factory: HexFactory, tmp_path: Path
) -> None:
    hx = start(hex_factory)
    wav = tmp_path / "mic.wav"
    # The question, then silence (the fake microphone plays it once); speaking over her is mixed
    # in when she is speaking.
    make_wav(wav, [1.0, QUESTION, 2.0], rate=48000)
    over = base64.b64encode(to_pcm16(espeak(OVER, tmp_path, rate=48000, speed=150))).decode()
    fake_mic = (
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        "--autoplay-policy=no-user-gesture-required",
    )
    with chromium(*fake_mic) as browser:
        page = browser.new_page()
        page.add_init_script(MIXER)
        page.goto(page_of(hx)["open"])
        page.wait_for_selector("#connection.up")
        page.click("#voice-hands-free")
        until(page, "hex.voice.on", 10)
        # The page's microphone reached STT: the person's words are their bubble.
        until(page, "hex.voice.stats.heard.some(t => /goblin|story|spoon/i.test(t))", 120)
        assert page.locator(".msg.person.spoken").count() >= 1
        # Hex's answer plays in the page, gaplessly, chunk after chunk.
        until(page, "hex.voice.stats.bytesPlayed > 48000", 120)
        page.screenshot(path=artifact("voice.png"), full_page=True)
        # The person speaks over her: she stops, and what she had not said is dropped.
        page.evaluate("(b64) => hexSay(b64)", over)
        until(page, "hex.voice.stats.interrupted >= 1", 120)
        until(page, "hex.voice.stats.heard.some(t => /dog|stop/i.test(t))", 120)
        page.wait_for_timeout(2000)  # room for chunks of hers still on their way
        stats = page.evaluate("hex.voice.stats")
        assert stats["bytesSent"] > 16000 * 2 * 3, stats  # seconds of microphone went up
        # Nothing of the interrupted reply played after she was stopped (what the page had
        # queued was flushed; a chunk still on its way is dropped).
        assert stats["atStop"], stats
        for reply, played in stats["atStop"].items():
            assert stats["byReply"].get(reply, 0) == played, stats
        page.screenshot(path=artifact("voice-barge-in.png"), full_page=True)

    events = journaled(hx, ["chat.bargein", "chat.reply"])
    # The first barge-in stopped the story (the person may go on talking over her next answer,
    # which is a barge-in of its own).
    barge_in, *_ = [e for e in events if isinstance(e, BargeIn)]
    assert barge_in.channel == "owner/main" and barge_in.said and barge_in.reply_to, barge_in
    # What she was saying when stopped: the story's reply, cancelled there (the model was still
    # writing) or complete (it had written it all while she spoke; the brain then records only
    # what was heard, tests/actors/brain/test_barge_in.py); either way what was said is its start.
    story = next(
        e for e in events if isinstance(e, Reply) and e.reply_to == barge_in.reply_to and e.text
    )
    assert story.status in ("cancelled", "complete"), story
    # (Compared word by word as spoken: what was said is sentences as TTS reads them, joined by
    # spaces; the text keeps the model's paragraph breaks, quotes and digits.)
    text, said = words(speakable(story.text)), words(barge_in.said)[:4]
    assert said and text[: len(said)] == said, (story.text, barge_in.said)


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())
