"""``hexbus web``: the page's address with its token, opened in a browser where there is one."""

from __future__ import annotations

import argparse
import json
import os
import sys
import webbrowser

from hexbus import notes
from hexbus.cli import fail, run_dir_of


def add_web(p: argparse.ArgumentParser) -> None:
    """the local page's address with its token (opened in a browser where there is one)"""
    p.add_argument("--actor", default="web", help="the web actor's name in supervisor.toml")
    p.add_argument("--no-browser", action="store_true", help="print the address only")
    p.add_argument("--json", action="store_true", help="url, token and the address to open")
    p.set_defaults(fn=web)


def web(args: argparse.Namespace) -> None:
    run_dir = run_dir_of(args)
    page = notes.read(run_dir, args.actor).get(args.actor)
    if page is None or "open" not in page:
        fail(
            f"no page is being served by an actor named {args.actor!r} (run directory {run_dir}): "
            "is Hex running with [actors.web] in supervisor.toml? (`hexbus status` says why "
            "an actor is down)"
        )
    if args.json:
        print(json.dumps({k: page[k] for k in ("url", "token", "open")}))
        return
    print(page["open"])
    if not args.no_browser and _has_display():
        try:
            webbrowser.open(page["open"])
        except webbrowser.Error as exc:
            print(f"(no browser opened: {exc})", file=sys.stderr)


def _has_display() -> bool:
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
