"""The ``people`` and ``profiles`` tables: who Hex has met, and what it knows of each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from actors.memory.store.database import Database, dicts

PROFILE_KEEP: Final = 32  # hobbies and tastes each; the newest win
ROSTER_KEEP: Final = 200  # known people per profile; the most recently mentioned win

_encode = msgspec.json.Encoder().encode
_decode_roster = msgspec.json.Decoder(dict[str, dict[str, str]]).decode


class ProfileRow(msgspec.Struct, kw_only=True):
    """One person's stored persona profile, which the brain reads before each reply."""

    person_id: str
    hobbies: tuple[str, ...] = ()
    tastes: tuple[str, ...] = ()  # artistic tastes
    sentiment: str = ""  # how they feel about Hex lately
    roster: dict[str, dict[str, str]] = {}  # people they know: name -> {sentiment, history, ...}
    updated: float = 0.0


def merge_names(known: Sequence[str], new: Sequence[str], keep: int) -> tuple[str, ...]:
    """``known`` then ``new``, case-insensitively unique, the newest spelling and place winning."""
    fresh: list[str] = []
    for name in (n.strip() for n in new):
        if name:
            fresh = [f for f in fresh if f.casefold() != name.casefold()] + [name]
    lowered = {f.casefold() for f in fresh}
    out = [k for k in known if k.casefold() not in lowered] + fresh
    return tuple(out[-keep:])


def merge_roster(
    known: dict[str, dict[str, str]], new: dict[str, dict[str, str]]
) -> dict[str, dict[str, str]]:
    out = dict(known)
    for name, entry in new.items():
        name = name.strip()
        if not name:
            continue
        old_key = next((k for k in out if k.casefold() == name.casefold()), None)
        old = out.pop(old_key) if old_key is not None else {}
        # Empty values mean "nothing new", so they never erase what is known.
        out[name] = {**old, **{k: v for k, v in entry.items() if v}}
    return dict(list(out.items())[-ROSTER_KEEP:])


class PeopleTable:
    """People and their profiles; updates merge into what is known and never erase it."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def upsert(self, person_id: str, display_name: str, platform: str, at: float) -> None:
        """Create or refresh a person; an empty name or platform keeps the known one."""
        with self._db.atomic() as con:
            con.execute(
                "INSERT INTO people VALUES (?, ?, ?, ?, ?) ON CONFLICT (person_id) DO UPDATE SET "
                "display_name = CASE WHEN excluded.display_name = '' THEN people.display_name "
                "ELSE excluded.display_name END, "
                "platform = CASE WHEN excluded.platform = '' THEN people.platform "
                "ELSE excluded.platform END, "
                "first_seen = least(people.first_seen, excluded.first_seen), "
                "last_seen = greatest(people.last_seen, excluded.last_seen)",
                [person_id, display_name, platform, at, at],
            )

    def get(self, person_id: str) -> dict[str, object] | None:
        with self._db.locked() as con:
            rows = dicts(con.execute("SELECT * FROM people WHERE person_id = ?", [person_id]))
        return rows[0] if rows else None

    def names(self) -> dict[str, str]:
        """Every known person's display name, by person id."""
        with self._db.locked() as con:
            rows = con.execute(
                "SELECT person_id, display_name FROM people WHERE display_name <> ''"
            ).fetchall()
        return {person_id: name for person_id, name in rows}

    def profile(self, person_id: str) -> ProfileRow:
        """The person's profile; an empty one when nothing is known."""
        with self._db.locked() as con:
            row = con.execute(
                "SELECT hobbies, tastes, sentiment, roster, updated FROM profiles "
                "WHERE person_id = ?",
                [person_id],
            ).fetchone()
        if row is None:
            return ProfileRow(person_id=person_id)
        hobbies, tastes, sentiment, roster, updated = row
        return ProfileRow(
            person_id=person_id,
            hobbies=tuple(hobbies),
            tastes=tuple(tastes),
            sentiment=sentiment,
            roster=_decode_roster(roster),
            updated=updated,
        )

    def update_profile(
        self,
        person_id: str,
        *,
        hobbies: Sequence[str] = (),
        tastes: Sequence[str] = (),
        sentiment: str = "",
        roster: dict[str, dict[str, str]] | None = None,
        at: float,
    ) -> ProfileRow:
        """Fold a structured update in and return the result.

        Lists dedupe case-insensitively, the newest spelling and position
        winning; an empty sentiment or roster value keeps the known one.
        ``updated`` moves only when something changed.
        """
        with self._db.atomic() as con:
            old = self.profile(person_id)
            new = ProfileRow(
                person_id=person_id,
                hobbies=merge_names(old.hobbies, hobbies, PROFILE_KEEP),
                tastes=merge_names(old.tastes, tastes, PROFILE_KEEP),
                sentiment=sentiment.strip() or old.sentiment,
                roster=merge_roster(old.roster, roster or {}),
                updated=old.updated,
            )
            if new == old:
                return old
            new.updated = at
            con.execute(
                "INSERT OR REPLACE INTO profiles VALUES (?, ?, ?, ?, ?, ?)",
                [
                    person_id,
                    list(new.hobbies),
                    list(new.tastes),
                    new.sentiment,
                    _encode(new.roster).decode(),
                    at,
                ],
            )
        return new

    def forget_person(self, person_id: str) -> dict[str, int]:
        """Remove the person's profile and person row; the rows removed per table."""
        with self._db.atomic() as con:
            return {
                table: len(
                    con.execute(
                        f"DELETE FROM {table} WHERE person_id = ? RETURNING 1", [person_id]
                    ).fetchall()
                )
                for table in ("profiles", "people")
            }
