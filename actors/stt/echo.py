"""The self-echo guard: Hex's own voice, coming back through someone's speakers into their
microphone, must never interrupt her or become a message.

Where speakers and microphone share a room (the page's voice mode: a laptop), speech that
starts while Hex speaks in that conversation (or just after) is *held*: its barge-in waits for
its first words. If they are Hex's own, it is an echo: no barge-in, and its final transcript is
not a message. Anything else barges in as usual. Elsewhere (Discord, where each speaker is a
separate stream and Hex's voice never comes back in it) nothing is held.

"Her own" is judged on word order, not on a bag of words (everyday words are in everything she
says): for three words or more, most of the heard word pairs must be pairs she said, in the reply
she is speaking or in the last ``window_s``; one or two words must appear together in one of
her sentences. Words are Unicode words (any language).
"""

from __future__ import annotations

import itertools
import re
import time
from collections import deque

import msgspec

from schemas import ReplySentence, Speaking

__all__ = ["EchoConfig", "EchoGuard"]

_WORD = re.compile(r"\w+(?:'\w+)?")


class EchoConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    platforms: tuple[str, ...] = ("web",)  # where Hex's voice may come back into a microphone
    tail_s: float = 1.5  # after Hex stops, her voice may still be in the room (and the buffers)
    window_s: float = 30.0  # what she said this recently is what an echo would repeat
    overlap: float = 0.6  # the share of heard word pairs that must be hers for an echo
    partial_ms: int = 400  # a held utterance's first words are transcribed this soon


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class EchoGuard:
    def __init__(self, config: EchoConfig, clock: object = time.monotonic) -> None:
        self.config = config
        self.clock = clock if callable(clock) else time.monotonic
        # channel -> (when, reply, its words) of the sentences she was given to say
        self.said: dict[str, deque[tuple[float, str, list[str]]]] = {}
        self.speaking: dict[str, str] = {}  # channel -> the reply being spoken ("" silent)
        self.stopped_at: dict[str, float] = {}

    def sentence(self, event: ReplySentence) -> None:
        """A sentence Hex will speak (or is speaking) in its channel."""
        kept = self.said.setdefault(event.channel, deque(maxlen=200))
        kept.append((self.clock(), event.reply_to, words(event.text)))

    def state(self, event: Speaking) -> None:
        if event.state == "start":
            self.speaking[event.channel] = event.reply_to or "?"
        else:
            self.speaking[event.channel] = ""
            self.stopped_at[event.channel] = self.clock()

    def guarded(self, platform: str, channel: str) -> bool:
        """Whether speech starting now in ``channel`` may be Hex's own voice."""
        if platform not in self.config.platforms:
            return False
        if self.speaking.get(channel):
            return True
        return self.clock() - self.stopped_at.get(channel, -1e9) < self.config.tail_s

    def echo(self, channel: str, text: str, *, final: bool) -> bool | None:
        """Whether heard ``text`` is Hex's own words: True, False, or None while too few words
        were heard to tell (a partial of one word; a final decides on what there is)."""
        heard = words(text)
        if not heard:
            return True if final else None  # nothing recognisable: noise, or her voice blurred
        if len(heard) < 2 and not final:
            return None
        verdict = self._hers(channel, heard)
        if verdict or final:
            return verdict
        # A partial's last word may be cut mid-word, and on too little audio Whisper mishears
        # the rest (0.4 s of "Once upon a time" comes back as "one set."): it says "a person"
        # only on three words before its last.
        kept = heard[:-1]
        return self._hers(channel, kept) if len(kept) >= 3 else None

    def _hers(self, channel: str, heard: list[str]) -> bool:
        since = self.clock() - self.config.window_s
        speaking = self.speaking.get(channel, "")
        hers = [
            said
            for at, reply, said in self.said.get(channel, ())
            if at >= since or (speaking and reply == speaking)
        ]
        if len(heard) <= 2:  # too short for pairs: the words together, in one of her sentences
            return any(_contains(said, heard) for said in hers)
        pairs = {pair for said in hers for pair in itertools.pairwise(said)}
        heard_pairs = list(itertools.pairwise(heard))
        share = sum(pair in pairs for pair in heard_pairs) / len(heard_pairs)
        return share >= self.config.overlap


def _contains(said: list[str], heard: list[str]) -> bool:
    n = len(heard)
    return any(said[i : i + n] == heard for i in range(len(said) - n + 1))
