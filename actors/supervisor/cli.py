"""``hexbus run``: the supervisor's command, registered as an entry point (hexbus.commands)."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import msgspec

from hexbus.cli import EXIT_USAGE, fail
from hexbus.config import ConfigError, default_run_dir, load

LOG_KEPT = 1000  # the supervisor's last log events, for the page's runtime panel (`log` command)


def add_run(p: argparse.ArgumentParser) -> None:
    """start the broker and every enabled actor in the foreground"""
    p.add_argument("config", nargs="?", default="supervisor.toml")
    p.add_argument(
        "--data-dir", help="journal and snapshots (default: supervisor.data_dir beside the config)"
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.set_defaults(fn=run)


def run(args: argparse.Namespace) -> None:
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
    # Everything Hex writes (journal, snapshots, DuckDB, diaries, folders) is its owner's alone.
    os.umask(0o077)
    configure("supervisor", level, keep=LOG_KEPT)
    try:
        # Not resolved: a symlink planted at the run directory's path is refused, not followed.
        supervisor = Supervisor(config, config_path, run_dir.absolute(), data_dir.resolve(), level)
    except (ConfigError, AlreadyRunning) as exc:
        fail(str(exc), EXIT_USAGE)
    (supervisor.run_dir / "endpoints.json").write_bytes(msgspec.json.encode(supervisor.endpoints))
    try:
        import uvloop

        code = uvloop.run(supervisor.run())
    except ImportError:
        code = asyncio.run(supervisor.run())
    raise SystemExit(code)
