"""What the brain knows of each person between replies: hobbies, tastes, how they feel about Hex, who they know.

Filled from the structured metadata after each reply (``chat.meta``'s profile
update) and read into the prompt's profile section before the next one. The
memory actor's persona state profile is the long-term home of this: its answer
to the memory query before each reply carries the person's profile, which the
prompt uses; the brain's own copy in its snapshot stands in while memory is down.
"""

from __future__ import annotations

import time

import msgspec

from schemas import PersonProfile, ProfileUpdate

KEEP = 8  # hobbies and tastes each; the newest win
ROSTER_KEEP = 16  # people known per person; the most recently mentioned win
ROSTER_SHOWN = 5  # in the prompt


class ProfileNotes(msgspec.Struct, kw_only=True):
    """The brain's own notes on one person, kept in its snapshot; memory's profile is the long-term one."""

    hobbies: list[str] = []
    tastes: list[str] = []
    sentiment: str = ""
    roster: dict[str, dict[str, str]] = {}
    updated: float = 0.0


def from_memory(kept: PersonProfile) -> ProfileNotes:
    return ProfileNotes(
        hobbies=list(kept.hobbies),
        tastes=list(kept.tastes),
        sentiment=kept.sentiment,
        roster=dict(kept.roster),
    )


def _merge(known: list[str], new: tuple[str, ...]) -> list[str]:
    out = [k for k in known if k.lower() not in {n.lower() for n in new}]
    out += [n for n in new if n]
    return out[-KEEP:]


def merge(profile: ProfileNotes, update: ProfileUpdate, *, now: float | None = None) -> bool:
    """Fold an update in; True when anything changed."""
    before = (list(profile.hobbies), list(profile.tastes), profile.sentiment, dict(profile.roster))
    profile.hobbies = _merge(profile.hobbies, update.hobbies)
    profile.tastes = _merge(profile.tastes, update.tastes)
    if update.sentiment:
        profile.sentiment = update.sentiment
    for person in update.people:
        known = next((k for k in profile.roster if k.lower() == person.name.lower()), None)
        old = profile.roster.pop(known) if known is not None else {}
        new = {
            k: v
            for k, v in (
                ("relation", person.relation),
                ("sentiment", person.sentiment),
                ("note", person.note),
            )
            if v
        }
        profile.roster[person.name] = {**old, **new}  # an empty value never erases what is known
    profile.roster = dict(list(profile.roster.items())[-ROSTER_KEEP:])
    changed = before != (profile.hobbies, profile.tastes, profile.sentiment, profile.roster)
    if changed:
        profile.updated = time.time() if now is None else now
    return changed


def describe(profile: ProfileNotes | None) -> str:
    """The prompt's profile section ('' when nothing is known)."""
    if profile is None:
        return ""
    lines = []
    if profile.hobbies:
        lines.append("Hobbies: " + ", ".join(profile.hobbies))
    if profile.tastes:
        lines.append("Likes: " + ", ".join(profile.tastes))
    if profile.sentiment:
        lines.append("Lately feels about you: " + profile.sentiment)
    people = []
    for name, about in list(profile.roster.items())[-ROSTER_SHOWN:]:
        detail = "; ".join(
            v for v in (about.get("relation"), about.get("sentiment"), about.get("note")) if v
        )
        people.append(f"{name} ({detail})" if detail else name)
    if people:
        lines.append("People they know: " + ", ".join(people))
    return "\n".join(lines)
