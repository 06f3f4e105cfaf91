"""Brain events: persona versions, quiet mode, and work other actors ask of the brain's backend."""

from __future__ import annotations

from typing import Literal

import msgspec

from schemas.base import Event
from schemas.chat import Fact


class PersonaRollback(Event, frozen=True, kw_only=True, tag="brain.persona.rollback"):
    """Make an earlier persona version the active one (``hexbus persona rollback N``)."""

    version: int
    by: str = ""  # who asked, where an interface knows


class PersonaChanged(Event, frozen=True, kw_only=True, tag="brain.persona.changed"):
    """The active persona version changed (a new document, an edit, or a rollback)."""

    version: int
    note: str = ""
    error: str = (
        ""  # set when a rollback or an edit was refused; version is then the one still active
    )
    line: int = 0  # the edited document's line the error is about (1-based; 0: none named)


class PersonaEdit(Event, frozen=True, kw_only=True, tag="brain.persona.edit"):
    """A new persona.toml text (the page's editor): checked, written and made a version, or
    refused with the error and its line (answered by PersonaChanged, its causation this event)."""

    text: str
    note: str = ""
    by: str = ""


class PromptsEdit(Event, frozen=True, kw_only=True, tag="brain.prompts.edit"):
    """The prompt templates selfmod's state repository holds at ``sha`` (its HEAD, after an
    approved change, a rollback or a reset): ``files`` maps each ``prompts/`` file's name to
    its text; none: the shipped templates. The brain takes it only from selfmod and answers
    with :class:`PromptsChanged`."""

    files: dict[str, str]
    sha: str
    proposal: int = 0


class PromptsChanged(Event, frozen=True, kw_only=True, tag="brain.prompts.changed"):
    """The brain's prompt templates are now those of ``sha``, or (``ok`` false) it kept the
    ones it had and ``error`` says why."""

    sha: str
    ok: bool
    error: str = ""
    proposal: int = 0  # the PromptsEdit's: the selfmod proposal that brought these templates


class PersonaVersion(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    created: float
    note: str = ""
    sha256: str = ""


class PersonaGet(Event, frozen=True, kw_only=True, tag="brain.persona.get"):
    """Ask for a persona version's text (0: the active one) and the list of versions; answered
    by PersonaState."""

    version: int = 0


class PersonaState(Event, frozen=True, kw_only=True, tag="brain.persona.state"):
    active: int = 0
    version: int = 0  # the one whose text this is
    text: str = ""
    versions: tuple[PersonaVersion, ...] = ()
    path: str = ""  # the persona.toml the brain reads
    last_audit: str = ""  # the latest audit's summary as JSON (no replies), if one was run
    error: str = ""


class PersonaAudit(Event, frozen=True, kw_only=True, tag="brain.persona.audit"):
    """Run the consistency audit (the first ``limit`` scenarios; 0: all) through the brain's own
    backend between replies; progress as PersonaAuditProgress, the end as PersonaAudited."""

    limit: int = 0
    by: str = ""


class PersonaAuditProgress(Event, frozen=True, kw_only=True, tag="brain.persona.audit.progress"):
    request: str  # the audit request's event id
    done: int
    total: int


class PersonaAudited(Event, frozen=True, kw_only=True, tag="brain.persona.audited"):
    """An audit's summary (pass rates, failures), where its report is, and its drift against
    the report before it."""

    summary: str = ""  # JSON: pass rates, failures, scenarios, seconds, backends
    drift: str = ""  # JSON: what changed since the previous report ("" for the first)
    report: str = ""  # the saved report's file name
    previous: str = ""  # the report it was compared with ("" for the first)
    error: str = ""


class QuietMode(Event, frozen=True, kw_only=True, tag="brain.quiet"):
    """Answer only when directly addressed, in one channel or for one person, until ``until`` (unix s; 0 ends it)."""

    scope: Literal["person", "channel"]
    target: str
    until: float = 0.0


class BrainEnergy(Event, frozen=True, kw_only=True, tag="brain.energy"):
    """Her energy, published on each change: ``awake``; ``sleepy`` (close to a limit: shorter
    replies, no initiative); ``asleep`` (out: no backend is asked until ``until``)."""

    state: Literal["awake", "sleepy", "asleep"]
    until: float = 0.0  # unix s when it should lift (0: unknown)
    why: str = ""
    people: dict[str, str] = {}  # person id → their own state, where their budget makes it worse


class BrainTask(Event, frozen=True, kw_only=True, tag="brain.task"):
    """Work for the brain's language model, asked by an actor that has none (the memory actor).

    ``summarize``: ``text`` is a transcript; the answer holds a short summary and the lasting facts
    about the people in it. ``contradiction``: does ``other`` (a newer fact) contradict ``text``
    (an older one)? ``draft``: rewrite ``other`` (one persona setting) as ``text`` (an owner's
    request) asks; the answer's ``summary`` is the new text and ``reason`` why. ``reflect``: should
    ``other`` change, given ``text`` (people's remarks about how she talks)? The answer's
    ``summary`` is the new text ("" for no change) and ``reason`` why. Answered by a
    BrainTaskResult with the same correlation; people's replies go first, so a caller gives it
    a generous deadline and tries again later on a timeout.
    """

    kind: Literal["summarize", "contradiction", "draft", "reflect"]
    text: str
    other: str = ""


class BrainTaskResult(Event, frozen=True, kw_only=True, tag="brain.task.result"):
    summary: str = ""
    facts: tuple[Fact, ...] = ()
    contradicts: bool = False
    error: str = ""  # the backend failed; nothing else is set
    reason: str = ""  # a draft's reason, in her words


class UsageLine(msgspec.Struct, frozen=True, kw_only=True):
    day: str  # YYYY-MM-DD, the brain's local day
    backend: str
    person: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    replies: int = 0


BackendStateName = Literal["awake", "sleepy", "asleep", "down", "idle", "off"]


class BackendState(msgspec.Struct, frozen=True, kw_only=True):
    """One backend as the brain's fallback chain sees it: ``asleep`` while a rate limit or
    quota keeps it out (until ``until``, unix s, the provider's reset where it said one),
    ``sleepy`` for a while after one, ``down`` while cooling down after another failure,
    ``idle`` before its first use."""

    name: str
    state: BackendStateName = "awake"
    until: float = 0.0
    requests: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""  # the last failure


class BrainUsage(Event, frozen=True, kw_only=True, tag="brain.usage"):
    """Ask for tokens per day, backend and person (the last ``days``) and each backend's state;
    answered by BrainUsageReport."""

    days: int = 30


class BrainUsageReport(Event, frozen=True, kw_only=True, tag="brain.usage.report"):
    lines: tuple[UsageLine, ...] = ()
    backends: tuple[BackendState, ...] = ()
