"""Self-modification: Hex's proposals to change herself, and her owner's decisions on them.

A proposal is a unified diff against the selfmod actor's state repository with her reason;
the actor checks it, tests it in a sandbox and holds it for an owner's decision. Nothing in
these events can widen what she may change: the allow-list and the protected keys are code.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from schemas.base import Event

Origin = Literal["conversation", "owner", "reflection"]
Status = Literal[
    "refused",  # invalid or out of bounds: never shown as a choice
    "testing",  # in the sandbox
    "failed",  # the sandbox could not run it (the reason says why)
    "ready",  # waiting for an owner's decision
    "rejected",
    "expired",  # not decided in time
    "stale",  # the files changed under it: propose again
    "applied",  # in its trial period
    "kept",  # its trial passed
    "rolled_back",  # by an owner, or by itself in its trial
]
Action = Literal["approve", "reject", "rollback", "factory_reset"]


class SelfmodProposal(Event, frozen=True, kw_only=True, tag="selfmod.proposal"):
    """A change she proposes: ``diff`` against the state repository, ``why`` in plain words."""

    diff: str
    why: str
    origin: Origin = "reflection"
    by: str = ""  # the person whose words it came from (an owner's request, a conversation)
    conversation: str = ""  # where it came from (a channel; "" for her own reflection)


class SelfmodRequest(Event, frozen=True, kw_only=True, tag="selfmod.request"):
    """An owner's request in plain words ("be less formal"): the brain drafts the proposal."""

    text: str
    by: str
    owner: bool = False
    key: str = ""  # the persona.toml key to change ("" lets the words choose)
    conversation: str = ""


class SelfmodDecide(Event, frozen=True, kw_only=True, tag="selfmod.decide"):
    """An owner's decision: approve or reject proposal ``id``, roll back an applied change
    (``id`` 0: the latest), or reset to the shipped files. Anyone else's is refused."""

    action: Action
    id: int = 0
    by: str
    owner: bool = False
    note: str = ""


class SelfmodAsk(Event, frozen=True, kw_only=True, tag="selfmod.ask"):
    """Ask for proposals (``list``; ``show`` one) or a diff between two versions (``diff``:
    tags such as ``factory``, ``p3``, or commits). Answered by :class:`SelfmodReport`."""

    what: Literal["list", "show", "diff", "log"] = "list"
    id: int = 0
    a: str = ""
    b: str = ""


class AuditFigures(msgspec.Struct, frozen=True, kw_only=True):
    """One audit run's figures (the whole report is kept in the actor's folder)."""

    scenarios: int = 0
    pass_rate: float = 0.0
    by_category: dict[str, float] = {}
    failed: tuple[str, ...] = ()  # scenario ids that failed
    seconds: float = 0.0


class ProposalView(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    status: Status
    why: str
    origin: Origin
    by: str = ""
    created: float = 0.0
    level: str = ""  # the capability it needs (selfmod.propose, .plugins, .logic)
    flags: tuple[str, ...] = ()  # "safety", "large", "worse" (the audit fell), "capability"
    files: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()  # what it changes in them (persona.toml keys)
    diff: str = ""
    reason: str = ""  # why it was refused, failed, rejected or rolled back
    before: AuditFigures | None = None
    after: AuditFigures | None = None
    expires: float = 0.0  # an approval after this is refused
    decided_by: str = ""
    commit: str = ""  # its commit in the state repository once applied
    sandbox: str = ""  # how it was isolated ("bubblewrap", "namespaces", "rlimits only")


class SelfmodReport(Event, frozen=True, kw_only=True, tag="selfmod.report"):
    proposals: tuple[ProposalView, ...] = ()
    text: str = ""  # a diff, or the log
    error: str = ""


class SelfmodChanged(Event, frozen=True, kw_only=True, tag="selfmod.changed"):
    """What a proposal, a request or a decision came to (Discord and the page show it to the
    owners; a command waits for the one its event caused). ``error``: it was refused."""

    proposal: ProposalView | None = None
    line: str = ""  # what happened, in a line
    error: str = ""
