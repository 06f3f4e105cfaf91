"""``hexbus memory``: the memory actor's command, registered as an entry point (hexbus.commands)."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from hexbus.cli import endpoints_of, fail, run_dir_of


def when_asked(text: str) -> float:
    """``--at``: an ISO 8601 date or time (UTC when it names no zone) as unix seconds."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO date or time (like 2023-06-20 or 2023-06-20T18:30)"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def add_memory(p: argparse.ArgumentParser) -> None:
    """add, search, edit, forget, import, upload and export memories"""
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        a = actions.add_parser(name, help=help, description=help)
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
        "--at",
        type=when_asked,
        default=0.0,
        metavar="TIME",
        help="ask as of this ISO date or time (an imported past): 'in May' and recency count "
        "from it, and nothing said after it is found",
    )
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
        "bring in past turns: a JSON Lines file (id, conversation, speaker, text, timestamp), "
        "or a WhatsApp (text or zip), Telegram or DiscordChatExporter export",
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
    p.set_defaults(fn=memory)


def memory(args: argparse.Namespace) -> None:
    from hexbus.ask import AskError, ask, change
    from schemas import (
        MemoryAdd,
        MemoryChanged,
        MemoryDocument,
        MemoryEdit,
        MemoryExport,
        MemoryExported,
        MemoryForget,
        MemoryProgress,
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
                        at=args.at,
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
            for hit in reviewed.archived:
                print(f"archived    {hit.id}  {hit.text}")
            if reviewed.archived_total:
                shown = len(reviewed.archived)
                print(
                    f"{reviewed.archived_total} archived in all"
                    f"{f' (the latest {shown} above)' if shown < reviewed.archived_total else ''}: "
                    "unused and unimportant; `hexbus memory search --archived` still finds them"
                )
            if not (reviewed.pending or reviewed.contradictions or reviewed.archived_total):
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
        bar = Uploading(Path(args.file).name) if blob else None
        report = asyncio.run(
            change(
                endpoints,
                request,
                MemoryChanged,
                who=who,
                blob=blob,
                timeout=300 if blob else 30,
                progress=(MemoryProgress, bar.update) if bar else None,
            )
        )
        if bar:
            bar.done()
    except AskError as exc:
        fail(str(exc))
    if report.action == "refused":
        fail(f"refused: {report.detail}")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items()))
    print(
        f"{report.action}: {' '.join(report.ids) or '-'}{f' ({counts})' if counts else ''}"
        f"{f' {report.detail}' if report.detail else ''}"
    )


class Uploading:
    """The bar of an upload: its total is known from the actor's first progress report."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.progress: Any = None

    def update(self, report: Any) -> None:
        from hexbus.progress import Progress

        if self.progress is None:
            self.progress = Progress(report.total, report.unit, what=f"embedding {self.name}:")
        self.progress.advance(report.done - self.progress.count)

    def done(self) -> None:
        if self.progress is not None:
            self.progress.done()


def memory_import(endpoints: Any, args: argparse.Namespace) -> None:
    """``hexbus memory import FILE``: every good line sent in batches; bad lines reported by number."""
    from actors.memory.importer import HistoryError, batches, read_history
    from hexbus.ask import changes
    from hexbus.progress import Progress
    from schemas import MemoryChanged

    path = Path(args.file)
    try:
        turns, problems = read_history(path, tuple(args.assistant))
    except HistoryError as exc:
        fail(str(exc))
    for problem in problems:
        print(f"{path.name}: {problem} (skipped)", file=sys.stderr)
    totals: dict[str, int] = {}
    progress = Progress(len(turns), "turns", what=f"importing {path.name}:")

    async def send() -> None:
        requests = [(event, None) for event in batches(turns, path.name, args.by)]
        async for report in changes(
            endpoints, requests, MemoryChanged, who="the memory actor", timeout=120
        ):
            if report.action == "refused":
                fail(f"refused: {report.detail}")
            for key, value in report.counts.items():
                totals[key] = totals.get(key, 0) + value
            c = report.counts
            progress.advance(c.get("turns", 0) + c.get("already_known", 0) + c.get("empty", 0))

    asyncio.run(send())
    progress.done()
    print(
        f"imported {totals.get('turns', 0)} turns from {path.name} ({totals.get('already_known', 0)} already "
        f"known, {totals.get('indexed', 0)} indexed for search, {len(problems)} bad lines skipped)"
    )
