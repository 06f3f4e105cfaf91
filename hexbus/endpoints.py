"""Where the bus lives: socket addresses, the 0700 run directory, and CURVE keys."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

import msgspec

from hexbus.config import BusConfig, ConfigError
from hexbus.keys import create_keys, secure_client, secure_server

# ipc socket paths must fit in sockaddr_un (108 bytes with the NUL).
MAX_IPC_PATH: Final = 100


class Endpoints(msgspec.Struct, frozen=True, kw_only=True):
    """Every address a process needs; serialised into each actor's start spec."""

    volatile_in: str  # broker XSUB binds; publishers' PUB connect
    volatile_out: str  # broker XPUB binds; subscribers' SUB connect
    volatile_big_in: str  # broker XSUB for frames with large blobs; publishers' second PUB connects
    volatile_big: str  # broker XPUB for frames with large blobs (tiny HWM); the same SUBs connect
    ingest: str  # broker ROUTER binds; producers' DEALER connect (durable)
    replay: str  # broker ROUTER binds; durable subscribers' DEALER connect (fetch)
    control: str  # supervisor ROUTER binds; the CLI's REQ/DEALER connect
    heartbeat: str  # supervisor PULL binds; every process PUSHes heartbeats
    curve_dir: str = ""
    max_blob_mb: int = (
        16  # the broker's bus.max_blob_mb: a larger event would be refused at the socket
    )


def ensure_run_dir(path: Path) -> Path:
    """Create the run directory with mode 0700, tightening it if it exists with wider permissions.

    Checked with lstat: a symlink planted at its path (in /tmp, by anyone) is refused, never
    followed, so the sockets never land in a folder someone else chose.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ConfigError(
            f"run directory {path} is a symlink or not a folder (planted there?): remove it, "
            "or pass --run-dir with a folder of yours"
        )
    if info.st_uid != os.getuid():
        raise ConfigError(
            f"run directory {path} belongs to another user: pass --run-dir with a folder of yours"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        path.chmod(0o700)
    return path


def endpoints(bus: BusConfig, run_dir: Path) -> Endpoints:
    def ipc(name: str) -> str:
        target = str(run_dir / name)
        if len(target) > MAX_IPC_PATH:
            raise ConfigError(
                f"run directory path {run_dir} is too long for ipc sockets "
                f"({len(target)} > {MAX_IPC_PATH} bytes): pass a shorter --run-dir"
            )
        return f"ipc://{target}"

    if bus.transport == "tcp":
        host = f"[{bus.host}]" if ":" in bus.host else bus.host
        tcp = [f"tcp://{host}:{bus.port + i}" for i in range(6)]
        data = dict(
            volatile_in=tcp[0],
            volatile_out=tcp[1],
            ingest=tcp[2],
            replay=tcp[3],
            volatile_big=tcp[4],
            volatile_big_in=tcp[5],
        )
    else:
        data = dict(
            volatile_in=ipc("vin"),
            volatile_out=ipc("vout"),
            ingest=ipc("ingest"),
            replay=ipc("replay"),
            volatile_big=ipc("vbig"),
            volatile_big_in=ipc("vbigin"),
        )
    return Endpoints(
        **data,
        control=ipc("ctl"),
        heartbeat=ipc("hb"),
        curve_dir=bus.curve_dir,
        max_blob_mb=bus.max_blob_mb,
    )


def connect_address(address: str) -> str:
    """The address a client connects to for one the broker binds (0.0.0.0 becomes loopback)."""
    return address.replace("tcp://0.0.0.0:", "tcp://127.0.0.1:").replace(
        "tcp://[::]:", "tcp://[::1]:"
    )


def requires_curve(address: str) -> bool:
    """Every tcp address does: on loopback too, any local user could connect otherwise."""
    return address.startswith("tcp://")


__all__ = [
    "Endpoints",
    "connect_address",
    "create_keys",
    "endpoints",
    "ensure_run_dir",
    "requires_curve",
    "secure_client",
    "secure_server",
]
