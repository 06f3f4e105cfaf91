"""The reply's structured metadata: asked of the backend after the reply, validated, repaired or dropped.

Small models write prose when asked for JSON in words, so the request is
grammar-constrained where the backend can (llama.cpp's ``json_object`` with a
schema). Whatever comes back is decoded leniently: known fields with the wrong
type fall back to defaults, numbers are clamped, unknown fields are ignored,
and text that is not JSON at all yields ``None`` with a warning. Nothing here
raises into the actor.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import msgspec
import structlog

from actors.brain.backends import ChatTurn, Params
from schemas import ChatMessage, Fact, KnownPerson, ProfileUpdate, ReplyMeta

log = structlog.get_logger("actors.brain.metadata")

EMOTIONS: Final = (
    "neutral",
    "happy",
    "amused",
    "annoyed",
    "flustered",
    "sad",
    "worried",
    "excited",
    "smug",
)


MAX_TOKENS: Final = 600  # room for the longest answer SCHEMA allows

SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "emotion": {"type": "string", "enum": list(EMOTIONS)},
        "remember": {"type": "boolean"},
        "importance": {"type": "number"},
        # Every string is bounded: a grammar-constrained small model otherwise runs one on until
        # max_tokens cuts it, and a cut-off answer is no JSON at all.
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 5},
        "facts": {
            "type": "array",
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "maxLength": 120},
                    "quote": {"type": "string", "maxLength": 120},
                },
                "required": ["text", "quote"],
            },
        },
        "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 3},
        "tastes": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 3},
        "sentiment": {"type": "string", "maxLength": 40},
        "people": {
            "type": "array",
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 40},
                    "relation": {"type": "string", "maxLength": 40},
                    "sentiment": {"type": "string", "maxLength": 40},
                    "note": {"type": "string", "maxLength": 120},
                },
                "required": ["name"],
            },
        },
    },
    "required": ["emotion", "remember", "importance", "tags", "facts"],
}

INSTRUCTION: Final = (
    "Describe the exchange below as JSON. emotion: how the assistant feels ({emotions}). "
    "remember: true if the user shared something worth remembering. importance: 0 to 1. "
    "tags: short topic words. facts: things the user said about themselves, each with the exact quote. "
    "hobbies, tastes: the user's, if mentioned. sentiment: the user's mood toward the assistant. "
    "people: others the user named: name, who they are to the user, how the user feels about them, what happened."
)


def params(seed: int | None) -> Params:
    return Params(max_tokens=MAX_TOKENS, temperature=0.2, seed=seed)


def request(message: str, reply: str) -> list[ChatTurn]:
    """The turns that ask for the metadata of ``reply`` to ``message``."""
    return [
        ChatTurn("system", INSTRUCTION.format(emotions=", ".join(EMOTIONS))),
        ChatTurn("user", f"User: {message}\nAssistant: {reply}"),
    ]


class Parsed(msgspec.Struct, frozen=True, kw_only=True):
    emotion: str
    remember: bool
    importance: float
    tags: tuple[str, ...]
    facts: tuple[Fact, ...]
    profile: ProfileUpdate
    repaired: bool

    def event(self, reply_to: str, message: ChatMessage) -> ReplyMeta:
        """The ``chat.meta`` event of the reply to ``message``."""
        return ReplyMeta(
            reply_to=reply_to,
            person_id=message.person_id,
            channel=message.channel,
            emotion=self.emotion,
            remember=self.remember,
            importance=self.importance,
            tags=self.tags,
            facts=self.facts,
            profile=self.profile,
            repaired=self.repaired,
        )


def _strings(value: Any, limit: int, length: int = 60) -> tuple[tuple[str, ...], bool]:
    if not isinstance(value, list):
        return (), value is not None
    out = tuple(
        str(v).strip()[:length]
        for v in value
        if isinstance(v, str | int | float) and str(v).strip()
    )
    return out[:limit], len(out) != len(value) or len(value) > limit


def _people(value: Any, lowered: str) -> tuple[tuple[KnownPerson, ...], bool]:
    """People for the roster: only names the person really wrote (a model's guess is no acquaintance)."""
    if not isinstance(value, list):
        return (), value is not None
    out: list[KnownPerson] = []
    for item in value[:3]:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name.strip() or name.strip().lower() not in lowered:
            continue
        fields = {
            k: item.get(k) if isinstance(item.get(k), str) else ""
            for k in ("relation", "sentiment", "note")
        }
        out.append(
            KnownPerson(
                name=name.strip()[:40],
                relation=fields["relation"].strip()[:40],
                sentiment=fields["sentiment"].strip()[:40],
                note=fields["note"].strip()[:120],
            )
        )
    return tuple(out), len(out) != len(value)


def parse(text: str, user_text: str) -> Parsed | None:
    """Decode the model's answer; repair what can be repaired, ``None`` when nothing can."""
    raw = text.strip()
    match = re.search(r"\{.*\}", raw, re.DOTALL)
    if match is None:
        log.warning("brain.metadata_unusable", reason="no JSON object", sample=raw[:80])
        return None
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError as exc:
        log.warning("brain.metadata_unusable", reason=f"invalid JSON: {exc.msg}", sample=raw[:80])
        return None
    if not isinstance(data, dict):
        log.warning("brain.metadata_unusable", reason="JSON is not an object")
        return None
    repaired = match.group(0) != raw
    emotion = data.get("emotion")
    if not isinstance(emotion, str) or emotion.lower() not in EMOTIONS:
        repaired, emotion = True, "neutral"
    remember = data.get("remember")
    if not isinstance(remember, bool):
        repaired, remember = True, bool(remember)
    importance = data.get("importance", 0.0)
    if not isinstance(importance, int | float) or isinstance(importance, bool):
        repaired, importance = True, 0.0
    if not 0.0 <= importance <= 1.0:
        repaired, importance = True, min(1.0, max(0.0, float(importance)))
    tags, bad_tags = _strings(data.get("tags"), 5, 30)
    facts: list[Fact] = []
    raw_facts = data.get("facts")
    lowered = user_text.lower()
    for item in raw_facts[:3] if isinstance(raw_facts, list) else []:
        fact = item.get("text") if isinstance(item, dict) else None
        if not isinstance(fact, str) or not fact.strip():
            repaired = True
            continue
        quote = item.get("quote")
        quote = quote if isinstance(quote, str) else ""
        # A fact is kept only with words the person really said: a quote not in the message is dropped.
        if not quote or quote.strip().lower() not in lowered:
            repaired = True
            continue
        facts.append(Fact(text=fact.strip()[:200], quote=quote.strip()[:200]))
    hobbies, bad_hobbies = _strings(data.get("hobbies"), 3)
    tastes, bad_tastes = _strings(data.get("tastes"), 3)
    sentiment = data.get("sentiment")
    sentiment = sentiment if isinstance(sentiment, str) else ""
    people, bad_people = _people(data.get("people"), lowered)
    return Parsed(
        emotion=emotion.lower(),
        remember=remember,
        importance=round(float(importance), 3),
        tags=tags,
        facts=tuple(facts),
        profile=ProfileUpdate(
            hobbies=hobbies, tastes=tastes, sentiment=sentiment[:40], people=people
        ),
        repaired=repaired or bad_tags or bad_hobbies or bad_tastes or bad_people,
    )
