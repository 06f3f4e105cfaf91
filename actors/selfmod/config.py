"""The selfmod actor's settings and the state it keeps across restarts."""

from __future__ import annotations

from pathlib import Path

import msgspec

from hexbus.sandbox import SandboxLimits
from schemas.selfmod import AuditFigures, Origin, ProposalView, Status

# The persona Hex ships with: the state repository's first commit, what a factory reset restores.
SHIPPED_PERSONA = Path(__file__).resolve().parents[2] / "persona.toml"


class SelfmodConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    persona: str = "persona.toml"  # the brain's persona.toml, relative to supervisor.toml
    brain: str = "brain"  # the brain actor's name: it applies persona changes and is watched
    plugin_host: str = "plugins"  # the plugin host's name: its failures roll a plugin back
    scenarios: int = 0  # audit scenarios per sandbox run (0: the whole set)
    # ...of a change to the response logic (prompt templates, level 4): 0, the whole set, is
    # what the level asks for; fewer only to test selfmod itself.
    logic_scenarios: int = 0
    approve_within_s: float = 7 * 86400.0  # a proposal not approved by then expires
    trial_s: float = 3600.0  # after applying: an actor failure in this window rolls it back
    tolerance: float = 0.0  # how far the audit's pass rate may fall before a change is "worse"
    # Actors whose owners' decisions count (they verify who an owner is); terminals with the
    # run folder always do.
    deciders: tuple[str, ...] = ("discord", "web")
    # Her reflection: remarks about how she talks (at most two a person count) that make her
    # think it over with the brain's model; 0 turns it off. At most one reflection a gap, and
    # none while her last one's proposal waits for a decision.
    reflect_after: int = 3
    reflect_gap_s: float = 86400.0
    sandbox: SandboxLimits = SandboxLimits()


class Proposal(msgspec.Struct, kw_only=True):
    id: int
    status: Status
    why: str
    origin: Origin
    diff: str
    base: str = ""  # the state repository's HEAD it was made against
    by: str = ""
    conversation: str = ""
    created: float = 0.0
    level: str = ""
    flags: list[str] = []
    files: list[str] = []
    keys: list[str] = []
    reason: str = ""
    before: AuditFigures | None = None
    after: AuditFigures | None = None
    expires: float = 0.0
    decided_by: str = ""
    commit: str = ""
    sandbox: str = ""
    applied_at: float = 0.0

    def view(self, *, diff: bool = True) -> ProposalView:
        return ProposalView(
            id=self.id,
            status=self.status,
            why=self.why,
            origin=self.origin,
            by=self.by,
            created=self.created,
            level=self.level,
            flags=tuple(self.flags),
            files=tuple(self.files),
            keys=tuple(self.keys),
            diff=self.diff if diff else "",
            reason=self.reason,
            before=self.before,
            after=self.after,
            expires=self.expires,
            decided_by=self.decided_by,
            commit=self.commit,
            sandbox=self.sandbox,
        )


class Remark(msgspec.Struct, kw_only=True):
    """Something a person said about how she talks, waiting for her to think it over."""

    event: str  # the chat message's event id
    text: str
    person: str  # platform:person_id
    name: str = ""
    at: float = 0.0


class SelfmodState(msgspec.Struct, kw_only=True):
    proposals: dict[int, Proposal] = {}
    next_id: int = 1
    by_event: dict[str, int] = {}  # a proposal event's id -> its number: a replay adds nothing
    # sha256 of persona.toml as last seen live: a live file that differs from it was edited by
    # an owner; one that still matches it but not HEAD waits for the brain to take HEAD.
    live_sha: str = ""
    plugins: dict[str, str] = {}  # the plugins handed to the plugin host: name -> sha256
    prompts: str = ""  # the prompt templates handed to the brain: their set's sha256 ("": shipped)
    remarks: list[Remark] = []  # waiting for her next reflection (reflect.py)
    reflected_at: float = 0.0  # when she last thought them over
    reflection: str = ""  # the event id of her last reflection's proposal
    pondering: list[str] = []  # the remarks (event ids) of a reflection under way
