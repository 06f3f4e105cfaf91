"""Whether Hex may speak first, to this person, now: a deterministic governor outside the model.

The model only ever decides *what* to say; this decides *whether*, from plain state a test can
set: the owner's switch, the kill switch, the energy state, the person's quiet hours (in their
time zone), do-not-disturb and quiet mode, their presence and mood, caps per hour and per day
(rolling windows: no burst at midnight), a minimum gap, and what became of the last message
Hex sent first (while it is unanswered only one gentle follow-up may go, then she backs off,
twice as long each round nobody answers).

Every refusal says why and until when, in words a person reads in ``hexbus autonomy why``:
"quiet hours until 08:00".
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from hexbus.config import ConfigError

Kind = Literal["silence", "due", "arrival", "anniversary", "thought", "followup", "checkin"]
Energy = Literal["awake", "sleepy", "asleep"]

HOUR = 3600.0
DAY = 86400.0
# A person's own word for how they feel about Hex now that says "leave me be for a while".
UNWELCOME = re.compile(
    r"annoy|irritat|angry|mad\b|furious|frustrat|overwhelm|stress|fed up|tired of|busy|"
    r"leave me|want(s)? space|upset with",
    re.IGNORECASE,
)


class Opening(msgspec.Struct, frozen=True, kw_only=True):
    """Something Hex could say first: to whom, where, why, and until when it still makes sense."""

    id: str
    person_id: str
    kind: Kind
    reason: str  # in plain words, for the prompt and for `hexbus autonomy why`
    created: float  # unix s
    expires: float  # unix s: never sent at or after this
    platform: str = "discord"
    channel: str = ""  # where to say it ("" = the person's direct messages)
    topic: str = ""  # what it is about (the dated fact, the memory), for the prompt
    priority: int = 0  # higher goes first when several are due
    not_before: float = 0.0  # unix s: not sent before this ("good luck" the morning of)
    expects_reply: bool = True  # False: a wish, not a question; nobody waits for an answer


class Pacing(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How often Hex may speak first, per person (config; a person's own settings override
    ``quiet`` and ``timezone``)."""

    per_hour: int = 1
    per_day: int = 2
    min_gap_s: float = 4 * HOUR  # between two messages she starts
    after_activity_s: float = 20 * 60  # not while, or just after, they talk with her
    followup_after_s: float = DAY  # an unanswered message gets its one follow-up no sooner
    backoff_s: float = 3 * DAY  # after the follow-up goes unanswered too; doubles each round
    backoff_max_s: float = 30 * DAY
    quiet: str = "22:00-09:00"  # their local time; "" for none
    timezone: str = "UTC"
    mood_hold_s: float = 12 * HOUR  # after they said they are annoyed, busy, overwhelmed
    need_presence: bool = True  # hold while they are known to be away (offline, do not disturb)

    def __post_init__(self) -> None:
        if self.per_hour < 0 or self.per_day < 0:
            raise ConfigError("autonomy caps per_hour and per_day must be 0 or more")
        parse_quiet(self.quiet)
        zone(self.timezone)


def parse_quiet(text: str) -> tuple[dt.time, dt.time] | None:
    """``"22:00-08:00"`` → (22:00, 08:00); ``""`` → None. Wraps past midnight when start > end."""
    if not text.strip():
        return None
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
    if not m or int(m[1]) > 23 or int(m[3]) > 24 or int(m[2]) > 59 or int(m[4]) > 59:
        raise ConfigError(f'quiet hours {text!r}: write them as "HH:MM-HH:MM", e.g. "22:00-08:00"')
    end_h = int(m[3]) % 24
    start, end = dt.time(int(m[1]), int(m[2])), dt.time(end_h, int(m[4]))
    return None if start == end else (start, end)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"time zone {name!r} is unknown: use an IANA name such as 'Europe/Berlin'"
        ) from None


def quiet_until(now: float, quiet: str, timezone: str) -> float | None:
    """If ``now`` falls in the quiet hours (local to ``timezone``), the unix time they end."""
    span = parse_quiet(quiet)
    if span is None:
        return None
    start, end = span
    tz = zone(timezone)
    local = dt.datetime.fromtimestamp(now, tz)
    t = local.time().replace(tzinfo=None)
    inside = (start <= t < end) if start < end else (t >= start or t < end)
    if not inside:
        return None
    day = local.date() if (start < end or t < end) else local.date() + dt.timedelta(days=1)
    ends = dt.datetime.combine(day, end, tz)
    # A wall-clock time skipped by a DST change still ends the quiet hours, an hour later.
    return max(ends.timestamp(), now + 1.0)


