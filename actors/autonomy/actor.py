"""The autonomy actor: Hex speaks first when it fits, and never when it should not.

It listens to what people say (``chat.message``: who talks with her and how often, where to
reach them, the dated events they mention), to how they seem (``chat.meta``), to quiet mode
(``brain.quiet``), to Discord's status (``discord.presence``: offline, do not disturb), to the
camera (``vision.moment``: someone back at the desk), to the owner's switches
(``capability.changed``) and to her energy (``brain.energy``: sleepy or asleep, she takes no
initiative). From these its triggers (:mod:`triggers`) queue candidate messages, each with a
reason and an expiry, on an agenda; every ``tick_s`` the governor (:mod:`governor`, deterministic, outside the model) says which may go now, at most one
a person. One that may becomes a ``chat.message`` whose ``initiative`` is the reason: the brain
writes the words, the platform delivers them, memory keeps them like any reply of hers.

Everything held back keeps its latest reason ("quiet hours until 08:00"), answered to
``autonomy.why`` (``hexbus autonomy why``). Speaking first is off unless the owner switches
``speak_first`` on; switched off (for everyone, or by one person), what waits is dropped at
once. A candidate's message has an id derived from the candidate, so a restart between sending
and snapshotting never says it twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from typing import ClassVar

import msgspec
import structlog

from actors.autonomy import triggers
from actors.autonomy.agenda import Agenda, Held
from actors.autonomy.config import (
    DATED_KEPT,
    SENT_KEPT,
    AutonomyConfig,
    AutonomyState,
    Dated,
    Reach,
)
from actors.autonomy.dates import coming
from actors.autonomy.governor import DAY, Energy, Gatekeeper, Opening, Person, zone
from hexbus import Actor, RequestTimeout, on
from hexbus.codec import derived_id
from schemas import (
    CAPABILITIES,
    AutonomyReport,
    AutonomyWhy,
    BrainEnergy,
    CapabilityChanged,
    ChatMessage,
    DiscordDm,
    DiscordDmChannel,
    DiscordPresence,
    MemoryQuery,
    MemoryResult,
    QuietMode,
    ReplyMeta,
    VisionMoment,
    WhyLine,
)

log = structlog.get_logger("actors.autonomy")

SWITCHES = frozenset(c.name for c in CAPABILITIES)
WRITTEN = frozenset({"discord", "web"})  # where people write (and so where she reaches them)
DM_TIMEOUT_S = 5.0
MEMORY_TIMEOUT_S = 2.0  # the Discord actor opening a DM


def line(c: Opening | None, held: Held, *, verdict: str | None = None) -> WhyLine:
    return WhyLine(
        candidate=held.candidate,
        person_id=held.person_id,
        kind=held.kind,
        reason=c.reason if c is not None else "",
        verdict=held.reason if verdict is None else verdict,
        at=held.at,
        until=held.until,
        dropped=held.dropped,
    )


class AutonomyActor(Actor[AutonomyConfig, AutonomyState]):
    subscribes: ClassVar[tuple[str, ...]] = (
        "chat.message",
        "chat.meta",
        "brain.quiet",
        "brain.energy",
        "discord.presence",
        "vision.moment",
        "capability.changed",
        "autonomy.why",
    )
    config_type = AutonomyConfig
    state_type = AutonomyState

    clock: Callable[[], float] = staticmethod(time.time)  # unix s: the real one

    async def setup(self) -> None:
        self.governor = Gatekeeper(self.config.pacing)
        self.agenda = Agenda(self.governor, self.state.book)
        self.detail = self.describe()

    def now(self) -> float:
        return self.clock() + self.config.clock_offset_s

    def person(self, pid: str) -> Person:
        found = self.state.people.get(pid)
        if found is None:
            settings = self.config.people.get(pid)
            found = self.state.people[pid] = Person(
                timezone=settings.timezone if settings else "",
                quiet=settings.quiet if settings else None,
            )
        return found

    def tz(self, pid: str) -> str:
        return self.person(pid).timezone or self.config.pacing.timezone

    def switch(self, c: Opening) -> bool:
        if c.kind == "checkin":
            return self.capabilities.allowed("checkin")
        name = f"speak_first.{c.platform}"
        return name in SWITCHES and self.capabilities.allowed(name, c.person_id)

    def describe(self) -> str:
        on = self.capabilities.allowed("speak_first")
        return f"{len(self.agenda.waiting)} waiting" + ("" if on else "; speak_first is off")

    # -- what people say ----------------------------------------------------------------

    def at(self) -> float:
        """The handled event's time on her clock: now, or when it was published (a replay)."""
        envelope = self.envelope
        if self.live or envelope is None or not envelope.wall:
            return self.now()
        return envelope.wall + self.config.clock_offset_s

    @on(ChatMessage)
    async def on_message(self, event: ChatMessage) -> None:
        if event.initiative:
            return  # her own
        now, pid = self.at(), event.person_id
        person = self.person(pid)
        person.heard(now)
        local = dt.datetime.fromtimestamp(now, zone(self.tz(pid)))
        self.state.habits.setdefault(pid, triggers.Habit()).wrote(local)
        # Where to reach them is where they write: a terminal session is gone when it ends, and
        # a call may be over (what was said there is followed up where they last wrote; a call
        # she is in with them right now is asked of the Discord actor when the time comes).
        if event.platform in WRITTEN:
            self.state.reach[pid] = Reach(
                platform=event.platform, channel=event.channel, display_name=event.display_name
            )
        self.keep_dated(pid, event.text, local)
        reach = self.state.reach.get(pid)
        if reach is None:
            self.state_changed()
            return
        told_here = event.platform in WRITTEN
        for c in triggers.due(
            pid,
            event.text,
            now,
            self.tz(pid),
            self.config.triggers,
            platform=reach.platform,
            channel=event.channel if told_here else "",
        ):
            if self.agenda.offer(c):
                log.info("autonomy.queued", candidate=c.id, kind=c.kind, reason=c.reason)
        self.state_changed()

    def keep_dated(self, pid: str, text: str, local: dt.datetime) -> None:
        """An exactly dated event is kept for its anniversary (the last DATED_KEPT)."""
        event = coming(text, local)
        if event is None or not event.exact:
            return
        key = f"{pid}:{event.day.isoformat()}:{event.what}"
        dated = self.state.dated
        dated[key] = Dated(person_id=pid, what=event.what, day=event.day.isoformat(), text=text)
        while len(dated) > DATED_KEPT:
            del dated[next(iter(dated))]

    @on(ReplyMeta)
    async def on_meta(self, event: ReplyMeta) -> None:
        if event.reply_to in {derived_id("autonomy", s.candidate) for s in self.state.sent}:
            return  # about her own opening: nothing they said
        now = self.at()
        person = self.person(event.person_id)
        if event.profile.sentiment:
            person.mood, person.mood_at = event.profile.sentiment, now
        self.state.minds.setdefault(event.person_id, triggers.Mind()).read(
            event.emotion, now, self.config.triggers
        )
        self.state_changed()

    @on(QuietMode)
    async def on_quiet(self, event: QuietMode) -> None:
        if event.scope == "person":
            self.person(event.target).quiet_mode_until = event.until
            self.state_changed()

    @on(BrainEnergy)
    async def on_energy(self, event: BrainEnergy) -> None:
        self.state.energy = event
        self.state_changed()

    def energy(self, c: Opening) -> Energy:
        """Her energy for this person: sleepy or asleep, she takes no initiative."""
        mine = self.state.energy
        theirs = mine.people.get(c.person_id, mine.state)
        return theirs if theirs in ("sleepy", "asleep") else mine.state  # type: ignore[return-value]

    @on(DiscordPresence)
    async def on_presence(self, event: DiscordPresence) -> None:
        """Discord's status for someone she talks with: offline is away, do not disturb holds
        her until it changes (or for a day), online and idle are here."""
        if event.person_id not in self.state.people:
            return  # a member she never talked with
        person = self.person(event.person_id)
        person.present = event.status != "offline"
        if event.status != "dnd":
            person.dnd_until = 0.0
        elif person.dnd_until <= self.now():  # "dnd" told again (a restart) keeps its day
            person.dnd_until = self.now() + DAY
        self.state_changed()

    @on(VisionMoment)
    async def on_moment(self, event: VisionMoment) -> None:
        pid = self.config.desk
        if not pid or event.change == "emotion":
            return
        self.person(pid).present = event.change == "arrived"
        reach = self.state.reach.get(pid)
        if event.change == "arrived" and event.away_s and reach is not None:
            c = triggers.arrival(
                pid, event.away_s, self.at(), self.config.triggers, platform=reach.platform
            )
            if c is not None:
                self.agenda.offer(msgspec.structs.replace(c, channel=reach.channel))
        self.state_changed()

    @on(CapabilityChanged)
    async def on_capability(self, event: CapabilityChanged) -> None:
        # The base class has applied the newer switches: what may no longer go is dropped now.
        now = self.now()
        for c in list(self.agenda.waiting.values()):
            if not self.switch(c):
                self.agenda.drop(c, f"speaking first was switched off ({c.platform})", now)
        self.detail = self.describe()
        self.state_changed()

    @on(AutonomyWhy)
    async def on_why(self, event: AutonomyWhy) -> None:
        pid = event.person_id or None
        lines = tuple(line(c, held) for c, held in self.agenda.why(pid))
        sent = tuple(s for s in reversed(self.state.sent) if pid in (None, s.person_id))
        await self.respond(AutonomyReport(now=self.now(), lines=lines, sent=sent))

    # -- the agenda ------------------------------------------------------------------------

    async def on_live(self) -> None:
        self.spawn(self.rounds(), name="rounds")

    async def rounds(self) -> None:
        while True:
            await self.round()
            await asyncio.sleep(self.config.tick_s)

    async def round(self) -> None:
        now = self.now()
        pacing = self.config.pacing
        for pid in list(self.state.people):
            person = self.person(pid)
            person.settle(now, pacing)
            reach = self.state.reach.get(pid)
            if reach is None:
                continue
            for c in (
                triggers.followup(
                    pid, person, now, pacing.followup_after_s, platform=reach.platform
                ),
                triggers.silence(
                    pid,
                    person,
                    self.state.habits.get(pid, triggers.Habit()),
                    now,
                    self.tz(pid),
                    self.config.triggers,
                ),
                self.on_her_mind(pid, now, reach),
            ):
                if c is not None and self.agenda.offer(
                    msgspec.structs.replace(c, platform=reach.platform, channel=reach.channel)
                ):
                    log.info("autonomy.queued", candidate=c.id, kind=c.kind, reason=c.reason)
        for c in [*self.occasions(now), *await self.look_back(now)]:
            if self.agenda.offer(c):
                log.info("autonomy.queued", candidate=c.id, kind=c.kind, reason=c.reason)
        for c in self.agenda.take(now, self.state.people, switch=self.switch, energy=self.energy):
            await self.say(c, now)
        self.agenda.forget_done(now)
        self.agenda.save()
        self.detail = self.describe()
        self.state_changed()

    def on_her_mind(self, pid: str, now: float, reach: Reach) -> Opening | None:
        """A check on someone while they weigh on her mind; off her mind, it is dropped."""
        mind = self.state.minds.get(pid)
        if mind is None:
            return None
        c = triggers.thought(
            pid, mind, now, self.config.triggers, platform=reach.platform, channel=reach.channel
        )
        if c is None:
            for waiting in list(self.agenda.waiting.values()):
                if waiting.person_id == pid and waiting.kind == "thought":
                    self.agenda.drop(waiting, "they are no longer on her mind", now)
        return c

    def occasions(self, now: float) -> list[Opening]:
        """Anniversaries of the dated events she was told of, and the owner's check-in."""
        out = []
        for key, d in self.state.dated.items():
            reach = self.state.reach.get(d.person_id)
            day = dt.date.fromisoformat(d.day)
            tz = self.tz(d.person_id)
            c = triggers.anniversary(
                key, d.person_id, d.what, day, d.text, now, tz, self.config.triggers
            )
            if c is not None and reach is not None:
                out.append(
                    msgspec.structs.replace(c, platform=reach.platform, channel=reach.channel)
                )
        owner = self.config.owner
        due = now - self.state.last_checkin >= self.config.checkin_every_s
        reach = self.state.reach.get(owner)
        if owner and due and reach and self.capabilities.allowed("checkin"):
            table = self.capabilities.table()
            on = ", ".join(r["name"] for r in table if r["enabled"])
            off = ", ".join(r["name"] for r in table if not r["enabled"])
            c = triggers.checkin(owner, now, self.config.checkin_every_s, f"on: {on}; off: {off}")
            out.append(msgspec.structs.replace(c, platform=reach.platform, channel=reach.channel))
        return out

    async def where(self, c: Opening) -> tuple[str, str]:
        """The platform and channel to say it on. On Discord: aloud, when she is in a call with
        them now (and ``speak_first.voice`` is on for them); else their DM (opened if need be),
        except a dated event's follow-up, which goes where they told it. Elsewhere, where they
        last wrote."""
        reach = self.state.reach.get(c.person_id)
        fallback = c.platform, c.channel or (reach.channel if reach else "")
        if c.platform != "discord":
            return fallback
        try:
            dm = await self.request(
                DiscordDm(person_id=c.person_id), DiscordDmChannel, timeout=DM_TIMEOUT_S
            )
        except RequestTimeout:
            log.warning("autonomy.no_dm", person=c.person_id, why="the discord actor is silent")
            return fallback
        if dm.call and self.capabilities.allowed("speak_first.voice", c.person_id):
            return "voice", dm.call
        if dm.error:
            log.warning("autonomy.no_dm", person=c.person_id, why=dm.error)
        if c.kind == "due" and c.channel:
            return fallback
        return c.platform, dm.channel or fallback[1]

    async def look_back(self, now: float) -> list[Opening]:
        """Once a day per person she writes to: what memory holds about them from this day in
        past years (an import's history included)."""
        years, out = self.config.anniversary_years, list[Opening]()
        for pid, reach in list(self.state.reach.items()):
            tz = zone(self.tz(pid))
            today = dt.datetime.fromtimestamp(now, tz).date()
            if not years or self.state.looked_back.get(pid) == today.isoformat():
                continue
            self.state.looked_back[pid] = today.isoformat()
            for n in range(1, years + 1):
                try:
                    day = today.replace(year=today.year - n)
                except ValueError:
                    continue  # 29 February
                start = dt.datetime.combine(day, dt.time(), tz).timestamp()
                try:
                    found = await self.request(
                        MemoryQuery(
                            text="",
                            person_id=pid,
                            since=start,
                            until=start + DAY - 1,
                            k=5,
                            browse=True,
                            inspect=True,
                        ),
                        MemoryResult,
                        timeout=MEMORY_TIMEOUT_S,
                    )
                except RequestTimeout:
                    log.info("autonomy.memory_silent", person=pid)
                    return out
                hits = [
                    h
                    for h in found.hits
                    if h.person_id == pid and h.importance >= self.config.anniversary_importance
                ]
                if hits:
                    best = max(hits, key=lambda h: h.importance)
                    c = triggers.remembered(
                        pid, best.id, best.text, n, now, self.tz(pid), self.config.triggers
                    )
                    out.append(
                        msgspec.structs.replace(c, platform=reach.platform, channel=reach.channel)
                    )
        return out

    async def say(self, c: Opening, now: float) -> None:
        reach = self.state.reach.get(c.person_id)
        platform, channel = await self.where(c)
        self.state.sent = [
            *self.state.sent[-(SENT_KEPT - 1) :],
            WhyLine(
                candidate=c.id,
                person_id=c.person_id,
                kind=c.kind,
                reason=c.reason,
                verdict="",
                at=now,
            ),
        ]
        if c.kind == "checkin":
            self.state.last_checkin = now
        # Saved before it goes: a crash after this says it at most once more, under the same id.
        self.agenda.save()
        self.state_changed(now=True)
        log.info("autonomy.speaks_first", candidate=c.id, person=c.person_id, reason=c.reason)
        await self.publish(
            ChatMessage(
                platform=platform,  # type: ignore[arg-type]
                person_id=c.person_id,
                display_name=reach.display_name if reach else "",
                channel=channel,
                text=c.topic,
                initiative=c.reason,
            ),
            event_id=derived_id("autonomy", c.id),
        )
