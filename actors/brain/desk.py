"""What interfaces ask of the persona (the page's persona panel): a version's text and the list,
an edit checked and recorded, and the consistency audit run through the brain's own backend.

:class:`PersonaDesk` keeps the persona's versions and file: the brain's handlers call it and
publish what it returns. Its file work blocks (the brain offloads it); :meth:`PersonaDesk.audit`
is a coroutine the brain runs as a background task, one audit at a time, answering the asker
itself when it ends.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import structlog

from actors.brain.audit import AuditError, audit_persona, latest_report
from actors.brain.backends import BackendError
from actors.brain.backends.fallback import FallbackChain
from actors.brain.config import BrainConfig
from actors.brain.persona import Persona, PersonaError, error_line
from actors.brain.scenarios import compare_reports, load_report, save_report
from actors.brain.templates import SHIPPED, Templates
from actors.brain.versions import PersonaStore
from hexbus.bus import BusClient
from hexbus.codec import Envelope
from schemas import (
    PersonaAudit,
    PersonaAudited,
    PersonaAuditProgress,
    PersonaChanged,
    PersonaState,
    PersonaVersion,
)

__all__ = ["PersonaDesk"]

log = structlog.get_logger("actors.brain")

MAX_TEXT = 256 << 10  # a persona document longer than this is refused


F = TypeVar("F", bound=Callable[..., Any])


def _one_at_a_time(fn: F) -> F:
    """The store is read and written by one worker thread at a time."""

    @functools.wraps(fn)
    def run(self: PersonaDesk, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return fn(self, *args, **kwargs)

    return cast(F, run)


class PersonaDesk:
    def __init__(self, store: PersonaStore, path: Path, audits: Path) -> None:
        self.store, self.path, self.audits = store, path, audits
        self.auditing: tuple[int, int] | None = None  # (done, total) while an audit runs
        # The store has one writer at a time: edits, rollbacks and reloads run on worker threads.
        self.lock = threading.Lock()
        self.mtime = 0  # persona.toml's, when last read or written here

    def seen_on_disk(self) -> None:
        try:
            self.mtime = self.path.stat().st_mtime_ns
        except OSError:
            pass

    def changed_on_disk(self) -> bool:
        """Whether persona.toml changed since it was last read or written here."""
        before = self.mtime
        self.seen_on_disk()
        return self.mtime != before

    @_one_at_a_time
    def load(self, previous: int) -> tuple[PersonaChanged, Persona]:
        """persona.toml at start, recorded as a version when new; the report (with a note when
        it is not ``previous``) and the persona. An invalid document raises PersonaError."""
        version = self.store.sync(self.path)
        self.seen_on_disk()
        note = "persona.toml loaded" if version != previous else ""
        return PersonaChanged(version=version, note=note), self.store.get(version)[0]

    @_one_at_a_time
    def reload(self, active: int) -> tuple[PersonaChanged, Persona | None]:
        """persona.toml as it is on disk, recorded as a version when it differs from ``active``
        (an invalid one is logged and changes nothing)."""
        try:
            version = self.store.sync(self.path)
        except PersonaError as exc:
            log.error(
                "brain.persona_invalid", error=str(exc), hint="the previous version stays active"
            )
            return PersonaChanged(version=active, error=str(exc)), None
        if version == active:
            return PersonaChanged(version=active), None
        return PersonaChanged(version=version, note="persona.toml changed"), self.store.get(
            version
        )[0]

    async def watch(self, every_s: float, changed: Callable[[], Awaitable[None]]) -> None:
        """Call ``changed`` whenever persona.toml changes on disk (checked every ``every_s``)."""
        while True:
            await asyncio.sleep(every_s)
            if self.changed_on_disk():
                await changed()

    @_one_at_a_time
    def rollback(self, version: int) -> tuple[PersonaChanged, Persona | None]:
        """Make an earlier version active again (its text written back to persona.toml)."""
        try:
            persona = self.store.rollback(version)
        except PersonaError as exc:
            return PersonaChanged(version=self.store.active, error=str(exc)), None
        self.seen_on_disk()
        return PersonaChanged(version=self.store.active, note=f"rollback to {version}"), persona

    @_one_at_a_time
    def state(self, version: int) -> PersonaState:
        """A version's text (0: the active one), every version, the latest audit's summary."""
        versions = tuple(
            PersonaVersion(version=v.version, created=v.created, note=v.note, sha256=v.sha256)
            for v in self.store.versions()
        )
        wanted = version or self.store.active
        try:
            _, text = self.store.get(wanted)
        except PersonaError as exc:
            return PersonaState(active=self.store.active, versions=versions, error=str(exc))
        last = ""
        report = latest_report(self.audits)
        if report is not None:
            try:
                last = _json(_summary(load_report(report)) | {"report": report.name})
            except PersonaError as exc:
                last = _json({"error": str(exc)})
        return PersonaState(
            active=self.store.active,
            version=wanted,
            text=text,
            versions=versions,
            path=str(self.path),
            last_audit=last,
        )

    @_one_at_a_time
    def edit(self, text: str, note: str, by: str) -> tuple[PersonaChanged, Persona | None]:
        """Check and record a new text; the report, and the persona now active (None when the
        edit was refused or changed nothing)."""
        active = self.store.active
        if len(text.encode("utf-8")) > MAX_TEXT:
            error = f"the persona document is over {MAX_TEXT >> 10} KiB: shorten it"
            return PersonaChanged(version=active, error=error), None
        why = f"edited by {by}" + (f": {note}" if note else "") if by else note
        try:
            version = self.store.edit(self.path, text, why)
        except PersonaError as exc:
            return PersonaChanged(
                version=active, error=str(exc), line=error_line(text, str(exc))
            ), None
        if version == active:
            return PersonaChanged(
                version=active, note="no change: the text is the active one"
            ), None
        return PersonaChanged(version=version, note=why), self.store.get(version)[0]

    async def audit(
        self,
        chain: FallbackChain,
        persona: Persona,
        config: BrainConfig,
        event: PersonaAudit,
        request: Envelope,
        bus: BusClient,
        between: Callable[[], Awaitable[None]],
        offload: Callable[..., Awaitable[Any]],
        templates: Templates = SHIPPED,
    ) -> None:
        """Run the audit (with the prompt templates in use), save its report beside the CLI's, compare it with the one before, and
        answer ``request`` (progress goes out as it runs). It always answers: an audit that
        fails or is stopped (the brain stopping) says so rather than leave the asker waiting."""
        key, correlation, causation = request.source, request.correlation, request.id

        def step(done: int, total: int) -> None:
            self.auditing = (done, total)
            progress = PersonaAuditProgress(request=request.id, done=done, total=total)
            bus.publish_volatile(progress, key="brain")

        def run() -> Awaitable[dict[str, Any]]:
            limit = max(0, event.limit)
            return audit_persona(
                chain,
                persona,
                config,
                limit=limit,
                progress=step,
                between=between,
                templates=templates,
            )

        try:
            result = await self._audited(run, offload)
        except asyncio.CancelledError:
            stopped = PersonaAudited(error="the brain stopped during the audit: run it again")
            bus.publish_volatile(stopped, key=key, correlation=correlation, causation=causation)
            raise
        except Exception as exc:
            log.exception("brain.audit_failed")
            result = PersonaAudited(error=f"the audit failed: {type(exc).__name__}: {exc}"[:500])
        await bus.publish(result, key=key, correlation=correlation, causation=causation)

    async def _audited(
        self,
        run: Callable[[], Awaitable[dict[str, Any]]],
        offload: Callable[..., Awaitable[Any]],
    ) -> PersonaAudited:
        """One audit at a time: its report saved and compared, or why there is none."""
        if self.auditing is not None:
            done, total = self.auditing
            return PersonaAudited(error=f"an audit is running ({done} of {total}): wait for it")
        self.auditing = (0, 0)
        try:
            report = await run()
        except (AuditError, BackendError) as exc:
            return PersonaAudited(error=f"the audit stopped: {exc}")
        finally:
            self.auditing = None
        previous, before = await offload(_comparable, self.audits, report)
        self.audits.mkdir(parents=True, exist_ok=True)
        path = await offload(save_report, report, self.audits)
        drift = _json(compare_reports(before, report)) if before is not None else ""
        return PersonaAudited(
            summary=_json(_summary(report)),
            drift=drift,
            report=path.name,
            previous=previous.name if previous else "",
        )


def _comparable(
    directory: Path, report: dict[str, Any], looked_at: int = 50
) -> tuple[Path | None, dict[str, Any] | None]:
    """The newest saved report over the same scenarios as ``report`` (a run of the first 10 is
    compared with the last run of the first 10, never with a full one), and its contents."""
    scenarios = set(report.get("outcomes", {}))
    reports = sorted(directory.glob("audit-*.json"), reverse=True) if directory.is_dir() else []
    for path in reports[:looked_at]:
        try:
            before = load_report(path)
        except PersonaError:
            continue  # a damaged report is skipped, not compared
        if set(before.get("outcomes", {})) == scenarios:
            return path, before
    return None, None


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True)


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in ("outcomes", "replies")}
