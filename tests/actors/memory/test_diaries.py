from __future__ import annotations

import hashlib
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.memory.diaries import MAX_BYTES, Changes, Diaries, DiaryError, Entry, diary_id

AT = datetime(2024, 3, 5, 14, 7, 9, 250000, tzinfo=UTC).timestamp()


def entry(**changes: object) -> Entry:
    base = Entry(
        id="m_0123456789abcdef",
        at=AT,
        text="Sam told me about the hike.\n\n- it rained",
        title="A hike with Sam",
        tags=("hiking", "sam"),
        emotion="happy",
        importance=0.8,
        people=("sam",),
        person_id="sam",
    )
    return msgspec.structs.replace(base, **changes)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def age(path: Path, seconds: float = 3600) -> None:
    """Make a file look untouched for a while, so a scan may trust its cached hash."""
    old = time.time() - seconds
    os.utime(path, (old, old))


@pytest.fixture
def diaries(tmp_path: Path) -> Diaries:
    return Diaries(tmp_path / "journals")


# -- format -----------------------------------------------------------------------------------

# Characters that YAML treats specially (line breaks, indicators, BOM) next to arbitrary text.
tricky = st.sampled_from(
    [
        "\x85",
        "\u2028",
        "\ufeff",
        "\x00",
        "\r\n",
        "\t",
        "\n---\n",
        "\n...\n",
        ": ",
        "#",
        "'",
        '"',
        "\\",
        "&a",
        "*a",
        "!x",
        "|",
        "- ",
        "🎉",
        " ",
    ]
)
mixed = st.lists(st.one_of(st.text(max_size=12), tricky), max_size=6).map("".join)
one_line = mixed.map(str.strip)
names = st.lists(one_line.filter(lambda s: s != "" and "," not in s), max_size=4).map(tuple)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.lists(
        st.one_of(mixed, st.sampled_from(["---", "...", "--- ", "# h", ""])), min_size=1, max_size=8
    )
    .map("\n".join)
    .filter(lambda t: t.replace("\r", "\n").strip() != ""),
    title=st.one_of(
        one_line, st.sampled_from(['Sam\'s "big" day: 🎉 #1!', "---", "- a", "yes", "2024-01-02"])
    ),
    tags=names,
    people=names,
    emotion=one_line,
    importance=st.floats(min_value=0.0, max_value=1.0),
    micros=st.integers(
        min_value=-62_000_000_000 * 1_000_000, max_value=253_000_000_000 * 1_000_000
    ),  # years 6..9986
)
def test_render_then_read_gives_back_the_entry(
    diaries: Diaries,
    text: str,
    title: str,
    tags: tuple[str, ...],
    people: tuple[str, ...],
    emotion: str,
    importance: float,
    micros: int,
) -> None:
    original = Entry(
        id="m_feedc0ffee",
        at=micros / 1_000_000,
        text=text,
        title=title,
        tags=tags,
        emotion=emotion,
        importance=importance,
        people=people,
        person_id=emotion,
    )
    relpath, digest = diaries.write(original)
    got, got_digest = diaries.read(relpath)
    assert got_digest == digest == hashlib.sha256(diaries.render(original)).hexdigest()
    assert got.at == pytest.approx(original.at, abs=1e-6)
    want = msgspec.structs.replace(
        original, text=text.replace("\r\n", "\n").replace("\r", "\n").strip()
    )
    assert msgspec.structs.replace(got, at=original.at) == want
    diaries.remove(relpath)


def test_render_is_readable_yaml_front_matter_in_a_fixed_order(diaries: Diaries) -> None:
    data = diaries.render(entry(title="Café ☕ with Sam")).decode()
    front, body = data.removeprefix("---\n").split("---\n\n", 1)
    assert list(yaml.safe_load(front)) == [
        "id",
        "timestamp",
        "title",
        "tags",
        "emotion",
        "importance",
        "people",
        "person",
    ]
    assert "timestamp: '2024-03-05T14:07:09.250000Z'" in front
    assert "Café ☕ with Sam" in front  # not \u escapes
    assert body == "Sam told me about the hike.\n\n- it rained\n"
    assert diaries.render(entry(title="Café ☕ with Sam")).decode() == data


