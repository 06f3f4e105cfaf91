"""The agenda: candidates wait with their reasons, go one per person per round, expire, and are
never queued twice; the triggers give each the window that fits it."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from actors.autonomy import triggers
from actors.autonomy.agenda import Agenda
from actors.autonomy.governor import DAY, HOUR, Gatekeeper, Opening, Pacing, Person

BERLIN = ZoneInfo("Europe/Berlin")
NOW = dt.datetime(2026, 12, 2, 19, 0, tzinfo=BERLIN).timestamp()  # a Wednesday evening


def candidate(id: str, person: str = "ana", priority: int = 0, ttl: float = DAY) -> Opening:
    return Opening(
        id=id,
        person_id=person,
        kind="thought",
        reason=f"reason {id}",
        created=NOW,
        expires=NOW + ttl,
        priority=priority,
    )


def test_one_message_a_person_a_round_the_rest_wait_with_a_reason() -> None:
    agenda = Agenda(Gatekeeper(Pacing(quiet="", min_gap_s=0, per_hour=5, per_day=5)))
    people = {"ana": Person(), "ben": Person()}
    for c in (candidate("a1"), candidate("a2", priority=2), candidate("b1", person="ben")):
        assert agenda.offer(c)
    assert not agenda.offer(candidate("a1"))  # the same candidate again
    sent = agenda.take(NOW, people, switch=lambda c: True)
    assert [c.id for c in sent] == ["a2", "b1"]  # the higher priority for ana; one for ben
    why = {c.id: held.reason for c, held in agenda.why() if c is not None}
    assert why == {"a1": "another message to them went first"}
    assert not agenda.offer(candidate("a2"))  # sent: not queued again
    # Ana has not answered a2: a1 must wait for her.
    assert agenda.take(NOW + HOUR, people, switch=lambda c: True) == []
    assert dict((c.id, h.reason) for c, h in agenda.why("ana") if c) == {
        "a1": "awaiting a reply to her last message"
    }


def test_expired_and_cancelled_candidates_are_dropped_with_their_reason() -> None:
    agenda = Agenda(Gatekeeper(Pacing(quiet="")))
    agenda.offer(candidate("soon", ttl=60))
    agenda.offer(candidate("later", person="ben"))
    assert agenda.take(NOW + 120, {}, switch=lambda c: c.person_id != "ben") == []
    gone = [(h.candidate, h.reason) for c, h in agenda.why() if c is None]
    assert gone == [("soon", "expired")]
    assert [c.id for c in agenda.cancel("speaking first was switched off", NOW + 130, "ben")] == [
        "later"
    ]
    assert [h.reason for _, h in agenda.why("ben")] == ["speaking first was switched off"]
    assert agenda.waiting == {}


def test_an_event_told_in_the_evening_gets_good_luck_the_morning_of_and_a_question_after() -> None:
    found = triggers.due(
        "ana", "got a job interview tomorrow morning!!", NOW, "Europe/Berlin",
        triggers.Triggers(), platform="discord",
    )  # fmt: skip
    before, after = found
    morning = dt.datetime(2026, 12, 3, 8, 30, tzinfo=BERLIN).timestamp()
    evening = dt.datetime(2026, 12, 3, 18, 0, tzinfo=BERLIN).timestamp()
    assert (before.not_before, before.expects_reply) == (morning, False)
    assert before.expires == dt.datetime(2026, 12, 3, 12, 0, tzinfo=BERLIN).timestamp()
    assert after.not_before == evening and after.expects_reply
    assert "interview" in after.reason and after.kind == "due"
    # Told again an hour later: the same two candidates, not two more.
    again = triggers.due(
        "ana", "ugh the interview tomorrow", NOW + HOUR, "Europe/Berlin", triggers.Triggers(),
        platform="discord",
    )  # fmt: skip
    assert {c.id for c in again} == {c.id for c in found}


def test_silence_is_missed_only_from_people_she_talks_with_often() -> None:
    t = triggers.Triggers()
    often, rarely = triggers.Habit(), triggers.Habit()
    for d in range(12):
        often.wrote(dt.datetime(2026, 11, 15 + d, 20, 0, tzinfo=BERLIN))
    rarely.wrote(dt.datetime(2026, 11, 20, 20, 0, tzinfo=BERLIN))
    last = dt.datetime(2026, 11, 26, 20, 0, tzinfo=BERLIN).timestamp()
    p = Person(last_heard=last, last_said=last)
    assert triggers.silence("ana", p, often, last + 2 * DAY, "Europe/Berlin", t) is None
    missed = triggers.silence("ana", p, often, last + 3 * DAY + 60, "Europe/Berlin", t)
    assert missed is not None and missed.reason == "she has not heard from them in 3 days"
    assert triggers.silence("ben", p, rarely, last + 30 * DAY, "Europe/Berlin", t) is None
    assert triggers.silence("cy", Person(), often, last + 30 * DAY, "Europe/Berlin", t) is None
