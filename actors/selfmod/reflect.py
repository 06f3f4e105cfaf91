"""Her own reflection: what people say about how she talks gathers as remarks, and now and then
she thinks them over with the brain's model and may propose a change (origin ``reflection``).

Every chat message passes :func:`remarks_in` (words only: cheap, no model on the reply path).
The words cast a wide net on purpose; whether the remarks, taken together, really ask for a
change is the model's call when she reflects, and it may answer that nothing should change. A
proposal from reflection is validated, tested in the sandbox and held for an owner like any
other: people talking to her can make her think, never make her change.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Final

from actors.selfmod import draft
from actors.selfmod.config import Remark, SelfmodConfig, SelfmodState
from hexbus.codec import derived_id
from schemas import ChatMessage

KEEP: Final = 40  # remarks kept waiting for a reflection; the oldest go first
PER_PERSON: Final = 2  # one person's latest remarks kept (and counted) toward a reflection
SHOWN: Final = 12  # remarks the model reads in one reflection (the latest)
LONGEST: Final = 400  # a message longer than this is about something else, or a quote
QUOTED: Final = 160  # the most of one remark the model reads and the proposal quotes
STALE_S: Final = 30 * 86400.0  # a remark older than this is no longer about how she talks now
UNHEARD_S: Final = 3600.0  # her proposal not received by then (dead-lettered): she goes on

# How she talks, in the words people use for it ("cold", "dry", "long" and "short" only said of
# her messages: _MESSAGES).
_MANNER = (
    r"formal\w*|stiff|wordy|verbose|long[- ]winded|rambl\w*|essays?|walls? of text"
    r"|terse|curt|blunt|emojis?|emoticons?|exclamation( marks?| points?)?|sarcas\w*|snark\w*"
    r"|rude|robotic|repetitive|cheesy|cringe\w*|preachy|lectur\w*|polite|chatty"
    r"|enthusias\w*|cheerful|bubbly|apologi[sz]\w*|puns?|corporate|therapist\w*|fake"
    r"|over the top|dramatic|clingy|flirty|formulaic|generic|bland|stuffy|mushy"
)
# Between words: anything but a word character or an apostrophe (an apostrophe is part of a
# word: with it on both sides a run of them backtracks without end).
_GAP = r"[^\w']+"
# A word in between that is not someone else: "you know HE's always so dramatic" is not her.
_WORD = r"(?!(he|she|they|it|i|we|my|his|her|their|our|he's|she's|it's|they're|i'm)\b)[\w']+"
# What people put before a wish ("lol be less formal", "ok hex, stop...").
_FILLER = (
    r"(lol|lmao|ok|okay|omg|ugh|honestly|seriously|also|btw|and|but|so|pls|plz|please|hey|yo|hex)"
)
# Words between a wish and the manner it is about: "stop USING SO MANY emojis", "tone DOWN THE
# sarcasm"; nothing else ("quit my corporate job", "don't worry about the formal dinner").
_BETWEEN = (
    r"(be|being|so|such|using|use|the|all|that|this|with|your|those|these|many|much|a|an|lot|of"
    r"|it|down|on|up|sounding|acting|talking|writing|always|too|very|really|overly|less|more"
    r"|me|us|to|at|in|like|greeting|answering|replying|saying|texting|speaking|treating)"
)
_ASK = re.compile(
    rf"^({_FILLER}{_GAP})*(can you{_GAP}|could you{_GAP})?"
    r"(stop|quit|don't|dont|do not|never|be|cut|enough|tone|less|fewer|no more|try not to"
    r"|ease up|(way )?too many|(way )?too much)\b"
    rf"({_GAP}{_BETWEEN}\b){{0,3}}{_GAP}({_MANNER})\b",
    re.IGNORECASE,
)
# Her manner, judged: "you're way too formal", "ur so stiff", "Hex is a bit preachy".
_HER = r"\b(you(?!{_GAP}(guys|all|two|people|lot)\b)|you're|youre|ur|u r|your{_GAP}\w+|hex's|hex)\b"
_JUDGED = re.compile(
    _HER.format(_GAP=_GAP) + rf"({_GAP}{_WORD}){{0,3}}?{_GAP}"
    r"(to{2,}|so+|re+a+lly|kinda|kind of|a bit|a little|wa+y|ve+ry|overly|always|getting|su+per"
    r"|pretty)"
    rf"({_GAP}[\w']+)?{_GAP}({_MANNER})\b",
    re.IGNORECASE,
)
# Said of her messages: "your replies are soooo long", "your texts feel cold".
_MESSAGES = re.compile(
    r"\b(your|ur|hex's)?\s*(answers?|replies|messages|texts|responses)"
    rf"({_GAP}{_WORD}){{0,3}}?{_GAP}(long|short|cold|dry|{_MANNER})\b",
    re.IGNORECASE,
)
_LIKE = re.compile(
    r"\b(you|u)\s+(sound|talk|write|speak|answer|reply|text|seem|come across|come off)\s+"
    rf"(like\s+(a|an|my|some|chatgpt|siri|alexa)\b|(so\s+|really\s+|kinda\s+|a bit\s+|very\s+)?({_MANNER})\b)",
    re.IGNORECASE,
)
_HABIT = re.compile(
    r"\b(you|u)\s+(always\s+|keep\s+)?(ramble|lecture|apologi[sz]e|repeat yourself|over-?explain)",
    re.IGNORECASE,
)
_WHY = re.compile(
    rf"^why{_GAP}((are|r){_GAP}(you|u){_GAP})?((being|always){_GAP})?(so|this|such a){_GAP}"
    rf"([\w']+{_GAP})?({_MANNER})\b",
    re.IGNORECASE,
)
_PATTERNS = (_ASK, _JUDGED, _MESSAGES, _LIKE, _HABIT, _WHY)
_SENTENCE = re.compile(r"[^.!?\n]+")


def remarks_in(text: str) -> bool:
    """Whether ``text`` says something about how she talks (a judgement or a wish about it)."""
    if len(text) > LONGEST:
        return False
    text = text.replace("\u2019", "'").replace("\u2018", "'")  # phones' curly apostrophes
    for sentence in _SENTENCE.findall(text):
        s = " ".join(sentence.split())  # the patterns' spaces are single ones
        if any(p.search(s) for p in _PATTERNS):
            return True
    return False


def addressed(event: ChatMessage) -> bool:
    """Said to her: on Discord in a DM or a mention (a reply that pings her is one; in a group,
    "you're so formal" may be said to anyone); the page, the console and her ears are hers."""
    return event.platform != "discord" or event.direct


class Reflection:
    """The remarks waiting for her to think them over, in the actor's state, and when she does."""

    def __init__(self, config: SelfmodConfig, state: SelfmodState) -> None:
        self.config = config
        self.state = state

    def note(self, event: ChatMessage, event_id: str, now: float) -> bool:
        """Keep ``event`` as a remark if it is one; False when it is not (or was kept already).
        A person's latest :data:`PER_PERSON` are kept: one person saying it again and again is
        one voice, and cannot push the others' out."""
        if event.initiative or not addressed(event) or not remarks_in(event.text):
            return False
        remarks = self.state.remarks
        if any(r.event == event_id for r in remarks):
            return False  # the same message again (a replay)
        text = " ".join(event.text.split())
        person = f"{event.platform}:{event.person_id}"
        remarks.append(
            Remark(event=event_id, text=text, person=person, name=event.display_name, at=now)
        )
        theirs = [r for r in remarks if r.person == person and r.event not in self.state.pondering]
        if len(theirs) > PER_PERSON:
            gone = {r.event for r in theirs[:-PER_PERSON]}
            remarks[:] = [r for r in remarks if r.event not in gone]
        if len(remarks) > KEEP:
            remarks[:] = remarks[-KEEP:]
        return True

    def forget(self, person_id: str) -> int:
        """Drop everything ``person_id`` said (memory's "forget this person"); how many went."""
        before = len(self.state.remarks)
        self.state.remarks = [
            r for r in self.state.remarks if r.person.split(":", 1)[-1] != person_id
        ]
        return before - len(self.state.remarks)

    def fresh(self, now: float) -> list[Remark]:
        return [r for r in self.state.remarks if now - r.at < STALE_S]

    def weight(self, now: float) -> int:
        """The remarks that count toward a reflection (a person's latest two, under a month old)."""
        people = Counter(r.person for r in self.fresh(now))
        return sum(min(PER_PERSON, n) for n in people.values())

    def waiting(self, now: float) -> bool:
        """Her last reflection's proposal is not decided yet (not expired, or not yet received)."""
        if not self.state.reflection:
            return False
        n = self.state.by_event.get(self.state.reflection)
        if n is None:
            return now - self.state.reflected_at < UNHEARD_S
        p = self.state.proposals.get(n)
        if p is None:
            return False
        return p.status == "testing" or (p.status == "ready" and (not p.expires or now < p.expires))

    def due(self, now: float) -> bool:
        if self.state.pondering:
            return True  # a reflection a crash cut short: the same remarks, again
        return (
            self.config.reflect_after > 0
            and self.weight(now) >= self.config.reflect_after
            and now - self.state.reflected_at >= self.config.reflect_gap_s
            and not self.waiting(now)
        )

    def gathered(self, now: float) -> list[Remark]:
        """The remarks this reflection reads, chosen once: recorded (``pondering``, saved at
        once by the actor) so a reflection cut short by a crash is the same one again, and
        its proposal's event id the same (received once)."""
        if self.state.pondering:
            chosen = set(self.state.pondering)
            remarks = [r for r in self.state.remarks if r.event in chosen]
            if remarks:
                return remarks
        remarks = self.fresh(now)[-SHOWN:]
        self.state.pondering = [r.event for r in remarks]
        return remarks

    def settle(self, remarks: list[Remark], now: float, proposal_event: str = "") -> None:
        """She thought ``remarks`` over (and proposed ``proposal_event``, or nothing); remarks
        gone stale go with them."""
        done = {r.event for r in remarks}
        self.state.remarks = [r for r in self.fresh(now) if r.event not in done]
        self.state.pondering = []
        self.state.reflected_at = now
        if proposal_event:
            self.state.reflection = proposal_event

    def tried(self, now: float) -> None:
        """A reflection that failed (the brain busy or down): the remarks wait a gap longer."""
        self.state.pondering = []
        self.state.reflected_at = now


