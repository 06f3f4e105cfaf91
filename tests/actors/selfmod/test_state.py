"""The state repository, on real git: commits, tags, rollback byte for byte, mending after a kill."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

import pytest

from actors.brain.persona import DEFAULT_PERSONA_PATH
from actors.selfmod.draft import rewrite, unified
from actors.selfmod.guard import ProposalRefused
from actors.selfmod.rules import persona_change
from actors.selfmod.state import StateError, StateRepo

SHIPPED = DEFAULT_PERSONA_PATH.read_bytes()
P = ["persona.toml"]  # what each change here touches


def repo(tmp_path: Path) -> StateRepo:
    r = StateRepo(tmp_path / "state")
    r.ensure({"persona.toml": SHIPPED})
    return r


def change(text: str, value: str = "Soft, slow sentences.") -> str:
    return unified(text, rewrite(text, "style.sentence_shape", value))


def test_the_first_commit_is_the_shipped_files_tagged_factory(tmp_path: Path) -> None:
    r = repo(tmp_path)
    assert r.read("persona.toml", "factory") == SHIPPED
    assert r.files() == {"persona.toml": SHIPPED}
    head = r.head()
    r.ensure({"persona.toml": b"other"})  # a second start changes nothing
    assert r.head() == head and r.read("persona.toml") == SHIPPED


def test_an_owners_edit_is_synced_as_a_commit_once(tmp_path: Path) -> None:
    r = repo(tmp_path)
    edited = SHIPPED.replace(b"chaotic tsundere goblin", b"chaotic tsundere gremlin")
    commit = r.sync({"persona.toml": edited}, "owner's edit")
    assert commit and r.read("persona.toml") == edited
    assert r.sync({"persona.toml": edited}, "owner's edit") is None


def test_a_change_is_committed_tagged_and_reverted_byte_for_byte(tmp_path: Path) -> None:
    r = repo(tmp_path)
    text = SHIPPED.decode()
    diff = change(text)
    r.check(diff)
    commit = r.commit_diff(diff, "p1: softer", "p1", P)
    assert r.resolve("p1") == commit
    assert b"Soft, slow sentences." in (r.read("persona.toml") or b"")
    assert r.diff("factory", "p1").count("\n+") >= 1
    r.revert("p1", "p1-rollback: undo", "p1-rollback")
    assert r.read("persona.toml") == SHIPPED  # exactly
    subjects = [s for _, _, s in r.log()]
    assert subjects[:2] == ["p1-rollback: undo", "p1: softer"]


def test_a_revert_under_a_later_change_to_the_same_lines_is_refused(tmp_path: Path) -> None:
    r = repo(tmp_path)
    text = SHIPPED.decode()
    r.commit_diff(change(text), "p1: a", "p1", P)
    now = (r.read("persona.toml") or b"").decode()
    r.commit_diff(change(now, "Something else entirely."), "p2: b", "p2", P)
    with pytest.raises(ProposalRefused, match="roll that back first"):
        r.revert("p1", "p1-rollback", "p1-rollback")
    r.revert("p2", "p2-rollback", "p2-rollback")
    r.revert("p1", "p1-rollback", "p1-rollback")
    assert r.read("persona.toml") == SHIPPED


def test_restore_brings_back_the_factory_files(tmp_path: Path) -> None:
    r = repo(tmp_path)
    r.sync({"persona.toml": b"# mine\n" + SHIPPED}, "owner")
    r.commit_diff(change((r.read("persona.toml") or b"").decode()), "p1: x", "p1", P)
    r.restore("factory", "reset", "reset-1")
    assert r.read("persona.toml") == SHIPPED
    assert (r.path / "persona.toml").read_bytes() == SHIPPED


def test_a_diff_that_does_not_apply_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    r = repo(tmp_path)
    diff = change(SHIPPED.decode()).replace("Short punchy", "Long winding")
    with pytest.raises(ProposalRefused, match="does not apply"):
        r.check(diff)
    assert (
        r.read("persona.toml") == SHIPPED
        and not subprocess.run(
            ["git", "-C", str(r.path), "status", "--porcelain"], capture_output=True, text=True
        ).stdout
    )


def test_what_a_killed_change_left_behind_is_cleared(tmp_path: Path) -> None:
    r = repo(tmp_path)
    # A kill between `git apply --index` and the commit: a lock, a staged edit, a stray file.
    (r.path / "persona.toml").write_bytes(b"half")
    (r.path / "plugins").mkdir()
    (r.path / "plugins" / "stray.py").write_text("x")
    (r.path / ".git" / "index.lock").write_bytes(b"")
    r.ensure({"persona.toml": b"ignored"})
    assert (r.path / "persona.toml").read_bytes() == SHIPPED
    assert not (r.path / "plugins").exists()
    assert not (r.path / ".git" / "index.lock").exists()
    r.commit_diff(change(SHIPPED.decode()), "p1: x", "p1", P)  # and it works again


def test_a_symlink_planted_in_the_repository_is_not_followed(tmp_path: Path) -> None:
    r = repo(tmp_path)
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me\n")
    (r.path / "plugins").mkdir()
    os.symlink(outside, r.path / "plugins" / "x.py")
    diff = "--- a/plugins/x.py\n+++ b/plugins/x.py\n@@ -1 +1 @@\n-keep me\n+overwritten\n"
    with pytest.raises(ProposalRefused):
        r.commit_diff(diff, "p1: x", "p1", P)
    assert outside.read_text() == "keep me\n"


def _block(name: str, items: list[str]) -> str:
    return f"{name} = [\n" + "".join(f'    "{x}",\n' for x in items) + "]\n"


def test_a_rollback_merges_and_never_lands_on_a_lookalike_protected_key(tmp_path: Path) -> None:
    # Found in review: her vocabulary made a copy of the hard limits' lines, so the reverse of
    # a later change also fits there; a patch applied "at an offset" moved a hard limit. A
    # rollback is a three-way merge now, and checked.
    base = 'name = "Hex"\n' + _block("hard_limits", list("ABCDEFG")) + "\n[style]\n"
    r = StateRepo(tmp_path / "state")
    r.ensure({"persona.toml": (base + _block("vocabulary", ["v"])).encode()})
    for tag, vocab in (("p1", list("ABCZEFG")), ("p2", list("ABCDEFG")), ("p3", list("AXCDEFG"))):
        now = (r.read("persona.toml") or b"").decode()
        new = now[: now.index("[style]")] + "[style]\n" + _block("vocabulary", vocab)
        r.commit_diff(unified(now, new), f"{tag}: x", tag, P, check)
    try:
        r.revert("p2", "p2-rollback: x", "p2-rollback", check)
    except ProposalRefused as exc:
        assert "later change" in str(exc)
    after = tomllib.loads((r.read("persona.toml") or b"").decode())
    assert after["hard_limits"] == list("ABCDEFG")
    assert after["style"]["vocabulary"] in (list("AXCZEFG"), list("AXCDEFG"))


def test_a_rollback_that_would_move_a_protected_key_is_refused(tmp_path: Path) -> None:
    r = repo(tmp_path)
    # The owner changed a hard limit by hand (theirs to change); her rollback of it is not.
    edited = SHIPPED.replace(b"No sexual content", b"No sexual content, ever")
    commit = r.sync({"persona.toml": edited}, "owner's edit")
    assert commit is not None
    with pytest.raises(ProposalRefused, match="hard limits"):
        r.revert(commit, "x-rollback: x", "x-rollback", check)
    assert r.read("persona.toml") == edited and r.head() == commit


def check(before: dict[str, bytes], after: dict[str, bytes]) -> None:
    persona_change(before["persona.toml"], after["persona.toml"])


def test_a_change_must_touch_exactly_what_the_guard_read(tmp_path: Path) -> None:
    r = repo(tmp_path)
    with pytest.raises(ProposalRefused, match=r"not plugins/x\.py"):
        r.commit_diff(change(SHIPPED.decode()), "p1: x", "p1", ["plugins/x.py"])
    assert r.read("persona.toml") == SHIPPED


def test_a_version_name_that_is_an_option_is_refused(tmp_path: Path) -> None:
    r = repo(tmp_path)
    with pytest.raises(StateError, match="not a version"):
        r.resolve("--output=/tmp/x")
    with pytest.raises(StateError, match="no version"):
        r.resolve("p99")
