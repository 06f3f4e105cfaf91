"""Reasons Hex might speak first, each turned into a candidate with a window that fits it:

- ``silence``: someone she talks with often has not written for a while (3 days for a person
  she talks with most days, 7 for a regular; never for a stranger);
- ``due``: a dated event they told her about: "good luck" the morning of, "how did it go?"
  that evening or the next day;
- ``arrival``: they came back to the desk after a long absence (perception);
- ``thought``: someone on her mind: each time they seemed worried or sad it weighs more, each
  time they seemed well it weighs less, and it fades by itself (:class:`Mind`); while it weighs
  enough, she checks on them the next day;
- ``followup``: her own unanswered message, once, gently.

Pure functions of what the autonomy actor keeps; the governor decides whether any is sent.
"""

from __future__ import annotations

import datetime as dt

import msgspec

from actors.autonomy.dates import Coming, coming
from actors.autonomy.governor import DAY, HOUR, Opening, Person, zone


class Triggers(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    silence_close_s: float = 3 * DAY  # a person she talks with on `close_days` of the last 30
    silence_regular_s: float = 7 * DAY  # on `regular_days` of them
    close_days: int = 10
    regular_days: int = 3
    absence_s: float = 2 * HOUR  # back at the desk after this long is worth a hello
    arrival_window_s: float = 10 * 60
    morning: str = "08:30"  # local time a "good luck" may go from
    evening: str = "18:00"  # local time a "how did it go?" may go from
    thought_after_s: float = 16 * HOUR
    thought_emotions: tuple[str, ...] = ("worried", "sad")  # her reading of how they were
    easing_emotions: tuple[str, ...] = ("happy", "amused", "excited")
    thought_half_life_s: float = 2 * DAY  # how fast someone goes off her mind
    thought_weight: float = 0.7  # on her mind enough to check on them (one worried reading: 1)


class Habit(msgspec.Struct, kw_only=True):
    """The days (local, ISO) a person wrote to Hex lately: how close they talk."""

    days: list[str] = []

    def wrote(self, when: dt.datetime) -> None:
        day = when.date().isoformat()
        if day not in self.days:
            self.days = [*self.days[-59:], day]

    def active_days(self, today: dt.date, span: int = 30) -> int:
        first = (today - dt.timedelta(days=span)).isoformat()
        return sum(1 for d in self.days if d > first)


def _at(day: dt.date, hhmm: str, tz: str) -> float:
    h, m = (int(x) for x in hhmm.split(":"))
    return dt.datetime.combine(day, dt.time(h, m), zone(tz)).timestamp()


def silence(pid: str, p: Person, habit: Habit, now: float, tz: str, t: Triggers) -> Opening | None:
    last = max(p.last_heard, p.last_said)
    if not p.last_heard:
        return None  # never talked: not someone to miss
    days = habit.active_days(dt.datetime.fromtimestamp(now, zone(tz)).date())
    after = (
        t.silence_close_s
        if days >= t.close_days
        else t.silence_regular_s
        if days >= t.regular_days
        else None
    )
    if after is None or now - last < after:
        return None
    quiet = round((now - last) / DAY)
    return Opening(
        id=f"silence:{pid}:{int(last)}",  # one per stretch of silence
        person_id=pid,
        kind="silence",
        reason=f"she has not heard from them in {quiet} days",
        created=now,
        expires=now + 2 * DAY,
        priority=1,
    )


def due(
    pid: str, text: str, said: float, tz: str, t: Triggers, *, platform: str, channel: str = ""
) -> list[Opening]:
    """Candidates for an event ``text`` (said at ``said``) dates: before it and after it."""
    local = dt.datetime.fromtimestamp(said, zone(tz))
    event: Coming | None = coming(text, local)
    if event is None:
        return []
    key = f"{pid}:{event.day.isoformat()}:{event.what}"
    out = []
    about = f"their {event.what} ({event.phrase})"
    if event.exact and event.day > local.date():
        out.append(
            Opening(
                id=f"due-before:{key}",
                person_id=pid,
                kind="due",
                reason=f"{about} is today: wish them well",
                topic=text,
                created=said,
                not_before=_at(event.day, t.morning, tz),
                expires=_at(event.day, "12:00", tz),
                platform=platform,
                channel=channel,
                priority=3,
                expects_reply=False,
            )
        )
    end = event.day if event.exact else event.day + dt.timedelta(days=6)
    out.append(
        Opening(
            id=f"due-after:{key}",
            person_id=pid,
            kind="due",
            reason=f"{about} has happened: ask how it went",
            topic=text + " (after)",
            created=said,
            not_before=_at(end, t.evening, tz),
            expires=_at(end + dt.timedelta(days=2), "21:00", tz),
            platform=platform,
            channel=channel,
            priority=2,
        )
    )
    return out


def arrival(pid: str, away_s: float, now: float, t: Triggers, *, platform: str) -> Opening | None:
    if away_s < t.absence_s:
        return None
    hours = away_s / HOUR
    gone = f"{hours:.0f} hours" if hours >= 1.5 else f"{away_s / 60:.0f} minutes"
    return Opening(
        id=f"arrival:{pid}:{int(now)}",
        person_id=pid,
        kind="arrival",
        reason=f"they just came back after {gone}",
        created=now,
        expires=now + t.arrival_window_s,
        platform=platform,
        priority=2,
    )


class Mind(msgspec.Struct, kw_only=True):
    """How much someone is on her mind: a weight each worried or sad reading of them raises by
    one, each good one lowers by half, and time halves every ``thought_half_life_s``."""

    weight: float = 0.0  # as of ``at``
    at: float = 0.0  # the last reading that put them on her mind
    about: str = ""  # how they seemed then

    def now(self, now: float, t: Triggers) -> float:
        return float(self.weight * 0.5 ** (max(0.0, now - self.at) / t.thought_half_life_s))

    def read(self, emotion: str, now: float, t: Triggers) -> None:
        weight = self.now(now, t)
        if emotion in t.thought_emotions and weight < t.thought_weight:
            self.weight, self.at, self.about = weight + 1.0, now, emotion  # on her mind from now
        elif emotion in t.thought_emotions:
            # Heavier, on the same clock: ``at`` stays the worry she will check on.
            self.weight *= (weight + 1.0) / weight
            self.about = emotion
        elif emotion in t.easing_emotions and weight:
            self.weight *= max(0.0, weight - 0.5) / weight


def thought(
    pid: str, mind: Mind, now: float, t: Triggers, *, platform: str, channel: str = ""
) -> Opening | None:
    """Check on them, the day after the reading that put them on her mind, while it weighs."""
    if mind.now(now, t) < t.thought_weight:
        return None
    return Opening(
        id=f"thought:{pid}:{int(mind.at)}",
        person_id=pid,
        kind="thought",
        reason=f"they seemed {mind.about} lately and it is still on her mind: check on them",
        topic=f"seemed {mind.about}",
        created=now,
        not_before=mind.at + t.thought_after_s,
        expires=mind.at + t.thought_after_s + DAY,
        platform=platform,
        channel=channel,
        priority=1,
    )


def followup(pid: str, p: Person, now: float, after_s: float, *, platform: str) -> Opening | None:
    if not p.awaiting_since or p.followed_up:
        return None
    return Opening(
        id=f"followup:{pid}:{int(p.awaiting_since)}",
        person_id=pid,
        kind="followup",
        reason="her last message is unanswered: one gentle follow-up",
        created=now,
        not_before=p.awaiting_since + after_s,
        expires=p.awaiting_since + 2 * after_s,
        platform=platform,
        priority=0,
    )


def _on_this_day(
    key: str, pid: str, years: int, reason: str, text: str, now: float, tz: str, t: Triggers
) -> Opening:
    """An anniversary's candidate: from the morning to the evening of their local day."""
    today = dt.datetime.fromtimestamp(now, zone(tz)).date()
    ago = "a year" if years == 1 else f"{years} years"
    return Opening(
        id=f"{key}:{today.year}",
        person_id=pid,
        kind="anniversary",
        reason=f"{ago} ago today{reason}",
        topic=text,
        created=now,
        not_before=_at(today, t.morning, tz),
        expires=_at(today, "21:00", tz),
        priority=0,
        expects_reply=False,
    )


def anniversary(
    key: str, pid: str, what: str, day: dt.date, text: str, now: float, tz: str, t: Triggers
) -> Opening | None:
    """A dated event she was told of, a whole number of years ago today (their local day)."""
    today = dt.datetime.fromtimestamp(now, zone(tz)).date()
    years = today.year - day.year
    if years < 1 or (day.month, day.day) != (today.month, today.day):
        return None
    return _on_this_day(f"anniversary:{key}", pid, years, f" was their {what}", text, now, tz, t)


def remembered(
    pid: str, memory_id: str, text: str, years: int, now: float, tz: str, t: Triggers
) -> Opening:
    """Something memory holds about them from this day, ``years`` years ago."""
    return _on_this_day(
        f"remembered:{memory_id}", pid, years, ", from her memory of them", text, now, tz, t
    )


def checkin(owner: str, now: float, every_s: float, switches: str) -> Opening:
    """The owner's check-in: what is on and off, and whether to dial anything up or down."""
    return Opening(
        id=f"checkin:{int(now // every_s)}",
        person_id=owner,
        kind="checkin",
        reason="the regular check-in: ask the owner whether to dial any of her capabilities up or "
        "down, and name what is on and off",
        topic=switches,
        created=now,
        expires=now + 2 * DAY,
        priority=1,
    )
