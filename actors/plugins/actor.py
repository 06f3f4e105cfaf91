"""The plugin host: runs the plugins her owner approved, each in its own sandboxed process.

A dispatcher over :class:`Runner`. Plugins arrive only from selfmod (``plugin.install``, after
an owner approved the change; ``plugin.remove`` on a rollback or a reset) and are checked again
here before they run. Each hears the topics it named (people's words, Hex's replies, moments
she saw) as plain dicts, one at a time with a deadline, and may answer only with notes for the
brain's next reply to the person the event is about (``plugin.note``, rate-limited) and a
small dict it keeps for that person (``hex.data``: one person's words never reach another's
reply through it). A plugin that
will not load, or raises or overruns ``failures`` times in a row, is stopped and reported
(``plugin.failed``): selfmod rolls back a change whose plugin fails in its trial. What a plugin
keeps is in the host's state; after a crash the journal's events since the last snapshot are
heard again (without notes), so it is rebuilt as it was.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, ClassVar

from actors.plugins.check import PluginRefused, check
from actors.plugins.config import Installed, PluginsConfig, PluginsState
from actors.plugins.host import PluginFailure, Runner
from hexbus import sandbox
from hexbus.actor import Actor, on
from schemas import (
    ChatMessage,
    PluginFailed,
    PluginInstall,
    PluginNote,
    PluginRemove,
    Reply,
    VisionMoment,
)

PEOPLE_KEPT = 500  # a plugin's data for this many people, the least recently heard dropped


def as_plain(event: ChatMessage | Reply | VisionMoment) -> tuple[str, dict[str, Any], str]:
    """What a plugin hears of an event (its topic, the dict, the person it is about)."""
    if isinstance(event, ChatMessage):
        said = {"person": event.person_id, "name": event.display_name, "text": event.text}
        said |= {"channel": event.channel, "platform": event.platform}
        return "chat.message", said, event.person_id
    if isinstance(event, Reply):
        said = {"person": event.person_id, "text": event.text, "channel": event.channel}
        return "chat.reply", said, event.person_id
    return "vision.moment", {"text": event.text, "change": event.change}, ""


class PluginHostActor(Actor[PluginsConfig, PluginsState]):
    subscribes: ClassVar[tuple[str, ...]] = (
        "plugin.install",
        "plugin.remove",
        "chat.message",
        "chat.reply",
        "vision.moment",
    )
    config_type = PluginsConfig
    state_type = PluginsState

    async def setup(self) -> None:
        self.runners: dict[str, Runner] = {}
        self.sent: dict[str, deque[float]] = {}
        self.hide = sandbox.private(self.data_dir, self.config_dir, self.run_dir)
        self.detail = self._detail()

    async def on_live(self) -> None:
        for name, plugin in self.state.plugins.items():
            if not plugin.stopped and name not in self.runners:
                await self.start(name, plugin)

    async def teardown(self) -> None:
        for runner in self.runners.values():
            runner.stop()

    def _detail(self) -> str:
        running = sorted(n for n, p in self.state.plugins.items() if not p.stopped)
        stopped = len(self.state.plugins) - len(running)
        line = f"{len(running)} running" + (f": {', '.join(running)}" if running else "")
        return line + (f"; {stopped} stopped" if stopped else "")

    # -- installs ----------------------------------------------------------------------------

    @on(PluginInstall)
    async def on_install(self, event: PluginInstall) -> None:
        if not self.from_installer():
            return
        old = self.state.plugins.get(event.name)
        plugin = Installed(source=event.source, sha=event.sha, proposal=event.proposal)
        if old is not None and old.sha == event.sha:
            plugin.data = old.data  # the same code again (a restart's replay): it keeps its data
        self.state.plugins[event.name] = plugin
        try:
            plugin.topics = list(check(event.source, event.name).topics)
        except PluginRefused as exc:
            await self.fail(event.name, plugin, f"refused: {exc}")
            return
        await self.start(event.name, plugin)
        self.detail = self._detail()

    @on(PluginRemove)
    async def on_remove(self, event: PluginRemove) -> None:
        if not self.from_installer():
            return
        self.state.plugins.pop(event.name, None)
        runner = self.runners.pop(event.name, None)
        if runner is not None:
            await self.offload(runner.stop)
        self.log.info("plugins.removed", plugin=event.name)
        self.detail = self._detail()

    def from_installer(self) -> bool:
        envelope = self.envelope
        source = envelope.source if envelope is not None else ""
        if source != self.config.installer:
            self.log.warning("plugins.refused_source", source=source)
            return False
        return True

    async def start(self, name: str, plugin: Installed) -> bool:
        runner = self.runners.get(name)
        if runner is None or runner.source != plugin.source:
            if runner is not None:
                await self.offload(runner.stop)
            work = self.data_dir / "run" / name
            runner = self.runners[name] = Runner(
                name, plugin.source, work, self.config.sandbox, self.hide
            )
        try:
            topics = await self.offload(runner.start, self.config.start_timeout_s)
        except PluginFailure as exc:
            await self.fail(name, plugin, f"it would not start: {exc}")
            return False
        self.log.info("plugins.started", plugin=name, topics=topics, isolation=runner.isolation)
        return True

    async def fail(self, name: str, plugin: Installed, reason: str) -> None:
        plugin.stopped = reason
        runner = self.runners.pop(name, None)
        if runner is not None:
            await self.offload(runner.stop)
        self.log.warning("plugins.stopped", plugin=name, reason=reason)
        self.detail = self._detail()
        await self.publish(PluginFailed(name=name, sha=plugin.sha, reason=reason))

    # -- events ------------------------------------------------------------------------------

    @on(ChatMessage, Reply, VisionMoment)
    async def on_event(self, event: ChatMessage | Reply | VisionMoment) -> None:
        # After a restart the journal brings back what came since the last snapshot: plugins
        # hear it again, so what they keep is rebuilt, but their notes are for now only.
        topic, said, person = as_plain(event)
        channel = said.get("channel", "")
        for name, plugin in list(self.state.plugins.items()):
            if plugin.stopped or topic not in plugin.topics:
                continue
            if name not in self.runners and not await self.start(name, plugin):
                continue  # (a replay, before on_live has started it)
            kept = plugin.data.get(person, {})
            try:
                answer = await self.offload(
                    self.runners[name].call, said, kept, self.config.event_timeout_s
                )
            except PluginFailure as exc:
                answer = {"ok": False, "error": str(exc), "died": True}
            plugin.events += 1
            if not answer.get("ok"):
                plugin.failures += 1
                self.log.warning("plugins.error", plugin=name, error=answer.get("error"))
                if plugin.failures >= self.config.failures:
                    await self.fail(
                        name, plugin, f"{plugin.failures} failures in a row: {answer.get('error')}"
                    )
                elif answer.get("died"):
                    await self.start(name, plugin)
                continue
            plugin.failures = 0
            if answer["data"] or person in plugin.data:
                plugin.data.pop(person, None)
                plugin.data[person] = answer["data"]  # the most recent last
                while len(plugin.data) > PEOPLE_KEPT:
                    del plugin.data[next(iter(plugin.data))]
            if not person or not self.live:
                continue  # notes are for the person an event is about, and for now
            for text in answer["notes"]:
                await self.note(name, plugin, text, person, channel)

    async def note(
        self, name: str, plugin: Installed, text: str, person: str, channel: str
    ) -> None:
        sent = self.sent.setdefault(name, deque())
        now = time.monotonic()
        while sent and now - sent[0] > 60:
            sent.popleft()
        if len(sent) >= self.config.notes_per_minute:
            plugin.dropped += 1
            return
        sent.append(now)
        plugin.notes += 1
        await self.publish(PluginNote(plugin=name, person_id=person, channel=channel, text=text))


__all__ = ["PluginHostActor"]
