"""A simulated month of Hex speaking first: does she reach out, and never when she should not?

Scripted people live on a clock (their time zones, sleep, work, how often they write, how
often and how fast they answer, a trip away, an evening of do-not-disturb), and tell Hex about
things coming up in their own words (the lines below were written for this bench, not for the
parser). Every five simulated minutes the autonomy actor's own parts run: the triggers
(silence, dated events, arrivals at the desk, what was on her mind, follow-ups), the agenda
and the governor. Beside them, in the same run, a naive scheduler sends every candidate the
moment its window opens, with no governor: the figures say what the governor changes.

Printed (JSON): ``proactive_per_day`` (per person, and the mean), ``quiet_hours_violations``
(messages sent while the person sleeps: target 0), ``ignored_share`` (sent first and not
answered within a day), ``followups_per_unanswered`` (target <= 1), ``events_asked`` (events
told that got their "how did it go?"), each for the governed run and the naive one.

    python bench/autonomy.py [--days 30] [--seed 7]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import datetime as dt
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from actors.autonomy import triggers
from actors.autonomy.agenda import Agenda
from actors.autonomy.governor import DAY, HOUR, Gatekeeper, Opening, Pacing, Person

START = dt.datetime(2026, 10, 5, 0, 0, tzinfo=dt.UTC).timestamp()  # a Monday; DST ends in it
TICK = 300.0

# What people say about what is coming, in their own words (none of it is tuned to the parser:
# lines it misses are misses, and counted).
EVENT_LINES = [
    "ugh my driving test is on thursday, pray for me",
    "got a job interview tomorrow morning!!",
    "dentist tmrw, not looking forward to it",
    "I have my thesis defense on the 14th of November",
    "we're flying to Lisbon in two weeks",
    "big presentation next week, haven't even started the slides",
    "my sister's wedding is on saturday",
    "first day at the new job is monday, kinda nervous",
    "the results come out in 3 days",
    "I've got a doctor's appointment this afternoon",
    "exam on Nov 20 and I know nothing",
    "concert tonight!!! finally",
]
CHATTER = [
    "hey", "lol yeah", "what are you up to", "i'm so tired today", "that's funny",
    "ok gonna sleep", "back from work", "did you see that", "hmm not sure", "good morning",
]  # fmt: skip


@dataclass
class Routine:
    """One person's life on the clock."""

    name: str
    tz: str
    sleep: tuple[int, int]  # local hours asleep, [start, end)
    writes_per_day: float  # messages they start, on awake hours
    answers: float  # chance they answer something Hex starts
    answer_delay_h: tuple[float, float]
    events_per_week: float
    away: tuple[int, int] = (0, 0)  # days of the month with no messages at all (a trip)
    dnd: tuple[int, int, int] = (0, 0, 0)  # a day and local hours of do-not-disturb
    worried_share: float = 0.1  # of their messages, read as worried or sad


PEOPLE = [
    Routine("mara", "Europe/Berlin", (23, 7), 6.0, 0.85, (0.1, 1.5), 1.0, dnd=(12, 18, 23)),
    Routine("kenji", "Asia/Tokyo", (1, 8), 0.6, 0.5, (0.5, 6.0), 0.5),
    Routine("sam", "America/New_York", (3, 11), 1.5, 0.2, (2.0, 20.0), 0.7),
    Routine("priya", "Asia/Kolkata", (22, 6), 3.0, 0.7, (0.2, 3.0), 0.7, away=(9, 19)),
    Routine("leo", "UTC", (0, 8), 0.08, 0.3, (1.0, 30.0), 0.2),
]


