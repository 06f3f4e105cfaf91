"""What a self-modification may touch: the allow-list, and a strict reading of its diff.

A proposal's ``what`` is a unified diff against the state repository (state.py). This module
reads it before anything else does and refuses, with the reason, every form a diff can take to
reach beyond the allow-list: a path outside it, ``..`` or ``.`` segments, absolute or empty
segments, backslashes, percent-encoding, non-ASCII look-alikes, a differently cased name,
renames and copies, mode changes, symlinks, deletions, binary patches, quoted names, and hunks
whose line counts do not match their headers (a way to smuggle a second header past a reader).
Only what passes reaches ``git apply``, which keeps its own checks (no writing beyond a
symlink) as a second wall. The allow-list is code, not configuration: nothing she can change
can widen it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_DIFF_BYTES = 128 * 1024

# The changeable files, each with the level (the owner's selfmod.* switch) it needs.
PERSONA = "persona.toml"
SETTINGS = "settings.toml"
_NAME = r"[a-z][a-z0-9_]{0,39}"
PLUGIN = re.compile(rf"plugins/({_NAME})\.py")
PROMPTS = re.compile(rf"prompts/({_NAME}\.toml)")
ALLOWED: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(re.escape(PERSONA)), "selfmod.propose"),
    (re.compile(re.escape(SETTINGS)), "selfmod.propose"),
    (PLUGIN, "selfmod.plugins"),
    (PROMPTS, "selfmod.logic"),
)
ALLOWED_TEXT = "persona.toml, settings.toml, plugins/NAME.py, prompts/NAME.toml"
# Files she may create (settings.toml: a state repository begun before it existed has none).
NEW_FILES = re.compile(rf"(settings\.toml|plugins/{_NAME}\.py|prompts/{_NAME}\.toml)")

# Named so a refusal says what was reached for (every other path is simply outside the list).
PROTECTED = {
    "supervisor.toml": "the supervisor's configuration (and the kill switch's)",
    "capabilities.json": "the owner's capability switches",
    ".git": "the state repository's own history",
    "hexbus": "the runtime",
    "actors": "the actors' code",
    "schemas": "the bus's schemas",
    "tests": "the tests",
    ".env": "the secrets",
    "selfmod": "self-modification itself",
}


class ProposalRefused(Exception):
    """A proposal that may not go further: one line saying why."""


@dataclass
class FileDiff:
    path: str
    new: bool = False
    added: int = 0
    removed: int = 0
    hunks: list[str] = field(default_factory=list)


def plugin_name(path: str) -> str:
    """The plugin's name for its path ("" when it is not a plugin)."""
    found = PLUGIN.fullmatch(path)
    return found.group(1) if found else ""


def prompts_name(path: str) -> str:
    """The template file's name for its path, "reply.toml" ("" when it is not one)."""
    found = PROMPTS.fullmatch(path)
    return found.group(1) if found else ""


def level_of(path: str) -> str:
    """The capability a change to ``path`` needs (the path passed :func:`check_path`)."""
    for pattern, capability in ALLOWED:
        if pattern.fullmatch(path):
            return capability
    raise ProposalRefused(f"{path}: outside the allow-listed paths ({ALLOWED_TEXT})")


def check_path(raw: str) -> str:
    """``raw`` as a path in the state repository, or :class:`ProposalRefused` naming the trick."""
    if not raw:
        raise ProposalRefused("an empty path")
    if not raw.isascii() or not raw.isprintable():
        raise ProposalRefused(f"{raw!r}: a non-ASCII or unprintable path (an encoding trick)")
    if raw.startswith('"'):
        raise ProposalRefused(f"{raw}: a quoted path (git quotes names with unusual characters)")
    if "\\" in raw:
        raise ProposalRefused(f"{raw}: a backslash in a path")
    if "%" in raw:
        raise ProposalRefused(f"{raw}: a percent-encoded path")
    if raw.startswith("/"):
        raise ProposalRefused(f"{raw}: an absolute path")
    parts = raw.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ProposalRefused(f"{raw}: a path with a '..', '.' or empty segment")
    for pattern, _ in ALLOWED:
        if pattern.fullmatch(raw):
            return raw
    for pattern, _ in ALLOWED:
        if pattern.fullmatch(raw.lower()):
            raise ProposalRefused(
                f"{raw}: a differently cased path ({raw.lower()} is the one allowed)"
            )
    what = PROTECTED.get(parts[0]) or PROTECTED.get(parts[-1])
    if what:
        raise ProposalRefused(f"{raw}: protected ({what}), outside the allow-listed paths")
    raise ProposalRefused(f"{raw}: outside the allow-listed paths ({ALLOWED_TEXT})")


_HUNK = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@.*")
_INDEX = re.compile(r"index [0-9a-f]{4,64}\.\.[0-9a-f]{4,64}( 100644)?")
_EXTENDED = {
    "rename from": "a rename",
    "rename to": "a rename",
    "copy from": "a copy",
    "copy to": "a copy",
    "similarity index": "a rename or copy",
    "dissimilarity index": "a rewrite",
    "deleted file mode": "a deletion",
    "old mode": "a mode change",
    "new mode": "a mode change",
    "GIT binary patch": "a binary patch",
    "Binary files": "a binary patch",
}


