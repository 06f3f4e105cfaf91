"""The state repository: a git repository of Hex's changeable files, one commit per change.

Its first commit, tagged ``factory``, holds the shipped files; every change after it is a
commit: an owner's edit made outside selfmod (found by :meth:`StateRepo.sync`), an applied
proposal (tagged ``p<N>``), a rollback, a factory reset. A commit is git's atomic step: a
process killed half-way leaves the repository at the commit before or after, and
:meth:`StateRepo.recover` clears what it left in the working tree. The selfmod actor is its
only writer; the sandbox works on a clone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, overload

from actors.selfmod.guard import ALLOWED, ProposalRefused

_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "hex-selfmod",
    "GIT_AUTHOR_EMAIL": "selfmod@hex.local",
    "GIT_COMMITTER_NAME": "hex-selfmod",
    "GIT_COMMITTER_EMAIL": "selfmod@hex.local",
    "GIT_TERMINAL_PROMPT": "0",
}
# Symlinks are written as plain files, names never fold case, and the protections against
# names that alias .git on other filesystems are on everywhere.
_CONFIG = {
    "core.symlinks": "false",
    "core.ignorecase": "false",
    "core.protectNTFS": "true",
    "core.protectHFS": "true",
    "core.fileMode": "false",
    "commit.gpgsign": "false",
    "tag.gpgsign": "false",
}


# Looks at a change before it is committed (files before, changed files after); raises
# ProposalRefused to stop it.
Check = Callable[[dict[str, bytes], dict[str, bytes]], None]


def _run(argv: list[str], data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """git with nothing of the user's (no global or system config, no prompts)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **_ENV}
    return subprocess.run(argv, input=data, capture_output=True, env=env, timeout=60)


class StateError(Exception):
    """git failed on the state repository; the message names what it said."""


def allowed(path: str) -> bool:
    return any(pattern.fullmatch(path) for pattern, _ in ALLOWED)


