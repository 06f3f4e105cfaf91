"""The brain's configuration (``[actors.brain.config]`` in supervisor.toml) and its state."""

from __future__ import annotations

import msgspec

from actors.brain.backends.exllamav2 import ExLlamaV2Config
from actors.brain.backends.llamacpp import LlamaCppConfig
from actors.brain.backends.openai_compat import OpenAIConfig
from actors.brain.persona import Relationship
from actors.brain.profile import Profile
from actors.brain.prompt import Budgets, TurnRecord
from schemas import ChatMessage


class OpenAISpec(OpenAIConfig, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="openai"):
    """An OpenAI-compatible endpoint (Ollama, vLLM, OpenRouter, DeepSeek, llama.cpp's server)."""

    name: str = ""  # default: openai:<model>


BackendSpec = LlamaCppConfig | OpenAISpec | ExLlamaV2Config


class BrainConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``backends`` is the fallback chain, first choice first."""

    persona: str = "persona.toml"  # relative to supervisor.toml's folder
    persona_check_s: float = 2.0  # how often persona.toml is checked for edits
    backends: tuple[BackendSpec, ...] = (LlamaCppConfig(),)
    budgets: Budgets = Budgets()
    temperature: float = 0.7
    chunk_interval_ms: float = (
        40.0  # streamed pieces are coalesced into chunks this far apart (0: every token)
    )
    seed: int | None = None  # fixed sampling for tests and audits
    max_message_chars: int = 4000
    memory: bool = True  # ask the memory actor for context
    memory_actor: str = (
        "memory"  # its name in supervisor.toml: queried only while its heartbeats arrive
    )
    memory_timeout_s: float = 0.25
    memory_retry_s: float = 30.0  # after a timeout, answer without asking for this long
    metadata: bool = (
        True  # emotion and memory directives after each reply (a second, constrained call)
    )
    keep_turns: int = 24  # turns kept whole per conversation; older ones fold into the summary
    summary_batch: int = 8  # turns folded at a time
    observation_fresh_s: float = 30.0
    quiet_minutes: float = (
        30.0  # "leave me alone": answer that person only when addressed directly, this long
    )
    fallback_cooldown_s: float = 30.0


class Pending(msgspec.Struct, kw_only=True):
    """A message accepted and not yet answered: it survives a crash in the snapshot."""

    event_id: str
    offset: int
    message: ChatMessage
    received: float = 0.0


class Conversation(msgspec.Struct, kw_only=True):
    turns: list[TurnRecord] = []
    summary: str = ""


class UsageRow(msgspec.Struct, kw_only=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    replies: int = 0


class BrainState(msgspec.Struct, kw_only=True):
    pending: dict[str, Pending] = {}
    conversations: dict[str, Conversation] = {}
    relationships: dict[str, Relationship] = {}
    profiles: dict[str, Profile] = {}  # person id -> what the metadata taught
    quiet: dict[str, float] = {}  # "person:ID" or "channel:ID" -> unix time it ends
    persona_version: int = 0
    usage: dict[str, UsageRow] = {}  # "YYYY-MM-DD|backend|person" -> totals
    answered: list[
        str
    ] = []  # message event ids answered lately (bounded), so nothing is answered twice
    observation: str = ""
    observed_at: float = 0.0
