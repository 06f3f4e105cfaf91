"""The plugin host in-process (hexbus.testing) with real sandboxed runners: installs only from
selfmod, notes for the brain, failures that stop a plugin and are reported, the rate limit, and
a plugin's data kept across a restart."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import msgspec

from actors.plugins.actor import PluginHostActor
from actors.plugins.config import PluginsConfig, PluginsState
from hexbus.testing import ActorHarness
from schemas import (
    ChatMessage,
    PluginFailed,
    PluginInstall,
    PluginNote,
    PluginRemove,
    Reply,
    VisionMoment,
)

COUNTER = """
TOPICS = ("chat.message",)


def react(event, hex):
    hex.data["n"] = hex.data.get("n", 0) + 1
    hex.note(f"{event['name']} has written {hex.data['n']} times")
"""
BROKEN = 'TOPICS = ("chat.message", "chat.reply")\n\ndef react(event, hex):\n    return 1 / 0\n'


def install(name: str, source: str) -> PluginInstall:
    return PluginInstall(name=name, source=source, sha=hashlib.sha256(source.encode()).hexdigest())


def said(text: str, person: str = "ana") -> ChatMessage:
    return ChatMessage(
        platform="console", person_id=person, display_name=person.title(), channel="c", text=text
    )


def run(
    body: Callable[[ActorHarness[PluginHostActor]], Awaitable[None]],
    data: Path,
    state: PluginsState | None = None,
    **config: object,
) -> PluginsState:
    async def main() -> PluginsState:
        settings = msgspec.convert(config, PluginsConfig)
        h = ActorHarness(PluginHostActor, settings, state, name="plugins", data_dir=data)
        await h.setup()
        h.actor.live = True
        await h.actor.on_live()
        try:
            await body(h)
        finally:
            await h.stop()
        return h.actor.state

    return asyncio.run(main())


def notes(out: Sequence[object]) -> list[str]:
    return [e.text for e in out if isinstance(e, PluginNote)]


def test_a_plugin_from_selfmod_runs_and_its_notes_reach_the_brain(tmp_path: Path) -> None:
    async def body(h: ActorHarness[PluginHostActor]) -> None:
        assert await h.send(install("counter", COUNTER), source="someone") == []  # not selfmod's
        assert h.actor.state.plugins == {}
        await h.send(install("counter", COUNTER), source="selfmod")
        assert "1 running: counter" in h.actor.detail
        out = await h.send(said("hi"))
        assert notes(out) == ["Ana has written 1 times"]
        note = next(e for e in out if isinstance(e, PluginNote))
        assert (note.plugin, note.person_id, note.channel) == ("counter", "ana", "c")
        assert notes(await h.send(said("again"))) == ["Ana has written 2 times"]
        # Replies are not among its topics: it hears nothing of them.
        assert await h.send(Reply(reply_to="x", channel="c", text="hello", person_id="ana")) == []

    state = run(body, tmp_path)
    assert state.plugins["counter"].data == {"ana": {"n": 2}}

    async def after_restart(h: ActorHarness[PluginHostActor]) -> None:
        assert notes(await h.send(said("back"))) == ["Ana has written 3 times"]
        await h.send(PluginRemove(name="counter"), source="selfmod")
        assert h.actor.runners == {} and await h.send(said("gone")) == []

    assert run(after_restart, tmp_path, state).plugins == {}


def test_a_failing_plugin_is_stopped_and_reported(tmp_path: Path) -> None:
    async def body(h: ActorHarness[PluginHostActor]) -> None:
        await h.send(install("broken", BROKEN), source="selfmod")
        await h.send(said("one"))
        await h.send(said("two"))
        out = await h.send(said("three"))
        failed = [e for e in out if isinstance(e, PluginFailed)]
        assert (
            len(failed) == 1
            and "ZeroDivisionError" in failed[0].reason
            and failed[0].name == "broken"
        )
        assert h.actor.state.plugins["broken"].stopped and "broken" not in h.actor.runners
        assert await h.send(said("four")) == []  # stopped for good

    run(body, tmp_path, failures=3)


def test_a_plugin_that_will_not_load_is_reported_at_once(tmp_path: Path) -> None:
    async def body(h: ActorHarness[PluginHostActor]) -> None:
        evil = 'import socket\nTOPICS = ("chat.message",)\ndef react(e, h):\n    pass\n'
        out = await h.send(install("evil", evil), source="selfmod")
        failed = [e for e in out if isinstance(e, PluginFailed)]
        assert failed and "imports socket" in failed[0].reason

    run(body, tmp_path)


def test_notes_beyond_the_rate_are_dropped_and_counted(tmp_path: Path) -> None:
    async def body(h: ActorHarness[PluginHostActor]) -> None:
        await h.send(install("counter", COUNTER), source="selfmod")
        sent = [n for i in range(4) for n in notes(await h.send(said(f"line {i}")))]
        assert len(sent) == 2 and h.actor.state.plugins["counter"].dropped == 2

    run(body, tmp_path, notes_per_minute=2)


def test_a_replay_rebuilds_what_a_plugin_keeps_without_saying_it_again(tmp_path: Path) -> None:
    async def body(h: ActorHarness[PluginHostActor]) -> None:
        h.actor.live = False  # after a restart: the journal since the snapshot, again
        await h.send(install("counter", COUNTER), source="selfmod")
        assert await h.send(said("old news")) == []  # no note for what was said before
        assert h.actor.state.plugins["counter"].data == {"ana": {"n": 1}}
        h.actor.live = True
        await h.actor.on_live()
        assert notes(await h.send(said("new"))) == ["Ana has written 2 times"]

    run(body, tmp_path)


def test_what_a_plugin_keeps_is_per_person_and_moments_bring_no_notes(tmp_path: Path) -> None:
    """One person's words never reach another's reply through a plugin: ``hex.data`` is the data
    of the person the event is about, and an event about nobody (a moment) writes no note."""
    keeper = (
        'TOPICS = ("chat.message", "vision.moment")\n\n\n'
        "def react(event, hex):\n"
        '    said = hex.data.get("said", "nothing")\n'
        '    hex.note("before this they said: " + said)\n'
        '    hex.data["said"] = event["text"]\n'
    )

    async def body(h: ActorHarness[PluginHostActor]) -> None:
        await h.send(install("keeper", keeper), source="selfmod")
        await h.send(said("my PIN is 4321", person="alice"))
        assert notes(await h.send(said("hello", person="bob"))) == [
            "before this they said: nothing"
        ]
        moment = VisionMoment(change="arrived", source="cam", at=1.0, text="someone came back")
        assert notes(await h.send(moment)) == []
        assert notes(await h.send(said("hi", person="alice"))) == [
            "before this they said: my PIN is 4321"
        ]

    run(body, tmp_path)
