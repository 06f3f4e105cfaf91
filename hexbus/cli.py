"""The hexbus command line: run, status, tail, restart, stop, reload, send, keys, chat, persona."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import msgspec

from hexbus.config import ConfigError, default_run_dir, load
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


# -- run ------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> None:
    from actors.supervisor.supervisor import AlreadyRunning, Supervisor
    from hexbus.log import configure

    config_path = Path(args.config).expanduser().resolve()
    try:
        config = load(config_path)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    run_dir = Path(args.run_dir or config.supervisor.run_dir or default_run_dir()).expanduser()
    data_dir = Path(args.data_dir or config.supervisor.data_dir).expanduser()
    if not data_dir.is_absolute():
        data_dir = (config_path.parent if not args.data_dir else Path.cwd()) / data_dir
    level = args.log_level or config.supervisor.log_level
    configure("supervisor", level)
    try:
        supervisor = Supervisor(config, config_path, run_dir.resolve(), data_dir.resolve(), level)
    except (ConfigError, AlreadyRunning) as exc:
        fail(str(exc), EXIT_USAGE)
    (supervisor.run_dir / "endpoints.json").write_bytes(msgspec.json.encode(supervisor.endpoints))
    try:
        import uvloop

        code = uvloop.run(supervisor.run())
    except ImportError:
        code = asyncio.run(supervisor.run())
    raise SystemExit(code)


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
                s.get("detail", ""),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for name, s in data.items():
        if s["state"] in ("failed", "backoff") and s["reason"]:
            print(f"{name}: {s['reason']}")


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


def cmd_chat(args: argparse.Namespace) -> None:
    from hexbus.chat import ChatError, chat

    endpoints = endpoints_of(run_dir_of(args))
    try:
        asyncio.run(
            chat(
                endpoints,
                person_id=args.person,
                name=args.name or args.person,
                channel=args.channel,
                timeout=args.timeout,
            )
        )
    except ChatError as exc:
        fail(str(exc))


def cmd_voice(args: argparse.Namespace) -> None:
    from hexbus.voice import VoiceError, check_mic, read_wav, run_file, run_mic

    if bool(args.input_wav) == bool(args.mic):
        fail("give either --input-wav FILE or --mic", EXIT_USAGE)
    try:  # the file or the devices first: their problem is the one to report
        check_mic() if args.mic else read_wav(Path(args.input_wav))
    except VoiceError as exc:
        fail(str(exc))
    endpoints = endpoints_of(run_dir_of(args))
    common = dict(person_id=args.person, name=args.name or args.person, channel=args.channel)
    try:
        if args.mic:
            asyncio.run(run_mic(endpoints, echo_guard_ms=args.echo_guard_ms, **common))
        else:
            output = Path(args.output_wav) if args.output_wav else None
            asyncio.run(
                run_file(
                    endpoints,
                    Path(args.input_wav),
                    output=output,
                    fast=args.fast,
                    timeout=args.timeout,
                    **common,
                )
            )
    except VoiceError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass


def cmd_persona(args: argparse.Namespace) -> None:
    if args.action == "rollback":
        from hexbus.send import SendError, send

        endpoints = endpoints_of(run_dir_of(args))
        try:
            line = asyncio.run(
                send(endpoints, "brain.persona.rollback", json.dumps({"version": args.version}))
            )
        except SendError as exc:
            fail(str(exc))
        print(f"asked the brain to roll the persona back to version {args.version} ({line})")
        return
    from actors.brain.audit import AuditError, run_audit
    from hexbus.log import configure

    configure("audit", "warning")  # stdout carries the summary JSON only

    try:
        report_path, summary = run_audit(Path(args.config), limit=args.limit, compare=args.compare)
    except AuditError as exc:
        fail(str(exc))
    print(json.dumps(summary, indent=2))
    print(f"report saved to {report_path}", file=sys.stderr)


def cmd_memory(args: argparse.Namespace) -> None:
    from hexbus.ask import AskError, ask, change
    from schemas import (
        MemoryAdd,
        MemoryChanged,
        MemoryDocument,
        MemoryEdit,
        MemoryExport,
        MemoryExported,
        MemoryForget,
        MemoryQuery,
        MemoryResult,
        MemoryReview,
        MemoryReviewed,
    )

    endpoints = endpoints_of(run_dir_of(args))
    who = "the memory actor"
    tags = tuple(t.strip() for t in (getattr(args, "tags", "") or "").split(",") if t.strip())
    try:
        if args.action == "search":
            result, _ = asyncio.run(
                ask(
                    endpoints,
                    MemoryQuery(
                        text=args.query,
                        person_id=args.person,
                        k=args.k,
                        include_archived=args.archived,
                    ),
                    MemoryResult,
                    who=who,
                )
            )
            if result.error:
                fail(f"the memory actor could not search: {result.error}")
            if args.json:
                print(json.dumps([msgspec.to_builtins(h) for h in result.hits], indent=2))
            for hit in [] if args.json else result.hits:
                hedge = " (unsure)" if hit.hedge else ""
                print(f"{hit.score:6.3f}  {hit.id}  [{hit.kind}] {hit.text}{hedge}")
            return
        if args.action == "export":
            exported, blob = asyncio.run(
                ask(endpoints, MemoryExport(), MemoryExported, who=who, timeout=30)
            )
            out = sys.stdout.buffer if args.out in ("", "-") else open(args.out, "wb")  # noqa: SIM115
            with out:
                out.write(blob or b"")
            if args.out not in ("", "-"):
                print(f"exported {exported.count} memories to {args.out}")
            return
        if args.action == "import":
            memory_import(endpoints, args)
            return
        if args.action == "review":
            reviewed, _ = asyncio.run(
                ask(endpoints, MemoryReview(limit=args.limit), MemoryReviewed, who=who)
            )
            if args.json:
                print(json.dumps(msgspec.to_builtins(reviewed), indent=2))
                return
            for hit in reviewed.pending:
                quote = f' (from "{hit.quote}")' if hit.quote else ""
                print(f"pending     {hit.id}  {hit.text}{quote}")
            for c in reviewed.contradictions:
                print(f"superseded  {c.older_id} {c.older_text!r} -> {c.newer_id} {c.newer_text!r}")
            if not reviewed.pending and not reviewed.contradictions:
                print("nothing to review")
            return
        request: Any
        blob = None
        if args.action == "upload":
            path = Path(args.file)
            try:
                data = path.read_bytes()
            except OSError as exc:
                fail(f"cannot read {path}: {exc.strerror or exc}")
            limit = endpoints.max_blob_mb << 20
            if len(data) > limit:
                fail(
                    f"{path.name} is {len(data) / 2**20:.1f} MiB; the bus carries at most {limit / 2**20:.0f} MiB "
                    "per event (bus.max_blob_mb in supervisor.toml)"
                )
            blob = data
            request = MemoryDocument(
                name=path.name,
                person_id=args.person,
                tags=tags,
                by=args.by,
                sha256=hashlib.sha256(data).hexdigest(),
            )
        elif args.action == "add":
            request = MemoryAdd(
                text=args.text,
                kind=args.kind,
                person_id=args.person,
                importance=args.importance,
                tags=tags,
                by=args.by,
            )
        elif args.action == "edit":
            request = MemoryEdit(
                id=args.id,
                text=args.text,
                importance=args.importance,
                tags=tags or None,
                approve=True if args.approve else False if args.reject else None,
                by=args.by,
            )
        else:
            request = MemoryForget(
                ids=tuple(args.ids), query=args.query, person_id=args.person, by=args.by
            )
        report = asyncio.run(
            change(
                endpoints, request, MemoryChanged, who=who, blob=blob, timeout=300 if blob else 30
            )
        )
    except AskError as exc:
        fail(str(exc))
    if report.action == "refused":
        fail(f"refused: {report.detail}")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items()))
    print(
        f"{report.action}: {' '.join(report.ids) or '-'}{f' ({counts})' if counts else ''}"
        f"{f' {report.detail}' if report.detail else ''}"
    )


def memory_import(endpoints: Any, args: argparse.Namespace) -> None:
    """``hexbus memory import FILE``: every good line sent in batches; bad lines reported by number."""
    from actors.memory.importer import HistoryError, batches, read_history
    from hexbus.ask import changes
    from schemas import MemoryChanged

    path = Path(args.file)
    try:
        turns, problems = read_history(path, tuple(args.assistant))
    except HistoryError as exc:
        fail(str(exc))
    for problem in problems:
        print(f"{path.name}: {problem} (skipped)", file=sys.stderr)
    totals: dict[str, int] = {}

    async def send() -> None:
        requests = [(event, None) for event in batches(turns, path.name, args.by)]
        async for report in changes(
            endpoints, requests, MemoryChanged, who="the memory actor", timeout=120
        ):
            if report.action == "refused":
                fail(f"refused: {report.detail}")
            for key, value in report.counts.items():
                totals[key] = totals.get(key, 0) + value

    asyncio.run(send())
    print(
        f"imported {totals.get('turns', 0)} turns from {path.name} ({totals.get('already_known', 0)} already "
        f"known, {totals.get('indexed', 0)} indexed for search, {len(problems)} bad lines skipped)"
    )


def cmd_deadletter(args: argparse.Namespace) -> None:
    from hexbus.deadletter import LetterError, drop, open_letters, read_letters, redrive

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
                f"{letter.event_id}  {letter.actor}  {letter.topic}  offset {letter.offset}  "
                f"{letter.cause} x{letter.attempts}  {letter.error}"
            )
        if not shown:
            print("no dead letters")
        return
    found = dead.get(args.id)
    if found is None:
        fail(f"no dead letter {args.id!r}: `hexbus deadletter list` shows them")
    letter, blob = found
    try:
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
    from hexbus.endpoints import create_keys

    directory = Path(args.dir).expanduser()
    server, client = create_keys(directory)
    print(
        f"server public key: {server}\nclient public key: {client}\n"
        f'set bus.curve_dir = "{directory.resolve()}" in supervisor.toml; copy the folder to every host'
    )


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

    p = command("run", "start the broker and every enabled actor in the foreground")
    p.add_argument("config", nargs="?", default="supervisor.toml")
    p.add_argument(
        "--data-dir", help="journal and snapshots (default: supervisor.data_dir beside the config)"
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.set_defaults(fn=cmd_run)

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

    p = command("chat", "talk to Hex from this terminal; with a pipe, one message per line")
    p.add_argument("--person", default=os.environ.get("USER") or "console", help="your person id")
    p.add_argument("--name", default="", help="your display name (default: the person id)")
    p.add_argument("--channel", default="console", help="the conversation (default: console)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for each reply")
    p.set_defaults(fn=cmd_chat)

    p = command("persona", "persona versions and the consistency audit")
    persona = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = persona.add_parser("rollback", help="make persona version N the active one")
    r.add_argument("version", type=int)
    r.add_argument("--run-dir", default=argparse.SUPPRESS, help="as for every command")
    a = persona.add_parser(
        "audit", help="run the scenario set through the configured backend and report"
    )
    a.add_argument(
        "--config", default="supervisor.toml", help="the supervisor.toml whose brain is audited"
    )
    a.add_argument("--limit", type=int, default=0, help="run only the first N scenarios")
    a.add_argument("--compare", default="", help="a previous report to compare with (drift)")
    a.add_argument("--run-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(fn=cmd_persona)

    p = command(
        "voice", "talk to Hex by voice: a WAV recording or the microphone in, Hex's voice out"
    )
    p.add_argument("--input-wav", default="", help="a recording to stream as if spoken now")
    p.add_argument(
        "--output-wav",
        default="",
        help="where Hex's replies go: a .wav file, or a folder (numbered)",
    )
    p.add_argument(
        "--fast", action="store_true", help="stream the recording ten times faster than real time"
    )
    p.add_argument(
        "--mic", action="store_true", help="capture the microphone and play replies (sounddevice)"
    )
    p.add_argument(
        "--echo-guard-ms",
        type=int,
        default=300,
        help="the mic stays gated this long after Hex speaks",
    )
    p.add_argument("--person", default="local", help="your person id")
    p.add_argument("--name", default="", help="your display name")
    p.add_argument("--channel", default="voice-local")
    p.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for the last reply"
    )
    p.set_defaults(fn=cmd_voice)

    p = command("memory", "add, search, edit, forget, import, upload and export memories")
    memory = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        a = memory.add_parser(name, help=help, description=help)
        a.add_argument("--run-dir", default=argparse.SUPPRESS, help="as for every command")
        return a

    a = action("add", "remember something (a manual memory)")
    a.add_argument("text")
    a.add_argument("--person", default="", help="who it is about")
    a.add_argument("--kind", default="fact", choices=["fact", "anchor", "summary", "journal"])
    a.add_argument("--importance", type=float, default=0.5)
    a.add_argument("--tags", default="", help="comma-separated")
    a.add_argument("--by", default=os.environ.get("USER", ""), help="your person id")
    a = action("search", "ranked memories for a text")
    a.add_argument("query")
    a.add_argument("--person", default="")
    a.add_argument("-k", type=int, default=10)
    a.add_argument("--archived", action="store_true", help="include archived memories")
    a.add_argument(
        "--json", action="store_true", help="the hits as JSON: id, text, score, kind, provenance"
    )
    a = action("edit", "change a memory; approve or reject a suggestion")
    a.add_argument("id")
    a.add_argument("--text", default="")
    a.add_argument("--importance", type=float, default=-1.0)
    a.add_argument("--tags", default="")
    a.add_argument("--approve", action="store_true")
    a.add_argument("--reject", action="store_true")
    a.add_argument("--by", default=os.environ.get("USER", ""))
    a = action(
        "forget", "forget memories by id, by query, or everything about a person (owners only)"
    )
    a.add_argument("ids", nargs="*")
    a.add_argument("--query", default="")
    a.add_argument("--person", default="", help="forget everything about this person")
    a.add_argument(
        "--by", default=os.environ.get("USER", ""), help="your person id (checked against owners)"
    )
    a = action(
        "import",
        "bring in past turns from a JSON Lines file (id, conversation, speaker, text, timestamp)",
    )
    a.add_argument("file")
    a.add_argument(
        "--assistant",
        action="append",
        default=["Hex"],
        help="a speaker name that is the bot, not a person (repeatable; default Hex)",
    )
    a.add_argument("--by", default=os.environ.get("USER", ""))
    a = action("upload", "store a document (PDF, XLSX, TXT, MD, JSON, CSV) as searchable chunks")
    a.add_argument("file")
    a.add_argument("--person", default="", help="who it is about or from")
    a.add_argument("--tags", default="", help="comma-separated")
    a.add_argument("--by", default=os.environ.get("USER", ""))
    a = action(
        "review",
        "pending suggestions (approve with edit --approve) and contradictions that superseded a memory",
    )
    a.add_argument("--limit", type=int, default=50)
    a.add_argument("--json", action="store_true")
    a = action("export", "every memory as JSON Lines")
    a.add_argument("--out", default="-", help="a file (default: standard output)")
    p.set_defaults(fn=cmd_memory)

    p = command("deadletter", "events an actor could not apply: list them, retry or drop one")
    letters = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = letters.add_parser("list", help="the dead letters not yet retried or dropped")
    a.add_argument("--actor", default="", help="only this actor's")
    a.add_argument("--json", action="store_true", help="one JSON array of letters")
    a.add_argument("--run-dir", default=argparse.SUPPRESS, help="as for every command")
    a = letters.add_parser("retry", help="apply a dead letter again, once its fault is fixed")
    a.add_argument("id", help="the event id `list` shows")
    a.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the actor")
    a.add_argument("--run-dir", default=argparse.SUPPRESS, help="as for every command")
    a = letters.add_parser("drop", help="give a dead letter up for good")
    a.add_argument("id", help="the event id `list` shows")
    a.add_argument("--run-dir", default=argparse.SUPPRESS, help="as for every command")
    p.set_defaults(fn=cmd_deadletter)

    p = sub.add_parser("keys", help="create CURVE keys for a bus on a non-loopback tcp address")
    p.add_argument("dir", nargs="?", default="~/.config/hexbus/keys")
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
