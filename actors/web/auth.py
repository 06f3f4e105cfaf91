"""Who may open the page: a secret per start of Hex, and Host and Origin checks.

The page is a control surface for a companion that remembers everything: a web page elsewhere
in the same browser must not be able to reach it. So, as a notebook server does:

* The page needs the token (``?token=...`` once; then an HttpOnly, SameSite=Strict cookie), and
  so does the websocket. The token is made when Hex starts and kept in the run directory (0700)
  for ``hexbus web`` and ``hexbus status`` to show (:class:`PageFile`); a restart of the web
  actor keeps it, so open tabs reconnect.
* ``Host`` must be a name the page is served under (127.0.0.1, localhost, [::1] or a configured
  public name, with the port): a DNS-rebinding page, whose requests carry its own name, is refused.
* ``Origin``, when a browser sends one (every websocket and every POST), must be the page's own:
  another site's script cannot open the websocket even with the user's cookie.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from hexbus import notes

__all__ = [
    "COOKIE",
    "PageFile",
    "allowed_hosts",
    "host_allowed",
    "origin_allowed",
    "token_matches",
]

COOKIE = "hex_token"


def allowed_hosts(port: int, public_names: tuple[str, ...] = ()) -> frozenset[str]:
    """Every ``Host`` header value the page answers to (lower case, with the port)."""
    names = ("127.0.0.1", "localhost", "[::1]", *public_names)
    return frozenset(f"{n.lower()}:{port}" for n in names)


def host_allowed(host: str | None, allowed: frozenset[str]) -> bool:
    return host is not None and host.strip().lower() in allowed


def origin_allowed(origin: str | None, allowed: frozenset[str]) -> bool:
    """An absent Origin is a same-origin GET or a non-browser client (which has no cookie to
    ride on); a present one must be the page's own scheme-and-host."""
    if origin is None:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and parts.netloc.lower() in allowed


def token_matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


class PageFile:
    """The page's address and token, left as the actor's note in the run directory (0700; see
    :mod:`hexbus.notes`) for this user's ``hexbus web`` and ``hexbus status``. The token (and a
    port picked at random) is kept while the supervisor that made it runs, so after an actor
    restart open tabs reconnect to the same address; Hex started again makes a new one."""

    def __init__(self, run_dir: Path, actor: str) -> None:
        self.run_dir, self.actor = run_dir, actor

    def session(self, supervisor_pid: int) -> tuple[str, int]:
        """This run's token and the port last served on (0 if none): the ones on file when the
        same supervisor's actor saved them (``web/<actor>.token``, 0600, which outlives the note
        across restarts), else a new token."""
        try:
            saved = json.loads(self._session_path().read_text(encoding="utf-8"))
            if saved.get("supervisor_pid") == supervisor_pid and len(saved.get("token", "")) >= 32:
                return str(saved["token"]), int(saved.get("port", 0))
        except (OSError, ValueError, AttributeError, TypeError):
            pass
        return secrets.token_urlsafe(32), 0

    def save_session(self, token: str, port: int, supervisor_pid: int) -> None:
        path = self._session_path()
        path.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"token": token, "port": port, "supervisor_pid": supervisor_pid}, f)
        os.replace(tmp, path)

    def _session_path(self) -> Path:
        return self.run_dir / "web" / f"{self.actor}.token"

    def write(self, *, url: str, token: str) -> None:
        address = f"{url}?token={token}"
        notes.write(
            self.run_dir,
            self.actor,
            f"the page is at {address}",
            url=url,
            token=token,
            open=address,
        )

    def remove(self) -> None:
        notes.remove(self.run_dir, self.actor)
