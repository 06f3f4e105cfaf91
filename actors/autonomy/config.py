"""The autonomy actor's configuration and the state its snapshot keeps."""

from __future__ import annotations

import msgspec

from actors.autonomy.agenda import Book
from actors.autonomy.governor import DAY, Pacing, Person, parse_quiet, zone
from actors.autonomy.triggers import Habit, Mind, Triggers
from hexbus.config import ConfigError
from schemas import BrainEnergy, WhyLine

SENT_KEPT = 50  # what she said first lately, for `hexbus autonomy why`
DATED_KEPT = 500  # dated events kept for their anniversaries


class PersonSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One person's own settings, by person id (``[actors.autonomy.config.people."discord:42"]``)."""

    timezone: str = ""  # "" = pacing's
    quiet: str | None = None  # None = pacing's; "" = none
    platform: str = ""  # where to reach them first ("" = where they last talked with her)
    channel: str = ""

    def __post_init__(self) -> None:
        if self.timezone:
            zone(self.timezone)
        if self.quiet:
            parse_quiet(self.quiet)


class AutonomyConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pacing: Pacing = Pacing()
    triggers: Triggers = Triggers()
    people: dict[str, PersonSettings] = {}
    # Whose presence the camera reports: it sees "someone at the desk", not who ("" = nobody's).
    desk: str = ""
    # The owner's person id: the weekly check-in (capability "checkin") asks them whether to
    # dial anything up or down, where they last talked with her.
    owner: str = ""
    checkin_every_s: float = 7 * DAY
    # Once a day, per person she writes to, memory is asked what happened on this day 1 to
    # ``anniversary_years`` years ago; the most important about them, of at least
    # ``anniversary_importance`` (a plain turn is 0.2), becomes "N years ago today...". 0 years:
    # never asked.
    anniversary_years: int = 5
    anniversary_importance: float = 0.6
    tick_s: float = 30.0  # how often the agenda is looked at
    # A rehearsal runs her calendar this far ahead (try a week of initiative in a sandbox in
    # minutes); 0 in daily use.
    clock_offset_s: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.anniversary_years <= 50:
            raise ConfigError("autonomy anniversary_years must be between 0 and 50")
        if self.checkin_every_s < DAY:
            raise ConfigError("autonomy checkin_every_s must be a day (86400) or more")
        if not 0.05 <= self.tick_s <= 3600:
            raise ConfigError("autonomy tick_s must be between 0.05 and 3600 seconds")


class Reach(msgspec.Struct, kw_only=True):
    """Where a person last talked with Hex: where her own messages to them go."""

    platform: str
    channel: str
    display_name: str = ""


class Dated(msgspec.Struct, frozen=True, kw_only=True):
    """A dated event someone told her of, kept for its anniversary."""

    person_id: str
    what: str
    day: str  # ISO date
    text: str


class AutonomyState(msgspec.Struct, kw_only=True):
    people: dict[str, Person] = {}
    habits: dict[str, Habit] = {}
    reach: dict[str, Reach] = {}
    book: Book = msgspec.field(default_factory=Book)
    sent: list[WhyLine] = []  # newest last
    energy: BrainEnergy = BrainEnergy(state="awake")  # the brain's, as last published
    dated: dict[str, Dated] = {}  # key → event, the last DATED_KEPT told
    minds: dict[str, Mind] = {}  # person id → how much they are on her mind
    looked_back: dict[str, str] = {}  # person id → the local day memory was last asked about
    last_checkin: float = 0.0