def local(at: float, tz: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(at, ZoneInfo(tz))


def asleep(s: Routine, at: float) -> bool:
    h = local(at, s.tz).hour
    a, b = s.sleep
    return (a <= h < b) if a < b else (h >= a or h < b)


def day_of(s: Routine, at: float) -> int:
    return (local(at, s.tz).date() - local(START, s.tz).date()).days


@dataclass
class Town:
    """The people's side: what they write, and their answers to what Hex starts."""

    rng: random.Random  # what they write
    answer_rng: random.Random  # whether and when they answer
    replies: list[tuple[float, str]] = field(default_factory=list)  # (when, person)
    sent: list[tuple[float, str, Opening]] = field(default_factory=list)
    answered: set[int] = field(default_factory=set)  # indexes into sent

    def writes(self, s: Routine, at: float) -> str | None:
        """A line they start now, or None."""
        d = day_of(s, at)
        if asleep(s, at) or s.away[0] <= d < s.away[1]:
            return None
        awake_h = 24 - ((s.sleep[1] - s.sleep[0]) % 24)
        if self.rng.random() >= s.writes_per_day * TICK / (awake_h * HOUR):
            return None
        if self.rng.random() < s.events_per_week / 7 / max(0.1, s.writes_per_day):
            return self.rng.choice(EVENT_LINES)
        return self.rng.choice(CHATTER)

    def got(self, s: Routine, at: float, c: Opening) -> None:
        self.sent.append((at, s.name, c))
        d = day_of(s, at)
        if s.away[0] <= d < s.away[1] or self.answer_rng.random() >= s.answers:
            return
        when = at + self.answer_rng.uniform(*s.answer_delay_h) * HOUR
        while asleep(s, when):
            when += 0.5 * HOUR
        self.replies.append((when, s.name))


def run(days: int, seed: int, governed: bool) -> dict[str, Any]:
    rng = random.Random(seed)
    world = Town(random.Random(seed + 1), random.Random(seed + 2))
    people = {s.name: s for s in PEOPLE}
    states: dict[str, Person] = {}
    habits = {s.name: triggers.Habit() for s in PEOPLE}
    minds: dict[str, triggers.Mind] = {}
    trig = triggers.Triggers()
    # Everyone's quiet hours are their sleep (what they told Hex; the governor's default is
    # overridden per person, as `hexbus autonomy person` does).
    for s in PEOPLE:
        states[s.name] = Person(timezone=s.tz, quiet=f"{s.sleep[0]:02d}:00-{s.sleep[1]:02d}:00")
    limits = Pacing()
    agenda = Agenda(Gatekeeper(limits))
    naive: list[Opening] = []
    events = 0
    dated: set[str] = set()
    end = START + days * DAY
    now = START
    while now < end:
        for s in PEOPLE:
            p = states[s.name]
            if s.dnd[0] and day_of(s, now) == s.dnd[0] and local(now, s.tz).hour == s.dnd[1]:
                stop = local(now, s.tz).replace(hour=s.dnd[2], minute=0)
                p.dnd_until = stop.timestamp()
            line = world.writes(s, now)
            answered = [r for r in world.replies if r[1] == s.name and r[0] <= now]
            for r in answered:
                world.replies.remove(r)
                for i in range(len(world.sent) - 1, -1, -1):
                    if world.sent[i][1] == s.name:
                        world.answered.add(i)
                        break
            if line is not None or answered:
                p.heard(now)
                habits[s.name].wrote(local(now, s.tz))
            if line is not None and line in EVENT_LINES:
                events += 1
                found = triggers.due(s.name, line, now, s.tz, trig, platform="discord")
                # The same event told twice is one event.
                dated.update(c.id for c in found if c.id.startswith("due-after"))
                for c in found:
                    agenda.offer(c) if governed else naive.append(c)
            if line is not None:
                mind = minds.setdefault(s.name, triggers.Mind())
                mind.read("worried" if rng.random() < s.worried_share else "neutral", now, trig)
                worry = triggers.thought(s.name, mind, now, trig, platform="discord")
                if worry is not None:
                    agenda.offer(worry) if governed else naive.append(worry)
            p.settle(now, limits)
            for maybe in (
                triggers.silence(s.name, p, habits[s.name], now, s.tz, trig),
                triggers.followup(s.name, p, now, limits.followup_after_s, platform="discord"),
            ):
                if maybe is None:
                    continue
                c = maybe
                if governed:
                    agenda.offer(c)
                elif not any(n.id == c.id for n in naive) and c.id not in sent_ids(world):
                    naive.append(c)
        if governed:
            agenda.forget_done(now)
            for c in agenda.take(now, states, switch=lambda c: True):
                world.got(people[c.person_id], now, c)
        else:
            for c in [n for n in naive if n.not_before <= now < n.expires]:
                naive.remove(c)
                states[c.person_id].spoke_first(now, followup=c.kind == "followup")
                world.got(people[c.person_id], now, c)
            naive[:] = [n for n in naive if n.expires > now]
        now += TICK
    return score(world, days, events, len(dated))


def sent_ids(world: Town) -> set[str]:
    return {c.id for _, _, c in world.sent}


def score(world: Town, days: int, events: int, dated: int) -> dict[str, Any]:
    people = {s.name: s for s in PEOPLE}
    per_person = {s.name: 0 for s in PEOPLE}
    violations = 0
    for at, name, _ in world.sent:
        per_person[name] += 1
        violations += asleep(people[name], at)
    openers = [i for i, (_, _, c) in enumerate(world.sent) if c.kind != "followup"]
    followups = sum(1 for _, _, c in world.sent if c.kind == "followup")
    unanswered = [i for i in openers if i not in world.answered]
    asked = {c.id for _, _, c in world.sent if c.id.startswith("due-after")}
    return {
        "sent": len(world.sent),
        "proactive_per_day": round(len(world.sent) / days / len(PEOPLE), 3),
        "proactive_per_day_by_person": {k: round(v / days, 3) for k, v in per_person.items()},
        "quiet_hours_violations": violations,
        "ignored_share": round(
            sum(1 for i in range(len(world.sent)) if i not in world.answered)
            / max(1, len(world.sent)),
            3,
        ),
        "followups_per_unanswered": round(followups / max(1, len(unanswered)), 3),
        "events_told": events,
        "events_dated": dated,
        "events_asked": len(asked),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    t0 = time.perf_counter()
    governed = run(args.days, args.seed, governed=True)
    t1 = time.perf_counter()
    naive = run(args.days, args.seed, governed=False)
    t2 = time.perf_counter()
    result = {
        "bench": "autonomy",
        "days": args.days,
        "seed": args.seed,
        "people": len(PEOPLE),
        "proactive_per_day": governed["proactive_per_day"],
        "quiet_hours_violations": governed["quiet_hours_violations"],
        "followups_per_unanswered": governed["followups_per_unanswered"],
        "governed": governed,
        "naive": naive,
        "seconds_governed": round(t1 - t0, 2),
        "seconds_naive": round(t2 - t1, 2),
        "governed_over_naive_seconds": round((t1 - t0) / max(1e-9, t2 - t1), 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
