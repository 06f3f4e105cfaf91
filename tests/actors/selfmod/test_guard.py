"""The guard: every way a diff can reach beyond the allow-list is refused, with its reason."""

from __future__ import annotations

import difflib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.brain.persona import DEFAULT_PERSONA_PATH
from actors.selfmod.guard import ALLOWED, ProposalRefused, check_path, level_of, read_diff

PERSONA_TEXT = DEFAULT_PERSONA_PATH.read_text(encoding="utf-8")


def edit(path_a: str = "persona.toml", path_b: str | None = None, *, header: str = "") -> str:
    """A real diff of persona.toml (one line of its style changed), under the given names."""
    before = PERSONA_TEXT.splitlines(keepends=True)
    after = [line.replace("Short punchy sentences", "Loose, easy sentences") for line in before]
    body = "".join(difflib.unified_diff(before, after, f"a/{path_a}", f"b/{path_b or path_a}", n=3))
    return header + body


def test_a_plain_edit_of_the_persona_passes() -> None:
    files = read_diff(edit())
    assert [(f.path, f.added, f.removed, f.new) for f in files] == [("persona.toml", 1, 1, False)]
    assert level_of("persona.toml") == "selfmod.propose"


PROTECTED_PATHS = [
    ("supervisor.toml", "supervisor's configuration"),
    ("capabilities.json", "capability switches"),
    ("actors/selfmod/actor.py", "actors' code"),
    ("actors/supervisor/supervisor.py", "actors' code"),
    ("hexbus/actor.py", "runtime"),
    ("schemas/delivery.py", "schemas"),
    ("tests/actors/selfmod/test_guard.py", "tests"),
    (".git/config", "history"),
    (".git/hooks/post-commit", "history"),
    (".env", "secrets"),
    ("selfmod/state.json", "self-modification itself"),
]


@pytest.mark.parametrize(("path", "what"), PROTECTED_PATHS)
def test_each_protected_path_is_refused_by_name(path: str, what: str) -> None:
    with pytest.raises(ProposalRefused, match=re.escape(what)):
        read_diff(edit(path))


TRICKS = [
    ("../supervisor.toml", "'..'"),
    ("plugins/../supervisor.toml", "'..'"),
    ("plugins/../../etc/passwd", "'..'"),
    ("./persona.toml", "'..', '.'"),
    ("plugins//x.py", "empty segment"),
    ("/etc/passwd", "absolute"),
    ("Persona.toml", "differently cased"),
    ("PERSONA.TOML", "differently cased"),
    ("plugins/Greeter.py", "differently cased"),
    ("persona%2etoml", "percent-encoded"),
    ("%2e%2e/supervisor.toml", "percent-encoded"),
    ("p\u0435rsona.toml", "non-ASCII"),  # a Cyrillic ie
    ("persona.toml\u200b", "non-ASCII"),  # a zero-width space
    ("\uff50ersona.toml", "non-ASCII"),  # a full-width p
    ("plugins\\..\\supervisor.toml", "backslash"),
    ("persona.toml.bak", "outside the allow-listed"),
    ("plugins/x.py/../../supervisor.toml", "'..'"),
    ("prompts/x.toml.py", "outside the allow-listed"),
]


@pytest.mark.parametrize(("path", "why"), TRICKS)
def test_path_tricks_are_refused_with_their_name(path: str, why: str) -> None:
    with pytest.raises(ProposalRefused, match=re.escape(why)):
        check_path(path)
    with pytest.raises(ProposalRefused):
        read_diff(edit(path))


def test_a_rename_by_git_headers_is_refused() -> None:
    renamed = (
        "diff --git a/persona.toml b/persona.toml\n"
        "similarity index 90%\nrename from persona.toml\nrename to supervisor.toml\n"
    )
    with pytest.raises(ProposalRefused, match="rename"):
        read_diff(renamed + edit())
    with pytest.raises(ProposalRefused, match="protected"):  # the git line names the target first
        read_diff(renamed.replace("b/persona.toml", "b/supervisor.toml") + edit())


def test_a_rename_between_the_minus_and_plus_lines_is_refused() -> None:
    with pytest.raises(ProposalRefused, match=r"rename|outside|protected"):
        read_diff(edit("persona.toml", "plugins/evil.py"))


def test_a_diff_git_line_naming_two_files_is_refused() -> None:
    with pytest.raises(ProposalRefused, match="rename"):
        read_diff(edit(header="diff --git a/persona.toml b/plugins/x.py\n"))


def test_a_symlink_is_refused() -> None:
    diff = (
        "diff --git a/plugins/link.py b/plugins/link.py\n"
        "new file mode 120000\n"
        "--- /dev/null\n+++ b/plugins/link.py\n@@ -0,0 +1 @@\n+../supervisor.toml\n"
        "\\ No newline at end of file\n"
    )
    with pytest.raises(ProposalRefused, match="symlink"):
        read_diff(diff)


def test_a_git_header_without_its_change_is_refused() -> None:
    # Found in review: git creates an empty file from a bare header the reader never saw.
    bare = "diff --git a/plugins/evil.py b/plugins/evil.py\nnew file mode 100644\n"
    with pytest.raises(ProposalRefused, match="without its change"):
        read_diff(bare + "diff --git a/persona.toml b/persona.toml\n" + edit())
    with pytest.raises(ProposalRefused, match=r"names plugins/evil\.py, the change persona"):
        read_diff(bare + edit())
    with pytest.raises(ProposalRefused, match="without its change"):
        read_diff(edit() + "diff --git a/settings.toml b/settings.toml\n")
    with pytest.raises(ProposalRefused, match=r"names plugins/x\.py"):
        read_diff("diff --git a/plugins/x.py b/plugins/x.py\n" + edit())
    with pytest.raises(ProposalRefused, match="outside a 'diff --git' header"):
        read_diff("new file mode 100644\n" + edit())
    with pytest.raises(ProposalRefused, match="mode without its creation"):
        read_diff("diff --git a/persona.toml b/persona.toml\nnew file mode 100644\n" + edit())


