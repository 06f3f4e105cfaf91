"""Observations and moments in words, short enough for one line of the brain's prompt."""

from __future__ import annotations

LOOKS = {
    "angry": "annoyed",
    "disgust": "displeased",
    "fear": "worried",
    "happy": "happy",
    "sad": "sad",
    "surprise": "surprised",
    "neutral": "calm",
}


def duration(seconds: float) -> str:
    """``seconds`` the way a person says it: "a few seconds", "5 minutes", "2 hours", "3 days"."""
    if seconds < 45:
        return "a few seconds"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size * 0.95:
            n = max(1, round(seconds / size))
            return f"{n} {unit}{'' if n == 1 else 's'}"
    return "a minute"


def picture(
    *,
    kind: str,
    people: int,
    present: bool,
    attention: bool,
    emotion: str,
    scene: str,
    window: str = "",
) -> str:
    """What a source shows, in a few words: "one person, looking at the screen; they look happy"."""
    parts: list[str] = []
    if kind == "screen":
        parts.append(f"their screen shows {window!r}" if window else "their screen")
    elif scene == "dark":
        return "the camera sees only darkness"
    elif not present and not people:
        parts.append("nobody in view")
    else:
        count = people or 1
        who = "one person" if count == 1 else f"{count} people"
        parts.append(f"{who}, {'looking at the screen' if attention else 'looking away'}")
        if emotion:
            parts.append(f"they look {LOOKS.get(emotion, emotion)}")
    if scene == "changed":
        parts.append("the scene just changed")
    return "; ".join(parts)


def moment(change: str, *, away_s: float = 0.0, emotion: str = "", previous: str = "") -> str:
    """A moment in words: "they just came back after 2 hours"."""
    if change == "arrived":
        if away_s <= 0:
            return "someone just sat down in front of the camera"
        return f"they just came back after {duration(away_s)}"
    if change == "left":
        return "they just left"
    was = f" (they looked {LOOKS.get(previous, previous)} before)" if previous else ""
    return f"they now look {LOOKS.get(emotion, emotion)}{was}"
