"""Her energy: awake, sleepy or asleep, from her backends' limits and her own token budgets.

One state, the worst of three readings:

- **the backends** (their rate-limit headers, 429s and quota errors, as the fallback chain keeps
  them): the state of the backend the next reply would go to. Sleepy while it is close to the
  provider's limit (or just after a rate limit); asleep when every backend that is up is
  rate-limited, until the earliest says it resets;
- **her daily budget** (``tokens_per_day``, every person and backend together, the brain's
  local day) and **each person's** (``tokens_per_person_day``): sleepy with ``sleepy_share``
  of it left, asleep once spent, until midnight.

Sleepy, her replies are shorter (``sleepy_reply`` of the reply budget) and she may say she is
tired; the autonomy actor takes no initiative. Asleep, no backend is asked: a short
in-character line with the time she wakes answers instead. Each conversation is told once per
spell (a ``chat.notice`` of kind "sleepy"). The state is published as ``brain.energy`` on
every change and shown beside the brain in ``hexbus status``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec

from actors.brain.backends import Backend, ChatTurn
from actors.brain.reply import ReplyOutcome
from hexbus.capabilities import Capabilities
from hexbus.config import ConfigError
from schemas import BackendState, BrainEnergy, ChatMessage, Notice

State = Literal["awake", "sleepy", "asleep"]
RANK: dict[State, int] = {"awake": 0, "sleepy": 1, "asleep": 2}
SLEEPY_LINE = (
    "You are sleepy right now: keep this reply short, and you may say, in character, that "
    "you are tired."
)


class EnergyConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    tokens_per_day: int = 0  # every person and backend together (0: no budget)
    tokens_per_person_day: int = 0  # each person's (0: no budget)
    # Per backend, by name: one spent is not asked again until midnight (the next backend in
    # the chain answers; with none left, she is asleep).
    backend_tokens_per_day: dict[str, int] = {}
    sleepy_share: float = 0.15  # this share of a budget left makes her sleepy
    sleepy_reply: float = 0.5  # a sleepy reply's cap, as a share of budgets.reply

    def __post_init__(self) -> None:
        if (
            self.tokens_per_day < 0
            or self.tokens_per_person_day < 0
            or any(v < 0 for v in self.backend_tokens_per_day.values())
        ):
            raise ConfigError("energy token budgets must be 0 (none) or more")
        if not 0 < self.sleepy_share < 1 or not 0 < self.sleepy_reply <= 1:
            raise ConfigError("energy sleepy_share must be in (0, 1) and sleepy_reply in (0, 1]")


@dataclass(frozen=True)
class Reading:
    state: State = "awake"
    until: float = 0.0  # unix s when it should lift (0: unknown)
    why: str = ""


def worst(*readings: Reading) -> Reading:
    return max(readings, key=lambda r: (RANK[r.state], r.until))


def with_budgets(
    states: Sequence[BackendState],
    spent: Mapping[str, int],
    budgets: Mapping[str, int],
    share: float,
    midnight: float,
) -> list[BackendState]:
    """The backends' states with each one whose daily budget is spent asleep until midnight
    (the chain skips it: it is not asked), and one near its budget sleepy."""
    out = []
    for s in states:
        budget = budgets.get(s.name, 0)
        left = budget - spent.get(s.name, 0)
        if budget and left <= 0:
            why = f"its {budget} tokens for today are spent"
            s = msgspec.structs.replace(s, state="asleep", until=midnight, error=why)
        elif budget and s.state in ("awake", "idle") and left <= share * budget:
            s = msgspec.structs.replace(s, state="sleepy", until=midnight)
        out.append(s)
    return out


def from_backends(states: Sequence[BackendState]) -> Reading:
    """The state of the backend the next reply would go to (one that is down, or switched off,
    is skipped: that is not tiredness); asleep when every backend that is up is rate-limited."""
    up = [s for s in states if s.state not in ("down", "off")]
    for s in up:
        if s.state == "sleepy":
            return Reading("sleepy", s.until, f"{s.name} is close to its limit")
        if s.state != "asleep":
            return Reading()
    if not up:
        return Reading()
    wakes = [s.until for s in up if s.until]
    names = ", ".join(s.name for s in up)
    return Reading("asleep", min(wakes) if wakes else 0.0, f"{names}: rate-limited or out of quota")


def from_budget(spent: int, budget: int, share: float, midnight: float, whose: str) -> Reading:
    if not budget:
        return Reading()
    if spent >= budget:
        return Reading("asleep", midnight, f"{whose} {budget} tokens for today are spent")
    if budget - spent <= share * budget:
        return Reading("sleepy", midnight, f"{whose} tokens for today are nearly spent")
    return Reading()


def next_midnight(now: float) -> float:
    day = dt.datetime.fromtimestamp(now).date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time()).timestamp()


def wake_line(until: float, now: float) -> str:
    """What she says asleep, in character, with when she wakes."""
    if not until:
        return "*yawns* I'm out of energy. Let me sleep a little and try me again later."
    at = dt.datetime.fromtimestamp(until)
    when = at.strftime("%H:%M") if until - now < 20 * 3600 else at.strftime("%a %H:%M")
    return f"*yawns* I'm out of energy and need to sleep. I'll be awake again at {when}."


def switched_off(backend: Backend, capabilities: Capabilities) -> str:
    """Why the owner's switches keep ``backend`` out now ("" when they do not): a backend that
    costs money is used only while ``paid_backend`` is on."""
    if getattr(backend, "paid", False) and not capabilities.allowed("paid_backend"):
        return "it costs money and paid_backend is switched off"
    return ""


def describe(energy: BrainEnergy) -> str:
    """The brain's line in ``hexbus status``."""
    if energy.state == "awake":
        return "awake"
    until = f" until {dt.datetime.fromtimestamp(energy.until):%H:%M}" if energy.until else ""
    return f"{energy.state}{until}: {energy.why}"


