"""The plugin host's settings and the plugins it keeps across restarts."""

from __future__ import annotations

from typing import Any

import msgspec

from hexbus.sandbox import SandboxLimits

# A runner answers one event at a time: small limits, and it is killed past them.
RUNNER_LIMITS = SandboxLimits(cpu_s=3600, memory_mb=1024, file_mb=1, open_files=64, tmpfs_mb=4)


class PluginsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    installer: str = "selfmod"  # the only actor whose installs and removals count
    event_timeout_s: float = 1.0  # one event's answer; past it the runner is killed
    start_timeout_s: float = 20.0  # the runner's start in the sandbox, to its first line
    failures: int = 3  # errors or overruns in a row before a plugin is stopped for good
    notes_per_minute: int = 6  # per plugin; beyond it notes are dropped (and counted)
    sandbox: SandboxLimits = RUNNER_LIMITS

    def __post_init__(self) -> None:
        if self.event_timeout_s <= 0 or self.start_timeout_s <= 0 or self.failures < 1:
            raise ValueError(
                "actors.plugins: event_timeout_s and start_timeout_s are > 0, failures >= 1"
            )


class Installed(msgspec.Struct, kw_only=True):
    source: str
    sha: str
    proposal: int = 0
    topics: list[str] = []
    data: dict[str, dict[str, Any]] = {}  # person -> what the plugin keeps for them ("": none)
    failures: int = 0  # in a row
    stopped: str = ""  # why it no longer runs ("" while it does)
    events: int = 0
    notes: int = 0
    dropped: int = 0  # notes over notes_per_minute


class PluginsState(msgspec.Struct, kw_only=True):
    plugins: dict[str, Installed] = {}
