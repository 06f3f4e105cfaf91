"""``hexbus web``: the page's address with its token, opened in a browser where there is one."""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import webbrowser
from pathlib import Path

from hexbus import notes
from hexbus.cli import fail, run_dir_of
from hexbus.files import write_atomic


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
            webbrowser.open(_redirect_file(run_dir, args.actor, page["open"]).as_uri())
        except (webbrowser.Error, OSError) as exc:
            print(f"(no browser opened: {exc})", file=sys.stderr)


def _redirect_file(run_dir: Path, actor: str, address: str) -> Path:
    """A 0600 page in the run directory that forwards to ``address``: the browser is started
    with this file's path, so the token never shows in a process list (other users can read
    command lines; they are who the token keeps out)."""
    path = run_dir / "web" / f"open-{actor}.html"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    quoted = html.escape(address, quote=True)
    page = (
        f'<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={quoted}">'
        f'<title>Hex</title><p><a href="{quoted}">Open Hex</a></p>'
    )
    write_atomic(path, page.encode(), durable=False, mode=0o600)
    return path


def _has_display() -> bool:
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