class Meter:
    """Reads her energy; remembers what was published and which conversations were told."""

    def __init__(
        self,
        config: EnergyConfig,
        usage: Callable[[], Mapping[str, object]],
        backends: Callable[[], list[BackendState]],
        published: BrainEnergy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.usage = usage  # the ledger's usage rows, "day|backend|person" → UsageRow
        self.backends = backends
        self.clock = clock
        self.published = published  # the last state published (kept in the brain's snapshot)
        self.told: dict[str, State] = {}  # conversation → the spell it was told of

    def spent(self, now: float) -> tuple[int, dict[str, int]]:
        """Tokens spent today (the brain's local day): in all, and by person."""
        total, people, _ = self.today(now)
        return total, people

    def today(self, now: float) -> tuple[int, dict[str, int], dict[str, int]]:
        """Tokens spent today: in all, by person and by backend."""
        today = time.strftime("%Y-%m-%d", time.localtime(now))
        total, people, backends = 0, dict[str, int](), dict[str, int]()
        for key, row in self.usage().items():
            day, backend, person = key.split("|", 2)
            if day == today:
                n = getattr(row, "prompt_tokens", 0) + getattr(row, "completion_tokens", 0)
                total += n
                people[person] = people.get(person, 0) + n
                backends[backend] = backends.get(backend, 0) + n
        return total, people, backends

    def states(self, spent: Mapping[str, int] | None = None) -> list[BackendState]:
        """The backends' states, their daily budgets applied (``spent``: today's tokens by
        backend, when the caller has them)."""
        now = self.clock()
        if spent is None:
            _, _, spent = self.today(now)
        cfg = self.config
        return with_budgets(
            self.backends(), spent, cfg.backend_tokens_per_day, cfg.sleepy_share, next_midnight(now)
        )

    def refuses(self, backend: Backend, capabilities: Capabilities) -> str:
        """Why the chain must not ask ``backend`` now ("" when it may): the owner's switch, or
        its daily budget."""
        return switched_off(backend, capabilities) or self.spent_backend(backend.name)

    def spent_backend(self, name: str) -> str:
        """Why a backend is not to be asked now ("" when it may be): its daily budget is spent."""
        budget = self.config.backend_tokens_per_day.get(name, 0)
        if not budget:
            return ""
        _, _, backends = self.today(self.clock())
        return f"its {budget} tokens for today are spent" if backends.get(name, 0) >= budget else ""

    def reading(
        self, person_id: str = "", day: tuple[int, dict[str, int], dict[str, int]] | None = None
    ) -> Reading:
        """Her state (for ``person_id``); ``day``: :meth:`today`'s counts, when the caller has
        them (one pass over the usage rows serves every reading)."""
        now = self.clock()
        cfg, midnight = self.config, next_midnight(now)
        total, people, backends = day if day is not None else self.today(now)
        readings = [
            from_backends(self.states(backends)),
            from_budget(total, cfg.tokens_per_day, cfg.sleepy_share, midnight, "her"),
        ]
        if person_id:
            spent = people.get(person_id, 0)
            share = cfg.sleepy_share
            readings.append(
                from_budget(spent, cfg.tokens_per_person_day, share, midnight, "this person's")
            )
        return worst(*readings)

    def changed(self) -> BrainEnergy | None:
        """The state to publish, when it differs from the one published last."""
        now = self.clock()
        day = self.today(now)
        overall = self.reading(day=day)
        cfg = self.config
        _, people, _ = day
        tired: dict[str, str] = {}
        if cfg.tokens_per_person_day:
            midnight = next_midnight(now)
            for person, spent in sorted(people.items()):
                r = from_budget(
                    spent, cfg.tokens_per_person_day, cfg.sleepy_share, midnight, "their"
                )
                if RANK[r.state] > RANK[overall.state]:
                    tired[person] = r.state
        event = BrainEnergy(
            state=overall.state, until=round(overall.until, 1), why=overall.why, people=tired
        )
        if event == self.published:
            return None
        self.published = event
        if overall.state == "awake" and not tired:
            self.told.clear()  # the next spell is told again
        return event

    def asleep(self, reading: Reading) -> ReplyOutcome:
        """Her answer asleep: no backend is asked; she says when she wakes."""
        return ReplyOutcome(status="failed", text=wake_line(reading.until, self.clock()))

    def shape(
        self, turns: list[ChatTurn], max_tokens: int, reading: Reading
    ) -> tuple[list[ChatTurn], int]:
        """A sleepy reply: shorter, and she may say she is tired (in the last system turn, the
        one for this message, so the prompt's prefix stays what the model already read)."""
        if reading.state != "sleepy" or not turns:
            return turns, max_tokens
        i = max((i for i, t in enumerate(turns) if t.role == "system"), default=0)
        shaped = list(turns)
        shaped[i] = ChatTurn(turns[i].role, turns[i].content + "\n\n" + SLEEPY_LINE)
        return shaped, max(16, int(max_tokens * self.config.sleepy_reply))

    def notice(self, conversation: str, event: ChatMessage, reading: Reading) -> Notice | None:
        """Tell a conversation once per spell that she is sleepy (asleep, her reply says so)."""
        if reading.state != "sleepy" or self.told.get(conversation) == "sleepy":
            return None
        self.told[conversation] = "sleepy"
        return Notice(
            channel=event.channel,
            platform=event.platform,
            kind="sleepy",
            text="*yawns* I'm getting sleepy: short answers for a while.",
        )
