"""Hex's Markdown diaries: one file per entry, in a ``YYYY/MM/DD`` folder tree.

(People see the folder as ``journals/`` and the memory kind as "journal": those names are on
disk and on the wire. In code "journal" is the bus's event log, so these are diaries.)

Each file is YAML front matter between ``---`` lines, then the Markdown body, so
people can read, edit, add and delete entries with any editor. :meth:`Diaries.write`
is atomic (temp file, fsync, rename, fsync of the folder), so a crash leaves the old
file or the new one, never half of one. :meth:`Diaries.changes` compares the folder
with the hashes the caller last indexed and reports edits, additions and deletions.

It is careful never to mistake trouble for a deletion, because a deletion makes the
memory actor forget: a file that fails to parse, an empty file (an editor half-way
through a save), an unreadable folder or a missing diary folder are reported as
errors, and their memories are left alone.

Plain library code, no bus; safe to call from worker threads (readers only ever see
whole files). A little over 500 lines, as one cohesive class (:class:`Diaries`) with its
file format's helpers: the format it writes, the parser that reads people's edits and the
scan that must never take trouble for a deletion are one contract, best read side by side.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import secrets
import time
import unicodedata
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import msgspec
import yaml

from hexbus.files import fsync_dir

MAX_BYTES: Final = 1 << 20  # larger files are reported, never read
_TMP_SUFFIX: Final = ".tmp"
_RACY_NS: Final = 2_000_000_000  # files changed this recently are re-hashed on every scan
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SAFE_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NOT_SLUG: Final = re.compile(r"[^a-z0-9]+")
_CLOSING: Final = re.compile(r"^(?:---|\.\.\.)[ \t]*\r?$", re.MULTILINE)
_OPENING: Final = re.compile(r"---[ \t]*\r?\n")


class DiaryError(Exception):
    """A diary file cannot be read, written or removed; the message names the file and the problem."""

    def __init__(self, relpath: str, problem: str) -> None:
        self.relpath = relpath
        self.problem = " ".join(problem.split())  # always one line
        super().__init__(f"{relpath}: {self.problem}")


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One diary entry, as written by Hex or by a person."""

    id: str  # the memory id; derived from the path for a person's file without one
    at: float  # unix seconds, kept to the microsecond in the file
    text: str  # the Markdown body, stripped
    title: str = ""
    tags: tuple[str, ...] = ()
    emotion: str = ""
    importance: float = 0.5  # clamped to 0..1 when read
    people: tuple[str, ...] = ()  # person ids or names involved
    person_id: str = ""  # who it is mainly about; "" = general


class Changes(msgspec.Struct, frozen=True, kw_only=True):
    """What differs between the folder and the hashes the caller knows."""

    changed: tuple[tuple[str, Entry, str], ...] = ()  # (relpath, entry, sha256): new or edited
    deleted: tuple[str, ...] = ()  # known relpaths whose file is gone
    errors: tuple[tuple[str, str], ...] = ()  # (relpath, problem): skipped, and not deleted


class _Scan(msgspec.Struct, frozen=True):
    hashes: dict[str, str]  # relpath -> sha256; "" where the file could not be read
    blind: tuple[str, ...] = ()  # folders (relative, "" = root) that could not be listed
    missing: bool = False  # root itself is not there


def diary_id(relpath: str) -> str:
    """The id of a person's entry that names none: stable while the file keeps its path."""
    return "j_" + hashlib.blake2b(relpath.encode(), digest_size=8).hexdigest()


