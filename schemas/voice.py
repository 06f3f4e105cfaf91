"""Voice events: audio in per speaker, transcripts, audio out per conversation, and the latency of each turn.

Audio travels as the event's blob: PCM16 little-endian mono samples at ``rate``.
Frames and partial transcripts are volatile (a late one is worthless); a final
transcript is durable (it becomes the person's chat message); audio out is volatile
and ordered by ``(reply_to, sentence, seq)``: the sentences it speaks are durable, so
nothing said is lost when a chunk is.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from schemas.base import Event
from schemas.chat import Platform


class AudioFrame(Event, frozen=True, kw_only=True, tag="audio.frame"):
    """A slice of one speaker's audio (20 to 100 ms is typical); the samples are the blob."""

    source: str  # the stream, unique per speaker: "discord:GUILD:USER", "mic", "web:CLIENT"
    person_id: str
    display_name: str = ""
    platform: Platform = "voice"
    channel: str  # where the conversation (and Hex's spoken reply) goes
    rate: int = 16000  # samples per second of the blob
    seq: int = 0  # frame order within the source
    at: float = 0.0  # wall time of the first sample (0: when received)
    end: bool = False  # the stream ends here: finish the utterance in progress
    # The stream went quiet with no word of why (Discord sends nothing while a member is
    # silent, and nothing either while their packets are held up): silence until more audio
    # comes, heard in real time, so a pause is judged like any other and a stall goes on.
    paused: bool = False


class Transcript(Event, frozen=True, kw_only=True, tag="stt.partial"):
    """What a person is saying so far (volatile; superseded by the next one and the final)."""

    utterance: str  # id shared by the partials and the final of one utterance
    source: str
    person_id: str
    channel: str
    text: str


class SpeechStarted(Event, frozen=True, kw_only=True, tag="stt.speech"):
    """A person started speaking (voiced for at least the VAD's min_speech_ms): TTS stops if it is
    speaking to them, which is the barge-in."""

    utterance: str
    source: str
    person_id: str
    channel: str
    platform: Platform = "voice"


class Segment(Event, frozen=True, kw_only=True, tag="stt.segment"):
    """An ended utterance's audio (the blob, PCM16 16 kHz), journaled before it is transcribed so a
    transcriber killed mid-utterance transcribes it after its restart."""

    utterance: str
    source: str
    person_id: str
    display_name: str = ""
    platform: Platform = "voice"
    channel: str
    speech_start: float  # wall time of the first voiced sample
    speech_end: float
    end_detected: float
    cut: bool = False
    # The person went on soon after an earlier turn ended: the audio is that turn's and this
    # one's (the pause between kept), and the chat message it becomes says the earlier one's
    # words again, whole (ChatMessage.revises names it).
    revises: str = ""
    complete: float = -1.0  # the end-of-turn model's verdict when the turn ended (-1: not asked)
    # It began while Hex spoke where her voice may come back into the microphone (the page):
    # its words decide whether it is her echo (actors/stt/echo.py).
    held: bool = False


class Timing(msgspec.Struct, frozen=True, kw_only=True):
    """Wall-clock marks of one spoken turn (unix seconds; 0 = not reached)."""

    speech_start: float = 0.0
    speech_end: float = 0.0  # the last voiced sample
    end_detected: float = 0.0  # the silence gap closed the utterance
    transcribed: float = 0.0  # the final transcript was ready


class Utterance(Event, frozen=True, kw_only=True, tag="stt.final"):
    """One utterance, transcribed; the person's chat message (``message_event_id``) follows it."""

    utterance: str
    source: str
    person_id: str
    display_name: str = ""
    platform: Platform = "voice"
    channel: str
    text: str
    language: str = ""
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    duration_s: float = 0.0
    cut: bool = False  # ended by max_utterance_s, not by a pause
    timing: Timing = Timing()
    message_event_id: str = ""  # the chat.message published for it
    echo: bool = False  # Hex's own voice heard back: no message was made of it


class AudioOut(Event, frozen=True, kw_only=True, tag="audio.out"):
    """A chunk of Hex's speech for one conversation; the samples are the blob."""

    channel: str
    platform: str = ""
    reply_to: str  # the chat message being answered
    sentence: int  # the sentence's index in the reply
    seq: int  # chunk order within the sentence
    rate: int
    last: bool = False  # the sentence's final chunk
    text: str = ""  # the sentence (on its first chunk)


class Speaking(Event, frozen=True, kw_only=True, tag="tts.speaking"):
    """Hex started or stopped speaking in a channel (the echo guard and barge-in read it)."""

    channel: str
    reply_to: str = ""
    state: Literal["start", "stop"]
    said: str = ""  # on stop: the text whose audio went out
    interrupted: bool = False
