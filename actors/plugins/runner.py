"""One plugin, running: ``python -I -m actors.plugins.runner FILE`` in the sandbox.

The host writes one JSON line per event (``{"topic", "event", "data"}``) to its stdin and reads
one JSON line back (``{"ok", "notes", "data"}`` or ``{"ok": false, "error"}``); the first line
it writes says whether the plugin loaded (``{"ready": true, "topics": [...]}``). The plugin's
module is checked again (:mod:`actors.plugins.check`), then run with safe builtins only and an
import that hands it allowed modules without their private or module attributes. Its
``print`` goes to the log, never to the host's channel.
"""

from __future__ import annotations

import json
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actors.plugins.check import MODULES, PluginRefused, check

MAX_NOTES = 3  # per event
NOTE_CHARS = 200
ERROR_CHARS = 300
DATA_BYTES = 16_000  # what a plugin keeps between events, as JSON

_SAFE = [
    "abs",
    "all",
    "any",
    "bool",
    "chr",
    "dict",
    "divmod",
    "enumerate",
    "filter",
    "float",
    "format",
    "frozenset",
    "hash",
    "int",
    "isinstance",
    "issubclass",
    "iter",
    "len",
    "list",
    "map",
    "max",
    "min",
    "next",
    "ord",
    "pow",
    "print",
    "range",
    "repr",
    "reversed",
    "round",
    "set",
    "slice",
    "sorted",
    "str",
    "sum",
    "tuple",
    "zip",
    "ArithmeticError",
    "AttributeError",
    "Exception",
    "IndexError",
    "KeyError",
    "LookupError",
    "RuntimeError",
    "StopIteration",
    "TypeError",
    "ValueError",
    "ZeroDivisionError",
]


def _module(name: str) -> types.SimpleNamespace:
    """An allowed module as a plugin sees it: its public names that are not modules."""
    module = __import__(name)
    return types.SimpleNamespace(
        **{
            k: v
            for k, v in vars(module).items()
            if not k.startswith("_") and not isinstance(v, types.ModuleType)
        }
    )


def _import(
    name: str,
    globals: object = None,
    locals: object = None,
    fromlist: tuple[str, ...] = (),
    level: int = 0,
) -> types.SimpleNamespace:
    if level or name not in MODULES:
        raise ImportError(f"a plugin may not import {name}")
    return _module(name)


def _builtins() -> dict[str, Any]:
    import builtins

    safe: dict[str, Any] = {k: getattr(builtins, k) for k in _SAFE}
    safe["__import__"] = _import
    safe["__build_class__"] = builtins.__build_class__
    safe["print"] = lambda *args, **_: sys.stderr.write(" ".join(map(str, args))[:500] + "\n")
    return safe


class Api:
    """What a plugin is handed as ``hex``: notes for the brain's next reply, the time, and a
    dict of its own that is kept between events (and restarts)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.notes: list[str] = []

    def note(self, text: object) -> None:
        """A line for the brain's next reply to this person (at most 3 an event, 200 chars)."""
        if len(self.notes) < MAX_NOTES:
            self.notes.append(str(text)[:NOTE_CHARS])

    def now(self) -> float:
        return time.time()


React = Callable[[dict[str, Any], Api], object]


def load(source: str, name: str) -> tuple[React, tuple[str, ...]]:
    """Check and run the plugin's module; its ``react`` and ``TOPICS``."""
    topics = check(source, name).topics
    namespace: dict[str, Any] = {"__builtins__": _builtins(), "__name__": f"plugin_{name}"}
    exec(compile(source, f"plugins/{name}.py", "exec"), namespace)
    react = namespace.get("react")
    if not callable(react):
        raise PluginRefused(f"{name}: react is not a function")
    return react, topics


def call(react: React, event: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """One event through the plugin: its notes and its data, or the error it raised."""
    api = Api(data)
    try:
        react(event, api)
        kept = json.dumps(api.data)
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]}
    if len(kept) > DATA_BYTES:
        return {"ok": False, "error": f"its data is over {DATA_BYTES} bytes as JSON"}
    notes = [str(n)[:NOTE_CHARS] for n in api.notes[:MAX_NOTES]]
    return {"ok": True, "notes": notes, "data": json.loads(kept)}


def main(argv: list[str] | None = None) -> int:
    path = Path((argv or sys.argv[1:])[0])
    channel = sys.stdout
    sys.stdout = sys.stderr  # anything printed goes to the log
    try:
        react, topics = load(path.read_text(encoding="utf-8"), path.stem)
    except Exception as exc:  # refused, or raised while its module ran
        channel.write(json.dumps({"ready": False, "error": f"{exc}"[:500]}) + "\n")
        channel.flush()
        return 1
    channel.write(json.dumps({"ready": True, "topics": list(topics)}) + "\n")
    channel.flush()
    for line in sys.stdin:
        try:
            asked = json.loads(line)
            answer = call(react, asked["event"], dict(asked.get("data") or {}))
        except (ValueError, KeyError, TypeError) as exc:
            answer = {"ok": False, "error": f"a malformed request: {exc}"}
        channel.write(json.dumps(answer) + "\n")
        channel.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