def test_yaml_line_break_characters_and_early_years_survive(diaries: Diaries) -> None:
    original = entry(
        title="a\x85b", tags=("x\u2028y",), at=datetime(999, 12, 31, tzinfo=UTC).timestamp()
    )
    relpath, _ = diaries.write(original)
    assert relpath.startswith("0999/12/31/")
    assert diaries.read(relpath)[0] == original


def test_entries_that_cannot_be_written_are_refused(diaries: Diaries) -> None:
    with pytest.raises(ValueError, match="no text"):
        diaries.render(entry(text=" \n "))
    with pytest.raises(ValueError, match="needs an id"):
        diaries.render(entry(id=""))
    with pytest.raises(ValueError, match="out of range"):
        diaries.relpath_for(entry(at=1e20))


# -- layout -----------------------------------------------------------------------------------


def test_relpath_is_the_utc_day_then_time_slug_and_id(diaries: Diaries) -> None:
    assert diaries.relpath_for(entry()) == "2024/03/05/140709-a-hike-with-sam-m_0123456789abcdef.md"


def test_slug_comes_from_the_text_without_a_title_and_stays_plain_ascii(diaries: Diaries) -> None:
    relpath = diaries.relpath_for(entry(title="", text="Ça va? Très bien!! 🎉 " + "word " * 30))
    slug = relpath.split("/")[-1].removeprefix("140709-").removesuffix("-m_0123456789abcdef.md")
    assert re.fullmatch(r"[a-z0-9-]{1,40}", slug) and slug.startswith("ca-va-tres-bien-word")
    assert diaries.relpath_for(entry(title="🎉🎉")).endswith("/140709-entry-m_0123456789abcdef.md")


def test_an_id_unsafe_in_a_file_name_is_hashed(diaries: Diaries) -> None:
    name = diaries.relpath_for(entry(id="../../etc/passwd")).split("/")[-1]
    assert name == f"140709-a-hike-with-sam-{diary_id('../../etc/passwd')}.md"


# -- files ------------------------------------------------------------------------------------


def test_write_is_atomic_idempotent_and_leaves_no_temp_files(diaries: Diaries) -> None:
    first = diaries.write(entry())
    path = diaries.root / first[0]
    age(path)
    stamp = path.stat().st_mtime_ns
    assert diaries.write(entry()) == first
    assert path.stat().st_mtime_ns == stamp  # same bytes: nothing rewritten
    assert first[1] == sha(path)
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    changed = diaries.write(entry(text="A different day."))
    assert changed[0] == first[0] and changed[1] != first[1]
    assert diaries.scan() == {first[0]: changed[1]} == {first[0]: sha(path)}


def test_remove_deletes_the_file_and_the_folders_it_leaves_empty(diaries: Diaries) -> None:
    kept, _ = diaries.write(entry(id="m_kept", at=AT + 86400 * 40))  # another month
    gone, _ = diaries.write(entry())
    assert diaries.remove(gone) is True
    assert not (diaries.root / "2024" / "03").exists()
    assert (diaries.root / kept).is_file() and (diaries.root / "2024").is_dir()
    assert diaries.remove(gone) is False
    assert diaries.remove(kept) is True
    assert list(diaries.root.iterdir()) == []  # the root itself stays


def test_remove_keeps_a_folder_holding_a_persons_own_file(diaries: Diaries) -> None:
    relpath, _ = diaries.write(entry())
    note = (diaries.root / relpath).parent / ".notes"
    note.write_text("mine")
    assert diaries.remove(relpath)
    assert note.exists()


@pytest.mark.parametrize(
    "relpath",
    [
        "../outside.md",
        "2024/../../outside.md",
        "/etc/x.md",
        "a//b.md",
        "2024/.hidden.md",
        "2024/notes.txt",
        "./a.md",
    ],
)
def test_paths_that_escape_the_folder_are_rejected(diaries: Diaries, relpath: str) -> None:
    with pytest.raises(DiaryError, match=re.escape(relpath)):
        diaries.read(relpath)
    with pytest.raises(DiaryError):
        diaries.remove(relpath)


