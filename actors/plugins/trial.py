"""A proposed plugin's tests, run by selfmod in its sandbox:
``python -I -m actors.plugins.trial --plugin FILE --out REPORT``.

The plugin is checked and loaded as the host would load it, then fed every conversation of the
persona audit (110 people's messages, crises and hard limits among them) as the events it
hears: each message, a reply to it, and a moment. The report (JSON) says whether it loaded
(``invalid`` with the reason when not), how many events raised (with the first errors), the
notes it wrote, the slowest event, and whether its data stayed within bounds.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from actors.plugins.runner import call, load

SCENARIOS = Path(__file__).resolve().parents[1] / "brain" / "audit_scenarios.toml"
EVENT_S = 1  # the host's own limit for one event


class _Slow(BaseException):  # past the plugin's own `except Exception`
    pass


def events(path: Path = SCENARIOS) -> list[tuple[str, dict[str, Any]]]:
    """What the plugin hears, built from the audit's conversations."""
    scenarios = tomllib.loads(path.read_text(encoding="utf-8")).get("scenario", [])
    scenarios = [s for s in scenarios if not s.get("initiative")]  # people's words only
    made: list[tuple[str, dict[str, Any]]] = []
    for i, s in enumerate(scenarios):
        person = {"person": f"person{i % 7}", "name": f"Person {i % 7}", "channel": "trial"}
        made.append(("chat.message", {**person, "text": s["prompt"], "platform": "console"}))
        made.append(("chat.reply", {**person, "text": "I'm here. Tell me more."}))
        if i % 10 == 0:
            made.append(("vision.moment", {"text": "they came back after two hours"}))
    return made


def trial(plugin: Path) -> dict[str, Any]:
    try:
        react, topics = load(plugin.read_text(encoding="utf-8"), plugin.stem)
    except Exception as exc:
        return {"plugin": plugin.stem, "invalid": str(exc)[:500]}

    def slow(*_: object) -> None:
        raise _Slow

    signal.signal(signal.SIGALRM, slow)
    data: dict[str, Any] = {}
    heard = errors = notes = 0
    first: list[str] = []
    slowest = 0.0
    for topic, event in events():
        if topic not in topics:
            continue
        heard += 1
        started = time.perf_counter()
        signal.alarm(EVENT_S)
        try:
            answer = call(react, event, data)
        except _Slow:
            answer = {"ok": False, "error": f"took over {EVENT_S} s"}
        finally:
            signal.alarm(0)
        slowest = max(slowest, time.perf_counter() - started)
        if answer["ok"]:
            data, notes = answer["data"], notes + len(answer["notes"])
        else:
            errors += 1
            if len(first) < 5:
                first.append(f"{topic}: {answer['error']}")
    return {
        "plugin": plugin.stem,
        "topics": list(topics),
        "events": heard,
        "errors": errors,
        "first_errors": first,
        "notes": notes,
        "slowest_ms": round(slowest * 1000, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m actors.plugins.trial")
    p.add_argument("--plugin", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)
    sys.stdout = sys.stderr  # what the plugin prints is the log's
    report = trial(args.plugin)
    args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
