"""``hexbus perception pause|resume|status``: the owner's switch for Hex's eyes, from a terminal."""

from __future__ import annotations

import argparse
import asyncio
import getpass

from hexbus.cli import endpoints_of, fail, run_dir_of


def add_perception(p: argparse.ArgumentParser) -> None:
    """pause or resume what Hex sees (camera, screen), or show it"""
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        a = sub.add_parser(name, help=help, description=help)
        a.add_argument("--run-dir", default=argparse.SUPPRESS, help="as for every command")
        a.add_argument("--timeout", type=float, default=10.0)
        return a

    for name, help in (
        ("pause", "stop capturing now and release the camera (kept across restarts)"),
        ("resume", "capture again"),
    ):
        action(name, help).add_argument(
            "source", nargs="?", default="", help="one source (default: all)"
        )
    action("status", "each source's state, the rate, and whether Hex is looking")
    p.set_defaults(fn=perception)


def perception(args: argparse.Namespace) -> None:
    from hexbus.ask import AskError, ask, change
    from schemas import (
        PerceptionPause,
        PerceptionResume,
        PerceptionState,
        PerceptionStatus,
        PerceptionSwitched,
    )

    endpoints = endpoints_of(run_dir_of(args))
    who = "the perception actor"
    try:
        if args.action == "status":
            state, _ = asyncio.run(
                ask(endpoints, PerceptionStatus(), PerceptionState, timeout=args.timeout, who=who)
            )
            print(describe(state))
            return
        by = f"cli:{getpass.getuser()}"
        request = (
            PerceptionPause(source=args.source, by=by)
            if args.action == "pause"
            else PerceptionResume(source=args.source, by=by)
        )
        report = asyncio.run(
            change(endpoints, request, PerceptionSwitched, timeout=args.timeout, who=who)
        )
    except AskError as exc:
        fail(str(exc))
    if report.error:
        fail(report.error)
    paused = ", ".join("every source" if p == "*" else p for p in report.paused)
    print(f"paused: {paused}" if paused else "looking (nothing paused)")


def describe(state: object) -> str:
    """``hexbus perception status``'s lines."""
    from schemas import PerceptionState

    assert isinstance(state, PerceptionState)
    lines = [
        ("paused" if state.paused else "looking")
        + f", {state.rate_hz:g} analyses/s per source"
        + (f" (lowered: {state.governed})" if state.governed else "")
        + ("" if state.emotion else "; emotion off")
    ]
    for s in state.sources:
        line = f"  {s.name} ({s.kind}): {s.state}"
        if s.state == "retrying":
            line += f" in {s.retry_in_s:g}s"
        if s.detail:
            line += f": {s.detail}"
        line += f"; {s.frames_in} in, {s.frames_analysed} analysed, {s.frames_dropped} dropped"
        lines.append(line)
    return "\n".join(lines)
