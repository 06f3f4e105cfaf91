"""The brain: turns chat messages into the persona's streamed replies.

Every accepted message is kept in the state as pending until its final
``chat.reply`` is journaled, so a brain killed mid-reply answers it after the
restart, and a reply that made it to the journal is seen again on replay and
never repeated. One reply at a time per conversation (platform + channel);
conversations run side by side up to the backends' capacity. A newer message
in the same conversation, or a barge-in, cancels the reply in flight: its
chunks stop and its final event says ``cancelled``.

The actor dispatches; plain classes hold the logic: :class:`Ledger` (the
state's bookkeeping), :class:`ReplyWorkers` (one reply at a time per
conversation), :class:`ReplyRun` (one streamed reply), :func:`compose` (the
prompt), and the persona's document, versions and rules. The actor is one cohesive
dispatcher over them: each handler is a few lines handing an event to its class.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import ClassVar

import msgspec
import structlog

from actors.brain import metadata, profile, summary, tasks, templates
from actors.brain.backends import Backend, BackendError, ChatTurn, Params
from actors.brain.backends.fallback import FallbackChain
from actors.brain.config import (
    BrainConfig,
    BrainState,
    PendingMessage,
    context_problem,
    make_backend,
)
from actors.brain.desk import PersonaDesk
from actors.brain.energy import Meter, describe
from actors.brain.ledger import Ledger, conversation_of, one_message, refusal
from actors.brain.memory_link import MemoryLink
from actors.brain.persona import Persona, PersonaError
from actors.brain.plugin_notes import PluginNotes
from actors.brain.prompt import compose, recall
from actors.brain.reply import ReplyOutcome, ReplyRun, ReplyStatus
from actors.brain.rules import wants_quiet
from actors.brain.serving import HANG_LIMIT, ServingRecord
from actors.brain.sight import Sight
from actors.brain.sink import BusReplySink, final_reply, usage_metrics, usage_report
from actors.brain.versions import PersonaStore
from actors.brain.vetoes import asks_what_she_can_do, switches, veto
from actors.brain.workers import NEWER_MESSAGE, ReplyWorkers
from hexbus import Actor, ActorUnusable, on
from hexbus.codec import Envelope, derived_id
from hexbus.work import PendingSince
from schemas import (
    BargeIn,
    BrainTask,
    BrainUsage,
    ChatMessage,
    Heartbeat,
    MemoryResult,
    Observation,
    PerceptionSwitched,
    PersonaAudit,
    PersonaChanged,
    PersonaEdit,
    PersonaGet,
    PersonaRollback,
    PluginNote,
    PromptsChanged,
    PromptsEdit,
    QuietMode,
    Reply,
    VisionMoment,
)

log = structlog.get_logger("actors.brain")

STUCK = "I got stuck trying to answer that, more than once. Could you ask it another way?"
SILENT = ReplyOutcome(status="cancelled", text="")  # the final reply of a line left unanswered
ENERGY_CHECK_S = 1.0
TASKS_KEEP = 256  # brain.task requests remembered, so a repeated one is run once


class BrainActor(Actor[BrainConfig, BrainState]):
    """The persona's voice: prompts, streams, falls back, remembers who it talks to.

    Every handler is safe to run again after it raised (the runtime retries it): a
    message counts as answered only once its reply is out, a rollback to the active
    text records nothing new, and every event a handler publishes has an id a second
    run reproduces, so subscribers apply it once.
    """

    subscribes: ClassVar[tuple[str, ...]] = (
        "chat.message",
        "chat.reply",
        "chat.bargein",
        "brain",
        "vision.observation",
        "vision.moment",
        "perception.switched",
        "plugin.note",
        "capability.changed",  # the switches, for "what can you do?" (the base class applies them)
    )
    config_type = BrainConfig
    state_type = BrainState

    async def setup(self) -> None:
        self.ledger = Ledger(self.state)
        self.sight = Sight(self.state, self.config)
        self.plugin_notes = PluginNotes(self.state, self.config)
        self.templates = templates.from_state(self.state.prompts)
        self.persona_path = (self.config_dir / self.config.persona).resolve()
        self.store = PersonaStore(self.data_dir / "persona")
        self.desk = PersonaDesk(self.store, self.persona_path, self.data_dir / "audits")
        try:
            loaded, self.persona = await self.offload(self.desk.load, self.state.persona_version)
        except PersonaError as exc:
            raise ActorUnusable(str(exc)) from None
        self.state.persona_version = loaded.version
        if loaded.note:  # a version this brain had not used before
            await self.publish(loaded)
        if problem := context_problem(self.config):
            raise ActorUnusable(problem)
        self.backend = FallbackChain(self.backends(), cooldown_s=self.config.fallback_cooldown_s)
        try:
            await self.backend.start()
        except BackendError as exc:
            raise ActorUnusable(str(exc)) from None
        self.serving = ServingRecord(self.data_dir / "serving.json")
        for name in self.serving.suspects():
            self.backend.suspend(name, "it was answering when the last brain process died")
        # Seeded: an audit or a test replays the same choices.
        self.rng = random.Random(self.config.seed)
        self.workers = ReplyWorkers(self.spawn, self.ledger, self)
        # Final replies that no model writes (refusals, quiet lines, merged pieces), held during
        # replay: the journal ahead may hold the ones the last incarnation published.
        self.owed: dict[str, tuple[ChatMessage, ReplyOutcome, str]] = {}
        self.pending_since = PendingSince()
        self.memory_link = MemoryLink(self.config, self.request)
        self.meter = Meter(
            self.config.energy, lambda: self.state.usage, self.backend.states, self.state.energy
        )
        self.backend.refuses = lambda backend: self.meter.refuses(backend, self.capabilities)
        self.spawn(self.watch_energy(), name="energy")
        self.bus.subscribe(f"sys.heartbeat.{self.config.memory_actor}")
        # brain.task requests share the backend with people's replies: one at a time.
        self.task_lock = asyncio.Lock()
        self.task_requests: dict[str, None] = {}  # source/correlation of those seen lately
        # Edits to persona.toml: each valid change becomes a new version, live.
        watch = self.desk.watch(self.config.persona_check_s, self.on_reload)
        self.spawn(watch, name="persona-watch")

    def backends(self) -> list[Backend]:
        """The fallback chain's backends, first choice first (tests put scripted ones here)."""
        return [make_backend(spec, self.load_model) for spec in self.config.backends]

    async def teardown(self) -> None:
        # The workers, tasks and the watcher were spawned: the runtime has stopped them already.
        await self.backend.close()

    # -- handlers -----------------------------------------------------------------

    @on(ChatMessage)
    async def on_message(self, event: ChatMessage) -> None:
        envelope = self.envelope
        if envelope is None or self.ledger.seen(envelope.id):
            return
        conv = conversation_of(event)
        if problem := refusal(event, self.config.max_message_chars):
            await self.give_up_on(envelope.id, event, problem, "failed")
            return
        if self.ledger.is_quiet(event) and not event.direct:
            # Heard, not answered: its final reply says so (cancelled, no text) to whoever waits.
            self.ledger.hear(conv, envelope.id, event)
            await self.give_up_on(envelope.id, event, "", "cancelled")
            return
        self.ledger.accept(envelope.id, envelope.offset, event, envelope.wall)
        if self.live:
            self.workers.kick(conv)
        if not event.initiative and (
            (asked := veto(event.text)) or asks_what_she_can_do(event.text)
        ):
            answer = await self.offload(
                switches, self.bus.endpoints.control, self.capabilities, event, asked
            )
            await self.publish(answer, key=event.platform)

    @on(Reply)
    async def on_reply(self, event: Reply) -> None:
        self.owed.pop(event.reply_to, None)
        for piece in self.ledger.reply_seen(event.reply_to, event.merged):
            # Stopped between a merged turn's replies (its worker publishes them): theirs are owed.
            if self.workers.inflight.get(conversation_of(event)) != event.reply_to:
                await self.settle(piece.event_id, piece.message, merged_into=event.reply_to)

    @on(BrainTask)
    async def on_task(self, event: BrainTask) -> None:
        envelope = self.envelope
        request = f"{envelope.source}/{envelope.correlation}" if envelope else ""
        # hexbus.ask repeats a request every half second until it is answered: each is run once,
        # or the copies queue for the model ahead of the next request.
        if request in self.task_requests:
            return
        self.task_requests[request] = None
        if len(self.task_requests) > TASKS_KEEP:
            del self.task_requests[next(iter(self.task_requests))]
        # Off the dispatch loop: a summary takes seconds, and messages must not queue behind it. The
        # task copies this handler's context, so respond() still answers this request.
        self.spawn(self.run_task(event), name=f"task-{event.kind}")

    @on(BargeIn)
    async def on_barge_in(self, event: BargeIn) -> None:
        if event.reply_to and event.reply_to not in self.state.pending:  # ended already
            self.ledger.heard_only(event.channel, event.reply_to, event.said)
        else:
            self.workers.barge_in(event.channel, event.said)

    @on(PersonaRollback)
    async def on_rollback(self, event: PersonaRollback) -> None:
        # A second run after a failure is harmless: rolling back to the active text records nothing.
        await self.publish(self.use(*await self.offload(self.desk.rollback, event.version)))

    @on(PersonaEdit)
    async def on_persona_edit(self, event: PersonaEdit) -> None:
        edit = await self.offload(self.desk.edit, event.text, event.note, event.by)
        await self.publish(self.use(*edit))

    @on(PromptsEdit)
    async def on_prompts_edit(self, event: PromptsEdit) -> None:
        source = self.envelope.source if self.envelope is not None else ""
        if source != self.config.selfmod:
            log.warning("brain.prompts_refused", source=source)
            return
        try:
            self.templates = templates.parse({k: v.encode() for k, v in event.files.items()})
        except templates.TemplateError as exc:
            log.error("brain.prompts_invalid", sha=event.sha, error=str(exc))
            refused = PromptsChanged(
                sha=event.sha, ok=False, error=str(exc), proposal=event.proposal
            )
            await self.publish(refused)
            return
        self.state.prompts, self.state.prompts_sha = dict(event.files), event.sha
        self.state_changed()
        log.info("brain.prompts_changed", sha=event.sha, files=sorted(event.files))
        await self.publish(PromptsChanged(sha=event.sha, ok=True, proposal=event.proposal))

    @on(PersonaGet)
    async def on_persona_get(self, event: PersonaGet) -> None:
        await self.respond(await self.offload(self.desk.state, event.version))

    @on(PersonaAudit)
    async def on_persona_audit(self, event: PersonaAudit) -> None:
        request = self.envelope
        assert request is not None
        idle = self.workers.idle  # people's replies first
        audit = self.desk.audit(
            self.backend,
            self.persona,
            self.config,
            event,
            request,
            self.bus,
            idle,
            self.offload,
            self.templates,
        )
        self.spawn(audit, name="persona-audit")

    @on(BrainUsage)
    async def on_usage(self, event: BrainUsage) -> None:
        await self.respond(usage_report(self.state.usage, self.meter.states(), event.days))

    def use(self, report: PersonaChanged, persona: Persona | None) -> PersonaChanged:
        """Make a persona the desk recorded the active one; the report to publish."""
        if persona is not None:
            self.persona, self.state.persona_version = persona, report.version
            log.info("brain.persona_changed", version=report.version, note=report.note)
        return report

    @on(QuietMode)
    async def on_quiet(self, event: QuietMode) -> None:
        self.ledger.quiet_until(f"{event.scope}:{event.target}", event.until)

    @on(Heartbeat)
    async def on_heartbeat(self, event: Heartbeat) -> None:
        self.memory_link.heard(event)

    @on(Observation)
    async def on_observation(self, event: Observation) -> None:
        self.sight.observed(event, time.time())

    @on(VisionMoment)
    async def on_moment(self, event: VisionMoment) -> None:
        self.sight.moment(event)

    @on(PerceptionSwitched)
    async def on_sight_switched(self, event: PerceptionSwitched) -> None:
        self.sight.switched(event)

    @on(PluginNote)
    async def on_plugin_note(self, event: PluginNote) -> None:
        envelope = self.envelope
        if envelope is not None and envelope.source == self.config.plugin_host:
            self.plugin_notes.heard(event, time.time())

    def oldest_work(self) -> float | None:
        """The pending message this process has waited longest to answer, since it last
        answered one."""
        return self.pending_since.oldest(self.state.pending)

    async def on_live(self) -> None:
        # What replay found owed and the journal did not hold after all.
        owed, self.owed = self.owed, {}
        for event_id, (event, outcome, merged_into) in owed.items():
            await self.publish_reply(event_id, event, outcome, merged_into=merged_into)
        for conv in self.ledger.conversations_waiting():
            self.workers.kick(conv)

    async def on_reload(self) -> None:
        """``sys.control.reload``, or persona.toml changed on disk: record and use the new version."""
        report, persona = await self.offload(self.desk.reload, self.state.persona_version)
        if persona is not None:
            await self.publish(self.use(report, persona))

    async def watch_energy(self) -> None:
        """Publish her energy on each change (a reply spent tokens, a limit lifted, midnight)."""
        while True:
            if (energy := self.meter.changed()) is not None:
                self.state.energy, self.detail = energy, describe(energy)
                self.state_changed()
                await self.publish(energy)
            await asyncio.sleep(ENERGY_CHECK_S)

    # -- brain.task ---------------------------------------------------------------

    async def run_task(self, event: BrainTask) -> None:
        async with self.task_lock:
            # People's replies first; the caller's deadline bounds the wait.
            while self.workers.busy:
                await asyncio.sleep(0.05)
            result = await tasks.run(event, self.backend, self.config.seed)
        await self.respond(result)

    # -- one reply (called by the workers) ------------------------------------------

    async def answer(self, conversation: str, turn: list[PendingMessage]) -> None:
        message = one_message(turn)
        starts = self.serving.start(message.event_id)
        try:
            if starts <= HANG_LIMIT:
                await self.reply(conversation, turn, message)
                return
            log.error("brain.reply_abandoned", message=message.event_id, incarnations=HANG_LIMIT)
            outcome = ReplyOutcome(status="failed", text=STUCK)
            await self.finish(conversation, turn, message, outcome)
        finally:
            self.serving.done(message.event_id)

    async def reply(
        self, conversation: str, turn: list[PendingMessage], message: PendingMessage
    ) -> None:
        event = message.message
        recalled, used = recall(
            await self.memory_link.fetch(event),
            {p.event_id for p in turn},
            self.config.budgets.memories,
            self.backend.count_tokens,
        )
        turns, max_tokens = self.prompt(conversation, event, recalled)
        energy = self.meter.reading(event.person_id)
        if energy.state == "asleep":  # no backend is asked: she says when she wakes
            return await self.finish(conversation, turn, message, self.meter.asleep(energy))
        turns, max_tokens = self.meter.shape(turns, max_tokens, energy)
        if (notice := self.meter.notice(conversation, event, energy)) is not None:
            await self.publish(notice, key=event.platform)
        params = Params(
            max_tokens=max_tokens, temperature=self.config.temperature, seed=self.config.seed
        )
        run = ReplyRun(
            self.backend.stream(
                turns, params, on_open=lambda name: self.serving.asking(message.event_id, name)
            ),
            BusReplySink(self.bus, self.publish, message, self.pending_since.progressed),
            chunk_interval_s=self.config.chunk_interval_ms / 1000,
        )
        try:
            outcome = await run.run()
        except asyncio.CancelledError:
            interruption = self.workers.interrupted(conversation)
            if interruption is None:
                raise
            if interruption.why == NEWER_MESSAGE and run.sentences == 0:
                # Nothing said yet: the pieces stay pending, and the worker answers them with the
                # newer one (as one turn when it is the same person's).
                log.info(
                    "brain.reply_restarted",
                    conv=conversation,
                    message=message.event_id,
                    pieces=len(turn),
                )
                raise
            log.info(
                "brain.reply_cancelled",
                conv=conversation,
                message=message.event_id,
                why=interruption.why,
            )
            outcome = run.cancelled(interruption.heard)
        if used:  # what "why Hex remembered this" shows
            outcome = msgspec.structs.replace(outcome, recalled=used)
        await self.finish(conversation, turn, message, outcome)
        if outcome.status == "complete":
            for metric in usage_metrics(message, outcome):
                self.bus.publish_volatile(metric, key="brain")
            if self.config.metadata:
                await self.describe(message, outcome.text)
            await self.summarise(conversation)

    async def finish(
        self,
        conversation: str,
        turn: list[PendingMessage],
        message: PendingMessage,
        outcome: ReplyOutcome,
    ) -> None:
        """Publish the final replies of one turn (its last piece's, then each earlier piece's,
        pointing at it) and record them."""
        pieces = tuple(p.event_id for p in turn[:-1])
        await self.publish_reply(message.event_id, message.message, outcome, merged=pieces)
        for piece in turn[:-1]:
            await self.settle(piece.event_id, piece.message, merged_into=message.event_id)
        self.ledger.record(conversation, message, outcome, self.persona, pieces)
        self.state_changed()

    async def give_up(self, message: PendingMessage, text: str, status: ReplyStatus) -> None:
        await self.give_up_on(message.event_id, message.message, text, status)

    async def give_up_on(
        self, event_id: str, event: ChatMessage, text: str, status: ReplyStatus
    ) -> None:
        """A final reply without the model; the message counts as answered once it is out."""
        await self.settle(event_id, event, ReplyOutcome(status=status, text=text))
        self.ledger.answered(event_id)

    async def settle(
        self,
        event_id: str,
        event: ChatMessage,
        outcome: ReplyOutcome = SILENT,
        *,
        merged_into: str = "",
    ) -> None:
        """Publish a final reply no model writes (by default: cancelled, saying nothing). During
        replay it waits for on_live, unless the journal turns out to hold it already."""
        if not self.live:
            self.owed[event_id] = (event, outcome, merged_into)
            return
        await self.publish_reply(event_id, event, outcome, merged_into=merged_into)

    async def publish_reply(
        self,
        event_id: str,
        event: ChatMessage,
        outcome: ReplyOutcome,
        *,
        merged: tuple[str, ...] = (),
        merged_into: str = "",
    ) -> Envelope:
        # The id derives from the message alone: a reply published twice (a retry, a second
        # incarnation) is one event to everyone downstream.
        reply = final_reply(event_id, event, outcome)
        self.pending_since.progressed()
        if merged or merged_into:
            reply = msgspec.structs.replace(reply, merged=merged, merged_into=merged_into)
        return await self.publish(
            reply, key=event.platform, event_id=derived_id(event_id, "reply"), causation=event_id
        )

    def prompt(
        self, conversation: str, event: ChatMessage, recalled: MemoryResult
    ) -> tuple[list[ChatTurn], int]:
        rel = self.ledger.relationship(event.person_id, self.persona)
        if wants_quiet(event.text, self.persona) and self.config.quiet_minutes > 0:
            # They asked for space: one short line now, then only what is said to Hex directly.
            self.ledger.quiet_until(
                f"person:{event.person_id}", time.time() + self.config.quiet_minutes * 60
            )
        turns = self.ledger.conversation(conversation)
        # Memory's profile is the long-term one; the snapshot's copy stands in while memory is down.
        notes = (
            profile.from_memory(recalled.profile)
            if recalled.profile is not None
            else self.state.profiles.get(event.person_id)
        )
        return compose(
            event,
            persona=self.persona,
            rel=rel,
            rng=self.rng,
            profile=profile.describe(notes),
            memories=list(recalled.hits),
            observation=self.sight.line(time.time()),
            notes=self.plugin_notes.line(event.person_id, time.time()),
            summary=turns.summary,
            turns=turns.turns,
            budgets=self.config.budgets,
            count=self.backend.count_tokens,
            templates=self.templates,
        )

    async def describe(self, message: PendingMessage, reply: str) -> None:
        """Emotion and memory directives, asked after the reply so they never delay its first token."""
        event = message.message
        try:
            raw = await self.backend.complete_json(
                metadata.request(event.text, reply),
                metadata.SCHEMA,
                metadata.params(self.config.seed),
            )
        except BackendError as exc:
            log.warning("brain.metadata_failed", error=str(exc))
            return
        parsed = metadata.parse(raw, event.text)
        if parsed is None:
            return
        if profile.merge(self.ledger.profile(event.person_id), parsed.profile):
            self.state_changed()
        await self.publish(
            parsed.event(message.event_id, event),
            event_id=derived_id(message.event_id, "meta"),
            causation=message.event_id,
        )

    async def summarise(self, conversation: str) -> None:
        """Fold the oldest turns into the rolling summary once the conversation outgrows ``keep_turns``."""
        c = self.config
        turns = self.ledger.conversation(conversation)
        if await summary.summarise(self.backend, turns, c.keep_turns, c.summary_batch, c.seed):
            self.state_changed()
