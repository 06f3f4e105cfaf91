"""Every version of the persona document, kept on disk; rollback to any of them."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import msgspec

from actors.brain.persona import (  # the private helpers are the document's own parsing rules
    Persona,
    PersonaError,
    _read,
    parse_persona,
)
from hexbus.files import write_atomic


class VersionInfo(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    sha256: str
    created: float
    note: str = ""


class _Index(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    active: int = 0
    source: str = ""  # the persona.toml last synced; rollback writes there
    versions: list[VersionInfo] = []


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class PersonaStore:
    """Every version of the persona document, under ``directory``.

    ``versions/NNNN.toml`` holds each version's text and ``index.json`` their number,
    sha256, time and note plus the active version. History is append-only: a rollback
    records a new version (note ``rollback to N``) with the old text, so it is itself
    logged and can be undone by rolling back again. One writer at a time (the brain).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._index_path = directory / "index.json"
        try:
            data = self._index_path.read_bytes()
        except FileNotFoundError:
            self._index = _Index()
            return
        try:
            self._index = msgspec.json.decode(data, type=_Index)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise PersonaError(
                f"{self._index_path}: unreadable persona index ({exc}): restore it from a backup "
                "or move the folder aside to start a new history"
            ) from None

    @property
    def active(self) -> int:
        """The active version; 0 before the first sync."""
        return self._index.active

    @property
    def source(self) -> Path | None:
        return Path(self._index.source) if self._index.source else None

    def versions(self) -> list[VersionInfo]:
        return list(self._index.versions)

    def _path(self, version: int) -> Path:
        return self.directory / "versions" / f"{version:04d}.toml"

    def _info(self, version: int) -> VersionInfo:
        for info in self._index.versions:
            if info.version == version:
                return info
        last = self._index.versions[-1].version if self._index.versions else 0
        choices = f"pick one of 1..{last}" if last else "sync a persona.toml first"
        raise PersonaError(f"{self._index_path}: there is no persona version {version}: {choices}")

    def get(self, version: int) -> tuple[Persona, str]:
        """A version's persona and its text; the text must still match its recorded sha256."""
        info = self._info(version)
        path = self._path(version)
        text = _read(path, "it back from a backup")
        if _sha(text) != info.sha256:
            raise PersonaError(
                f"{path}: changed on disk since it was recorded: restore it from a backup"
            )
        return parse_persona(text, str(path)), text

    def _record(self, text: str, note: str, source: str) -> int:
        """Append a version and make it active; memory changes only once the index is on disk."""
        version = (self._index.versions[-1].version if self._index.versions else 0) + 1
        info = VersionInfo(version=version, sha256=_sha(text), created=time.time(), note=note)
        write_atomic(self._path(version), text.encode("utf-8"))
        self._save(_Index(active=version, source=source, versions=[*self._index.versions, info]))
        return version

    def _save(self, index: _Index) -> None:
        # The index is the commit point: written last, so a version file without an entry is
        # simply overwritten by the next record.
        write_atomic(self._index_path, msgspec.json.format(msgspec.json.encode(index), indent=2))
        self._index = index

    def _active_sha(self) -> str | None:
        return self._info(self._index.active).sha256 if self._index.active else None

    def sync(self, path: Path, note: str = "") -> int:
        """Record the file as a new version when its text differs from the active one; return the active version.

        An invalid document raises :class:`PersonaError` and leaves the active version as it was.
        """
        text = _read(path, "the default persona.toml from the repository root")
        parse_persona(text, str(path))
        source = str(path.resolve())
        if _sha(text) != self._active_sha():
            return self._record(text, note, source)
        if source != self._index.source:
            self._save(msgspec.structs.replace(self._index, source=source))
        return self._index.active

    def edit(self, path: Path, text: str, note: str = "") -> int:
        """Check ``text``, write it to ``path`` (the persona.toml the brain reads) and record it
        as a version; the active version. An invalid text raises :class:`PersonaError` and
        changes nothing."""
        parse_persona(text, str(path))
        write_atomic(path, text.encode("utf-8"))
        return self.sync(path, note)

    def rollback(self, version: int) -> Persona:
        """Make ``version`` active again and write its text back to the synced persona.toml.

        Edits in that file that were never synced are kept first: a valid document as a
        version of its own, an invalid one as ``unsynced.toml`` in the store's folder.
        """
        persona, text = self.get(version)
        source = self.source
        if source is None:
            raise PersonaError(
                f"{self._index_path}: no persona.toml was synced: call sync(path) first"
            )
        try:
            current = source.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            current = None
        if current is not None and _sha(current) != self._active_sha():
            try:
                parse_persona(current, str(source))
            except PersonaError:
                write_atomic(self.directory / "unsynced.toml", current.encode("utf-8"))
            else:
                self._record(
                    current, f"unsynced edits, kept before rollback to {version}", str(source)
                )
        # The file before the index: a crash in between leaves the old text on disk for the
        # next sync to record, so the rollback is never silently lost.
        write_atomic(source, text.encode("utf-8"))
        if _sha(text) != self._active_sha():
            self._record(text, f"rollback to {version}", str(source))
        return persona
