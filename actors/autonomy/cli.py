"""``hexbus autonomy why [--person ID] [--json]``: what Hex would say first, and why she has not."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json

import msgspec

from hexbus.cli import endpoints_of, fail, run_dir_of


def add_autonomy(p: argparse.ArgumentParser) -> None:
    """what Hex would say first, and why she is silent"""
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    why = sub.add_parser(
        "why",
        help="each message waiting and why it has not gone; the dropped and the sent ones",
        description="each message waiting and why it has not gone; the dropped and the sent ones",
    )
    why.add_argument("--person", default="", help="one person's (their person id)")
    why.add_argument("--json", action="store_true", help="the report as JSON")
    why.add_argument("--run-dir", default=argparse.SUPPRESS, help="as for every command")
    why.add_argument("--timeout", type=float, default=10.0)
    p.set_defaults(fn=autonomy)


def autonomy(args: argparse.Namespace) -> None:
    from hexbus.ask import AskError, ask
    from schemas import AutonomyReport, AutonomyWhy

    endpoints = endpoints_of(run_dir_of(args))
    try:
        report, _ = asyncio.run(
            ask(
                endpoints,
                AutonomyWhy(person_id=args.person),
                AutonomyReport,
                timeout=args.timeout,
                who="the autonomy actor",
            )
        )
    except AskError as exc:
        fail(str(exc))
    if args.json:
        print(json.dumps(msgspec.to_builtins(report), indent=2))
        return
    print(describe(report))


def describe(report: object) -> str:
    """``hexbus autonomy why``'s lines: "silent because: quiet hours until 08:00"."""
    from schemas import AutonomyReport

    assert isinstance(report, AutonomyReport)

    def when(t: float) -> str:
        return dt.datetime.fromtimestamp(t).strftime("%a %H:%M")

    waiting = [w for w in report.lines if not w.dropped]
    dropped = [w for w in report.lines if w.dropped]
    out = [f"her clock: {when(report.now)}"]
    if not waiting:
        out.append("nothing waiting to be said first")
    for w in waiting:
        out.append(f"{w.person_id} ({w.kind}): {w.reason}")
        out.append(f"  silent because: {w.verdict}")
    for w in dropped[:10]:
        out.append(f"dropped, {when(w.at)}: {w.person_id} ({w.kind}): {w.verdict}")
    for w in report.sent[:10]:
        out.append(f"said first, {when(w.at)}: {w.person_id} ({w.kind}): {w.reason}")
    return "\n".join(out)