class Diaries:
    """The diary folder: writes, reads, removes and scans entry files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        # relpath -> (stat key, sha256): a file whose stat is unchanged is not re-read by scan.
        self._hashes: dict[str, tuple[tuple[int, ...], str]] = {}

    # -- layout and format --------------------------------------------------------------------

    def relpath_for(self, entry: Entry) -> str:
        """``YYYY/MM/DD/HHMMSS-<slug>-<id>.md``, from the UTC time of ``entry.at``."""
        when = _utc(entry.at)
        ident = entry.id if _SAFE_ID.fullmatch(entry.id) else diary_id(entry.id)
        return (
            f"{when.year:04d}/{when.month:02d}/{when.day:02d}/"
            f"{when:%H%M%S}-{_slug(entry.title.strip() or entry.text)}-{ident}.md"
        )

    def render(self, entry: Entry) -> bytes:
        """The file's bytes: front matter in a fixed key order, then the body. Deterministic."""
        text = _newlines(entry.text).strip()
        if not entry.id:
            raise ValueError("a journal entry needs an id")
        if not text:
            raise ValueError(f"journal entry {entry.id} has no text")
        when = _utc(entry.at)
        importance = float(entry.importance)
        meta = {
            "id": entry.id,
            "timestamp": f"{when.year:04d}-{when:%m-%dT%H:%M:%S.%f}Z",
            "title": entry.title,
            "tags": list(entry.tags),
            "emotion": entry.emotion,
            "importance": 0.5 if math.isnan(importance) else min(1.0, max(0.0, importance)),
            "people": list(entry.people),
            "person": entry.person_id,
        }
        front = _dump(meta, allow_unicode=True)
        # PyYAML quotes a few line-break characters wrongly (U+0085): then escape everything.
        if yaml.safe_load(front) != meta:
            front = _dump(meta, allow_unicode=False)
        try:
            return f"---\n{front}---\n\n{text}\n".encode()
        except UnicodeEncodeError as exc:  # lone surrogates
            raise ValueError(
                f"journal entry {entry.id} is not valid Unicode: {exc.reason}"
            ) from exc

    # -- files --------------------------------------------------------------------------------

    def write(self, entry: Entry) -> tuple[str, str]:
        """Write ``entry`` atomically; returns (relpath, sha256 of the bytes). Idempotent."""
        relpath = self.relpath_for(entry)
        data = self.render(entry)
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(relpath)
        try:
            if _has_bytes(path, data):
                return relpath, digest
            _makedirs(path.parent)
            tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{_TMP_SUFFIX}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                try:
                    tmp.unlink()
                except OSError:
                    pass
                raise
            fsync_dir(path.parent)
        except OSError as exc:
            raise DiaryError(relpath, f"cannot write: {exc.strerror or exc}") from exc
        self._hashes.pop(relpath, None)
        return relpath, digest

    def remove(self, relpath: str) -> bool:
        """Delete the file (False if it was not there) and the folders it leaves empty."""
        path = self._path(relpath)
        self._hashes.pop(relpath, None)
        try:
            try:
                path.unlink()
            except FileNotFoundError:
                removed = False
            else:
                removed = True
                fsync_dir(path.parent)
            folder = path.parent
            for _ in range(relpath.count("/")):
                try:
                    folder.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:  # not empty (another entry, or a person's own file): keep it
                    break
                else:
                    fsync_dir(folder.parent)
                folder = folder.parent
        except OSError as exc:
            raise DiaryError(relpath, f"cannot remove: {exc.strerror or exc}") from exc
        return removed

    def read(self, relpath: str) -> tuple[Entry, str]:
        """Parse one file; returns (entry, sha256 of its bytes).

        A file without front matter is a person's entry: its time is the file's mtime and its
        id is :func:`diary_id`. So is a missing or unparsable ``timestamp``.
        """
        path = self._path(relpath)
        try:
            with open(path, "rb") as f:
                stat = os.fstat(f.fileno())
                if stat.st_size > MAX_BYTES:
                    raise DiaryError(
                        relpath, f"too large ({stat.st_size} bytes; the limit is {MAX_BYTES})"
                    )
                data = f.read(MAX_BYTES + 1)
        except OSError as exc:
            raise DiaryError(relpath, f"cannot read: {exc.strerror or exc}") from exc
        if len(data) > MAX_BYTES:
            raise DiaryError(relpath, f"too large (over {MAX_BYTES} bytes)")
        digest = hashlib.sha256(data).hexdigest()
        try:
            content = data.decode()
        except UnicodeDecodeError as exc:
            raise DiaryError(relpath, f"not UTF-8 text (bad byte at offset {exc.start})") from exc
        return _parse(relpath, content.removeprefix("\ufeff"), stat.st_mtime), digest

    # -- folder -------------------------------------------------------------------------------

    def scan(self) -> dict[str, str]:
        """relpath -> sha256 of every ``*.md`` under root ("" for a file that cannot be read).

        Hidden files and folders (a write's temp files among them), symlinked folders and
        links that lead out of root are skipped.
        """
        return self._scan().hashes

    def changes(self, known: dict[str, str]) -> Changes:
        """Compare the folder with ``known`` (relpath -> sha256 as last indexed)."""
        found = self._scan()
        if found.missing:
            # An unmounted drive or a renamed folder is not a person deleting every entry.
            return Changes(
                errors=(("", "the journal folder is missing; no entry was treated as deleted"),)
                if known
                else ()
            )
        changed: list[tuple[str, Entry, str]] = []
        errors: list[tuple[str, str]] = []
        for relpath, digest in sorted(found.hashes.items()):
            if known.get(relpath) == digest and digest:
                continue
            try:
                entry, digest = self.read(relpath)
            except DiaryError as exc:
                errors.append((relpath, exc.problem))
            else:
                if known.get(relpath) != digest:
                    changed.append((relpath, entry, digest))
        deleted: list[str] = []
        for relpath in sorted(known.keys() - found.hashes.keys()):
            if any(not blind or relpath.startswith(blind + "/") for blind in found.blind):
                continue  # not seen is not gone
            if not _exists(self, relpath):  # gone for good, not mid-save
                deleted.append(relpath)
        for blind in found.blind:
            errors.append((blind, "folder cannot be listed; its entries were not checked"))
        return Changes(changed=tuple(changed), deleted=tuple(deleted), errors=tuple(errors))

    # -- internals ----------------------------------------------------------------------------

    def _path(self, relpath: str) -> Path:
        parts = relpath.split("/")
        if (
            not relpath.lower().endswith(".md")
            or "\0" in relpath
            or any(not p or p.startswith(".") for p in parts)
        ):
            raise DiaryError(
                relpath, "not a journal file path (relative, no hidden parts, ending in .md)"
            )
        path = self.root.joinpath(*parts)
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise DiaryError(relpath, "leads outside the journal folder")
        return path

    def _scan(self) -> _Scan:
        if not self.root.is_dir():
            return _Scan({}, missing=True)
        root = self.root.resolve()
        now = time.time_ns()
        hashes: dict[str, str] = {}
        blind: list[str] = []
        cache: dict[str, tuple[tuple[int, ...], str]] = {}
        for relpath, path in _walk(self.root, "", blind):
            try:
                if path.is_symlink() and not path.resolve().is_relative_to(root):
                    continue
                stat = path.stat()
            except (OSError, RuntimeError):  # vanished, or a symlink loop
                continue
            key = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev)
            known = self._hashes.get(relpath)
            if known is not None and known[0] == key:
                digest = known[1]
            else:
                try:
                    digest = _sha256_file(path)
                except FileNotFoundError:
                    continue
                except OSError:
                    digest = ""
            hashes[relpath] = digest
            # A file changed within the clock's granularity could change again unseen: don't trust it.
            if digest and now - max(stat.st_mtime_ns, stat.st_ctime_ns) > _RACY_NS:
                cache[relpath] = (key, digest)
        self._hashes = cache
        return _Scan(hashes, tuple(blind))


