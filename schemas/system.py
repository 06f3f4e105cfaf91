"""System events: heartbeats, actor lifecycle, bus health and control."""

from __future__ import annotations

from typing import Final, Literal

from schemas.base import Event

ActorStateName = Literal["starting", "replaying", "live", "stopping"]


class Heartbeat(Event, frozen=True, kw_only=True, tag="sys.heartbeat"):
    """Sent by every process from its event loop; a missing one means a hang."""

    actor: str
    pid: int
    state: ActorStateName = "live"
    events_in: int = 0
    events_out: int = 0
    dropped: int = 0
    rejected: int = 0
    applied_offset: int = 0
    rss_bytes: int = 0
    cpu_seconds: float = 0.0  # user + system CPU time the process has used since it started
    detail: str = (
        ""  # what the actor is doing beyond its state: "loading whisper-base", "whisper-base 1.2s"
    )
    # Age of the oldest work the actor accepted and has not finished (0: none): a loop that turns
    # while work stands still is hung all the same (ActorSpec.work_timeout_s).
    oldest_work_s: float = 0.0
    # The broker's only: durable subscribers that lost events to the retention cap and have not
    # read past them yet, with the last offset lost (`hexbus status` marks them).
    lagging: dict[str, int] = {}
    # How long its handlers took since it started: counts per HANDLER_BUCKETS_MS bucket (each
    # handler counted once, in the first bucket it fits; the last count is the ones over), and
    # the sum in ms. /metrics turns them into a histogram.
    handler_counts: tuple[int, ...] = ()
    handler_ms_sum: float = 0.0


# Upper bounds (ms) of a handler's duration buckets in the heartbeat.
HANDLER_BUCKETS_MS: Final = (1.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 30000.0)


class ControlTaken(Event, frozen=True, kw_only=True, tag="sys.audit"):
    """A control action a person took from an interface (the page): who, what, on which actor,
    and how it went. Durable: the journal is the record of who did what to Hex."""

    action: Literal[
        "restart",
        "killswitch",
        "persona.edit",
        "persona.rollback",
        "persona.audit",
        "capability.enable",
        "capability.disable",
    ]
    target: str = ""  # the actor restarted; for a kill switch, the actors kept running
    by: str  # the person id the interface verified
    via: str  # the actor that took it ("web")
    ok: bool = True
    message: str = ""  # the supervisor's answer, or why it was refused


class BrokerHeartbeat(Event, frozen=True, kw_only=True, tag="sys.broker.heartbeat"):
    """The broker's pulse: its incarnation and the journal head."""

    incarnation: str
    head_offset: int
    first_offset: int
    sessions: int = 0
    rejected: int = 0
    journal_bytes: int = 0  # the segments retained


LifecycleChange = Literal["spawn", "exit", "restart", "failed", "error"]


class ActorLifecycle(Event, frozen=True, kw_only=True, tag="sys.actor"):
    """One change in an actor's life, published durably on ``sys.actor.<name>.<change>``.

    spawn: a process started; exit: it ended (returncode or signal, and why);
    restart: the supervisor will start it again after ``backoff_s``; failed: it
    exceeded its restart intensity and stays down; error: a handler raised on
    ``event_id`` and the actor went on.
    """

    actor: str
    change: LifecycleChange
    pid: int = 0
    returncode: int | None = None
    signal: int | None = None
    restarts: int = 0
    backoff_s: float = 0.0
    reason: str = ""
    event_id: str = ""
    event_type: str = ""


DeadLetterCause = Literal["raised", "crashed"]
DeadLetterStatus = Literal["dead", "retried", "dropped"]


class DeadLetter(Event, frozen=True, kw_only=True, tag="sys.deadletter"):
    """A durable event an actor could not apply, published on ``sys.deadletter.<actor>``.

    ``status`` dead: its handler raised ``attempts`` times in a row (cause raised) or the
    process died that many times while handling it (cause crashed), and the actor went on
    without it. retried: ``hexbus deadletter retry`` applied it; dropped: an owner gave it up.
    A dead letter carries the event's encoded envelope (and its blob in the message's blob
    frame), so it can be retried after the journal has dropped the original.
    """

    actor: str
    event_id: str  # the dead event's id: the letter's name in `hexbus deadletter`
    offset: int
    topic: str
    status: DeadLetterStatus = "dead"
    cause: DeadLetterCause = "raised"
    attempts: int = 0
    error: str = ""
    envelope: bytes = b""


class Redrive(Event, frozen=True, kw_only=True, tag="sys.redrive"):
    """Apply a dead letter again, on ``sys.redrive.<actor>`` (from ``hexbus deadletter retry``)."""

    actor: str
    event_id: str
    topic: str
    envelope: bytes  # the dead event's encoded envelope; its blob travels in the blob frame


class Rejected(Event, frozen=True, kw_only=True, tag="sys.bus.rejected"):
    """Counters of frames a process dropped as malformed, oversized or unknown; with
    ``event_id``, also one durable event of this process that the broker refused to store
    (``topic``, the broker's ``reason``): its producer dropped it and went on."""

    process: str
    counts: dict[str, int]
    total: int
    event_id: str = ""
    topic: str = ""
    reason: str = ""


class RetentionCut(Event, frozen=True, kw_only=True, tag="sys.bus.retention_cut"):
    """The journal went over its hard cap (``bus.journal.retention_cap_mb``) and deleted
    durable events a subscriber had not applied: ``consumer`` will never see offsets
    ``lost_from``-``lost_to``. With ``blobs``, the blob files went over theirs
    (``blob_retention_cap_mb``): the events are kept, but those among them that carried a large
    blob (speech, a document) lost it and will not be applied."""

    consumer: str
    lost_from: int
    lost_to: int
    cap_mb: int
    blobs: bool = False


class Stop(Event, frozen=True, kw_only=True, tag="sys.control.stop"):
    target: str
    reason: str = ""


class Ping(Event, frozen=True, kw_only=True, tag="sys.control.ping"):
    target: str
    nonce: int = 0


class Pong(Event, frozen=True, kw_only=True, tag="sys.pong"):
    actor: str
    nonce: int = 0
    state: ActorStateName = "live"
    applied_offset: int = 0


class PathCheck(Event, frozen=True, kw_only=True, tag="sys.pathcheck"):
    """A client's message to itself through the broker (topic ``sys.pathcheck.<client>``): when
    it comes back, the broker has the client's subscriptions and forwards what it publishes."""


class Snapshot(Event, frozen=True, kw_only=True, tag="sys.control.snapshot"):
    target: str


class Reload(Event, frozen=True, kw_only=True, tag="sys.control.reload"):
    target: str


class Metric(Event, frozen=True, kw_only=True, tag="metrics"):
    """A named measurement (latency stages, counters), shown by ``hexbus tail metrics``."""

    name: str
    value: float
    unit: str = ""
    labels: dict[str, str] = {}


class ProbeDurable(Event, frozen=True, kw_only=True, tag="probe.durable"):
    """Diagnostics, tests and benchmarks: a durable event carrying a number."""

    n: int
    sent_ns: int = 0
    note: str = ""


class ProbeVolatile(Event, frozen=True, kw_only=True, tag="probe.volatile"):
    """Diagnostics, tests and benchmarks: a volatile event (may carry a blob)."""

    n: int
    sent_ns: int = 0
    note: str = ""