class Person(msgspec.Struct, kw_only=True):
    """What the governor knows of one person (kept in the autonomy actor's snapshot)."""

    timezone: str = ""  # "" = the configured default
    quiet: str | None = None  # None = the configured default; "" = no quiet hours
    dnd_until: float = 0.0  # "don't message me until tomorrow"
    quiet_mode_until: float = 0.0  # the brain's quiet mode for them
    present: bool | None = None  # None: nobody knows
    mood: str = ""  # how they said they feel about Hex, lately
    mood_at: float = 0.0
    last_heard: float = 0.0  # their last message to Hex
    last_said: float = 0.0  # Hex's last message to them, of any kind
    sent: list[float] = []  # when Hex spoke first to them, the last day's worth
    awaiting_since: float = 0.0  # a message she started is unanswered since (0: none)
    followed_up: bool = False  # that message's one follow-up went
    rounds: int = 0  # rounds in a row nobody answered (the back-off doubles each)
    backoff_until: float = 0.0

    def heard(self, now: float) -> None:
        """They wrote or spoke to Hex: whatever she asked is answered."""
        self.last_heard = max(self.last_heard, now)
        self.awaiting_since, self.followed_up, self.rounds, self.backoff_until = 0.0, False, 0, 0.0

    def spoke_first(self, now: float, *, followup: bool, expects_reply: bool = True) -> None:
        self.sent = [t for t in self.sent if t > now - DAY] + [now]
        self.last_said = max(self.last_said, now)
        if not expects_reply:
            return
        if followup:
            self.followed_up = True
        else:
            self.awaiting_since, self.followed_up = now, False

    def settle(self, now: float, limits: Pacing) -> None:
        """End an unanswered round: after its follow-up had a day of its own (or, with none
        sent, after two), nobody answered: back off, longer each round."""
        if not self.awaiting_since:
            return
        last = max(self.sent) if self.sent else self.awaiting_since
        ended = (
            now - last >= limits.followup_after_s
            if self.followed_up
            else now - self.awaiting_since >= 2 * limits.followup_after_s
        )
        if ended:
            self.rounds += 1
            wait = min(limits.backoff_max_s, limits.backoff_s * 2 ** (self.rounds - 1))
            self.backoff_until = now + wait
            self.awaiting_since, self.followed_up = 0.0, False


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""  # why not, in words
    until: float = 0.0  # when asking again could change the answer (0: when something changes)


def clock(at: float, timezone: str, now: float) -> str:
    """A time as the person reads it: "08:00", or "Tue 08:00" when it is a day or more away."""
    local = dt.datetime.fromtimestamp(at, zone(timezone))
    return local.strftime("%H:%M" if at - now < 20 * HOUR else "%a %H:%M")


@dataclass(frozen=True)
class Gatekeeper:
    limits: Pacing

    def check(
        self,
        c: Opening,
        p: Person,
        now: float,
        *,
        switch: bool,
        energy: Energy = "awake",
        frozen: bool = False,
    ) -> Verdict:
        """May ``c`` be sent to ``p`` at ``now``? ``switch``: the owner's (and the person's)
        switch for speaking first on that platform; ``frozen``: the kill switch is on."""
        lim = self.limits
        tz = p.timezone or lim.timezone
        quiet = lim.quiet if p.quiet is None else p.quiet
        if frozen:
            return Verdict(False, "the kill switch is on")
        if now >= c.expires:
            return Verdict(False, "expired")
        if now < c.not_before:
            return Verdict(False, f"not before {clock(c.not_before, tz, now)}", c.not_before)
        if not switch:
            return Verdict(False, f"speaking first is switched off ({c.platform})")
        if energy != "awake":
            return Verdict(False, f"{energy}: no initiative until she is awake")
        if (ends := quiet_until(now, quiet, tz)) is not None:
            return Verdict(False, f"quiet hours until {clock(ends, tz, now)}", ends)
        if p.dnd_until > now:
            return Verdict(
                False, f"do not disturb until {clock(p.dnd_until, tz, now)}", p.dnd_until
            )
        if p.quiet_mode_until > now:
            return Verdict(
                False, f"quiet mode until {clock(p.quiet_mode_until, tz, now)}", p.quiet_mode_until
            )
        if lim.need_presence and p.present is False and c.kind != "arrival":
            return Verdict(False, "they are away")
        if p.mood and UNWELCOME.search(p.mood) and now - p.mood_at < lim.mood_hold_s:
            until = p.mood_at + lim.mood_hold_s
            return Verdict(False, f"they said they feel {p.mood!r}", until)
        if p.awaiting_since:
            if c.kind != "followup":
                return Verdict(False, "awaiting a reply to her last message")
            if p.followed_up:
                return Verdict(False, "the one follow-up was sent; awaiting a reply")
            due = p.awaiting_since + lim.followup_after_s
            if now < due:
                return Verdict(False, f"a follow-up no sooner than {clock(due, tz, now)}", due)
        elif c.kind == "followup":
            return Verdict(False, "nothing unanswered to follow up")
        if p.backoff_until > now:
            until = p.backoff_until
            return Verdict(
                False, f"backing off after no answer, until {clock(until, tz, now)}", until
            )
        last_talk = max(p.last_heard, p.last_said)
        if now - last_talk < lim.after_activity_s:
            return Verdict(False, "they talked just now", last_talk + lim.after_activity_s)
        recent = sorted(t for t in p.sent if t > now - DAY)
        if recent and now - recent[-1] < lim.min_gap_s:
            until = recent[-1] + lim.min_gap_s
            return Verdict(
                False, f"too soon after her last one, until {clock(until, tz, now)}", until
            )
        hour = [t for t in recent if t > now - HOUR]
        if len(hour) >= lim.per_hour:
            # Once enough of them are an hour old; with a cap of 0, never.
            until = hour[len(hour) - lim.per_hour] + HOUR if lim.per_hour else 0.0
            return Verdict(False, f"{lim.per_hour} an hour at most", until)
        if len(recent) >= lim.per_day:
            until = recent[len(recent) - lim.per_day] + DAY if lim.per_day else 0.0
            return Verdict(False, f"{lim.per_day} a day at most", until)
        return Verdict(True)
