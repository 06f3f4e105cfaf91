"""Every event that crosses the Hex bus, as one closed tagged union.

Adding an event: define the Struct in its family module with an explicit dotted
tag, add it to ``AnyEvent`` below, and give its family a row in
``schemas.delivery.DELIVERY``. See schemas/README.md for the evolution rules.
"""

from __future__ import annotations

from typing import Final

from schemas.autonomy import (
    AutonomyReport,
    AutonomyWhy,
    DiscordDm,
    DiscordDmChannel,
    DiscordPresence,
    WhyLine,
)
from schemas.base import Event
from schemas.brain import (
    BackendState,
    BrainEnergy,
    BrainTask,
    BrainTaskResult,
    BrainUsage,
    BrainUsageReport,
    PersonaAudit,
    PersonaAudited,
    PersonaAuditProgress,
    PersonaChanged,
    PersonaEdit,
    PersonaGet,
    PersonaRollback,
    PersonaState,
    PersonaVersion,
    PromptsChanged,
    PromptsEdit,
    QuietMode,
    UsageLine,
)
from schemas.capability import CAPABILITIES, Capability, CapabilityChanged, Switch
from schemas.chat import (
    Attachment,
    BargeIn,
    ChatAck,
    ChatMessage,
    Fact,
    KnownPerson,
    Notice,
    ProfileUpdate,
    Reply,
    ReplyChunk,
    ReplyMeta,
    ReplySentence,
)
from schemas.delivery import DELIVERY, PRIVILEGED, Delivery, delivery_of, privileged
from schemas.memory import (
    DOCUMENT_SUFFIXES,
    Contradiction,
    ConversationInfo,
    ImportedTurn,
    MemoryAdd,
    MemoryChanged,
    MemoryCorrect,
    MemoryDocument,
    MemoryEdit,
    MemoryExport,
    MemoryExported,
    MemoryForget,
    MemoryHistory,
    MemoryHistoryResult,
    MemoryHit,
    MemoryImport,
    MemoryImportFile,
    MemoryProgress,
    MemoryQuery,
    MemoryResult,
    MemoryReview,
    MemoryReviewed,
    PersonProfile,
)
from schemas.plugins import PluginFailed, PluginInstall, PluginNote, PluginRemove
from schemas.selfmod import (
    AuditFigures,
    ProposalView,
    SelfmodAsk,
    SelfmodChanged,
    SelfmodDecide,
    SelfmodProposal,
    SelfmodReport,
    SelfmodRequest,
)
from schemas.system import (
    HANDLER_BUCKETS_MS,
    ActorLifecycle,
    BrokerHeartbeat,
    ControlTaken,
    DeadLetter,
    DeadLetterCause,
    Heartbeat,
    Metric,
    PathCheck,
    Ping,
    Pong,
    ProbeDurable,
    ProbeVolatile,
    Redrive,
    Rejected,
    Reload,
    RetentionCut,
    Snapshot,
    Stop,
)
from schemas.vision import (
    EMOTIONS,
    Face,
    Observation,
    PerceptionPause,
    PerceptionResume,
    PerceptionState,
    PerceptionStatus,
    PerceptionSwitched,
    PreviewLease,
    SourceState,
    VisionFrame,
    VisionMoment,
)
from schemas.voice import (
    AudioFrame,
    AudioOut,
    Segment,
    Speaking,
    SpeechStarted,
    Timing,
    Transcript,
    Utterance,
)

AnyEvent = (
    Heartbeat
    | BrokerHeartbeat
    | ActorLifecycle
    | Rejected
    | RetentionCut
    | DeadLetter
    | Redrive
    | Stop
    | Ping
    | PathCheck
    | Pong
    | Snapshot
    | Reload
    | Metric
    | ControlTaken
    | ProbeDurable
    | ProbeVolatile
    | ChatMessage
    | ChatAck
    | ReplyChunk
    | Reply
    | ReplySentence
    | ReplyMeta
    | BargeIn
    | Notice
    | PersonaRollback
    | PersonaChanged
    | PersonaEdit
    | PromptsEdit
    | PromptsChanged
    | PersonaGet
    | PersonaState
    | PersonaAudit
    | PersonaAuditProgress
    | PersonaAudited
    | QuietMode
    | BrainEnergy
    | BrainTask
    | BrainTaskResult
    | BrainUsage
    | BrainUsageReport
    | MemoryImport
    | MemoryImportFile
    | MemoryDocument
    | MemoryQuery
    | MemoryResult
    | MemoryAdd
    | MemoryEdit
    | MemoryCorrect
    | MemoryForget
    | MemoryChanged
    | MemoryProgress
    | MemoryReview
    | MemoryReviewed
    | MemoryHistory
    | MemoryHistoryResult
    | MemoryExport
    | MemoryExported
    | Observation
    | VisionMoment
    | VisionFrame
    | PreviewLease
    | PerceptionPause
    | PerceptionResume
    | PerceptionState
    | PerceptionStatus
    | PerceptionSwitched
    | AudioFrame
    | Transcript
    | SpeechStarted
    | Segment
    | Utterance
    | AudioOut
    | Speaking
    | CapabilityChanged
    | AutonomyWhy
    | AutonomyReport
    | DiscordDm
    | DiscordDmChannel
    | DiscordPresence
    | SelfmodProposal
    | SelfmodRequest
    | PluginInstall
    | PluginRemove
    | PluginFailed
    | PluginNote
    | SelfmodDecide
    | SelfmodAsk
    | SelfmodReport
    | SelfmodChanged
)

