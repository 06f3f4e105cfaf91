"""Proposals from arrival to decision: checked, tested in the sandbox, held for an owner,
applied as a commit, undone by a rollback or a factory reset.

Plain and blocking (git, the sandbox): the actor calls it off its loop, one call at a time,
and owns the state it mutates. Every step that changes the state repository is idempotent
by the tag it leaves (``p<N>``, ``p<N>-rollback``, ``reset-<event>``), so a decision handled
again after a crash finds its commit and does not make a second one.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from actors.selfmod.config import SHIPPED_PERSONA, Proposal, SelfmodConfig, SelfmodState
from actors.selfmod.guard import (
    PERSONA,
    SETTINGS,
    ProposalRefused,
    level_of,
    plugin_name,
    prompts_name,
    read_diff,
)
from actors.selfmod.reports import Judge, Tested, judge_audit, judge_plugin, run_judged
from actors.selfmod.rules import persona_change, prompts_change, settings_change, size_flags
from actors.selfmod.state import StateError, StateRepo
from hexbus.codec import derived_id
from hexbus.config import ConfigError, load
from schemas.selfmod import SelfmodAsk, SelfmodDecide, SelfmodProposal, SelfmodReport

LEVELS = ("selfmod.propose", "selfmod.plugins", "selfmod.logic")
T = TypeVar("T")
P = ParamSpec("P")


def locked(method: Callable[Concatenate[Workshop, P], T]) -> Callable[Concatenate[Workshop, P], T]:
    """One git operation on the state repository at a time: the actor's handlers and its
    sandbox runs call in from different threads."""

    def run(self: Workshop, /, *args: P.args, **kwargs: P.kwargs) -> T:
        with self.lock:
            return method(self, *args, **kwargs)

    run.__name__, run.__doc__ = method.__name__, method.__doc__
    return run


class Workshop:
    def __init__(
        self,
        config: SelfmodConfig,
        state: SelfmodState,
        data_dir: Path,
        config_dir: Path,
        config_file: Path | None,
        hide: tuple[Path, ...] = (),
    ) -> None:
        self.config = config
        self.state = state
        self.repo = StateRepo(data_dir / "state")
        self.persona_path = (config_dir / config.persona).resolve()
        self.work_root = data_dir / "sandbox"
        self.reports = data_dir / "reports"
        self.config_file = config_file or config_dir / "supervisor.toml"
        self.hide = hide
        self.lock = threading.RLock()

    # -- the state repository and the live files ---------------------------------------------

    def live(self) -> dict[str, bytes]:
        try:
            return {PERSONA: self.persona_path.read_bytes()}
        except FileNotFoundError:
            return {}

    @locked
    def open(self, now: float) -> bool:
        """Create or mend the state repository and take in edits made outside selfmod; whether
        the live persona waits for HEAD (a change committed just before a crash)."""
        self.repo.ensure({PERSONA: SHIPPED_PERSONA.read_bytes()})
        for p in self.state.proposals.values():
            # A decision whose commit landed just before a crash: the commit is the truth (its
            # trial period starts now).
            if p.status == "ready" and (commit := self._find(f"p{p.id}", _marker(p))):
                p.status, p.commit, p.applied_at = "applied", commit, now
        return self.sync()

    @locked
    def sync(self, taken: str = "") -> bool:
        """Commit the live files where an owner changed them outside selfmod; whether the live
        persona lags behind HEAD (the brain has yet to take a change: push it). ``taken``: the
        edit the brain says it took (its answer's causation). One of her own pushes, found in the
        file as she pushed it, is never an owner's edit, even one older than HEAD: a rollback
        decided before the brain took the change it undoes."""
        live = self.live()
        if PERSONA not in live:
            return True
        sha = hashlib.sha256(live[PERSONA]).hexdigest()
        head = self.repo.read(PERSONA)
        if live[PERSONA] == head:
            self.state.live_sha = sha
            return False
        if sha == self.state.live_sha:
            return True  # untouched since last seen: HEAD is newer
        pushed = taken and next(
            (c for c, _, _ in self.repo.log() if derived_id(c, "persona") == taken), ""
        )
        if pushed and self.repo.read(PERSONA, pushed) == live[PERSONA]:
            self.state.live_sha = sha  # her older push, as the brain wrote it: HEAD goes again
            return True
        self.repo.sync(live, "an owner's edit, made outside selfmod")
        self.state.live_sha = sha
        return False

    def _find(self, tag: str, marker: str) -> str:
        """The commit tagged ``tag``, or one whose subject starts with it (a crash between the
        commit and its tag), whose message carries ``marker`` (a tag left by an earlier life of
        this folder is not this change's); "" when none."""
        try:
            candidates = [self.repo.resolve(tag)]
        except StateError:
            candidates = [
                c for c, _, subject in self.repo.log(200) if subject.startswith(f"{tag}: ")
            ]
        for commit in candidates:
            if marker in self.repo.git("log", "-1", "--format=%B", commit):
                self.repo.git("tag", "-f", tag, commit)
                return commit
        return ""

    def _protected(self, before: dict[str, bytes], after: dict[str, bytes]) -> None:
        """Refuse a commit that would move a protected key or a setting past its bounds,
        whatever produced it."""
        if PERSONA in after:
            persona_change(before.get(PERSONA, b""), after[PERSONA])
        if after.get(SETTINGS, b"") != before.get(SETTINGS, b""):
            settings_change(before.get(SETTINGS, b""), after.get(SETTINGS, b""), self.modules())

    def modules(self) -> dict[str, str]:
        """Each actor's module by name, from supervisor.toml (what settings.toml may name)."""
        try:
            actors = load(self.config_file).actors
        except ConfigError as exc:
            raise ProposalRefused(f"her settings cannot be checked: {exc}") from None
        return {name: spec.module for name, spec in actors.items()}

    @locked
    def settings(self) -> bytes:
        """HEAD's settings.toml (b"" where there is none)."""
        return self.repo.read(SETTINGS) or b""

    @locked
    def head(self) -> str:
        return self.repo.head()

    @locked
    def history(self, a: str = "", b: str = "") -> str:
        """The diff between two versions, or (no versions) the log, as text."""
        if a:
            return self.repo.diff(a, b or "HEAD")
        return "\n".join(f"{c[:10]}  {t or '-':<14} {s}" for c, t, s in self.repo.log())

    def answer(self, event: SelfmodAsk) -> SelfmodReport:
        """A question's answer: the proposals (``list``), one (``show``), a diff, the log."""
        if event.what == "show":
            p = self.state.proposals.get(event.id)
            if p is None:
                raise ProposalRefused(f"there is no proposal {event.id}")
            return SelfmodReport(proposals=(p.view(),))
        if event.what == "diff":
            return SelfmodReport(
                text=self.history(self._rev(event.a or "factory"), self._rev(event.b or "HEAD"))
            )
        if event.what == "log":
            return SelfmodReport(text=self.history())
        proposals = sorted(self.state.proposals.values(), key=lambda p: -p.id)
        return SelfmodReport(proposals=tuple(p.view(diff=False) for p in proposals[:50]))

    def _rev(self, name: str) -> str:
        """A proposal number ("3") names its applied commit."""
        if name.isdigit() and (p := self.state.proposals.get(int(name))) and p.commit:
            return p.commit
        return name

    @locked
    def text(self, rev: str = "HEAD") -> str:
        """persona.toml's text at ``rev``."""
        return (self.repo.read(PERSONA, rev) or b"").decode("utf-8")

    # -- a proposal arrives ------------------------------------------------------------------

    @locked
    def submit(
        self, event_id: str, event: SelfmodProposal, allowed: Callable[[str], bool], now: float
    ) -> Proposal:
        """Record a proposal: refused with the reason, or ready for the sandbox (``testing``)."""
        if event_id in self.state.by_event:
            return self.state.proposals[self.state.by_event[event_id]]
        n = self.state.next_id
        p = Proposal(
            id=n,
            status="testing",
            why=event.why.strip()[:2000],
            origin=event.origin,
            diff=event.diff,
            by=event.by,
            conversation=event.conversation,
            created=now,
        )
        self.state.next_id = n + 1
        self.state.by_event[event_id] = n
        self.state.proposals[n] = p
        try:
            self._check(p, allowed)
        except (ProposalRefused, StateError) as exc:
            p.status, p.reason = "refused", str(exc)
            shutil.rmtree(self.work_root / f"p{n}", ignore_errors=True)
        return p

    def _check(self, p: Proposal, allowed: Callable[[str], bool]) -> None:
        if not p.why:
            raise ProposalRefused("no reason given: a proposal says why, in plain words")
        files = read_diff(p.diff)
        p.files = [f.path for f in files]
        levels = {level_of(f.path) for f in files}
        p.level = max(levels, key=LEVELS.index)
        for level in LEVELS[: LEVELS.index(p.level) + 1]:  # each level needs those below it
            if not allowed(level):
                raise ProposalRefused(
                    f"{level} is off: her owner has not allowed this level of change"
                )
        plugins = [f.path for f in files if plugin_name(f.path)]
        if plugins and len(files) > 1:
            raise ProposalRefused("a plugin is proposed on its own: one file, nothing else with it")
        self.sync()
        p.base = self.repo.head()
        self.repo.check(p.diff)
        before, after = self.prepare(p.id, p.base, p.diff)
        flags: list[str] = []
        if not plugins:
            p.keys, flags = persona_change(
                (before / PERSONA).read_bytes(), (after / PERSONA).read_bytes()
            )
            if any(f.path == SETTINGS for f in files):
                old = before / SETTINGS
                keys, more = settings_change(
                    old.read_bytes() if old.is_file() else b"",
                    (after / SETTINGS).read_bytes(),
                    self.modules(),
                )
                p.keys += keys
                flags += [f for f in more if f not in flags]
            for f in files:
                if prompts_name(f.path):
                    old = before / f.path
                    p.keys += prompts_change(
                        f.path,
                        old.read_bytes() if old.is_file() else b"",
                        (after / f.path).read_bytes(),
                    )
            if not p.keys:
                raise ProposalRefused("the change leaves every setting as it was")
            if any(prompts_name(f.path) for f in files) and "safety" not in flags:
                flags.append("safety")  # instructions beside the crisis rules, in every prompt
        p.flags = [*flags, *size_flags(sum(f.added for f in files), sum(f.removed for f in files))]
        if p.level != "selfmod.propose":
            p.flags.append("capability")

    @locked
    def prepare(self, n: int, base: str, diff: str) -> tuple[Path, Path]:
        """The sandbox's work folder for proposal ``n``: ``before`` (``base``) and ``after``
        (with ``diff``), each a clone of the state repository."""
        work = self.work_root / f"p{n}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        before, after = work / "before", work / "after"
        self.repo.clone_to(before, base)
        self.repo.clone_to(after, base)
        StateRepo(after)._apply(diff)
        return before, after

    # -- the sandbox -------------------------------------------------------------------------

    def test(self, n: int, *, trial: bool = False, stop: threading.Event | None = None) -> Tested:
        """Run proposal ``n``'s tests in the sandbox (blocking; off the loop). ``trial``: the
        audit again after applying (its parent commit against its own). Setting ``stop`` kills
        the run (:class:`hexbus.sandbox.SandboxStopped`)."""
        p = self.state.proposals[n]
        work = self.work_root / (f"p{n}-trial" if trial else f"p{n}")
        # Always a fresh folder: what an earlier (interrupted) run left there is not trusted.
        with self.lock:
            if trial:
                shutil.rmtree(work, ignore_errors=True)
                work.mkdir(parents=True)
                self.repo.clone_to(work / "before", f"{p.commit}~1")
                self.repo.clone_to(work / "after", p.commit)
            else:
                self.prepare(n, p.base, p.diff)
        out = work / "trial.json"
        plugin = next((f for f in p.files if plugin_name(f)), "")
        if plugin:
            return self._test_plugin(n, work, plugin, trial, stop)
        # Response logic (level 4) gets its own scenario count (the full run) and every section
        # of the prompt filled, so that each template's words reach the model.
        logic = p.level == "selfmod.logic"
        argv = [
            sys.executable,
            "-I",  # isolated: no PYTHONPATH, no user site, not the work folder on the path
            "-m",
            "actors.brain.trial",  # the brain's own tests, in the sandbox
            "--config",
            str(self.config_file),
            "--before",
            str(work / "before"),
            "--after",
            str(work / "after"),
            "--limit",
            str(self.config.logic_scenarios if logic else self.config.scenarios),
            "--out",
            str(out),
            *(["--context"] if logic else []),
        ]
        tolerance = self.config.tolerance
        judge = lambda result, isolation: judge_audit(result, isolation, tolerance)  # noqa: E731
        return self._sandboxed(n, trial, work, argv, judge, (self.config_file,), stop)

    def _test_plugin(
        self, n: int, work: Path, plugin: str, trial: bool, stop: threading.Event | None
    ) -> Tested:
        """A plugin's tests: checked and loaded as the host would, then fed the audit's 110
        conversations as the events it hears (``python -m actors.plugins.trial``)."""
        argv = [sys.executable, "-I", "-m", "actors.plugins.trial"]
        argv += ["--plugin", str(work / "after" / plugin), "--out", str(work / "trial.json")]
        return self._sandboxed(n, trial, work, argv, judge_plugin, (), stop)

    def _sandboxed(
        self,
        n: int,
        trial: bool,
        work: Path,
        argv: list[str],
        judge: Judge,
        readable: tuple[Path, ...],
        stop: threading.Event | None,
    ) -> Tested:
        """Run ``argv`` in the sandbox; its report kept as ``p<N>.json`` (``p<N>-trial.json``)."""
        keep = self.reports / (f"p{n}-trial.json" if trial else f"p{n}.json")
        limits = self.config.sandbox
        return run_judged(argv, work, limits, keep, judge, self.hide, readable, stop)

    @locked
    def prompts(self) -> dict[str, str]:
        """HEAD's prompt templates: file name ("reply.toml") -> text."""
        return self._named(prompts_name)

    @locked
    def plugins(self) -> dict[str, str]:
        """HEAD's plugins: name -> source."""
        return self._named(plugin_name)

    def _named(self, name_of: Callable[[str], str]) -> dict[str, str]:
        """HEAD's files that ``name_of`` names: its name -> text."""
        return {
            name: data.decode("utf-8", "replace")
            for path, data in self.repo.files().items()
            if (name := name_of(path))
        }

    def settle(self, n: int, tested: Tested, now: float) -> Proposal:
        p = self.state.proposals[n]
        if p.status != "testing":  # rejected while it ran
            return p
        p.status = tested.status  # type: ignore[assignment]
        p.reason, p.before, p.after, p.sandbox = (
            tested.reason,
            tested.before,
            tested.after,
            tested.isolation,
        )
        p.flags = [*p.flags, *(f for f in tested.flags if f not in p.flags)]
        if p.status == "ready":
            p.expires = now + self.config.approve_within_s
        return p

    # -- decisions ---------------------------------------------------------------------------

    @locked
    def decide(
        self, event: SelfmodDecide, event_id: str, now: float
    ) -> tuple[str, bool, Proposal | None]:
        """Carry out an owner's decision: what happened, whether persona.toml changed, and the
        proposal it was about."""
        if event.action == "factory_reset":
            return self._factory_reset(event, event_id, now)
        if event.action == "rollback":
            return self._rollback(event, now)
        p = self.state.proposals.get(event.id)
        if p is None:
            raise ProposalRefused(f"there is no proposal {event.id}")
        if event.action == "reject":
            if p.status not in ("ready", "testing"):
                raise ProposalRefused(
                    f"proposal {p.id} is {p.status.replace('_', ' ')}: nothing to reject"
                )
            p.status, p.decided_by, p.reason = "rejected", event.by, event.note
            return f"proposal {p.id} rejected", False, p
        if p.status == "applied" and p.commit:
            return f"proposal {p.id} is applied already", False, p
        if p.status != "ready":
            raise ProposalRefused(
                f"proposal {p.id} is {p.status.replace('_', ' ')}: only a ready one can be approved"
            )
        commit = self._find(f"p{p.id}", _marker(p))
        if not commit:
            if now > p.expires:
                p.status = "expired"
                raise ProposalRefused(f"proposal {p.id} expired unapproved: ask for it again")
            self.sync()
            if self.repo.head() != p.base:
                p.status, p.reason = "stale", "the files changed since it was tested"
                raise ProposalRefused(
                    f"proposal {p.id} is stale: the files changed since it was tested"
                )
            commit = self.repo.commit_diff(
                p.diff,
                f"p{p.id}: {p.why.splitlines()[0][:120]}\n\n{_marker(p)}",
                f"p{p.id}",
                p.files,
                self._protected,
            )
        p.status, p.commit, p.decided_by, p.applied_at = "applied", commit, event.by, now
        return f"proposal {p.id} applied ({commit[:10]})", True, p

    def _rollback(self, event: SelfmodDecide, now: float) -> tuple[str, bool, Proposal | None]:
        applied = [p for p in self.state.proposals.values() if p.status in ("applied", "kept")]
        if event.id:
            p = self.state.proposals.get(event.id)
            if p is None:
                raise ProposalRefused(f"there is no proposal {event.id}")
            if p.status == "rolled_back":
                return f"proposal {p.id} is rolled back already", False, p
            if p.status not in ("applied", "kept"):
                raise ProposalRefused(
                    f"proposal {p.id} is {p.status.replace('_', ' ')}: it was never applied"
                )
        elif applied:
            p = max(applied, key=lambda q: q.applied_at)
        else:
            raise ProposalRefused("no applied change to roll back")
        tag = f"p{p.id}-rollback"
        marker = f"rollback of {p.commit}"
        if not self._find(tag, marker):
            self.sync()
            why = event.note or "rolled back"
            self.repo.revert(p.commit, f"{tag}: {why}\n\n{marker}", tag, self._protected)
        p.status, p.reason, p.decided_by = "rolled_back", event.note or "rolled back", event.by
        return f"proposal {p.id} rolled back", True, p

    def _factory_reset(
        self, event: SelfmodDecide, event_id: str, now: float
    ) -> tuple[str, bool, Proposal | None]:
        # The whole event id: ids from one long-lived process share their first characters.
        tag = f"reset-{hashlib.sha256(event_id.encode()).hexdigest()[:12]}"
        marker = f"event {event_id}"
        if not self._find(tag, marker):
            self.sync()
            self.repo.restore("factory", f"{tag}: factory reset by {event.by}\n\n{marker}", tag)
        for p in self.state.proposals.values():
            if p.status in ("applied", "kept"):
                p.status, p.reason = "rolled_back", "factory reset"
            elif p.status in ("ready", "testing"):
                p.status, p.reason = "stale", "factory reset"
        return "factory reset: the shipped files are back", True, None

    def expire(self, now: float) -> list[Proposal]:
        gone = []
        for p in self.state.proposals.values():
            if p.status == "ready" and now > p.expires:
                p.status = "expired"
                gone.append(p)
        return gone


def _marker(p: Proposal) -> str:
    """What a proposal's commit message carries: its diff's hash."""
    return f"diff {hashlib.sha256(p.diff.encode()).hexdigest()[:16]}"
