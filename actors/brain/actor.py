"""The brain: turns chat messages into the persona's streamed replies.

Every accepted message is kept in the state as pending until its final
``chat.reply`` is journaled, so a brain killed mid-reply answers it after the
restart, and a reply that made it to the journal is seen again on replay and
never repeated. One reply at a time per conversation (platform + channel);
conversations run side by side up to the backends' capacity. A newer message
in the same conversation, or a barge-in, cancels the reply in flight: its
chunks stop and its final event says ``cancelled``.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import ClassVar

import structlog

from actors.brain import metadata, profile, tasks
from actors.brain.backends import Backend, BackendError, BackendOverloaded, Params, Turn, Usage
from actors.brain.backends.exllamav2 import ExLlamaV2Backend, ExLlamaV2Config
from actors.brain.backends.fallback import FallbackChain, FallbackEvent
from actors.brain.backends.llamacpp import LlamaCppBackend, LlamaCppConfig
from actors.brain.backends.openai_compat import OpenAICompatBackend
from actors.brain.config import (
    BackendSpec,
    BrainConfig,
    BrainState,
    Conversation,
    Pending,
    UsageRow,
)
from actors.brain.persona import (
    Persona,
    PersonaError,
    Relationship,
    care_owed,
    connection_points,
    is_crisis,
    may_deny,
    moment_of,
    new_relationship,
    record_reply,
    system_prompt,
    update_relationship,
    wants_quiet,
)
from actors.brain.prompt import TurnRecord, build
from actors.brain.sentences import SentenceSplitter
from actors.brain.versions import PersonaStore
from hexbus import Actor, ActorUnusable, RequestTimeout, on
from hexbus.codec import derived_id
from schemas import (
    BargeIn,
    BrainTask,
    BrainTaskResult,
    ChatMessage,
    Heartbeat,
    MemoryQuery,
    MemoryResult,
    Metric,
    Notice,
    Observation,
    PersonaChanged,
    PersonaRollback,
    QuietMode,
    Reply,
    ReplyChunk,
    ReplyMeta,
    ReplySentence,
)

log = structlog.get_logger("actors.brain")

ANSWERED_KEEP = 2048
CHAT_TEMPLATE_TOKENS = 64  # role markers around the turns
MEMORY_SILENT_S = 5.0  # a memory actor unheard for this long is taken to be absent


def make_backend(spec: BackendSpec) -> Backend:
    if isinstance(spec, LlamaCppConfig):
        return LlamaCppBackend(spec)
    if isinstance(spec, ExLlamaV2Config):
        return ExLlamaV2Backend(spec)
    return OpenAICompatBackend(spec, name=spec.name)


def looks_binary(text: str) -> bool:
    controls = sum(1 for c in text if ord(c) < 32 and c not in "\n\r\t")
    return "\x00" in text or controls > max(4, len(text) // 20)


def conversation_of(message: ChatMessage) -> str:
    """A conversation is a channel on a platform: one reply at a time in each."""
    return f"{message.platform}:{message.channel}"


class BrainActor(Actor[BrainConfig, BrainState]):
    """The persona's voice: prompts, streams, falls back, remembers who it talks to."""

    subscribes: ClassVar[tuple[str, ...]] = (
        "chat.message",
        "chat.reply",
        "chat.bargein",
        "brain",
        "vision.observation",
    )
    config_type = BrainConfig
    state_type = BrainState

    async def setup(self) -> None:
        self.persona_path = (self.config_dir / self.config.persona).resolve()
        self.store = PersonaStore(self.data_dir / "persona")
        previous = self.state.persona_version
        try:
            self.state.persona_version = await self.offload(self.store.sync, self.persona_path)
            self.persona: Persona = self.store.get(self.state.persona_version)[0]
        except PersonaError as exc:
            raise ActorUnusable(str(exc)) from None
        if self.state.persona_version != previous:
            await self.publish(
                PersonaChanged(version=self.state.persona_version, note="persona.toml loaded")
            )
        self.persona_mtime = self.persona_path.stat().st_mtime_ns
        for spec in self.config.backends:
            if (
                isinstance(spec, LlamaCppConfig)
                and self.config.budgets.total() + CHAT_TEMPLATE_TOKENS > spec.n_ctx
            ):
                raise ActorUnusable(
                    f"actors.brain.config.budgets add up to {self.config.budgets.total()} tokens, more than "
                    f"backend {spec.name}'s n_ctx = {spec.n_ctx} allows (less {CHAT_TEMPLATE_TOKENS} for the "
                    "chat template): lower the budgets or raise n_ctx"
                )
        self.backend = FallbackChain(
            [make_backend(spec) for spec in self.config.backends],
            cooldown_s=self.config.fallback_cooldown_s,
        )
        try:
            await self.backend.start()
        except BackendError as exc:
            raise ActorUnusable(str(exc)) from None
        self.rng = random.Random(
            self.config.seed
        )  # seeded: an audit or a test replays the same choices
        self.workers: dict[str, asyncio.Task[None]] = {}
        self.inflight: dict[str, str] = {}  # conversation -> message event id being answered
        self.superseded: dict[
            str, str
        ] = {}  # conversation -> why its reply in flight was cancelled
        self.memory_down_until = 0.0
        self.memory_seen = -MEMORY_SILENT_S  # when the memory actor's last live heartbeat arrived
        self.bus.subscribe(f"sys.heartbeat.{self.config.memory_actor}")
        self.said: dict[str, str] = {}  # conversation -> what a barge-in reported as heard
        self.tasks: set[asyncio.Task[None]] = set()  # brain.task requests being worked on
        self.task_lock = (
            asyncio.Lock()
        )  # one at a time: they share the backend with people's replies
        self.watcher = asyncio.get_running_loop().create_task(
            self.watch_persona(), name="persona-watch"
        )

    async def watch_persona(self) -> None:
        """Pick up edits to persona.toml: each valid change becomes a new version, live."""
        while True:
            await asyncio.sleep(self.config.persona_check_s)
            try:
                mtime = self.persona_path.stat().st_mtime_ns
            except OSError:
                continue
            if mtime != self.persona_mtime:
                self.persona_mtime = mtime
                await self.on_reload()

    async def teardown(self) -> None:
        self.watcher.cancel()
        for task in (*self.workers.values(), *self.tasks):
            task.cancel()
        await asyncio.gather(*self.workers.values(), *self.tasks, return_exceptions=True)
        await self.backend.close()

    # -- handlers -----------------------------------------------------------------

    @on(ChatMessage)
    async def on_message(self, event: ChatMessage) -> None:
        envelope = self.envelope
        if (
            envelope is None
            or envelope.id in self.state.pending
            or envelope.id in self.state.answered
        ):
            return
        conv = conversation_of(event)
        problem = self.refusal(event)
        if problem:
            await self.finish_without_reply(envelope.id, event, problem, status="failed")
            return
        if self.is_quiet(event) and not event.direct:
            self.conversation(conv).turns.append(self.user_turn(envelope.id, event))
            self.mark_answered(envelope.id)
            return
        self.state.pending[envelope.id] = Pending(
            event_id=envelope.id, offset=envelope.offset, message=event, received=envelope.wall
        )
        if self.live:
            self.kick(conv)

    @on(Reply)
    async def on_reply(self, event: Reply) -> None:
        # Our own final replies come back through the journal: on replay after a crash this is what
        # tells a message that was answered from one that was not.
        if event.reply_to in self.state.pending:
            del self.state.pending[event.reply_to]
            self.mark_answered(event.reply_to)

    @on(BrainTask)
    async def on_task(self, event: BrainTask) -> None:
        # Off the dispatch loop: a summary takes seconds, and messages must not queue behind it. The
        # task copies this handler's context, so respond() still answers this request.
        task = asyncio.get_running_loop().create_task(
            self.run_task(event), name=f"brain-task-{event.kind}"
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run_task(self, event: BrainTask) -> None:
        async with self.task_lock:
            while self.inflight:  # people's replies first; the caller's deadline bounds the wait
                await asyncio.sleep(0.05)
            turns, schema, max_tokens = tasks.messages(event)
            started = time.monotonic()
            try:
                raw = await self.backend.complete_json(
                    turns,
                    schema,
                    Params(max_tokens=max_tokens, temperature=0.1, seed=self.config.seed),
                )
            except BackendError as exc:
                result = BrainTaskResult(error=str(exc))
            else:
                result = tasks.parse(event, raw)
        log.info(
            "brain.task",
            kind=event.kind,
            seconds=round(time.monotonic() - started, 2),
            error=result.error or None,
            facts=len(result.facts),
        )
        await self.respond(result)

    @on(BargeIn)
    async def on_barge_in(self, event: BargeIn) -> None:
        for conv, worker in self.workers.items():
            if (
                conv.split(":", 1)[1] == event.channel
                and conv in self.inflight
                and not worker.done()
            ):
                self.said[conv] = event.said
                self.cancel(conv, "barge-in")

    @on(PersonaRollback)
    async def on_rollback(self, event: PersonaRollback) -> None:
        try:
            self.persona = await self.offload(self.store.rollback, event.version)
        except PersonaError as exc:
            await self.publish(PersonaChanged(version=self.state.persona_version, error=str(exc)))
            return
        self.state.persona_version = self.store.active
        self.persona_mtime = self.persona_path.stat().st_mtime_ns
        log.info("brain.persona_rollback", to=event.version, active=self.state.persona_version)
        await self.publish(
            PersonaChanged(version=self.state.persona_version, note=f"rollback to {event.version}")
        )

    @on(QuietMode)
    async def on_quiet(self, event: QuietMode) -> None:
        key = f"{event.scope}:{event.target}"
        if event.until > time.time():
            self.state.quiet[key] = event.until
        else:
            self.state.quiet.pop(key, None)

    @on(Heartbeat)
    async def on_heartbeat(self, event: Heartbeat) -> None:
        if event.actor == self.config.memory_actor and event.state == "live":
            self.memory_seen = time.monotonic()

    @on(Observation)
    async def on_observation(self, event: Observation) -> None:
        self.state.observation = event.text
        self.state.observed_at = event.at or time.time()

    async def on_live(self) -> None:
        for conv in {conversation_of(p.message) for p in self.state.pending.values()}:
            self.kick(conv)

    async def on_reload(self) -> None:
        """``sys.control.reload``, or persona.toml changed on disk: record and use the new version."""
        try:
            version = await self.offload(self.store.sync, self.persona_path)
        except PersonaError as exc:
            log.error(
                "brain.persona_invalid", error=str(exc), hint="the previous version stays active"
            )
            return
        if version != self.state.persona_version:
            self.state.persona_version = version
            self.persona = self.store.get(version)[0]
            await self.publish(PersonaChanged(version=version, note="persona.toml changed"))

    # -- conversations ------------------------------------------------------------

    def refusal(self, event: ChatMessage) -> str:
        text = event.text
        if not text.strip() and not event.attachments:
            return "That message was empty, so there's nothing for me to answer."
        if len(text) > self.config.max_message_chars:
            return (
                f"That message is {len(text)} characters; I read at most {self.config.max_message_chars}. "
                "Send it in parts, or as a file."
            )
        if looks_binary(text):
            return "That looks like binary data, not words. Send files as attachments."
        return ""

    def is_quiet(self, event: ChatMessage) -> bool:
        now = time.time()
        for key in (f"person:{event.person_id}", f"channel:{event.channel}"):
            until = self.state.quiet.get(key)
            if until is not None:
                if until > now:
                    return True
                del self.state.quiet[key]
        return False

    def conversation(self, conv: str) -> Conversation:
        found = self.state.conversations.get(conv)
        if found is None:
            found = self.state.conversations[conv] = Conversation()
        return found

    @staticmethod
    def user_turn(event_id: str, event: ChatMessage) -> TurnRecord:
        return TurnRecord(
            role="user",
            text=event.text,
            person_id=event.person_id,
            name=event.display_name,
            event_id=event_id,
            at=time.time(),
        )

    def mark_answered(self, event_id: str) -> None:
        self.state.answered.append(event_id)
        if len(self.state.answered) > ANSWERED_KEEP:
            del self.state.answered[: len(self.state.answered) - ANSWERED_KEEP]

    def kick(self, conv: str) -> None:
        worker = self.workers.get(conv)
        if worker is not None and not worker.done():
            if conv in self.inflight:
                self.cancel(conv, "newer message")
            return
        self.workers[conv] = asyncio.get_running_loop().create_task(
            self.work(conv), name=f"reply-{conv}"
        )

    def cancel(self, conv: str, why: str) -> None:
        self.superseded[conv] = why
        worker = self.workers.get(conv)
        if worker is not None:
            worker.cancel()

    async def work(self, conv: str) -> None:
        """Answer this conversation's pending messages: the newest; older unanswered ones are superseded."""
        while True:
            waiting = sorted(
                (p for p in self.state.pending.values() if conversation_of(p.message) == conv),
                key=lambda p: p.offset,
            )
            if not waiting:
                return
            *older, current = waiting
            for stale in older:
                self.conversation(conv).turns.append(self.user_turn(stale.event_id, stale.message))
                await self.finish_without_reply(
                    stale.event_id, stale.message, "", status="cancelled"
                )
            self.inflight[conv] = current.event_id
            try:
                await self.answer(conv, current)
            except asyncio.CancelledError:
                why = self.superseded.pop(conv, None)
                if why is None:
                    raise  # the actor is stopping: the message stays pending for the next incarnation
            except Exception:
                log.exception("brain.reply_crashed", conv=conv, message=current.event_id)
                await self.finish_without_reply(
                    current.event_id,
                    current.message,
                    "Something went wrong in my head. Try again?",
                    status="failed",
                )
            finally:
                self.inflight.pop(conv, None)

    async def finish_without_reply(
        self, event_id: str, event: ChatMessage, text: str, *, status: str
    ) -> None:
        self.state.pending.pop(event_id, None)
        self.mark_answered(event_id)
        await self.publish(
            Reply(
                reply_to=event_id,
                channel=event.channel,
                text=text,
                status=status,  # type: ignore[arg-type]
                platform=event.platform,
                person_id=event.person_id,
            ),
            key=event.platform,
            event_id=derived_id(event_id, "reply"),
            causation=event_id,
        )

    # -- one reply ----------------------------------------------------------------

    async def memories(self, event: ChatMessage) -> MemoryResult:
        """Memories for the message and the person's long-term profile; empty when memory is down."""
        now = time.monotonic()
        if (
            not self.config.memory
            or now < self.memory_down_until
            or now - self.memory_seen > MEMORY_SILENT_S
        ):
            return (
                MemoryResult()
            )  # no memory actor is running (none heard lately): asking would only add the deadline
        try:
            result = await self.request(
                MemoryQuery(text=event.text, person_id=event.person_id, channel=event.channel),
                MemoryResult,
                timeout=self.config.memory_timeout_s,
            )
        except RequestTimeout:
            self.memory_down_until = time.monotonic() + self.config.memory_retry_s
            log.info("brain.memory_unavailable", retry_in_s=self.config.memory_retry_s)
            return MemoryResult()
        return result

    def relationship(self, person_id: str) -> Relationship:
        found = self.state.relationships.get(person_id)
        if found is None:
            found = self.state.relationships[person_id] = new_relationship(
                person_id, self.persona, now=time.time()
            )
        return found

    def prompt(
        self, conv: str, event: ChatMessage, recalled: MemoryResult
    ) -> tuple[list[Turn], int]:
        rel = self.relationship(event.person_id)
        deny = may_deny(rel, event.text, self.persona, self.rng)
        owed = care_owed(rel, self.persona)
        quiet = wants_quiet(event.text, self.persona)
        if quiet and self.config.quiet_minutes > 0:
            # They asked for space: one short line now, then only what is said to Hex directly.
            self.state.quiet[f"person:{event.person_id}"] = (
                time.time() + self.config.quiet_minutes * 60
            )
        persona_text = system_prompt(
            self.persona,
            rel,
            deny_now=deny,
            care_owed=owed,
            quiet=quiet,
            crisis=is_crisis(event.text, self.persona),
            moment=moment_of(event.text, self.persona),
        )
        conversation = self.conversation(conv)
        fresh = time.time() - self.state.observed_at < self.config.observation_fresh_s
        turns, max_tokens = build(
            persona=persona_text,
            # Memory's profile is the long-term one; the snapshot's copy stands in while memory is down.
            profile=profile.describe(
                profile.from_memory(recalled.profile)
                if recalled.profile is not None
                else self.state.profiles.get(event.person_id)
            ),
            memories=list(recalled.hits),
            observation=self.state.observation if fresh else "",
            summary=conversation.summary,
            turns=conversation.turns,
            message=event.text,
            speaker=event.display_name or event.person_id,
            budgets=self.config.budgets,
            count=self.backend.count_tokens,
        )
        return turns, max_tokens

    async def answer(self, conv: str, pending: Pending) -> None:
        event, message_id = pending.message, pending.event_id
        attempt = f"{self.bus.session:x}-{time.monotonic_ns()}"
        turns, max_tokens = self.prompt(conv, event, await self.memories(event))
        params = Params(
            max_tokens=max_tokens, temperature=self.config.temperature, seed=self.config.seed
        )
        text, usage, backend_name, fallbacks, status = "", Usage(), "", 0, "complete"
        restarts = 0
        splitter = SentenceSplitter()
        sentences = 0
        chunk = 0
        unsent: list[str] = []  # pieces not yet published as a chunk
        chunk_at = 0.0
        interval = self.config.chunk_interval_ms / 1000

        def send_chunk() -> None:
            # The first piece goes out at once; later ones are coalesced for chunk_interval_ms, which
            # nobody can see in a typed reply and which cuts the bus traffic per reply several times.
            nonlocal chunk, chunk_at
            if unsent:
                self.bus.publish_volatile(
                    ReplyChunk(
                        reply_to=message_id,
                        channel=event.channel,
                        index=chunk,
                        text="".join(unsent),
                    ),
                    key=event.platform,
                )
                if (
                    chunk == 0
                ):  # the moment the first words exist: a stage of the voice latency breakdown
                    self.bus.publish_volatile(
                        Metric(
                            name="brain.first_chunk",
                            value=round((time.time() - pending.received) * 1000, 1),
                            unit="ms",
                            labels={"reply_to": message_id},
                        ),
                        key="brain",
                    )
                unsent.clear()
                chunk += 1
                chunk_at = time.monotonic()

        async def speak(sentence: str) -> None:
            nonlocal sentences
            await self.publish(
                ReplySentence(
                    reply_to=message_id,
                    channel=event.channel,
                    platform=event.platform,
                    person_id=event.person_id,
                    index=sentences,
                    text=sentence,
                ),
                key=event.platform,
                event_id=derived_id(message_id, attempt, "sentence", str(sentences)),
                causation=message_id,
            )
            sentences += 1

        stream = self.backend.stream(turns, params)
        announced = 0
        try:
            async for piece in stream:
                if len(stream.events) > announced:
                    for fallback in stream.events[announced:]:
                        await self.notice(event, fallback)
                    announced = len(stream.events)
                if stream.restarts > restarts:
                    # The backend failed mid-reply and the next one starts over: what streamed is void
                    # (stream.text is already the new backend's reply alone).
                    restarts = stream.restarts
                    splitter = SentenceSplitter()
                unsent.append(piece)
                done = splitter.push(piece)
                if chunk == 0 or done or time.monotonic() - chunk_at >= interval:
                    send_chunk()
                for sentence in done:
                    await speak(sentence)
            send_chunk()
            text, usage, backend_name, fallbacks = (
                stream.text,
                stream.usage,
                stream.backend,
                len(stream.events),
            )
            if usage.truncated and sentences:
                # Cut at the token limit mid-sentence: the half sentence is neither spoken nor kept.
                tail = splitter.discard()
                text = text[: len(text) - len(tail)] if tail and text.endswith(tail) else text
            for sentence in splitter.flush():
                await speak(sentence)
        except asyncio.CancelledError:
            if conv not in self.superseded:
                raise
            status = "cancelled"
            said = self.said.pop(conv, None)
            text = stream.text if said is None else said  # a barge-in: what the person heard
            log.info(
                "brain.reply_cancelled", conv=conv, message=message_id, why=self.superseded[conv]
            )
        except BackendError as exc:
            log.error("brain.all_backends_failed", error=str(exc))
            status = "failed"
            text = (
                "I'm too sleepy to think right now; try me again in a bit."
                if isinstance(exc, BackendOverloaded)
                else "My head's full of static right now. Give me a minute and ask again?"
            )
        finally:
            await stream.aclose()
        text = text.strip()
        if status == "complete" and not text:
            text = "..."
        conversation = self.conversation(conv)
        conversation.turns.append(self.user_turn(message_id, event))
        if text and status != "failed":
            conversation.turns.append(
                TurnRecord(
                    role="assistant", text=text, at=time.time(), cancelled=status == "cancelled"
                )
            )
        self.state.pending.pop(message_id, None)
        self.mark_answered(message_id)
        self.account(event, backend_name, usage, text, status)
        self.state_changed()
        reply = Reply(
            reply_to=message_id,
            channel=event.channel,
            text=text,
            status=status,  # type: ignore[arg-type]
            platform=event.platform,
            person_id=event.person_id,
            backend=backend_name,
            fallbacks=fallbacks,
        )
        await self.publish(
            reply,
            key=event.platform,
            event_id=derived_id(message_id, "reply"),
            causation=message_id,
        )
        if status == "cancelled":
            self.superseded.pop(conv, None)
            return
        if status == "complete":
            self.publish_metrics(message_id, backend_name, event, usage)
            if self.config.metadata:
                await self.describe(message_id, event, text)
            await self.summarise(conv)

    def account(
        self, event: ChatMessage, backend: str, usage: Usage, text: str, status: str
    ) -> None:
        rel = self.relationship(event.person_id)
        if status == "complete":
            changed = update_relationship(
                rel, connection_points(event.text, self.persona), self.persona
            )
            if changed:
                log.info("brain.relationship_phase", person=event.person_id, phase=changed)
            record_reply(rel, text, self.persona)
        rel.last_seen = time.time()
        if backend:
            key = f"{time.strftime('%Y-%m-%d')}|{backend}|{event.person_id}"
            row = self.state.usage.setdefault(key, UsageRow())
            row.prompt_tokens += usage.prompt_tokens
            row.completion_tokens += usage.completion_tokens
            row.replies += 1

    def publish_metrics(
        self, message_id: str, backend: str, event: ChatMessage, usage: Usage
    ) -> None:
        labels = {"backend": backend, "person": event.person_id, "reply_to": message_id}
        for name, value, unit in (
            ("brain.tokens.prompt", usage.prompt_tokens, "tokens"),
            ("brain.tokens.completion", usage.completion_tokens, "tokens"),
            ("brain.first_token", usage.time_to_first_token_s * 1000, "ms"),
            ("brain.generation", usage.seconds * 1000, "ms"),
        ):
            self.bus.publish_volatile(
                Metric(name=name, value=float(value), unit=unit, labels=labels), key="brain"
            )

    async def notice(self, event: ChatMessage, fallback: FallbackEvent) -> None:
        if fallback.overloaded:
            await self.publish(
                Notice(
                    channel=event.channel,
                    platform=event.platform,
                    kind="sleepy",
                    text=f"*yawns* {fallback.from_name} is out of juice; "
                    f"thinking with {fallback.to_name} instead.",
                ),
                key=event.platform,
            )

    async def describe(self, message_id: str, event: ChatMessage, reply: str) -> None:
        """Emotion and memory directives, asked after the reply so they never delay its first token."""
        turns = [
            Turn("system", metadata.INSTRUCTION.format(emotions=", ".join(metadata.EMOTIONS))),
            Turn("user", f"User: {event.text}\nAssistant: {reply}"),
        ]
        try:
            raw = await self.backend.complete_json(
                turns,
                metadata.SCHEMA,
                Params(max_tokens=metadata.MAX_TOKENS, temperature=0.2, seed=self.config.seed),
            )
        except BackendError as exc:
            log.warning("brain.metadata_failed", error=str(exc))
            return
        parsed = metadata.parse(raw, event.text)
        if parsed is None:
            return
        known = self.state.profiles.setdefault(event.person_id, profile.Profile())
        if profile.merge(known, parsed.profile):
            self.state_changed()
        await self.publish(
            ReplyMeta(
                reply_to=message_id,
                person_id=event.person_id,
                channel=event.channel,
                emotion=parsed.emotion,
                remember=parsed.remember,
                importance=parsed.importance,
                tags=parsed.tags,
                facts=parsed.facts,
                profile=parsed.profile,
                repaired=parsed.repaired,
            ),
            event_id=derived_id(message_id, "meta"),
            causation=message_id,
        )

    async def summarise(self, conv: str) -> None:
        """Fold the oldest turns into the rolling summary once the conversation outgrows ``keep_turns``."""
        conversation = self.conversation(conv)
        if len(conversation.turns) <= self.config.keep_turns:
            return
        fold = conversation.turns[: self.config.summary_batch]
        transcript = "\n".join(f"{t.name or t.role}: {t.text}" for t in fold)
        turns = [
            Turn(
                "system",
                "Summarise this part of a conversation in at most three sentences. Keep names, "
                "facts and promises.",
            ),
            Turn(
                "user",
                (f"Summary so far: {conversation.summary}\n\n" if conversation.summary else "")
                + transcript,
            ),
        ]
        stream = self.backend.stream(
            turns, Params(max_tokens=120, temperature=0.2, seed=self.config.seed)
        )
        try:
            async for _ in stream:
                pass
        except BackendError as exc:
            log.warning(
                "brain.summary_failed",
                error=str(exc),
                hint="the turns stay whole and are tried again",
            )
            return
        finally:
            await stream.aclose()
        summary = stream.text.strip()
        if summary:
            conversation.summary = summary
            # Only what was summarised goes; anything added meanwhile stays.
            del conversation.turns[: len(fold)]
            self.state_changed()