def test_an_executable_file_is_refused() -> None:
    diff = (
        "diff --git a/plugins/run.py b/plugins/run.py\nnew file mode 100755\n"
        "--- /dev/null\n+++ b/plugins/run.py\n@@ -0,0 +1 @@\n+print(1)\n"
    )
    with pytest.raises(ProposalRefused, match="executable"):
        read_diff(diff)


def test_mode_changes_deletions_copies_and_binary_patches_are_refused() -> None:
    cases = {
        "old mode 100644\nnew mode 100755\n": "mode change",
        "deleted file mode 100644\n": "deletion",
        "copy from persona.toml\ncopy to plugins/x.py\n": "copy",
        "GIT binary patch\nliteral 5\nMc${NkU|;|M00aO4m;e9(\n": "binary",
        "Binary files a/persona.toml and b/persona.toml differ\n": "binary",
    }
    for header, what in cases.items():
        with pytest.raises(ProposalRefused, match=what):
            read_diff("diff --git a/persona.toml b/persona.toml\n" + header)


def test_deleting_the_persona_is_refused() -> None:
    diff = '--- a/persona.toml\n+++ /dev/null\n@@ -1 +0,0 @@\n-name = "Hex"\n'
    with pytest.raises(ProposalRefused, match="deleting"):
        read_diff(diff)


def test_creating_the_persona_is_refused_and_settings_may_be_created() -> None:
    create = "--- /dev/null\n+++ b/{}\n@@ -0,0 +1 @@\n+x = 1\n"
    with pytest.raises(ProposalRefused, match="may be edited, not created"):
        read_diff(create.format("persona.toml"))
    # A state repository begun before settings existed has none: her first one creates it.
    (created,) = read_diff(create.format("settings.toml"))
    assert created.path == "settings.toml" and created.new


def test_a_header_smuggled_inside_an_undercounted_hunk_is_refused() -> None:
    # The hunk claims one line but carries three: a reader that trusts the count would
    # treat the rest as a second file's header.
    diff = (
        "--- a/persona.toml\n+++ b/persona.toml\n@@ -1 +1 @@\n"
        '-name = "Hex"\n+name = "Hex"\n--- a/supervisor.toml\n+++ b/supervisor.toml\n'
        "@@ -1 +1 @@\n-[supervisor]\n+[supervisor]\n"
    )
    with pytest.raises(ProposalRefused, match="supervisor"):
        read_diff(diff)


def test_a_hunk_that_stops_short_is_refused() -> None:
    with pytest.raises(ProposalRefused, match="ends before"):
        read_diff("--- a/persona.toml\n+++ b/persona.toml\n@@ -1,3 +1,3 @@\n name = 1\n")


def test_nul_and_carriage_returns_are_refused() -> None:
    with pytest.raises(ProposalRefused, match="NUL"):
        read_diff(edit().replace("Loose", "Lo\x00ose"))
    with pytest.raises(ProposalRefused, match="carriage"):
        read_diff(edit().replace("\n", "\r\n"))


def test_quoted_paths_and_paths_without_prefixes_are_refused() -> None:
    with pytest.raises(ProposalRefused):
        read_diff(edit().replace("a/persona.toml", '"a/persona.toml"'))
    with pytest.raises(ProposalRefused, match="must start with"):
        read_diff(edit().replace("--- a/persona.toml", "--- persona.toml"))


def test_the_same_file_twice_is_refused() -> None:
    with pytest.raises(ProposalRefused, match="twice"):
        read_diff(edit() + edit())


def test_garbage_is_refused_and_an_empty_diff_changes_nothing() -> None:
    with pytest.raises(ProposalRefused, match="not part of a plain unified diff"):
        read_diff("please apply: rm -rf /\n")
    with pytest.raises(ProposalRefused, match="no file"):
        read_diff("")


_PIECES = [*"abcpx_/.-%\\ ", "persona", "toml", "plugins", "..", "é", "P"]
_PATHS = st.lists(st.sampled_from(_PIECES), max_size=12).map("".join)


@settings(max_examples=400, deadline=None)
@given(_PATHS)
def test_any_path_is_allow_listed_exactly_or_refused(raw: str) -> None:
    try:
        path = check_path(raw)
    except ProposalRefused as exc:
        assert str(exc)
        return
    assert path == raw
    assert any(pattern.fullmatch(path) for pattern, _ in ALLOWED)
    assert ".." not in path.split("/") and not path.startswith("/")


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_real_edit_of_the_persona_is_read_back_with_its_counts(data: st.DataObject) -> None:
    lines = PERSONA_TEXT.splitlines(keepends=True)
    after = list(lines)
    changed = data.draw(
        st.lists(st.integers(0, len(lines) - 1), min_size=1, max_size=5, unique=True)
    )
    for i in changed:
        after[i] = after[i].rstrip("\n") + " # edited\n"
    diff = "".join(difflib.unified_diff(lines, after, "a/persona.toml", "b/persona.toml"))
    (f,) = read_diff(diff)
    assert f.path == "persona.toml"
    body = diff.splitlines()[2:]
    assert f.added == sum(line.startswith("+") for line in body) >= len(changed)
    assert f.removed == sum(line.startswith("-") for line in body) >= len(changed)
