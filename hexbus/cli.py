"""The hexbus command line: the runtime's own commands, and the ones application packages register.

The runtime's: status, tail, restart, stop, killswitch, capability, reload, send, deadletter, keys.
Every other command (``run`` from the supervisor; ``chat``, ``persona``, ``memory``,
``voice`` from their actors) is an entry point in the ``hexbus.commands`` group: its
name is the command and its value a function that configures the command's
``argparse`` parser (its docstring's first line is the help) and sets ``fn``, as
pytest and Circus find their plugins. hexbus never imports an application package.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

import msgspec

from hexbus import notes
from hexbus.config import default_run_dir
from hexbus.control import ControlRequest, SupervisorUnreachable, call
from hexbus.endpoints import Endpoints

EXIT_USAGE = 2


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"hexbus: {message}", file=sys.stderr)
    raise SystemExit(code)


def run_dir_of(args: argparse.Namespace) -> Path:
    return Path(args.run_dir).expanduser().resolve() if args.run_dir else default_run_dir()


def endpoints_of(run_dir: Path) -> Endpoints:
    path = run_dir / "endpoints.json"
    try:
        return msgspec.json.decode(path.read_bytes(), type=Endpoints)
    except FileNotFoundError:
        fail(
            f"no Hex is running with run directory {run_dir}: start one with `hexbus run supervisor.toml`"
            " (or pass the --run-dir it uses)"
        )
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        fail(f"{path} is unreadable ({exc}): restart Hex with `hexbus run`")
    raise AssertionError("unreachable")


def control(args: argparse.Namespace, request: ControlRequest, timeout: float = 5.0) -> Any:
    run_dir = run_dir_of(args)
    endpoints = endpoints_of(run_dir)
    try:
        reply = call(endpoints.control, request, timeout=timeout)
    except SupervisorUnreachable as exc:
        fail(f"{exc}: is `hexbus run` still running with run directory {run_dir}?")
    if not reply.ok:
        fail(reply.error)
    return reply


# -- status -----------------------------------------------------------------------


def _size(n: int) -> str:
    return f"{n / (1 << 20):.0f}M" if n else "-"


def _age(s: float | None) -> str:
    return "-" if s is None else f"{s:.1f}s"


def _uptime(s: float) -> str:
    if not s:
        return "-"
    m, sec = divmod(int(s), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s" if m else f"{sec}s"


def cmd_status(args: argparse.Namespace) -> None:
    data = control(args, ControlRequest(cmd="status")).data
    said = notes.read(run_dir_of(args))
    for name, note in said.items():
        if name in data:
            data[name]["note"] = str(note.get("line", ""))
    if args.json:
        print(json.dumps(data, indent=None if not sys.stdout.isatty() else 2))
        return
    columns = [
        "ACTOR",
        "PID",
        "STATE",
        "UPTIME",
        "RESTARTS",
        "RSS",
        "HEARTBEAT",
        "IN",
        "OUT",
        "DROPPED",
        "WORK",
        "DETAIL",
    ]
    rows = [columns]
    for name, s in data.items():
        rows.append(
            [
                name,
                str(s["pid"] or "-"),
                s["state"],
                _uptime(s["uptime_s"]),
                str(s["restarts"]),
                _size(s["rss_bytes"]),
                _age(s["last_heartbeat_s"]),
                str(s["events_in"]),
                str(s["events_out"]),
                str(s["dropped"]),
                _age(s.get("work_s") or None),
                s.get("detail", ""),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for name, s in data.items():
        if s["state"] in ("failed", "backoff") and s["reason"]:
            print(f"{name}: {s['reason']}")
        if s.get("note"):
            print(f"{name}: {s['note']}")
        if s.get("retention_cut_to"):
            print(
                f"{name}: never saw durable events up to offset {s['retention_cut_to']}: the "
                "journal went over bus.journal.retention_cap_mb while it was behind"
            )


# -- tail -------------------------------------------------------------------------


def cmd_tail(args: argparse.Namespace) -> None:
    from hexbus import codec
    from hexbus.tail import tail

    endpoints = endpoints_of(run_dir_of(args))
    prefixes = args.prefixes or [""]
    try:
        asyncio.run(tail(endpoints, prefixes, as_json=args.json, count=args.count))
    except KeyboardInterrupt:
        pass
    del codec


# -- simple control verbs -----------------------------------------------------------


def cmd_restart(args: argparse.Namespace) -> None:
    reply = control(args, ControlRequest(cmd="restart", name=args.name))
    print(reply.message)
    if args.wait:
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline:
            time.sleep(0.1)
            status = control(args, ControlRequest(cmd="status")).data.get(args.name, {})
            if status.get("state") == "live" and status.get("uptime_s", 99) < args.wait + 1:
                print(f"{args.name} is live again (pid {status['pid']})")
                return
        fail(f"{args.name} did not come back live within {args.wait:g}s")


def cmd_killswitch(args: argparse.Namespace) -> None:
    reply = control(
        args,
        ControlRequest(cmd="killswitch", name="hexbus killswitch", keep=tuple(args.keep)),
        timeout=60,
    )
    print(f"{reply.message}; `hexbus restart NAME` brings one back")


def cmd_capability(args: argparse.Namespace) -> None:
    if args.action == "list":
        reply = control(args, ControlRequest(cmd="capability", person=args.person))
        rows = reply.data["capabilities"]
        if args.json:
            print(json.dumps(rows, indent=None if not sys.stdout.isatty() else 2))
            return
        width = max(len(r["name"]) for r in rows)
        whom = f" for {args.person}" if args.person else ""
        print(f"what Hex may do{whom} (`hexbus capability enable|disable NAME`):")
        for r in rows:
            mark = "on " if r["enabled"] else "off"
            # Against the default only where an owner set it: "speak_first.web" off because
            # speak_first is off is not a change from its own default.
            changed = r["set_by"] and r["enabled"] != r["default"]
            note = f" (default {'on' if r['default'] else 'off'})" if changed else ""
            people = ", ".join(f"{p} {'on' if v else 'off'}" for p, v in r["people"].items())
            extra = f"; {people}" if people and not args.person else ""
            print(f"  {mark}  {r['name']:<{width}}  {r['description']}{note}{extra}")
        return
    request = ControlRequest(
        cmd="capability",
        capability=args.name,
        enabled=args.action == "enable",
        person=args.person,
        by="hexbus capability",
        via="cli",
        owner=True,  # a terminal on this machine, with the run directory: the owner's
    )
    print(control(args, request).message)


def cmd_stop(args: argparse.Namespace) -> None:
    run_dir = run_dir_of(args)
    reply = control(args, ControlRequest(cmd="stop"))
    print(reply.message)
    lock = run_dir / "supervisor.lock"
    deadline = time.monotonic() + args.timeout
    import fcntl

    while time.monotonic() < deadline:
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            time.sleep(0.1)
            continue
        finally:
            os.close(fd)
        print("stopped")
        return
    fail(f"the supervisor is still stopping after {args.timeout:g}s")


def cmd_reload(args: argparse.Namespace) -> None:
    reply = control(args, ControlRequest(cmd="reload"), timeout=60)
    print(reply.message)


def cmd_send(args: argparse.Namespace) -> None:
    from hexbus.send import SendError, send

    endpoints = endpoints_of(run_dir_of(args))
    try:
        line = asyncio.run(send(endpoints, args.topic, args.json, timeout=args.timeout))
    except SendError as exc:
        fail(str(exc), EXIT_USAGE if exc.usage else 1)
    print(line)


def cmd_deadletter(args: argparse.Namespace) -> None:
    from hexbus.deadletter import (
        LetterError,
        drop,
        find_letter,
        open_letters,
        read_letters,
        redrive,
    )

    endpoints = endpoints_of(run_dir_of(args))
    try:
        letters = asyncio.run(read_letters(endpoints))
    except LetterError as exc:
        fail(str(exc))
    dead = open_letters(letters)
    if args.action == "list":
        shown = [
            (letter, blob)
            for letter, blob in dead.values()
            if not args.actor or letter.actor == args.actor
        ]
        if args.json:
            rows = [
                {
                    **{k: v for k, v in msgspec.to_builtins(letter).items() if k != "envelope"},
                    "blob_bytes": len(blob or b""),
                }
                for letter, blob in shown
            ]
            print(json.dumps(rows, indent=None if not sys.stdout.isatty() else 2))
            return
        for letter, _ in shown:
            print(
                f"{letter.actor}/{letter.event_id}  {letter.topic}  offset {letter.offset}  "
                f"{letter.cause} x{letter.attempts}  {letter.error}"
            )
        if not shown:
            print("no dead letters")
        return
    try:
        letter, blob = find_letter(dead, args.id)
        if args.action == "drop":
            asyncio.run(drop(endpoints, letter))
            print(f"dropped {letter.event_id} ({letter.actor}, {letter.topic})")
            return
        report = asyncio.run(redrive(endpoints, letter, blob, timeout=args.timeout))
    except LetterError as exc:
        fail(str(exc))
    if report.status == "retried":
        print(f"retried {letter.event_id}: {letter.actor} applied it")
    else:
        fail(f"{letter.actor} failed on {letter.event_id} again: {report.error}")


def cmd_keys(args: argparse.Namespace) -> None:
    from hexbus.keys import KeysError, add_host, create_keys, revoke_host

    words = list(args.words)
    action = words.pop(0) if words and words[0] in ("add-host", "revoke-host") else "init"
    if action != "init":
        if not words:
            fail(f"hexbus keys {action} NAME [DIR]: name the host")
        name = words.pop(0)
    if len(words) > 1:
        fail(f"hexbus keys: one folder at most, got {words}")
    directory = Path(words[0] if words else DEFAULT_KEYS).expanduser()
    try:
        if action == "init":
            broker, host = create_keys(directory)
            print(
                f"broker public key: {broker}\nthis host's key (admitted as local): {host}\n"
                f'set bus.curve_dir = "{directory.resolve()}" in supervisor.toml; for another '
                f"host: hexbus keys add-host NAME {directory}"
            )
        elif action == "add-host":
            export = add_host(directory, name)
            print(
                f"admitted {name}: copy {export} to that host and set its bus.curve_dir to it "
                "(it holds that host's secret key: move it, do not leave copies)"
            )
        else:
            gone = revoke_host(directory, name)
            print(
                f"revoked {name} (its key is in {gone}): a running broker drops its "
                "connections within a heartbeat"
            )
    except KeysError as exc:
        fail(str(exc))


DEFAULT_KEYS = "~/.config/hexbus/keys"


COMMANDS = "hexbus.commands"


def add_registered_commands(
    command: Callable[[str, str], argparse.ArgumentParser],
) -> None:
    """Add every command an installed package registers in the ``hexbus.commands`` group."""
    for entry in sorted(metadata.entry_points(group=COMMANDS), key=lambda e: e.name):
        try:
            configure = entry.load()
        except Exception as exc:  # a broken or half-installed package must not take the CLI down
            reason = f"{type(exc).__name__}: {exc}"
            p = command(entry.name, f"(unavailable: {reason})")
            p.set_defaults(
                fn=lambda _args, name=entry.name, reason=reason, value=entry.value: fail(
                    f"the {name!r} command ({value}) cannot load: {reason}; reinstall Hex"
                )
            )
            continue
        doc = (configure.__doc__ or "").strip()
        configure(command(entry.name, doc.splitlines()[0] if doc else entry.name))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hexbus", description="Hex's actor runtime: run and inspect it."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument(
            "--run-dir",
            help="sockets and pid lock (default: $XDG_RUNTIME_DIR/hexbus or /tmp/hexbus-UID)",
        )
        return p

    add_registered_commands(command)

    p = command(
        "status", "a table of actors: pid, state, uptime, restarts, memory, heartbeat, events"
    )
    p.add_argument("--json", action="store_true", help="one JSON object keyed by actor name")
    p.set_defaults(fn=cmd_status)

    p = command("tail", "print every event on the bus, one line each (filter by topic prefixes)")
    p.add_argument("prefixes", nargs="*", metavar="PREFIX")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--count", type=int, default=0, help="exit after this many events")
    p.set_defaults(fn=cmd_tail)

    p = command("restart", "hot-restart one actor (or the broker); its state survives")
    p.add_argument("name")
    p.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS", help="wait until it is live again"
    )
    p.set_defaults(fn=cmd_restart)

    p = command("stop", "stop every actor, then the broker and the supervisor")
    p.add_argument("--timeout", type=float, default=60.0)
    p.set_defaults(fn=cmd_stop)

    p = command(
        "killswitch",
        "stop every actor but the broker (and --keep NAME ...) until restarted by hand",
    )
    p.add_argument("--keep", nargs="*", default=[], metavar="NAME", help="actors left running")
    p.set_defaults(fn=cmd_killswitch)

    p = command("capability", "what Hex may do: list the owner's switches, or switch one")
    switches = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = switches.add_parser("list", help="every capability, on or off, with what it does")
    a.add_argument("--json", action="store_true", help="one JSON array of capabilities")
    a.add_argument("--person", default="", help="as it stands for this person (their id)")
    a.add_argument("--run-dir", default=argparse.SUPPRESS, help="as for every command")
    for verb in ("enable", "disable"):
        a = switches.add_parser(verb, help=f"{verb} a capability, for everyone or one person")
        a.add_argument("name", help="as `hexbus capability list` names it (camera, speak_first...)")
        a.add_argument("--person", default="", help="only for this person (their id)")
        a.add_argument("--run-dir", default=argparse.SUPPRESS, help="as for every command")
    p.set_defaults(fn=cmd_capability)

    p = command(
        "reload", "apply supervisor.toml changes: start added actors, stop removed, restart changed"
    )
    p.set_defaults(fn=cmd_reload)

    p = command("send", "publish one event, validated against its schema")
    p.add_argument(
        "topic", help="the event's tag, optionally with a routing key, e.g. chat.message.console"
    )
    p.add_argument("json", help="the event's fields as a JSON object")
    p.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for the broker's ack"
    )
    p.set_defaults(fn=cmd_send)

    p = command("deadletter", "events an actor could not apply: list them, retry or drop one")
    letters = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = letters.add_parser("list", help="the dead letters not yet retried or dropped")
    a.add_argument("--actor", default="", help="only this actor's")
    a.add_argument("--json", action="store_true", help="one JSON array of letters")
    a.add_argument("--run-dir", default=argparse.SUPPRESS, help="as for every command")
    a = letters.add_parser("retry", help="apply a dead letter again, once its fault is fixed")
    a.add_argument("id", help="ACTOR/EVENT_ID as `list` shows it (the event id alone if unique)")
    a.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the actor")
    a.add_argument("--run-dir", default=argparse.SUPPRESS, help="as for every command")
    a = letters.add_parser("drop", help="give a dead letter up for good")
    a.add_argument("id", help="ACTOR/EVENT_ID as `list` shows it (the event id alone if unique)")
    a.add_argument("--run-dir", default=argparse.SUPPRESS, help="as for every command")
    p.set_defaults(fn=cmd_deadletter)

    p = sub.add_parser(
        "keys",
        help="CURVE keys for a tcp bus: `keys [DIR]` makes the broker's and this host's, "
        "`keys add-host NAME [DIR]` admits another host, `keys revoke-host NAME [DIR]` stops",
    )
    p.add_argument("words", nargs="*", metavar="[add-host|revoke-host NAME] [DIR]")
    p.set_defaults(fn=cmd_keys)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0) from None


if __name__ == "__main__":
    main()