def _exists(diaries: Diaries, relpath: str) -> bool:
    try:
        return os.path.lexists(diaries._path(relpath))
    except DiaryError:
        return False


def _walk(folder: Path, prefix: str, blind: list[str]) -> Iterator[tuple[str, Path]]:
    try:
        with os.scandir(folder) as it:
            items = sorted(it, key=lambda e: e.name)
    except OSError:
        blind.append(prefix)
        return
    for item in items:
        name = item.name
        if name.startswith(".") or name.endswith(_TMP_SUFFIX):
            continue
        try:
            name.encode()
        except UnicodeEncodeError:  # a file name that is not UTF-8 cannot be a relpath
            continue
        relpath = f"{prefix}/{name}" if prefix else name
        try:
            is_dir = item.is_dir(follow_symlinks=False)
        except OSError:
            continue
        if is_dir:
            yield from _walk(Path(item.path), relpath, blind)
        elif name.lower().endswith(".md"):
            yield relpath, Path(item.path)


def _parse(relpath: str, content: str, mtime: float) -> Entry:
    if not content.strip():
        raise DiaryError(relpath, "empty file (left alone: perhaps an editor is saving it)")
    opening = _OPENING.match(content)
    if opening is None:  # a person's plain Markdown file
        return Entry(id=diary_id(relpath), at=mtime, text=_newlines(content).strip())
    closing = _CLOSING.search(content, opening.end())
    if closing is None:
        raise DiaryError(relpath, "front matter has no closing '---' line")
    try:
        meta = yaml.load(content[opening.end() : closing.start()], Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        where = f" at line {exc.problem_mark.line + 2}" if exc.problem_mark is not None else ""
        raise DiaryError(
            relpath, f"invalid YAML front matter{where}: {exc.problem or exc}"
        ) from exc
    except (yaml.YAMLError, RecursionError) as exc:
        raise DiaryError(relpath, f"invalid YAML front matter: {exc}") from exc
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise DiaryError(relpath, "front matter is not a set of 'key: value' lines")
    text = _newlines(content[closing.end() :]).strip()
    if not text:
        raise DiaryError(relpath, "has no text after the front matter")
    return Entry(
        id=_text(relpath, meta, "id") or diary_id(relpath),
        at=_timestamp(meta.get("timestamp", meta.get("date")), mtime),
        text=text,
        title=_text(relpath, meta, "title"),
        tags=_names(relpath, meta, "tags"),
        emotion=_text(relpath, meta, "emotion"),
        importance=_importance(relpath, meta.get("importance")),
        people=_names(relpath, meta, "people"),
        person_id=_text(relpath, meta, "person") or _text(relpath, meta, "person_id"),
    )


class _Loader(yaml.SafeLoader):
    """SafeLoader, except that an impossible date (``2024-02-30``) stays text instead of raising."""


def _lenient_timestamp(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> object:
    try:
        return loader.construct_yaml_timestamp(node)
    except ValueError:
        return loader.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _lenient_timestamp)


def _dump(meta: dict[str, object], *, allow_unicode: bool) -> str:
    # One line per key (no folding): easier to edit by hand.
    return yaml.safe_dump(
        meta, sort_keys=False, allow_unicode=allow_unicode, default_flow_style=False, width=1 << 30
    )


def _scalar(value: object) -> str | None:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float | date):
        return str(value).strip()
    return None


