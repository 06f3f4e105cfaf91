"""``hexbus chat`` and ``hexbus persona``: the brain's commands, registered as entry points (hexbus.commands)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from hexbus.cli import endpoints_of, fail, run_dir_of


def add_chat(p: argparse.ArgumentParser) -> None:
    """talk to Hex from this terminal; with a pipe, one message per line"""
    p.add_argument("--person", default=os.environ.get("USER") or "console", help="your person id")
    p.add_argument("--name", default="", help="your display name (default: the person id)")
    p.add_argument("--channel", default="console", help="the conversation (default: console)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for each reply")
    p.set_defaults(fn=chat_command)


def chat_command(args: argparse.Namespace) -> None:
    from actors.brain.console import ChatError, chat

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


def add_persona(p: argparse.ArgumentParser) -> None:
    """persona versions and the consistency audit"""
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = actions.add_parser("rollback", help="make persona version N the active one")
    r.add_argument("version", type=int)
    r.add_argument("--run-dir", default=argparse.SUPPRESS, help="as for every command")
    a = actions.add_parser(
        "audit", help="run the scenario set through the configured backend and report"
    )
    a.add_argument(
        "--config", default="supervisor.toml", help="the supervisor.toml whose brain is audited"
    )
    a.add_argument("--limit", type=int, default=0, help="run only the first N scenarios")
    a.add_argument("--compare", default="", help="a previous report to compare with (drift)")
    a.add_argument("--run-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(fn=persona)


def persona(args: argparse.Namespace) -> None:
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
