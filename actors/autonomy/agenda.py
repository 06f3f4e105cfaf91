"""What Hex might say first, waiting for the governor: candidates with a reason and an expiry,
and, for each one held back, why (``hexbus autonomy why``).

One message per person per round at most: the highest priority that the governor allows; the
others wait for the next round (the caps and the minimum gap then decide). A candidate with the
id of one waiting, sent or dropped lately is the same candidate, and not queued again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

import msgspec

from actors.autonomy.governor import Energy, Gatekeeper, Opening, Person

WHY_KEPT = 200  # verdicts remembered for `hexbus autonomy why`


class Held(msgspec.Struct, frozen=True, kw_only=True):
    """A candidate the governor held back (or dropped), and why, as of ``at``."""

    candidate: str
    person_id: str
    kind: str
    reason: str
    at: float
    until: float = 0.0  # when it may change (0: when something else changes)
    dropped: bool = False  # expired or cancelled: it will not be tried again


class Book(msgspec.Struct, kw_only=True):
    """An agenda's contents, as the autonomy actor's snapshot keeps them."""

    waiting: dict[str, Opening] = {}
    held: dict[str, Held] = {}  # candidate id -> its latest verdict
    gone: list[Held] = []  # dropped ones, newest last
    done: dict[str, float] = {}  # ids sent or dropped -> until when they are remembered


class Agenda:
    def __init__(self, governor: Gatekeeper, book: Book | None = None) -> None:
        self.governor = governor
        self.book = book if book is not None else Book()
        self.waiting = self.book.waiting
        self.held = self.book.held
        self.gone: deque[Held] = deque(self.book.gone, maxlen=WHY_KEPT)
        self.done = self.book.done

    def save(self) -> Book:
        """The contents to snapshot (the same containers, and the dropped ones as a list)."""
        self.book.gone = list(self.gone)
        return self.book

    def offer(self, c: Opening) -> bool:
        """Queue ``c`` unless it is waiting already, or was sent or dropped (its id: triggers
        name a candidate by what it is about, so the same event told twice is one)."""
        if c.id in self.waiting or c.id in self.done:
            return False
        self.waiting[c.id] = c
        return True

    def cancel(self, reason: str, now: float, person_id: str | None = None) -> list[Opening]:
        """Drop what waits (for one person, or everyone): a switch went off."""
        out = [c for c in self.waiting.values() if person_id in (None, c.person_id)]
        for c in out:
            self.drop(c, reason, now)
        return out

    def take(
        self,
        now: float,
        people: dict[str, Person],
        *,
        switch: Callable[[Opening], bool],
        energy: Callable[[Opening], Energy] = lambda c: "awake",
        frozen: bool = False,
    ) -> list[Opening]:
        """The candidates to send now (at most one a person), recorded as sent for each
        person; the rest keep waiting with their reason, or are dropped once expired."""
        out: list[Opening] = []
        order = sorted(self.waiting.values(), key=lambda c: (-c.priority, c.created, c.id))
        for c in order:
            person = people.setdefault(c.person_id, Person())
            if now >= c.expires:
                self.drop(c, "expired", now)
                continue
            if any(o.person_id == c.person_id for o in out):
                self.held[c.id] = Held(
                    candidate=c.id,
                    person_id=c.person_id,
                    kind=c.kind,
                    reason="another message to them went first",
                    at=now,
                )
                continue
            verdict = self.governor.check(
                c, person, now, switch=switch(c), energy=energy(c), frozen=frozen
            )
            if not verdict.ok:
                self.held[c.id] = Held(
                    candidate=c.id,
                    person_id=c.person_id,
                    kind=c.kind,
                    reason=verdict.reason,
                    at=now,
                    until=verdict.until,
                )
                continue
            self.done[c.id] = c.expires
            person.spoke_first(now, followup=c.kind == "followup", expects_reply=c.expects_reply)
            del self.waiting[c.id]
            self.held.pop(c.id, None)
            out.append(c)
        return out

    def why(self, person_id: str | None = None) -> Iterable[tuple[Opening | None, Held]]:
        """Each waiting candidate with its latest verdict, then the dropped ones, newest first."""
        for c in sorted(self.waiting.values(), key=lambda c: (-c.priority, c.created)):
            if person_id in (None, c.person_id):
                held = self.held.get(c.id) or Held(
                    candidate=c.id,
                    person_id=c.person_id,
                    kind=c.kind,
                    reason="not tried yet",
                    at=0.0,
                )
                yield c, held
        for held in reversed(self.gone):
            if person_id in (None, held.person_id):
                yield None, held

    def forget_done(self, now: float) -> None:
        """Forget ids whose candidates would have expired anyway."""
        for k in [k for k, v in self.done.items() if v <= now]:
            del self.done[k]

    def drop(self, c: Opening, reason: str, now: float) -> None:
        self.done[c.id] = c.expires
        self.waiting.pop(c.id, None)
        self.held.pop(c.id, None)
        self.gone.append(
            Held(
                candidate=c.id,
                person_id=c.person_id,
                kind=c.kind,
                reason=reason,
                at=now,
                dropped=True,
            )
        )
