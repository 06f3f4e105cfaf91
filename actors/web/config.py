"""The web actor's configuration."""

from __future__ import annotations

import msgspec

__all__ = ["WebConfig"]


class WebConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"  # another address needs tls_cert and tls_key
    port: int = 8765  # 0: any free port (`hexbus web` prints the one taken)
    # Names the page may be reached by besides 127.0.0.1, localhost and [::1] (Host and Origin
    # are checked against them: a DNS-rebinding page cannot talk to Hex).
    public_names: tuple[str, ...] = ()
    tls_cert: str = ""  # PEM files, relative to supervisor.toml
    tls_key: str = ""
    person_id: str = "owner"  # who the page's token speaks for
    display_name: str = ""  # the name Hex calls them (default: the person id)
    owner: bool = True  # the token's person may use owner-only actions
    max_clients: int = 100  # open tabs beyond this are refused with a message
    client_queue: int = 256  # messages waiting for one tab; past this it is dropped with a notice
    max_message_chars: int = 8000  # a chat line longer than this is refused with the limit
    memory_actor: str = "memory"  # asked for history, search and the rest (none: no memory panel)
    max_import_mb: int = 256  # a history file imported from the page (sent to memory in parts)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if self.max_clients < 1 or self.client_queue < 8:
            raise ValueError("max_clients must be at least 1 and client_queue at least 8")
        if self.max_import_mb < 1:
            raise ValueError(f"max_import_mb must be at least 1, got {self.max_import_mb}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together: set both or neither")