EVENT_TYPES: Final[tuple[type[Event], ...]] = AnyEvent.__args__
TAGS: Final[dict[str, type[Event]]] = {str(t.__struct_config__.tag): t for t in EVENT_TYPES}
CONTROL_TAGS: Final[frozenset[str]] = frozenset(t for t in TAGS if t.startswith("sys.control."))


def tag_of(event_type: type[Event]) -> str:
    tag = event_type.__struct_config__.tag
    if not isinstance(tag, str):
        raise TypeError(f"{event_type.__name__} has no string tag")
    return tag


def type_for_topic(topic: str) -> type[Event] | None:
    """The event type a topic names: the longest tag that is the topic or its dotted prefix."""
    best: str | None = None
    for tag in TAGS:
        if (topic == tag or topic.startswith(tag + ".")) and (best is None or len(tag) > len(best)):
            best = tag
    return TAGS[best] if best is not None else None


__all__ = [
    "CAPABILITIES",
    "CONTROL_TAGS",
    "DELIVERY",
    "DOCUMENT_SUFFIXES",
    "EMOTIONS",
    "EVENT_TYPES",
    "HANDLER_BUCKETS_MS",
    "PRIVILEGED",
    "TAGS",
    "ActorLifecycle",
    "AnyEvent",
    "Attachment",
    "AudioFrame",
    "AudioOut",
    "AuditFigures",
    "AutonomyReport",
    "AutonomyWhy",
    "BackendState",
    "BargeIn",
    "BrainEnergy",
    "BrainTask",
    "BrainTaskResult",
    "BrainUsage",
    "BrainUsageReport",
    "BrokerHeartbeat",
    "Capability",
    "CapabilityChanged",
    "ChatAck",
    "ChatMessage",
    "Contradiction",
    "ControlTaken",
    "ConversationInfo",
    "DeadLetter",
    "DeadLetterCause",
    "Delivery",
    "DiscordDm",
    "DiscordDmChannel",
    "DiscordPresence",
    "Event",
    "Face",
    "Fact",
    "Heartbeat",
    "ImportedTurn",
    "KnownPerson",
    "MemoryAdd",
    "MemoryChanged",
    "MemoryCorrect",
    "MemoryDocument",
    "MemoryEdit",
    "MemoryExport",
    "MemoryExported",
    "MemoryForget",
    "MemoryHistory",
    "MemoryHistoryResult",
    "MemoryHit",
    "MemoryImport",
    "MemoryImportFile",
    "MemoryProgress",
    "MemoryQuery",
    "MemoryResult",
    "MemoryReview",
    "MemoryReviewed",
    "Metric",
    "Notice",
    "Observation",
    "PathCheck",
    "PerceptionPause",
    "PerceptionResume",
    "PerceptionState",
    "PerceptionStatus",
    "PerceptionSwitched",
    "PersonProfile",
    "PersonaAudit",
    "PersonaAuditProgress",
    "PersonaAudited",
    "PersonaChanged",
    "PersonaEdit",
    "PersonaGet",
    "PersonaRollback",
    "PersonaState",
    "PersonaVersion",
    "Ping",
    "PluginFailed",
    "PluginInstall",
    "PluginNote",
    "PluginRemove",
    "Pong",
    "PreviewLease",
    "ProbeDurable",
    "ProbeVolatile",
    "ProfileUpdate",
    "PromptsChanged",
    "PromptsEdit",
    "ProposalView",
    "QuietMode",
    "Redrive",
    "Rejected",
    "Reload",
    "Reply",
    "ReplyChunk",
    "ReplyMeta",
    "ReplySentence",
    "RetentionCut",
    "Segment",
    "SelfmodAsk",
    "SelfmodChanged",
    "SelfmodDecide",
    "SelfmodProposal",
    "SelfmodReport",
    "SelfmodRequest",
    "Snapshot",
    "SourceState",
    "Speaking",
    "SpeechStarted",
    "Stop",
    "Switch",
    "Timing",
    "Transcript",
    "UsageLine",
    "Utterance",
    "VisionFrame",
    "VisionMoment",
    "WhyLine",
    "delivery_of",
    "privileged",
    "tag_of",
    "type_for_topic",
]