def test_a_symlink_out_of_the_folder_is_rejected_and_not_scanned(
    diaries: Diaries, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.md"
    secret.write_text("---\nid: s\n---\nsecret\n")
    diaries.root.mkdir()
    (diaries.root / "link.md").symlink_to(secret)
    (diaries.root / "dir").symlink_to(tmp_path)
    with pytest.raises(DiaryError, match="outside"):
        diaries.read("link.md")
    with pytest.raises(DiaryError, match="outside"):
        diaries.remove("dir/secret.md")
    assert diaries.scan() == {}
    assert secret.exists()


def test_read_reports_non_utf8_and_oversized_files(diaries: Diaries) -> None:
    diaries.root.mkdir()
    (diaries.root / "latin1.md").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(DiaryError, match=r"latin1\.md: not UTF-8"):
        diaries.read("latin1.md")
    (diaries.root / "big.md").write_bytes(b"x" * (MAX_BYTES + 1))
    with pytest.raises(DiaryError, match="too large"):
        diaries.read("big.md")


# -- a person's edits -------------------------------------------------------------------------


def test_a_person_editing_body_and_tags_is_reported_with_the_new_hash_and_same_id(
    diaries: Diaries,
) -> None:
    relpath, digest = diaries.write(entry())
    path = diaries.root / relpath
    age(path)
    assert diaries.changes({relpath: digest}) == Changes()
    edited = (
        path.read_text()
        .replace("tags:\n- hiking\n- sam", "tags: hiking, rain")
        .replace("it rained", "it poured, and we laughed")
    )
    path.write_text(edited)
    changes = diaries.changes({relpath: digest})
    assert not changes.deleted and not changes.errors
    [(got_path, got, got_digest)] = changes.changed
    assert (got_path, got.id, got_digest) == (relpath, entry().id, sha(path))
    assert got.tags == ("hiking", "rain") and got.text.endswith("it poured, and we laughed")
    assert got.at == pytest.approx(AT)


def test_an_edit_keeping_size_and_mtime_is_still_seen(diaries: Diaries) -> None:
    relpath, digest = diaries.write(entry())
    path = diaries.root / relpath
    age(path)
    assert diaries.scan() == {relpath: digest}  # now cached by its stat
    stat = path.stat()
    path.write_text(path.read_text().replace("rained", "snowed"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert diaries.scan() == {relpath: sha(path)} != {relpath: digest}


def test_a_person_deleting_a_file_is_reported_deleted(diaries: Diaries) -> None:
    relpath, digest = diaries.write(entry())
    (diaries.root / relpath).unlink()
    assert diaries.changes({relpath: digest}).deleted == (relpath,)


def test_a_plain_markdown_file_is_adopted_with_a_stable_diary_id(diaries: Diaries) -> None:
    folder = diaries.root / "notes"
    folder.mkdir(parents=True)
    path = folder / "Sam's birthday.md"
    path.write_text("# Sam's birthday\n\nCake, and far too many candles.\n")
    first = diaries.changes({})
    [(relpath, got, digest)] = first.changed
    assert relpath == "notes/Sam's birthday.md" and digest == sha(path)
    assert got.id == diary_id(relpath) and re.fullmatch(r"j_[0-9a-f]{16}", got.id)
    assert got.text == "# Sam's birthday\n\nCake, and far too many candles."
    assert got.at == path.stat().st_mtime
    assert diaries.changes({}).changed[0][1].id == got.id
    assert diaries.changes({relpath: digest}) == Changes()


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("2023-07-01", datetime(2023, 7, 1, tzinfo=UTC)),
        ("2023-07-01 10:30:00", datetime(2023, 7, 1, 10, 30, tzinfo=UTC)),
        ("2023-07-01T10:30:00+02:00", datetime(2023, 7, 1, 8, 30, tzinfo=UTC)),
        ("'2023-07-01T10:30:00.5Z'", datetime(2023, 7, 1, 10, 30, 0, 500000, tzinfo=UTC)),
        ("'July 1st'", None),
        ("2023-02-30", None),  # looks like a date to YAML, but there is no such day
        ("", None),
    ],
)
def test_a_persons_timestamp_may_be_a_date_datetime_or_text(
    diaries: Diaries,
    when: str,
    expected: datetime | None,
) -> None:
    diaries.root.mkdir()
    path = diaries.root / "day.md"
    path.write_text(
        f"---\ntitle: A day\ntimestamp: {when}\ntags: [a, b]\nimportance: 7\n---\nWe met.\n"
    )
    got, _ = diaries.read("day.md")
    assert got.at == (expected.timestamp() if expected else path.stat().st_mtime)
    assert (got.id, got.title, got.tags, got.importance) == (
        diary_id("day.md"),
        "A day",
        ("a", "b"),
        1.0,
    )


def test_broken_files_are_reported_not_deleted_and_do_not_stop_the_scan(diaries: Diaries) -> None:
    good, good_digest = diaries.write(entry(id="m_good"))
    bad, bad_digest = diaries.write(entry(id="m_bad", at=AT + 1))
    empty, empty_digest = diaries.write(entry(id="m_empty", at=AT + 2))
    (diaries.root / bad).write_text("---\nid: m_bad\ntags: [unclosed\n---\nhalf saved\n")
    (diaries.root / empty).write_bytes(b"")
    unclosed = diaries.root / "2024" / "unclosed.md"
    unclosed.write_text("---\nid: x\ntitle: never closed\n")
    latin = diaries.root / "2024" / "latin1.md"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    changes = diaries.changes({good: good_digest, bad: bad_digest, empty: empty_digest})
    assert changes.changed == () and changes.deleted == ()
    problems = dict(changes.errors)
    assert set(problems) == {bad, empty, "2024/unclosed.md", "2024/latin1.md"}
    assert problems[bad].startswith("invalid YAML front matter at line")
    assert "empty" in problems[empty] and "closing" in problems["2024/unclosed.md"]
    assert all("\n" not in p for p in problems.values())


@pytest.mark.parametrize(
    ("front", "problem"),
    [
        ("- a list", "key: value"),
        ("tags: {a: 1}", "'tags'"),
        ("importance: high", "'importance'"),
        ("title: [a, b]", "'title'"),
    ],
)
def test_front_matter_of_the_wrong_shape_is_an_error(
    diaries: Diaries, front: str, problem: str
) -> None:
    diaries.root.mkdir()
    (diaries.root / "x.md").write_text(f"---\n{front}\n---\nbody\n")
    [(relpath, message)] = diaries.changes({}).errors
    assert relpath == "x.md" and problem in message


def test_an_oversized_file_is_an_error_in_changes(diaries: Diaries) -> None:
    diaries.root.mkdir()
    (diaries.root / "big.md").write_bytes(b"---\nid: big\n---\n" + b"x" * MAX_BYTES)
    assert [(p, "too large" in m) for p, m in diaries.changes({}).errors] == [("big.md", True)]


def test_a_temp_file_left_by_a_crashed_write_is_ignored(diaries: Diaries) -> None:
    relpath, digest = diaries.write(entry())
    folder = (diaries.root / relpath).parent
    (folder / f".{Path(relpath).name}.deadbeef.tmp").write_bytes(diaries.render(entry(text="half")))
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "x.md").write_text("hidden")
    assert diaries.scan() == {relpath: digest}
    assert diaries.changes({relpath: digest}) == Changes()


def test_a_missing_or_unlistable_folder_deletes_nothing(diaries: Diaries) -> None:
    relpath, digest = diaries.write(entry())
    moved = diaries.root.with_name("elsewhere")
    diaries.root.rename(moved)
    changes = diaries.changes({relpath: digest})
    assert changes.deleted == () and "missing" in changes.errors[0][1]
    assert diaries.changes({}) == Changes()
    moved.rename(diaries.root)
    year = diaries.root / "2024"
    year.chmod(0)
    try:
        if os.access(year, os.R_OK):
            pytest.skip("running as root: permissions are not enforced")
        changes = diaries.changes({relpath: digest})
        assert changes.deleted == () and changes.errors == (("2024", changes.errors[0][1]),)
    finally:
        year.chmod(0o755)


def test_relpaths_use_forward_slashes_and_only_markdown(diaries: Diaries) -> None:
    a, _ = diaries.write(entry())
    (diaries.root / "2024" / "readme.txt").write_text("not an entry")
    (diaries.root / "Upper.MD").write_text("A person's note.")
    assert sorted(diaries.scan()) == sorted([a, "Upper.MD"])
    assert "/" in a and "\\" not in a
