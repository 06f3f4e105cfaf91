"""The actor settings she may propose to change (issue 17, level 2), each inside declared bounds.

``settings.toml`` in her state repository holds them, one table per actor named as in
``supervisor.toml`` (``[brain.budgets]`` ``reply = 120``); what it does not set keeps the
owner's value. The table below is code: nothing she can change widens it. It is read twice,
by the same function: by selfmod before a proposal goes anywhere (refused with the reason), and
by the supervisor, which lays the values over ``[actors.NAME.config]`` each time it starts the
actor (the applier enforces the bounds; a file that fails them is refused whole and logged, and
the actors start on the owner's settings).

The selfmod actor keeps HEAD's file at ``DATA_DIR/actors/SELFMOD/settings.toml`` (:func:`live_path`)
and asks the supervisor to restart the actors a change touches.
"""

from __future__ import annotations

import copy
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "SELFMOD_MODULE",
    "TUNABLES",
    "SettingsError",
    "Tunable",
    "changed",
    "live_path",
    "overlay",
    "read",
]

SELFMOD_MODULE = "actors.selfmod.actor:SelfmodActor"
MAX_BYTES = 16 << 10


@dataclass(frozen=True)
class Tunable:
    kind: type[int] | type[float]
    low: float
    high: float
    what: str
    safety: bool = False  # a change is flagged ``safety``: how much she speaks up on her own


# Actor module -> dotted key under its [actors.NAME.config] -> its bounds.
TUNABLES: dict[str, dict[str, Tunable]] = {
    "actors.brain.actor:BrainActor": {
        "budgets.profile": Tunable(int, 0, 400, "tokens for what she knows about the speaker"),
        "budgets.memories": Tunable(int, 0, 800, "tokens for the memories a reply recalls"),
        "budgets.perception": Tunable(int, 0, 200, "tokens for what she sees"),
        "budgets.summary": Tunable(int, 0, 400, "tokens for the conversation's summary"),
        "budgets.turns": Tunable(int, 100, 2000, "tokens for the conversation's last turns"),
        "budgets.reply": Tunable(int, 16, 600, "tokens a reply may take"),
    },
    "actors.autonomy.actor:AutonomyActor": {
        "pacing.per_day": Tunable(int, 0, 4, "messages she may start per person a day", True),
        "pacing.min_gap_s": Tunable(
            float, 3600, 7 * 86_400, "the least time between two messages she starts", True
        ),
        "anniversary_importance": Tunable(
            float, 0.3, 1.0, "how important a memory must be for its anniversary"
        ),
    },
}


class SettingsError(ValueError):
    """settings.toml is not what the bounds allow: one line naming the setting and the fix."""


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def read(
    text: str | bytes, modules: Mapping[str, str], unknown: list[str] | None = None
) -> dict[str, dict[str, int | float]]:
    """The settings in ``text`` by actor name (``modules``: each actor's module, as in
    supervisor.toml), each checked against its bounds; :class:`SettingsError` otherwise.
    ``unknown``: a table for an actor supervisor.toml no longer has (removed, renamed) is
    skipped and its name added there, rather than refused (so one removal does not void every
    other setting)."""
    try:
        return _read(text, modules, unknown)
    except RecursionError:
        raise SettingsError("settings.toml is nested too deeply") from None


def _read(
    text: str | bytes, modules: Mapping[str, str], unknown: list[str] | None
) -> dict[str, dict[str, int | float]]:
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise SettingsError(f"settings.toml is over {MAX_BYTES >> 10} KiB")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise SettingsError("settings.toml is not UTF-8") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"settings.toml is not valid TOML: {exc}") from None
    found: dict[str, dict[str, int | float]] = {}
    for actor, table in doc.items():
        if not isinstance(table, dict):
            raise SettingsError(f"settings.toml {actor}: a table of settings per actor")
        module = modules.get(actor)
        if module is None and unknown is not None:
            unknown.append(actor)
            continue
        if module is None:
            raise SettingsError(
                f"settings.toml [{actor}]: no actor of that name in supervisor.toml"
            )
        allowed = TUNABLES.get(module, {})
        values: dict[str, int | float] = {}
        for key, value in _flatten(table).items():
            bound = allowed.get(key)
            if bound is None:
                names = ", ".join(sorted(allowed)) or "none"
                raise SettingsError(
                    f"settings.toml {actor}.{key}: not a setting she may change ({names})"
                )
            values[key] = _check(f"{actor}.{key}", value, bound)
        if values:
            found[actor] = values
    return found


def _check(name: str, value: Any, bound: Tunable) -> int | float:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or (bound.kind is int and not isinstance(value, int)):
        kind = "a whole number" if bound.kind is int else "a number"
        raise SettingsError(f"settings.toml {name} = {value!r}: {kind} ({bound.what})")
    if isinstance(value, float) and not math.isfinite(value):
        raise SettingsError(f"settings.toml {name} = {value!r}: a finite number")
    if not bound.low <= value <= bound.high:
        raise SettingsError(
            f"settings.toml {name} = {value!r}: outside its bounds {_n(bound.low)}..{_n(bound.high)} "
            f"({bound.what})"
        )
    return bound.kind(value)


def _n(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def overlay(config: Mapping[str, Any], values: Mapping[str, int | float]) -> dict[str, Any]:
    """``config`` (an actor's ``[actors.NAME.config]``) with ``values`` (dotted keys) laid over it."""
    out = copy.deepcopy(dict(config))
    for dotted, value in values.items():
        *path, last = dotted.split(".")
        table = out
        for part in path:
            inner = table.get(part)
            if not isinstance(inner, dict):
                inner = {}
                table[part] = inner
            table = inner
        table[last] = value
    return out


def changed(
    before: Mapping[str, Mapping[str, int | float]], after: Mapping[str, Mapping[str, int | float]]
) -> list[str]:
    """The ``actor.key`` settings that differ (set, changed or unset)."""
    pairs = {(actor, key) for side in (before, after) for actor, t in side.items() for key in t}
    return sorted(
        f"{actor}.{key}"
        for actor, key in pairs
        if before.get(actor, {}).get(key) != after.get(actor, {}).get(key)
    )


def live_path(data_dir: Path, modules: Mapping[str, str]) -> Path | None:
    """Where the selfmod actor keeps HEAD's settings.toml (None when no selfmod is configured)."""
    for name, module in modules.items():
        if module == SELFMOD_MODULE:
            return data_dir / "actors" / name / "settings.toml"
    return None
