"""The selfmod actor: Hex's proposals to change herself, tested and held for her owner.

A dispatcher over :class:`Workshop`: proposals (``selfmod.proposal``) are checked against
the allow-list and the protected keys, tested in the sandbox, and wait for an owner's
decision (``selfmod.decide``, from a terminal, or from an actor in ``deciders`` that has
verified its person is an owner). An approved change is a commit in the state repository
that the brain then uses (``brain.persona.edit``, a version of its own). In its trial period
the audit runs again; a fall in its scores or a failure of the brain rolls it back. The kill
switch is the supervisor's: it stops this actor, sandbox and all, wherever it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import shutil
import threading
import time
from typing import ClassVar

import msgspec

from actors.selfmod import draft, live, reflect, rules
from actors.selfmod.config import Proposal, SelfmodConfig, SelfmodState
from actors.selfmod.guard import PERSONA, ProposalRefused, plugin_name
from actors.selfmod.reports import Tested
from actors.selfmod.state import StateError
from actors.selfmod.workshop import Workshop
from hexbus import sandbox
from hexbus.actor import Actor, ActorUnusable, RequestTimeout, on
from hexbus.codec import derived_id
from schemas import (
    ActorLifecycle,
    BrainTask,
    BrainTaskResult,
    CapabilityChanged,
    ChatMessage,
    MemoryForget,
    PersonaChanged,
    PersonaEdit,
    PluginFailed,
    PluginInstall,
    PluginRemove,
    PromptsChanged,
    PromptsEdit,
    SelfmodAsk,
    SelfmodChanged,
    SelfmodDecide,
    SelfmodProposal,
    SelfmodReport,
    SelfmodRequest,
)

TERMINAL = re.compile(r"cli\d*")


DRAFT_TIMEOUT_S = 300.0  # people's replies go first: a draft waits behind them
REFLECT_TICK_S = 60.0


class SelfmodActor(Actor[SelfmodConfig, SelfmodState]):
    subscribes: ClassVar[tuple[str, ...]] = (
        "selfmod.proposal",
        "selfmod.request",
        "selfmod.decide",
        "selfmod.ask",
        "brain.persona.changed",
        "brain.prompts.changed",
        "plugin.failed",
        "sys.actor",
        "capability.changed",
        "chat.message",  # remarks on how she talks, for her reflection
        "memory.forget",  # a person forgotten: their remarks too
    )
    config_type = SelfmodConfig
    state_type = SelfmodState

    async def setup(self) -> None:
        if shutil.which("git") is None:
            raise ActorUnusable(
                "selfmod keeps her changes in a git repository and git is not installed: "
                "apt-get install git (or disable [actors.selfmod])"
            )
        hide = sandbox.private(self.data_dir, self.config_dir, self.run_dir)
        self.shop = Workshop(
            self.config, self.state, self.data_dir, self.config_dir, self.config_file, hide
        )
        self.running: set[tuple[int, bool]] = set()  # sandbox runs in flight: (proposal, trial)
        self.mind = reflect.Reflection(self.config, self.state)
        self.ponder = asyncio.Event()  # a remark came: is it time to reflect?
        self.checks = 0
        try:
            self.lagging = await self.offload(self.shop.open, time.time())
        except StateError as exc:
            raise ActorUnusable(
                f"{self.shop.repo.path}: the state repository is damaged ({exc}): move it aside "
                "and restart selfmod to begin a new one from the live files"
            ) from None
        self.detail = self._detail()

    async def on_live(self) -> None:
        self.spawn(self.reflections(), name="reflections")  # first: nothing below may stop it
        if self.lagging:  # a change committed just before a crash: the brain takes it now
            await self.push(f"selfmod: {await self.offload(self.shop.head)}", self.name)
        await self.push_plugins()  # and the plugin host, HEAD's plugins
        await self.push_prompts()  # and the brain, HEAD's prompt templates
        try:  # and the supervisor, HEAD's settings (a failure must not stop the resumes below)
            problems = await self.push_settings()
        except Exception as exc:
            self.log.exception("selfmod.settings_push_failed")
            problems = [f"HEAD's settings.toml is not applied: {exc}"]
        for why in problems:
            await self.changed(None, "", why)
        # Tests a crash interrupted run again; trials restart.
        for p in list(self.state.proposals.values()):
            if p.status == "testing":
                self.start_test(p.id)
            elif p.status == "applied":
                self.start_test(p.id, trial=True)

    def _detail(self) -> str:
        ready = sum(p.status == "ready" for p in self.state.proposals.values())
        testing = sum(p.status == "testing" for p in self.state.proposals.values())
        on = "on" if self.capabilities.allowed("selfmod.propose") else "off"
        return f"{ready} waiting for approval, {testing} testing; selfmod.propose is {on}"

    async def changed(self, p: Proposal | None, line: str, error: str = "") -> None:
        self.state_changed(now=True)
        self.detail = self._detail()
        view = p.view() if p is not None else None
        await self.publish(SelfmodChanged(proposal=view, line=line, error=error))
        self.log.info("selfmod.changed", id=p.id if p else 0, line=line, error=error or None)

    # -- proposals ---------------------------------------------------------------------------

    @on(SelfmodProposal)
    async def on_proposal(self, event: SelfmodProposal) -> None:
        envelope = self.envelope
        assert envelope is not None
        source = envelope.source
        if event.origin == "owner" and source != self.name and not self.speaks_for_owners(source):
            # Only her owners' channels (and her own drafts of their words) say "an owner asked".
            event = msgspec.structs.replace(event, origin="reflection", by=source)
        p = await self.offload(
            self.shop.submit, envelope.id, event, self.capabilities.allowed, time.time()
        )
        if p.status == "refused":
            await self.changed(p, f"proposal {p.id} refused", p.reason)
            return
        await self.changed(p, f"proposal {p.id} is being tested in the sandbox")
        self.start_test(p.id)

    def start_test(self, n: int, *, trial: bool = False) -> None:
        """Run proposal ``n``'s sandbox tests in the background, unless they run already."""
        if (n, trial) not in self.running:
            self.running.add((n, trial))
            self.spawn(self.test(n, trial=trial), name=f"{'trial' if trial else 'test'}-p{n}")

    async def test(self, n: int, *, trial: bool = False) -> None:
        # Cancelled (the actor stopping, however it stops: its tasks are cancelled on every
        # path), the run is killed: its thread would wait minutes for the model and hold the
        # process's exit. The next start runs it again (on_live).
        stop = threading.Event()
        try:
            tested = await self.offload(self.shop.test, n, trial=trial, stop=stop)
        except asyncio.CancelledError:
            stop.set()
            raise
        finally:
            self.running.discard((n, trial))
        p = self.state.proposals[n]
        if trial:
            await self.end_trial(p, tested)
            return
        self.shop.settle(n, tested, time.time())
        if p.status == "ready":
            line = f"proposal {n} is ready for an owner's decision"
            if "worse" in p.flags:
                line += " (flagged: the audit fell)"
            await self.changed(p, line)
        else:
            await self.changed(p, f"proposal {n} {p.status}", p.reason)

    async def end_trial(self, p: Proposal, tested: Tested) -> None:
        """Keep the change, or roll it back: its trial audit fell (the workshop's ``worse``, the
        same rule as at proposal time) or did not run."""
        if p.status != "applied":
            return
        plugin = any(plugin_name(f) for f in p.files)  # its trial is the plugin's tests again
        if tested.status != "ready" or (
            not plugin and (tested.before is None or tested.after is None)
        ):
            note = f"its trial tests did not pass ({tested.reason or 'no report'})"
        elif "worse" in tested.flags and tested.before and tested.after:
            note = (
                f"the audit fell in its trial ({tested.before.pass_rate:.2f} -> "
                f"{tested.after.pass_rate:.2f})"
            )
        else:
            p.status = "kept"
            await self.changed(p, f"proposal {p.id} passed its trial and is kept")
            return
        await self.publish(SelfmodDecide(action="rollback", id=p.id, by=self.name, note=note))

    @on(SelfmodRequest)
    async def on_request(self, event: SelfmodRequest) -> None:
        envelope = self.envelope
        assert envelope is not None
        if not self.speaks_for_owners(envelope.source):
            await self.changed(None, "", f"{envelope.source} may not ask her to change")
            return
        if why := draft.refusal(event, self.capabilities.allowed("selfmod.propose")):
            return await self.changed(None, "", why)
        key = event.key or draft.choose_key(event.text)
        try:  # a key she may not (or cannot) change is said now, not after the model's work
            rules.refuse_protected(key)
            draft.current(await self.offload(self.shop.text), key)
        except (ProposalRefused, StateError) as exc:
            return await self.changed(None, "", f"no proposal for {event.text[:80]!r}: {exc}")
        await self.changed(None, f"the brain is drafting a change to {key}: `hexbus selfmod list`")
        self.spawn(self.draft(event, envelope.id), name="draft")

    async def rewritten(self, task: BrainTask, *keys: str) -> tuple[str, str, str] | None:
        """The brain's rewrite of the first of ``keys`` persona.toml has, as a diff, with its
        reason and the key; None when it saw nothing to change or wrote the same text again."""
        text = await self.offload(self.shop.text)
        key, old = draft.first(text, keys)
        task = msgspec.structs.replace(task, other=old)
        result = await self.request(task, BrainTaskResult, timeout=DRAFT_TIMEOUT_S)
        if result.error:
            raise ProposalRefused(f"the brain could not draft it: {result.error}")
        diff = draft.change(text, key, old, result.summary)
        return (diff, result.reason, key) if diff else None

    async def draft(self, event: SelfmodRequest, request_id: str) -> None:
        """The brain rewrites one key as the owner asked; the diff becomes a proposal."""
        key = event.key or draft.choose_key(event.text)
        try:
            drafted = await self.rewritten(BrainTask(kind="draft", text=event.text), key)
            if drafted is None:
                raise ProposalRefused("the brain's draft changes nothing")
        except (ProposalRefused, StateError, RequestTimeout) as exc:
            await self.publish(
                SelfmodChanged(error=f"no proposal for {event.text!r}: {exc}"),
                event_id=derived_id(request_id, "draft"),
                causation=request_id,
            )
            return
        diff, reason, _ = drafted
        why = reason or f"{event.by} asked: {event.text}"
        await self.publish(
            SelfmodProposal(
                diff=diff,
                why=f"{why} (asked: {event.text!r}; changes {key})",
                origin="owner",
                by=event.by,
                conversation=event.conversation,
            ),
            event_id=derived_id(request_id, "draft"),
            causation=request_id,
        )

    # -- her reflection ----------------------------------------------------------------------

    @on(ChatMessage)
    async def on_message(self, event: ChatMessage) -> None:
        assert self.envelope is not None
        if self.mind.note(event, self.envelope.id, time.time()):
            self.state_changed()
            self.ponder.set()

    @on(MemoryForget)
    async def on_forget(self, event: MemoryForget) -> None:
        if event.person_id and self.mind.forget(event.person_id):
            self.state_changed(now=True)

    async def reflections(self) -> None:
        """Think the remarks over when enough have gathered (checked at each remark, and each
        minute for the gap's end); ``checks`` counts the looks."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ponder.wait(), REFLECT_TICK_S)
            self.ponder.clear()
            now = time.time()
            if self.capabilities.allowed("selfmod.propose") and self.mind.due(now):
                try:
                    await self.reflect()
                except Exception:  # tried again a gap later, never each tick
                    self.log.exception("selfmod.reflection_failed")
                    self.mind.tried(now)
                    self.state_changed(now=True)
            self.checks += 1

    async def reflect(self) -> None:
        now = time.time()
        remarks = self.mind.gathered(now)
        self.state_changed(now=True)  # the remarks chosen: a crash from here on repeats them
        key = reflect.key_for(remarks)
        self.log.info("selfmod.reflecting", remarks=len(remarks), key=key)
        task = BrainTask(kind="reflect", text=reflect.transcript(remarks))
        try:
            drafted = await self.rewritten(task, key, draft.DEFAULT_KEY)  # it may have gone
        except (ProposalRefused, StateError, RequestTimeout) as exc:
            self.mind.tried(now)
            await self.changed(None, "", f"her reflection on {len(remarks)} remarks failed: {exc}")
            return
        if drafted is None:
            self.mind.settle(remarks, now)
            line = f"she thought over {len(remarks)} remarks on how she talks: no change"
            return await self.changed(None, line)
        diff, reason, key = drafted
        event_id = reflect.event_id(remarks)
        await self.publish(
            SelfmodProposal(diff=diff, why=reflect.why(remarks, reason, key), origin="reflection"),
            event_id=event_id,
        )
        self.mind.settle(remarks, now, event_id)
        self.state_changed(now=True)

    # -- decisions ---------------------------------------------------------------------------

    def speaks_for_owners(self, source: str) -> bool:
        """A terminal with the run folder (``hexbus``'s clients are ``cli``, with a number or not) or an
        actor named in ``deciders``, which verifies who its owners are."""
        return TERMINAL.fullmatch(source) is not None or source in self.config.deciders

    def refusal(self, event: SelfmodDecide, source: str) -> str:
        """Why this decision may not be taken ("" when it may)."""
        if source == self.name:
            ok = event.action == "rollback"  # her own trial undoing a change, never more
            return "" if ok else "selfmod does not decide for itself"
        if not self.speaks_for_owners(source):
            return f"{source} may not decide on her changes"
        if not event.owner:
            return f"only an owner may {event.action.replace('_', ' ')} ({event.by or 'unknown'} is not one)"
        if event.action == "approve" and not self.capabilities.allowed("selfmod.apply"):
            return "selfmod.apply is off: `hexbus capability enable selfmod.apply` first"
        return ""

    @on(SelfmodDecide)
    async def on_decide(self, event: SelfmodDecide) -> None:
        envelope = self.envelope
        assert envelope is not None
        if why := self.refusal(event, envelope.source):
            self.log.warning(
                "selfmod.decision_refused", source=envelope.source, by=event.by, why=why
            )
            await self.changed(self.state.proposals.get(event.id), "", why)
            return
        try:
            line, changed, p = await self.offload(self.shop.decide, event, envelope.id, time.time())
        except (ProposalRefused, StateError) as exc:
            await self.changed(self.state.proposals.get(event.id), "", str(exc))
            return
        if changed and (p is None or PERSONA in p.files):
            await self.push(f"selfmod: {line}", event.by or self.name)
        if changed:
            approved = p.id if p is not None and event.action == "approve" else 0
            await self.push_plugins(approved)
            await self.push_prompts(approved)
        # Always (cheap when nothing changed): a decision redelivered after its commit landed
        # ("applied already") still gets its settings applied.
        problems = await self.push_settings()
        await self.changed(p, line)  # the decision's own answer first: a command waits for it
        for why in problems:
            await self.changed(None, "", why)
        if p is not None and p.status == "applied" and event.action == "approve":
            self.start_test(p.id, trial=True)

    async def push(self, note: str, by: str) -> None:
        """Hand HEAD's persona.toml to the brain (it checks it, writes it and makes it a
        version); the id derives from the commit, so a push repeated after a crash is one."""
        text = await self.offload(self.shop.text)
        head = await self.offload(self.shop.head)
        await self.publish(
            PersonaEdit(text=text, note=note, by=by), event_id=derived_id(head, "persona")
        )

    async def push_plugins(self, proposal: int = 0) -> None:
        """Hand HEAD's plugins to the plugin host: installs for new or changed ones, removals
        for those gone (a rollback, a reset). Ids derive from the commit: a push repeated after
        a crash is one."""
        head = await self.offload(self.shop.head)
        plugins = await self.offload(self.shop.plugins)
        pushed = self.state.plugins
        for name, source in sorted(plugins.items()):
            sha = hashlib.sha256(source.encode()).hexdigest()
            if pushed.get(name) != sha:
                await self.publish(
                    PluginInstall(name=name, source=source, sha=sha, proposal=proposal),
                    event_id=derived_id(head, f"plugin-{name}"),
                )
                pushed[name] = sha
        for name in sorted(set(pushed) - set(plugins)):
            await self.publish(PluginRemove(name=name), event_id=derived_id(head, f"unplug-{name}"))
            del pushed[name]
        self.state_changed(now=True)

    async def push_settings(self) -> list[str]:
        """HEAD's settings.toml to the supervisor, and the actors it changes restarted
        (:mod:`actors.selfmod.live`); what went wrong, one line each, for the owners."""
        head = await self.offload(self.shop.settings)
        control = lambda: self.bus.endpoints.control  # noqa: E731 (only when one restarts)
        return await self.offload(live.push, head, self.data_dir, self.shop.modules, control)

    async def push_prompts(self, proposal: int = 0) -> None:
        """Hand HEAD's prompt templates to the brain when they are not those it was handed last
        (none: the shipped ones). The id derives from the commit: a push repeated after a crash
        is one."""
        head = await self.offload(self.shop.head)
        files = await self.offload(self.shop.prompts)
        sha = live.prompts_sha(files)
        if sha == self.state.prompts:
            return
        await self.publish(
            PromptsEdit(files=files, sha=sha, proposal=proposal),
            event_id=derived_id(head, "prompts"),
        )
        self.state.prompts = sha
        self.state_changed(now=True)

    @on(PromptsChanged)
    async def on_prompts_changed(self, event: PromptsChanged) -> None:
        """The brain would not take HEAD's templates: the change that brought them is rolled back
        (its sandbox loaded them with the brain's own reader; this is the second wall). Only a
        refusal of the set handed over last counts; without a proposal (a rollback's or a
        reset's set) the owners are told."""
        envelope = self.envelope
        if event.ok or envelope is None or envelope.source != self.config.brain:
            return
        if event.sha != self.state.prompts:
            return  # an older set's answer: what the brain has now is answered on its own
        p = self.state.proposals.get(event.proposal)
        if p is None or p.status not in ("applied", "kept"):
            await self.changed(p, "", f"the brain refused HEAD's prompt templates: {event.error}")
            return
        note = f"the brain refused its prompt templates: {event.error}"
        await self.publish(SelfmodDecide(action="rollback", id=p.id, by=self.name, note=note[:500]))

    @on(PluginFailed)
    async def on_plugin_failed(self, event: PluginFailed) -> None:
        """A plugin the host stopped, in its change's trial period: the change is rolled back."""
        envelope = self.envelope
        if envelope is None or envelope.source != self.config.plugin_host:
            return
        now = time.time()
        for p in self.state.proposals.values():
            if (
                p.status in ("applied", "kept")
                and f"plugins/{event.name}.py" in p.files
                and now - p.applied_at < self.config.trial_s
            ):
                note = f"its plugin failed in its trial period: {event.reason}"
                await self.publish(
                    SelfmodDecide(action="rollback", id=p.id, by=self.name, note=note[:500])
                )

    @on(ActorLifecycle)
    async def on_lifecycle(self, event: ActorLifecycle) -> None:
        if event.actor != self.config.brain or event.change not in ("restart", "failed"):
            return
        if event.reason == "requested":
            return  # a restart asked for (hers, to take new settings, or an owner's): no failure
        now = time.time()
        for p in self.state.proposals.values():
            if p.status in ("applied", "kept") and now - p.applied_at < self.config.trial_s:
                note = f"the brain failed ({event.change}) in its trial period"
                await self.publish(
                    SelfmodDecide(action="rollback", id=p.id, by=self.name, note=note)
                )

    @on(PersonaChanged)
    async def on_persona_changed(self, event: PersonaChanged) -> None:
        """An owner's edit becomes a commit; a file behind HEAD is pushed HEAD (again: one)."""
        if not event.error:
            envelope = self.envelope
            if await self.offload(self.shop.sync, envelope.causation if envelope else ""):
                await self.push(f"selfmod: {await self.offload(self.shop.head)}", self.name)
            self.state_changed()

    @on(CapabilityChanged)
    async def on_capability(self, event: CapabilityChanged) -> None:
        self.detail = self._detail()

    # -- questions ---------------------------------------------------------------------------

    @on(SelfmodAsk)
    async def on_ask(self, event: SelfmodAsk) -> None:
        for p in self.shop.expire(time.time()):
            await self.changed(p, f"proposal {p.id} expired unapproved")
        try:
            report = await self.offload(self.shop.answer, event)
        except (ProposalRefused, StateError) as exc:
            report = SelfmodReport(error=str(exc))
        await self.respond(report)


__all__ = ["SelfmodActor"]