class StateRepo:
    def __init__(self, path: Path) -> None:
        self.path = path

    @overload
    def git(self, *args: str, check: bool = ..., status: Literal[False] = ...) -> str: ...
    @overload
    def git(self, *args: str, check: bool = ..., status: Literal[True]) -> int: ...
    def git(self, *args: str, check: bool = True, status: bool = False) -> str | int:
        """Run git here; its output (``status``: its exit code instead)."""
        done = _run(["git", "-C", str(self.path), *args])
        if check and done.returncode != 0:
            said = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise StateError(f"git {args[0]}: {said[-1] if said else f'exit {done.returncode}'}")
        if status:
            return done.returncode
        return done.stdout.decode("utf-8", "replace")

    # -- making and mending ------------------------------------------------------------------

    def ensure(self, factory: dict[str, bytes]) -> None:
        """Create the repository with ``factory`` as its first commit, unless it exists."""
        if (self.path / ".git").is_dir() and self.git(
            "rev-parse", "--verify", "-q", "factory", check=False
        ):
            self.recover()
            return
        self.path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        self._configure()
        self._write(factory)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", "factory: the shipped files")
        self.git("tag", "factory")

    def _configure(self) -> None:
        for key, value in _CONFIG.items():
            self.git("config", key, value)

    def recover(self) -> None:
        """Put the working tree back at HEAD: what a process killed mid-change left is dropped
        (the change either reached its commit or did not happen)."""
        git_dir = self.path / ".git"
        for leftover in ("index.lock", "REVERT_HEAD", "MERGE_MSG", "AUTO_MERGE"):
            (git_dir / leftover).unlink(missing_ok=True)
        shutil.rmtree(git_dir / "sequencer", ignore_errors=True)
        self.git("reset", "-q", "--hard", "HEAD")
        self.git("clean", "-q", "-fdx")

    def _write(self, files: dict[str, bytes]) -> None:
        for rel, data in files.items():
            if not allowed(rel):
                raise ProposalRefused(f"{rel}: outside the allow-listed paths")
            target = self.path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink():
                target.unlink()
            target.write_bytes(data)

    # -- reading -----------------------------------------------------------------------------

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def resolve(self, rev: str) -> str:
        """A commit id for ``rev`` (a tag, an id, ``HEAD~1``), or :class:`StateError`."""
        if rev.startswith("-"):
            raise StateError(f"{rev!r} is not a version")
        out = self.git("rev-parse", "--verify", "-q", f"{rev}^{{commit}}", check=False).strip()
        if not out:
            raise StateError(f"no version {rev!r} in the state repository")
        return out

    def files(self, rev: str = "HEAD") -> dict[str, bytes]:
        """The allow-listed files at ``rev``."""
        names = self.git("ls-tree", "-r", "--name-only", self.resolve(rev)).splitlines()
        return {n: self.read(n, rev) or b"" for n in names if allowed(n)}

    def read(self, rel: str, rev: str = "HEAD") -> bytes | None:
        """A file's bytes at ``rev`` (``":"``: as staged); None where it does not exist."""
        spec = f":{rel}" if rev == ":" else f"{self.resolve(rev)}:{rel}"
        done = _run(["git", "-C", str(self.path), "show", spec])
        return done.stdout if done.returncode == 0 else None

    def diff(self, a: str, b: str) -> str:
        return self.git("diff", "--no-color", "--no-renames", self.resolve(a), self.resolve(b))

    def log(self, limit: int = 50) -> list[tuple[str, str, str]]:
        """(commit, tags, subject) newest first."""
        out = self.git("log", f"-{limit}", "--format=%H%x09%D%x09%s")
        rows = []
        for line in out.splitlines():
            commit, refs, subject = [*line.split("\t", 2), "", ""][:3]
            tags = ",".join(r[5:] for r in refs.split(", ") if r.startswith("tag: "))
            rows.append((commit, tags, subject))
        return rows

    # -- changing ----------------------------------------------------------------------------

    def sync(self, live: dict[str, bytes], message: str) -> str | None:
        """Commit the live files where they differ from HEAD (an owner's edit outside selfmod);
        the new commit, or None when they match."""
        if all(self.read(rel) == data for rel, data in live.items()):
            return None
        self._write(live)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.head()

    def check(self, diff: str) -> None:
        """:class:`ProposalRefused` unless ``diff`` applies cleanly to HEAD (nothing is written)."""
        self._apply(diff, "--check")

    def _apply(self, diff: str, *flags: str) -> None:
        done = _run(
            ["git", "-C", str(self.path), "apply", "--whitespace=nowarn", "-p1", *flags, "-"],
            diff.encode("utf-8"),
        )
        if done.returncode != 0:
            said = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise ProposalRefused(
                f"the diff does not apply: {said[0] if said else 'git apply failed'}"
            )

    def commit_diff(
        self, diff: str, message: str, tag: str, expected: Sequence[str], check: Check | None = None
    ) -> str:
        """Apply ``diff`` and commit it, tagged; the commit. It must change exactly the files
        ``expected`` (what the guard read), and ``check(before, after)`` may refuse the result."""
        self.recover()
        before = self.files()
        self._apply(diff, "--index")
        return self._commit(before, message, tag, expected, check)

    def _commit(
        self,
        before: dict[str, bytes],
        message: str,
        tag: str,
        expected: Sequence[str] | None,
        check: Check | None,
    ) -> str:
        staged = sorted(self.git("diff", "--cached", "--name-only", "--no-renames").splitlines())
        try:
            for rel in staged:
                if not allowed(rel) or (self.path / rel).is_symlink():
                    raise ProposalRefused(f"{rel}: the change reached outside the allow-list")
            if expected is not None and staged != sorted(expected):
                raise ProposalRefused(
                    f"the change touched {', '.join(staged) or 'nothing'}, "
                    f"not {', '.join(sorted(expected))}"
                )
            if not staged:
                raise ProposalRefused("the change leaves every file as it was")
            if check is not None:
                check(before, {rel: self.read(rel, ":") or b"" for rel in staged})
        except ProposalRefused:
            self.recover()
            raise
        self.git("commit", "-q", "-m", message)
        self.git("tag", "-f", tag)
        return self.head()

    def restore(self, rev: str, message: str, tag: str) -> str:
        """Make HEAD's files those of ``rev`` in a new commit (a factory reset)."""
        self.recover()
        before = self.files()
        wanted = self.files(rev)
        for rel in before:
            if rel not in wanted:
                self.git("rm", "-q", "--", rel)
        self._write(wanted)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        self.git("tag", "-f", tag)
        return self.head()

    def revert(self, rev: str, message: str, tag: str, check: Check | None = None) -> str:
        """Undo ``rev``'s change on top of HEAD by a three-way merge (later changes kept), or
        :class:`ProposalRefused` when a later change touched the same lines; ``check(before,
        after)`` may refuse the result (a rollback never moves a protected key)."""
        commit = self.resolve(rev)
        self.recover()
        before = self.files()
        done = self.git("revert", "--no-commit", "--no-edit", commit, check=False, status=True)
        if done:
            self.recover()
            raise ProposalRefused(
                f"a later change touched what {rev} changed: roll that back first"
            )
        return self._commit(before, message, tag, None, check)

    def clone_to(self, dest: Path, rev: str = "HEAD") -> None:
        """A copy of ``rev``'s files in ``dest`` (a git checkout of its own, for the sandbox)."""
        self.git("clone", "-q", "--no-hardlinks", str(self.path), str(dest))
        other = StateRepo(dest)
        other._configure()
        other.git("checkout", "-q", "--detach", self.resolve(rev))
