"""Her settings where the supervisor reads them: HEAD's settings.toml copied to the selfmod
actor's folder, and the actors whose settings changed restarted so that they start on them.

``settings.toml`` (the live copy, :func:`hexbus.tunables.live_path`) is written before the
restarts: the supervisor lays it over an actor's config as it starts the process, and checks
the bounds again. ``settings.applied.toml`` is what the actors were last restarted for, written
once every restart was taken: until then each push asks again (twice at worst, never not at
all). A restart is a ``refresh``: an actor that is not running (the kill switch, an owner's
stop, failed) is not revived, and takes the settings when it next starts.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from actors.selfmod.guard import ProposalRefused
from hexbus import tunables
from hexbus.control import ControlRequest, SupervisorUnreachable, call

__all__ = ["prompts_sha", "push"]

Modules = Callable[[], dict[str, str]]


def push(head: bytes, folder: Path, modules: Modules, control: Callable[[], str]) -> list[str]:
    """Make ``head`` (HEAD's settings.toml, b"" for none) the live settings and refresh the
    actors it changes (blocking: run it off the loop; ``control``: the supervisor's control
    address, asked for only when an actor is to be refreshed). What went wrong, one line each."""
    live, applied = folder / "settings.toml", folder / "settings.applied.toml"
    done = applied.read_bytes() if applied.is_file() else b""
    if done == head and (live.read_bytes() if live.is_file() else b"") == head:
        return []
    try:
        names = modules()
        after = tunables.read(head, names, []) if head else {}
    except (ProposalRefused, tunables.SettingsError) as exc:
        return [f"HEAD's settings.toml is not applied: {exc}"]
    try:
        before = tunables.read(done, names, []) if done else {}
    except tunables.SettingsError:
        before = {}  # a damaged copy: the supervisor applied none of it
    write_atomically(live, head)
    problems = []
    for name in sorted({key.split(".", 1)[0] for key in tunables.changed(before, after)}):
        problems += refresh(control(), name)
    if not problems:
        write_atomically(applied, head)
    return problems


def refresh(control: str, name: str) -> list[str]:
    """Ask the supervisor to restart ``name`` if it runs; what went wrong, if anything."""
    try:
        reply = call(control, ControlRequest(cmd="refresh", name=name), 30.0)
    except SupervisorUnreachable as exc:
        return [f"{name} was not restarted for her settings (the supervisor did not answer: {exc})"]
    if reply.ok:
        return []
    return [f"{name} was not restarted for her settings ({reply.error}): `hexbus restart {name}`"]


def write_atomically(path: Path, data: bytes) -> None:
    """``data`` at ``path`` whole or not at all (none: the file removed)."""
    if not data:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def prompts_sha(files: dict[str, str]) -> str:
    """One sha256 for a set of template files ("" for none: the shipped templates)."""
    if not files:
        return ""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