def _header_path(line: str, prefix: str, side: str) -> str:
    raw = line[len(prefix) :].split("\t", 1)[0]
    if raw == "/dev/null":
        return raw
    if not raw.startswith(side):
        raise ProposalRefused(f"{line!r}: paths must start with {side} (a git diff)")
    return check_path(raw[len(side) :])


def read_diff(text: str) -> list[FileDiff]:
    """The files a diff changes, each checked; :class:`ProposalRefused` for anything else."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_DIFF_BYTES:
        raise ProposalRefused(f"the diff is over {MAX_DIFF_BYTES // 1024} KiB")
    if "\x00" in text or "\r" in text:
        raise ProposalRefused("the diff holds a NUL or carriage return")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    files: list[FileDiff] = []
    current: FileDiff | None = None
    new_mode = False
    pending = ""  # the file a 'diff --git' line named, until its '---'/'+++' lines come
    i = 0
    while i < len(lines):
        line = lines[i]
        n = i + 1
        for start, what in _EXTENDED.items():
            if line.startswith(start):
                raise ProposalRefused(
                    f"line {n}: {what} is refused (only edits of allow-listed files)"
                )
        if line.startswith("diff --git "):
            parts = line[len("diff --git ") :].split(" ")
            if len(parts) != 2:
                raise ProposalRefused(f"line {n}: a 'diff --git' line with spaces in its paths")
            a, b = (_header_path(p, "", side) for p, side in zip(parts, ("a/", "b/"), strict=True))
            if a != b:
                raise ProposalRefused(f"line {n}: {a} and {b} differ (a rename)")
            if pending:
                raise ProposalRefused(_headless(pending))
            current, new_mode, pending = None, False, a
        elif line.startswith("new file mode "):
            if not pending:
                raise ProposalRefused(f"line {n}: 'new file mode' outside a 'diff --git' header")
            if line != "new file mode 100644":
                raise ProposalRefused(
                    f"line {n}: {line[14:]} is not a plain file (a symlink or executable)"
                )
            new_mode = True
        elif _INDEX.fullmatch(line):
            pass
        elif line.startswith("--- "):
            if i + 1 >= len(lines) or not lines[i + 1].startswith("+++ "):
                raise ProposalRefused(f"line {n}: '---' without its '+++' line")
            old = _header_path(line, "--- ", "a/")
            new = _header_path(lines[i + 1], "+++ ", "b/")
            if new == "/dev/null":
                raise ProposalRefused(f"line {n + 1}: deleting {old} is refused")
            if old not in ("/dev/null", new):
                raise ProposalRefused(f"line {n}: {old} becomes {new} (a rename)")
            created = old == "/dev/null"
            if pending and new != pending:
                raise ProposalRefused(f"line {n}: the header names {pending}, the change {new}")
            if new_mode and not created:
                raise ProposalRefused(f"line {n}: {new}: a new file's mode without its creation")
            pending = ""
            if created and not NEW_FILES.fullmatch(new):
                raise ProposalRefused(f"line {n}: {new} may be edited, not created")
            if any(f.path == new for f in files):
                raise ProposalRefused(f"line {n}: {new} appears twice in the diff")
            current = FileDiff(new, new=created or new_mode)
            files.append(current)
            i += 2
            continue
        elif line.startswith("@@"):
            if current is None:
                raise ProposalRefused(f"line {n}: a hunk before any file header")
            i = _read_hunk(lines, i, current)
            continue
        else:
            raise ProposalRefused(f"line {n}: {line[:60]!r} is not part of a plain unified diff")
        i += 1
    if pending:
        raise ProposalRefused(_headless(pending))
    if not files:
        raise ProposalRefused("the diff changes no file")
    for f in files:
        if not f.hunks:
            raise ProposalRefused(f"{f.path}: a header with no change")
    return files


def _headless(path: str) -> str:
    return f"{path}: a 'diff --git' header without its change (git would create or touch it empty)"


def _read_hunk(lines: list[str], i: int, into: FileDiff) -> int:
    """Read the hunk at ``lines[i]``; the index after it. Counts must match the header."""
    m = _HUNK.fullmatch(lines[i])
    if m is None:
        raise ProposalRefused(f"line {i + 1}: a malformed hunk header")
    old = 1 if m.group(2) is None else int(m.group(2))
    new = 1 if m.group(4) is None else int(m.group(4))
    start = i
    i += 1
    while old > 0 or new > 0:
        if i >= len(lines):
            raise ProposalRefused(f"line {start + 1}: the hunk ends before its counted lines")
        tag = lines[i][:1]
        if tag == " ":
            old, new = old - 1, new - 1
        elif tag == "-":
            old -= 1
            into.removed += 1
        elif tag == "+":
            new -= 1
            into.added += 1
        elif lines[i] == "" and i + 1 < len(lines):  # an empty context line some tools trim
            old, new = old - 1, new - 1
        elif tag != "\\":
            raise ProposalRefused(f"line {i + 1}: a hunk line must start with ' ', '+' or '-'")
        if old < 0 or new < 0:
            raise ProposalRefused(
                f"line {start + 1}: the hunk holds more lines than its header counts"
            )
        i += 1
    while i < len(lines) and lines[i].startswith("\\"):
        i += 1
    into.hunks.append("\n".join(lines[start:i]))
    return i
