"""The capability switches: whether Hex may do something, for everyone or for one person.

Rules (the supervisor applies them; every actor reads the same table):

- A capability is on for a person when every level of its dotted name is (``speak_first`` and
  ``speak_first.discord``). A level's value is the person's own setting if there is one, else
  the setting for everyone, else the catalogue's default.
- An owner switches anything, for everyone or for one person.
- A person may always turn *off* what concerns them ("don't message me first"), and turn it
  back on, which removes their own "off": it then follows the owner's switch for everyone
  (an owner's "on" for them alone, replaced by their "off", is not restored). They can never
  turn on, for themselves, what the owner has off, for everyone or for them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from hexbus.files import write_atomic
from schemas.capability import CAPABILITIES, Capability, CapabilityChanged, Switch

ENV = "HEX_CAPABILITIES"  # the table the supervisor hands an actor at spawn (JSON)
FILE = "capabilities.json"
CATALOGUE: dict[str, Capability] = {c.name: c for c in CAPABILITIES}


class SwitchRefused(Exception):
    """A switch that cannot be set: one line saying why, and what would work."""


def levels(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


class Capabilities:
    def __init__(self, switches: Iterable[Switch] = (), version: int = 0) -> None:
        self.switches: dict[tuple[str, str], Switch] = {(s.name, s.person_id): s for s in switches}
        self.version = version

    # -- reading -----------------------------------------------------------------------------

    def allowed(self, name: str, person_id: str = "") -> bool:
        """Whether ``name`` is on (for ``person_id``; "" asks about everyone)."""
        if name not in CATALOGUE:
            raise KeyError(f"unknown capability {name!r}")
        return all(self._level(level, person_id) for level in levels(name) if level in CATALOGUE)

    def allowed_for_all(self, name: str) -> bool:
        """On for everyone, and nobody has switched it off for themselves: for what cannot tell
        people apart (a camera looks at whoever sits at the desk)."""
        vetoed = any(
            not s.enabled and s.person_id and s.name in levels(name) for s in self.switches.values()
        )
        return self.allowed(name) and not vetoed

    def _level(self, name: str, person_id: str) -> bool:
        own = self.switches.get((name, person_id)) if person_id else None
        if own is not None:
            return own.enabled
        everyone = self.switches.get((name, ""))
        return everyone.enabled if everyone is not None else CATALOGUE[name].default

    def table(self, person_id: str = "") -> list[dict[str, Any]]:
        """Every capability, as ``hexbus capability list --json`` prints it."""
        rows = []
        for c in CAPABILITIES:
            everyone = self.switches.get((c.name, ""))
            rows.append(
                {
                    "name": c.name,
                    "enabled": self.allowed(c.name, person_id),
                    "default": c.default,
                    "description": c.description,
                    "set_by": everyone.by if everyone else "",
                    "people": {
                        pid: s.enabled
                        for (name, pid), s in sorted(self.switches.items())
                        if name == c.name and pid
                    },
                }
            )
        return rows

    # -- changing ----------------------------------------------------------------------------

    def set(
        self,
        name: str,
        enabled: bool,
        *,
        by: str,
        owner: bool,
        person_id: str = "",
        now: float | None = None,
    ) -> str:
        """Apply one switch; returns what happened in a line, or raises :class:`SwitchRefused`."""
        if name not in CATALOGUE:
            known = ", ".join(CATALOGUE)
            raise SwitchRefused(f"no capability {name!r}: the capabilities are {known}")
        if not owner:
            if not person_id:
                raise SwitchRefused(f"only an owner may switch {name} for everyone")
            if person_id != by:
                raise SwitchRefused(f"only an owner may switch {name} for someone else")
        at = time.time() if now is None else now
        key = (name, person_id)
        if not owner and enabled:  # their own "on": take back their "off"
            mine = self.switches.get(key)
            if mine is not None and mine.owner and mine.enabled:
                return f"{name} is on for {person_id} (an owner switched it on)"
            if mine is not None and mine.owner:
                raise SwitchRefused(
                    f"an owner switched {name} off for {person_id}: only an owner can turn it on"
                )
            if mine is not None:
                del self.switches[key]
                self.version += 1
            state = "on" if self.allowed(name, person_id) else "off (her owner has it off)"
            return f"{name} for {person_id} follows the owner's switch again: {state}"
        mine = self.switches.get(key)
        if not owner and mine is not None and mine.owner and not mine.enabled:
            return f"{name} is off for {person_id} already (an owner switched it off)"
        self.switches[key] = Switch(
            name=name, enabled=enabled, person_id=person_id, by=by, owner=owner, at=at
        )
        self.version += 1
        whom = f"for {person_id}" if person_id else "for everyone"
        line = f"{name} is {'on' if enabled else 'off'} {whom}"
        parent = [
            lv for lv in levels(name)[:-1] if lv in CATALOGUE and not self._level(lv, person_id)
        ]
        if enabled and parent:
            line += f" (but {parent[0]} is off, so it does nothing until that is on)"
        return line

    def apply(self, event: CapabilityChanged) -> bool:
        """Take a newer table from the bus; whether it was newer."""
        if event.version <= self.version:
            return False
        self.switches = {(s.name, s.person_id): s for s in event.switches}
        self.version = event.version
        return True

    def changed(
        self, *, name: str, person_id: str, enabled: bool, by: str, via: str
    ) -> CapabilityChanged:
        return CapabilityChanged(
            version=self.version,
            switches=tuple(self.switches[k] for k in sorted(self.switches)),
            name=name,
            person_id=person_id,
            enabled=enabled,
            by=by,
            via=via,
        )

    # -- keeping -----------------------------------------------------------------------------

    def to_json(self) -> bytes:
        return msgspec.json.encode(
            {"version": self.version, "switches": [self.switches[k] for k in sorted(self.switches)]}
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> Capabilities:
        raw = msgspec.json.decode(data, type=_Saved)
        known = [s for s in raw.switches if s.name in CATALOGUE]  # a retired name is dropped
        return cls(known, raw.version)

    @classmethod
    def load(cls, folder: Path) -> Capabilities:
        """The switches saved in ``folder`` (none yet: the defaults). A damaged file is an
        error naming it: switches are never silently reset to defaults."""
        path = folder / FILE
        try:
            return cls.from_json(path.read_bytes())
        except FileNotFoundError:
            return cls()
        except (msgspec.DecodeError, msgspec.ValidationError, json.JSONDecodeError) as exc:
            raise SwitchRefused(
                f"{path} is damaged ({exc}): fix it, or move it away to start from the defaults"
            ) from None

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / FILE, self.to_json())

    @classmethod
    def from_env(cls) -> Capabilities:
        """The table the supervisor gave this process (the defaults outside a supervisor)."""
        data = os.environ.get(ENV)
        return cls.from_json(data) if data else cls()


class _Saved(msgspec.Struct, kw_only=True):
    version: int = 0
    switches: list[Switch] = []
