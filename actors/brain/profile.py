"""What the brain knows of each person between replies: hobbies, tastes, how they feel about Hex.

Filled from the structured metadata after each reply (``chat.meta``'s profile
update) and read into the prompt's profile section before the next one. The
memory actor's persona state profile (its own issue) will be the long-term home
of this; the brain keeps the recent picture in its snapshot.
"""

from __future__ import annotations

import time

import msgspec

from schemas import ProfileUpdate

KEEP = 8  # hobbies and tastes each; the newest win


class Profile(msgspec.Struct, kw_only=True):
    hobbies: list[str] = []
    tastes: list[str] = []
    sentiment: str = ""
    updated: float = 0.0


def _merge(known: list[str], new: tuple[str, ...]) -> list[str]:
    out = [k for k in known if k.lower() not in {n.lower() for n in new}]
    out += [n for n in new if n]
    return out[-KEEP:]


def merge(profile: Profile, update: ProfileUpdate, *, now: float | None = None) -> bool:
    """Fold an update in; True when anything changed."""
    before = (list(profile.hobbies), list(profile.tastes), profile.sentiment)
    profile.hobbies = _merge(profile.hobbies, update.hobbies)
    profile.tastes = _merge(profile.tastes, update.tastes)
    if update.sentiment:
        profile.sentiment = update.sentiment
    changed = before != (profile.hobbies, profile.tastes, profile.sentiment)
    if changed:
        profile.updated = time.time() if now is None else now
    return changed


def describe(profile: Profile | None) -> str:
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
    return "\n".join(lines)
