"""``hexbus selfmod``: her proposals, and the owner's decisions on them.

list | show ID | approve ID | reject ID | rollback [ID] | diff A [B] | log | factory-reset |
request "be less formal" | propose --diff FILE --why TEXT. A terminal with the run folder is
the owner's (as for the kill switch); every decision is the selfmod actor's to check.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

import msgspec

from hexbus.cli import endpoints_of, fail, run_dir_of


def add_selfmod(p: argparse.ArgumentParser) -> None:
    """her proposals to change herself, and your decisions on them"""
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=text, description=text)
        c.add_argument("--run-dir", default=argparse.SUPPRESS, help="as for every command")
        c.add_argument("--timeout", type=float, default=30.0)
        c.add_argument("--json", action="store_true", help="the answer as JSON")
        return c

    command("list", "every proposal, newest first, with its status")
    command("show", "one proposal: its diff, reason, flags and sandbox report").add_argument(
        "id", type=int
    )
    for name, text in (("approve", "apply a ready proposal"), ("reject", "turn a proposal down")):
        c = command(name, text)
        c.add_argument("id", type=int)
        c.add_argument("--note", default="", help="why (kept with the proposal)")
    c = command("rollback", "undo an applied change (the latest without ID)")
    c.add_argument("id", type=int, nargs="?", default=0)
    c.add_argument("--note", default="", help="why")
    c = command("diff", "compare two versions: factory, p3 (an applied proposal), a commit")
    c.add_argument("a")
    c.add_argument("b", nargs="?", default="HEAD")
    command("log", "the state repository's history")
    c = command("factory-reset", "put back the shipped files (every change undone)")
    c.add_argument("--yes", action="store_true", help="really")
    c = command("request", "ask her to change something about herself, in plain words")
    c.add_argument("text")
    c.add_argument("--key", default="", help="the persona.toml key (default: from the words)")
    c = command("propose", "propose a diff by hand (tested and decided like hers)")
    c.add_argument("--diff", required=True, help="a unified diff file (- for stdin)")
    c.add_argument("--why", required=True)
    p.set_defaults(fn=selfmod)


def _me() -> str:
    return os.environ.get("USER") or os.environ.get("LOGNAME") or "terminal"


def selfmod(args: argparse.Namespace) -> None:
    from hexbus.ask import AskError, ask, change
    from schemas import (
        SelfmodAsk,
        SelfmodChanged,
        SelfmodDecide,
        SelfmodProposal,
        SelfmodReport,
        SelfmodRequest,
    )

    endpoints = endpoints_of(run_dir_of(args))
    action = args.action
    try:
        if action in ("list", "show", "diff", "log"):
            question = SelfmodAsk(
                what=action,
                id=getattr(args, "id", 0),
                a=getattr(args, "a", ""),
                b=getattr(args, "b", ""),
            )
            report, _ = asyncio.run(
                ask(
                    endpoints,
                    question,
                    SelfmodReport,
                    timeout=args.timeout,
                    who="the selfmod actor",
                )
            )
            if report.error:
                fail(report.error)
            if args.json:
                print(json.dumps(msgspec.to_builtins(report), indent=2))
            else:
                print(describe(report, action))
            return
        request: Any
        if action == "request":
            request = SelfmodRequest(text=args.text, by=_me(), owner=True, key=args.key)
        elif action == "propose":
            diff = sys.stdin.read() if args.diff == "-" else Path(args.diff).read_text("utf-8")
            request = SelfmodProposal(diff=diff, why=args.why, origin="owner", by=_me())
        else:
            if action == "factory-reset" and not args.yes:
                fail("factory-reset undoes every change she made: add --yes to go ahead", 2)
            request = SelfmodDecide(
                action=action.replace("-", "_"),
                id=getattr(args, "id", 0),
                by=_me(),
                owner=True,
                note=getattr(args, "note", ""),
            )
        done = asyncio.run(
            change(
                endpoints, request, SelfmodChanged, timeout=args.timeout, who="the selfmod actor"
            )
        )
    except (AskError, OSError) as exc:
        fail(str(exc))
    if args.json:
        print(json.dumps(msgspec.to_builtins(done), indent=2))
    if done.error:
        fail(done.error)
    if not args.json:
        print(done.line)


def _when(t: float) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M") if t else "-"


def describe(report: Any, action: str) -> str:
    if action in ("diff", "log"):
        return str(report.text) or "(no difference)"
    if not report.proposals:
        return "no proposals yet"
    if action == "list":
        return "\n".join(
            f"{p.id:>4}  {p.status:<11} {_when(p.created)}  {','.join(p.flags) or '-':<14} "
            f"{p.why.splitlines()[0][:70]}"
            for p in report.proposals
        )
    p = report.proposals[0]
    out = [
        f"proposal {p.id}: {p.status}",
        f"why: {p.why}",
        f"from: {p.origin}{f' ({p.by})' if p.by else ''}, {_when(p.created)}",
        f"needs: {p.level or '-'}; changes: {', '.join(p.keys) or ', '.join(p.files) or '-'}",
        f"flags: {', '.join(p.flags) or 'none'}",
    ]
    if p.reason:
        out.append(f"reason: {p.reason}")
    for side in ("before", "after"):
        f = getattr(p, side)
        if f is not None:
            out.append(
                f"audit {side}: {f.pass_rate:.2f} of {f.scenarios} scenarios "
                f"({len(f.failed)} failed, {f.seconds:.0f} s)"
            )
    if p.sandbox:
        out.append(f"sandbox: {p.sandbox}")
    if p.expires and p.status == "ready":
        out.append(f"approve by: {_when(p.expires)}")
    if p.commit:
        out.append(f"commit: {p.commit[:10]}")
    out += ["", p.diff]
    return "\n".join(out)
