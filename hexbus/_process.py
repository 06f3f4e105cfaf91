"""Process plumbing shared by the broker and actor entrypoints."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when the supervisor that spawned it dies.

    The supervisor's pid comes in HEXBUS_SUPERVISOR_PID; if it is already gone
    by the time we get here, exit at once.
    """
    expected = os.environ.get("HEXBUS_SUPERVISOR_PID")
    if not expected or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(expected):
        raise SystemExit(0)
