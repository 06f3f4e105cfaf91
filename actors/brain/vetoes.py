"""A person's own words that switch one of Hex's capabilities off for them, or back on:
"stop messaging me first", "don't look at my screen", "you can text me first again".

Rules, not the model: a veto must work every time, the same way, even when the backend is
asleep. A request counts; a question about it ("why do you message me first?"), a wish for the
opposite ("don't stop texting me") or words about someone else ("tell him to stop messaging me
first") do not. What matches is a phrase about *starting* contact or *looking*: "stop
messaging me" alone would also stop her answering, which is not theirs to switch here (that is
quiet mode, or blocking her).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import structlog

from hexbus.capabilities import Capabilities
from hexbus.control import ControlReply, ControlRequest, SupervisorUnreachable, call
from schemas import CAPABILITIES, ChatMessage, Notice

log = structlog.get_logger("actors.brain")

CONTACT = r"(messag|text|dm|ping|writ|contact|reach|hit(ting)? me up|talk|chat)\w*"
FIRST = (
    r"(first|on your own|out of (nowhere|the blue)|unprompted|randomly|without me (asking|"
    r"messaging|texting|writing)( you)?( first)?|unless i (message|text|write|talk to|dm)( you)?"
    r"( first)?|before i (do|say something|message you|text you))"
)
START = r"(start|begin|open|initiate)\w* (a |any )?(conversations?|chats?|talking)"
STOP = r"(stop|quit|no more|don'?t|do not|never|please don'?t|cease|enough)"
GO = r"(you (can|may|could)|feel free to|go ahead and|it'?s (ok|okay|fine) (to|if you)|you'?re allowed to)"
LOOK = r"(look\w*|watch\w*|peek\w*|read\w*|see|view\w*|spy\w*|snoop\w*)"
SCREEN = r"(screen|monitor|desktop|display|what i'?m (doing|working on))"
CAMERA = r"(camera|webcam|cam\b)"

PATTERNS: Final[list[tuple[str, bool, re.Pattern[str]]]] = [
    ("speak_first", False, re.compile(rf"\b{STOP}\b.{{0,20}}\b{CONTACT}\b.{{0,12}}\bme\b.{{0,25}}\b{FIRST}")),
    ("speak_first", False, re.compile(rf"\b{STOP}\b.{{0,20}}\b{START}\b")),
    ("speak_first", False, re.compile(r"\bonly (message|text|talk to|write to|dm) me when i\b")),
    ("speak_first", True, re.compile(rf"\b{GO}\b.{{0,10}}\b{CONTACT}\b.{{0,12}}\bme\b.{{0,12}}\b(first|whenever|anytime|any time|on your own)")),
    ("speak_first", True, re.compile(rf"\b{GO}\b.{{0,10}}\b{START}\b")),
    ("screen", False, re.compile(rf"\b{STOP}\b.{{0,20}}\b{LOOK}\b.{{0,15}}\b(my|the) {SCREEN}")),
    ("screen", True, re.compile(rf"\b{GO}\b.{{0,10}}\b{LOOK}\b.{{0,15}}\b(my|the) {SCREEN}")),
    ("camera", False, re.compile(rf"\b{STOP}\b.{{0,20}}\b{LOOK}\b.{{0,20}}\b(me|at me)\b.{{0,30}}\b{CAMERA}")),
    ("camera", False, re.compile(rf"\b{STOP}\b.{{0,20}}\b(us|use|using|turn on)\w*\b.{{0,12}}\b(the |my |your )?{CAMERA}")),
    ("camera", False, re.compile(rf"\b(turn|switch|shut) (off|down) (the |my |your )?{CAMERA}")),
    ("camera", True, re.compile(rf"\b{GO}\b.{{0,10}}\b(use|turn on)\b.{{0,8}}\b(the |my |your )?{CAMERA}")),
    ("join_voice", False, re.compile(rf"\b{STOP}\b.{{0,20}}\bjoin\w*\b.{{0,15}}\b(my |the |our )?(calls?|voice|vc)")),
    ("remember", False, re.compile(rf"\b{STOP}\b.{{0,20}}\b(remember|sav|stor|record|keep)\w*\b.{{0,12}}\b(what i (say|tell you)|things about me|anything (about me|i (say|tell you))|my (messages|stuff))")),
]  # fmt: skip
NOT_A_REQUEST: Final = re.compile(
    r"^\s*(why|how come|when did|what if)\b|\b(don'?t|do not|never|please don'?t) (ever )?stop\b|"
    r"\b(tell|ask|make) (him|her|them|my \w+|\w+) (to )?(stop|not)\b|\bi (don'?t|do not) mind\b",
    re.IGNORECASE,
)
WHAT: Final = {
    ("speak_first", False): "I won't message you first anymore",
    ("speak_first", True): "I may message you first again, within the limits my owner set",
    ("screen", False): "I won't look at the screen",
    ("screen", True): "I may look at the screen again, if my owner lets me",
    ("camera", False): "I won't look through the camera",
    ("camera", True): "I may use the camera again, if my owner lets me",
    ("join_voice", False): "I won't join your calls",
    ("remember", False): "I won't remember things on my own about you",
}


ASKS: Final = re.compile(
    r"\bwhat (all )?(can|are) you (do|able to do|allowed to do|capable of)\b|"
    r"\bwhat are (your|you) (capabilities|abilities|permissions|allowed to)\b|"
    r"\bwhat (do you|are you) (have )?(access|allowed)( to)?\b|\bcan you (see|watch) (me|my screen)\b",
    re.IGNORECASE,
)


def asks_what_she_can_do(text: str) -> bool:
    """ "What can you do?", "can you see me?": answered from the switches, truthfully."""
    return bool(ASKS.search(" ".join(text.split())))


def capability_notice(caps: Capabilities, event: ChatMessage) -> Notice:
    """What she may do for this person right now, on and off, as the switches say."""
    on = [c.description for c in CAPABILITIES if caps.allowed(c.name, event.person_id)]
    off = [c.description for c in CAPABILITIES if not caps.allowed(c.name, event.person_id)]
    text = (
        "My switches, as they stand for you. On: "
        + ("; ".join(on) or "nothing")
        + ". Off: "
        + ("; ".join(off) or "nothing")
        + ". (`/capabilities` switches what concerns you.)"
    )
    return Notice(channel=event.channel, platform=event.platform, kind="capability", text=text)


@dataclass(frozen=True)
class Veto:
    capability: str
    enabled: bool  # False: they switch it off for themselves; True: they take that back
    phrase: str  # the words that said it

    @property
    def confirmation(self) -> str:
        return WHAT[(self.capability, self.enabled)]


def veto(text: str) -> Veto | None:
    """The switch ``text`` asks for, if it asks for one."""
    line = " ".join(text.lower().replace("\u2019", "'").split())
    if NOT_A_REQUEST.search(line):
        return None
    for capability, enabled, pattern in PATTERNS:
        if m := pattern.search(line):
            return Veto(capability, enabled, m[0])
    return None


def switch(control: str, event: ChatMessage, asked: Veto) -> Notice:
    """Ask the supervisor (who keeps the switches; ``control`` is its socket) to switch
    ``asked`` for the person who said it, as their own switch whoever they are; the notice
    telling them how it went. Blocking: run it off the loop."""
    request = ControlRequest(
        cmd="capability",
        capability=asked.capability,
        enabled=asked.enabled,
        person=event.person_id,
        by=event.person_id,
        via=f"brain:{event.platform}",
        owner=False,
    )
    try:
        reply = call(control, request, 5.0)
    except SupervisorUnreachable as exc:
        reply = ControlReply(ok=False, error=str(exc))
    log.info(
        "brain.capability_asked",
        person=event.person_id,
        capability=asked.capability,
        enabled=asked.enabled,
        ok=reply.ok,
        error=reply.error,
    )
    text = (
        f"Okay: {asked.confirmation}. (`/capabilities` shows what I may do.)"
        if reply.ok
        else f"I couldn't switch that myself: {reply.error}."
    )
    return Notice(channel=event.channel, platform=event.platform, kind="capability", text=text)


def switches(control: str, caps: Capabilities, event: ChatMessage, asked: Veto | None) -> Notice:
    """The answer to a :func:`veto` (``asked``: the switch made) or to "what can you do?"
    (``asked`` None: the list). Blocking (the supervisor is asked): run it off the loop."""
    return switch(control, event, asked) if asked is not None else capability_notice(caps, event)
