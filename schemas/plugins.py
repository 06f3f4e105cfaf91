"""Plugins: small modules Hex wrote, approved by her owner, run by the plugin host.

Selfmod alone installs and removes them (the host takes these events only from it, after an
owner approved the change); a plugin's only voice is a note for the brain's next reply.
"""

from __future__ import annotations

from schemas.base import Event


class PluginInstall(Event, frozen=True, kw_only=True, tag="plugin.install"):
    """Run ``source`` as plugin ``name`` (replacing the one of that name); ``sha`` is its
    sha256, ``proposal`` the selfmod proposal that brought it (0: a rollback or a reset)."""

    name: str
    source: str
    sha: str
    proposal: int = 0


class PluginRemove(Event, frozen=True, kw_only=True, tag="plugin.remove"):
    name: str


class PluginFailed(Event, frozen=True, kw_only=True, tag="plugin.failed"):
    """The host stopped running plugin ``name`` (version ``sha``): it would not load, or kept
    raising or overrunning its time. Selfmod rolls back a change whose plugin fails in trial."""

    name: str
    sha: str
    reason: str


class PluginNote(Event, frozen=True, kw_only=True, tag="plugin.note"):
    """A plugin's line for the brain's next reply to ``person_id`` ("" for anyone)."""

    plugin: str
    person_id: str = ""
    channel: str = ""
    text: str
