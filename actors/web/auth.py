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
from hexbus.files import write_atomic

__all__ = [
    "COOKIE",
    "WILDCARDS",
    "PageFile",
    "allowed_hosts",
    "cookie_name",
    "cookie_of",
    "host_allowed",
    "origin_allowed",
    "token_matches",
]

COOKIE = "hex_token"
WILDCARDS = ("0.0.0.0", "::")


def cookie_name(port: int) -> str:
    """The token's cookie for the page on ``port``: browsers share cookies across ports, so two
    pages on one machine (two Hexes, two users) must not overwrite each other's."""
    return f"{COOKIE}_{port}"


def cookie_of(header: str, name: str) -> str | None:
    """The value of cookie ``name`` in a Cookie header (the last one, as Starlette reads it)."""
    found = None
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            found = value
    return found


def allowed_hosts(
    port: int, public_names: tuple[str, ...] = (), host: str = "", tls: bool = False
) -> frozenset[str]:
    """Every ``Host`` header value the page answers to (lower case): its names (127.0.0.1,
    localhost, [::1], the address it is bound to unless a wildcard, and ``public_names``) with
    the port, and bare on the scheme's default port (browsers leave it out)."""
    bound = () if not host or host in WILDCARDS else (f"[{host}]" if ":" in host else host,)
    names = ("127.0.0.1", "localhost", "[::1]", *bound, *public_names)
    allowed = {f"{n.lower()}:{port}" for n in names}
    if port == (443 if tls else 80):
        allowed |= {n.lower() for n in names}
    return frozenset(allowed)


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

    def session(self, supervisor: str) -> tuple[str, int]:
        """This run's token and the port last served on (0 if none): the ones on file when the
        same supervisor's actor saved them (``web/<actor>.token``, 0600, which outlives the note
        across restarts), else a new token. ``supervisor`` names the supervisor process beyond
        its pid (pid and start time: a pid reused after a reboot is another run)."""
        try:
            saved = json.loads(self._session_path().read_text(encoding="utf-8"))
            if saved.get("supervisor") == supervisor and len(saved.get("token", "")) >= 32:
                return str(saved["token"]), int(saved.get("port", 0))
        except (OSError, ValueError, AttributeError, TypeError):
            pass
        return secrets.token_urlsafe(32), 0

    def save_session(self, token: str, port: int, supervisor: str) -> None:
        path = self._session_path()
        path.parent.mkdir(mode=0o700, exist_ok=True)
        session = json.dumps({"token": token, "port": port, "supervisor": supervisor}).encode()
        write_atomic(path, session, durable=False, mode=0o600)

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

    @staticmethod
    def supervisor() -> str:
        """The supervisor (this process's parent) as pid and start time."""
        import psutil

        parent = os.getppid()
        try:
            started = psutil.Process(parent).create_time()
        except psutil.Error:
            started = 0.0
        return f"{parent}@{started:.3f}"