def _text(relpath: str, meta: dict[Any, Any], key: str) -> str:
    value = _scalar(meta.get(key))
    if value is None:
        raise DiaryError(relpath, f"'{key}' must be text")
    return value


def _names(relpath: str, meta: dict[Any, Any], key: str) -> tuple[str, ...]:
    value = meta.get(key)
    items: list[object]
    if isinstance(value, str):
        items = list(value.split(","))
    elif isinstance(value, list):
        items = value
    else:
        items = [value]
    names = [_scalar(item) for item in items]
    if any(name is None for name in names):
        raise DiaryError(relpath, f"'{key}' must be a list or comma-separated text")
    return tuple(name for name in names if name)


def _importance(relpath: str, value: object) -> float:
    if value is None:
        return 0.5
    number = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if math.isnan(number):
        raise DiaryError(relpath, f"'importance' must be a number from 0 to 1, not {value!r}")
    return min(1.0, max(0.0, number))


def _timestamp(value: object, mtime: float) -> float:
    """Unix seconds from what a person may write; the file's mtime when it says nothing usable."""
    when: datetime | None = None
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, date):
        when = datetime(value.year, value.month, value.day)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) and _in_range(float(value)) else mtime
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            return mtime
    if when is None:
        return mtime
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # a time without a zone is taken as UTC
    try:
        return (when - _EPOCH) / timedelta(seconds=1)
    except OverflowError:
        return mtime


def _in_range(at: float) -> bool:
    try:
        _utc(at)
    except ValueError:
        return False
    return True


def _utc(at: float) -> datetime:
    try:
        return datetime.fromtimestamp(at, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"journal time {at!r} is out of range") from exc


def _slug(source: str) -> str:
    words = " ".join(source.split()[:8])
    plain = unicodedata.normalize("NFKD", words).encode("ascii", "ignore").decode().lower()
    return _NOT_SLUG.sub("-", plain).strip("-")[:40].rstrip("-") or "entry"


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            digest.update(chunk)
    return digest.hexdigest()


def _has_bytes(path: Path, data: bytes) -> bool:
    """Whether ``path`` already holds ``data``; if so it is fsynced, as a fresh write would be."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size != len(data) or f.read() != data:
                return False
            os.fsync(f.fileno())
    except FileNotFoundError:
        return False
    return True


def _makedirs(folder: Path) -> None:
    missing: list[Path] = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        created.mkdir(exist_ok=True)
        fsync_dir(created.parent)  # the new folder's name is durable before the file in it
