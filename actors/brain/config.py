"""The brain's configuration (``[actors.brain.config]`` in supervisor.toml) and its state."""

from __future__ import annotations

import msgspec

from actors.brain.backends import Backend, ModelLoader, load_in_thread
from actors.brain.backends.exllamav2 import ExLlamaV2Backend, ExLlamaV2Config
from actors.brain.backends.llamacpp import LlamaCppBackend, LlamaCppConfig
from actors.brain.backends.openai_compat import OpenAICompatBackend, OpenAIConfig
from actors.brain.energy import EnergyConfig
from actors.brain.profile import ProfileNotes
from actors.brain.prompt import Budgets, TurnRecord
from actors.brain.rules import Relationship
from schemas import BrainEnergy, ChatMessage


class OpenAISpec(OpenAIConfig, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="openai"):
    """An OpenAI-compatible endpoint (Ollama, vLLM, OpenRouter, DeepSeek, llama.cpp's server)."""

    name: str = ""  # default: openai:<model>


BackendSpec = LlamaCppConfig | OpenAISpec | ExLlamaV2Config


def make_backend(spec: BackendSpec, load: ModelLoader = load_in_thread) -> Backend:
    """The backend a ``backends`` entry describes; ``load`` loads its model, if it has one."""
    if isinstance(spec, LlamaCppConfig):
        return LlamaCppBackend(spec, load)
    if isinstance(spec, ExLlamaV2Config):
        return ExLlamaV2Backend(spec, load)
    return OpenAICompatBackend(spec, name=spec.name)


class BrainConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``backends`` is the fallback chain, first choice first."""

    persona: str = "persona.toml"  # relative to supervisor.toml's folder
    persona_check_s: float = 2.0  # how often persona.toml is checked for edits
    backends: tuple[BackendSpec, ...] = (LlamaCppConfig(),)
    budgets: Budgets = Budgets()
    temperature: float = 0.7
    # Streamed pieces are coalesced into chunks this far apart (0: every token).
    chunk_interval_ms: float = 40.0
    seed: int | None = None  # fixed sampling for tests and audits
    max_message_chars: int = 4000
    memory: bool = True  # ask the memory actor for context
    # The memory actor's name in supervisor.toml: queried only while its heartbeats arrive.
    memory_actor: str = "memory"
    memory_timeout_s: float = 0.25
    memory_retry_s: float = 30.0  # after a timeout, answer without asking for this long
    # Emotion and memory directives after each reply (a second, constrained call).
    metadata: bool = True
    keep_turns: int = 24  # turns kept whole per conversation; older ones fold into the summary
    summary_batch: int = 8  # turns folded at a time
    observation_fresh_s: float = 30.0
    moment_fresh_s: float = 120.0  # "they just came back after 2 hours" is news this long
    plugin_host: str = "plugins"  # the only actor whose plugin.note the prompt takes
    selfmod: str = "selfmod"  # the only actor whose prompt templates (brain.prompts.edit) it takes
    plugin_note_fresh_s: float = 120.0  # a plugin's note is for the next reply, this long
    # "Leave me alone": answer that person only when addressed directly, this long.
    quiet_minutes: float = 30.0
    fallback_cooldown_s: float = 30.0
    energy: EnergyConfig = EnergyConfig()  # token budgets: sleepy, then asleep


class PendingMessage(msgspec.Struct, kw_only=True):
    """A chat message accepted and not yet answered: it survives a crash in the snapshot."""

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
    pending: dict[str, PendingMessage] = {}
    conversations: dict[str, Conversation] = {}
    relationships: dict[str, Relationship] = {}
    profiles: dict[str, ProfileNotes] = {}  # person id -> what the metadata taught
    quiet: dict[str, float] = {}  # "person:ID" or "channel:ID" -> unix time it ends
    persona_version: int = 0
    usage: dict[str, UsageRow] = {}  # "YYYY-MM-DD|backend|person" -> totals
    # Message event ids answered lately (bounded), so nothing is answered twice.
    answered: list[str] = []
    observation: str = ""
    observed_at: float = 0.0
    moment: str = ""  # the latest vision.moment, in words
    moment_at: float = 0.0
    moment_source: str = ""
    pictures: dict[str, tuple[str, float]] = {}  # perception source -> (picture, unix time)
    plugin_notes: dict[str, tuple[str, float]] = {}  # "plugin|person" -> (note, unix time)
    prompts: dict[str, str] = {}  # the prompt templates selfmod handed over: file -> text
    prompts_sha: str = ""
    energy: BrainEnergy = BrainEnergy(state="awake")  # as last published


CHAT_TEMPLATE_TOKENS = 64  # role markers around the turns


def context_problem(config: BrainConfig) -> str:
    """One line naming a llama.cpp backend whose context the budgets overflow, and the fix; ''
    when every one fits."""
    total = config.budgets.total()
    for spec in config.backends:
        if isinstance(spec, LlamaCppConfig) and total + CHAT_TEMPLATE_TOKENS > spec.n_ctx:
            return (
                f"actors.brain.config.budgets add up to {total} tokens, more than "
                f"backend {spec.name}'s n_ctx = {spec.n_ctx} allows (less {CHAT_TEMPLATE_TOKENS} "
                "for the chat template): lower the budgets or raise n_ctx"
            )
    return ""