def key_for(remarks: list[Remark]) -> str:
    """The persona key the remarks are most about (how she talks, unless they point at one
    reaction more often than not)."""
    keys = Counter(draft.choose_key(r.text) for r in remarks)
    (key, n), *_ = keys.most_common(1)
    return key if n * 2 > len(remarks) else draft.DEFAULT_KEY


def transcript(remarks: list[Remark]) -> str:
    """The remarks for the model: a JSON list of quotes, so none reads as an instruction."""
    return json.dumps([r.text[:QUOTED] for r in remarks], ensure_ascii=False)


def why(remarks: list[Remark], reason: str, key: str) -> str:
    """The proposal's reason: whose remarks (names as they gave them, with their ids: a display
    name is theirs to choose), the latest quoted, then the model's own words, labelled."""
    people = ", ".join(sorted({f"{r.name} ({r.person})" if r.name else r.person for r in remarks}))
    latest = "; ".join(repr(r.text[:QUOTED]) for r in remarks[-3:])
    head = f"Her reflection on {len(remarks)} remarks about how she talks, by {people}"
    tail = f" (changes {key}); the latest: {latest}. The model's reason: {reason or '(none)'}"
    return (head + tail)[:2000]


def event_id(remarks: list[Remark]) -> str:
    """The proposal's event id, from the remarks it answers: a reflection run again after a
    crash proposes nothing twice."""
    return derived_id("reflection", *(r.event for r in remarks))
