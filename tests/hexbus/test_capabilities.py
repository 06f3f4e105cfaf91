"""The capability switches' rules, under any order of changes by owners and people."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hexbus.capabilities import CATALOGUE, Capabilities, SwitchRefused
from schemas.capability import CAPABILITIES

NAMES = [c.name for c in CAPABILITIES]
PEOPLE = ["ana", "ben", "cy"]

change = st.tuples(
    st.sampled_from(NAMES),
    st.booleans(),
    st.sampled_from(["", *PEOPLE]),  # for whom
    st.sampled_from(["owner", *PEOPLE]),  # by whom
)


@given(st.lists(change, max_size=40))
def test_nobody_but_an_owner_turns_anything_on_and_a_persons_off_holds(
    changes: list[tuple[str, bool, str, str]],
) -> None:
    caps = Capabilities()
    owner_view = Capabilities()  # the same changes, owners' only: what people may not exceed
    vetoed: set[tuple[str, str]] = set()  # a person's own "off", until they or an owner change it
    for name, enabled, person, by in changes:
        owner = by == "owner"
        before = caps.version
        try:
            caps.set(name, enabled, by=by, owner=owner, person_id=person, now=1.0)
        except SwitchRefused as exc:
            mine = caps.switches.get((name, person))
            assert not owner and (not person or person != by or (mine and mine.owner)), exc
            assert caps.version == before
            continue
        if owner:
            owner_view.set(name, enabled, by=by, owner=True, person_id=person, now=1.0)
            vetoed.discard((name, person))
        elif not enabled:
            vetoed.add((name, person))
        else:
            vetoed.discard((name, person))
        for n in NAMES:
            for p in PEOPLE:
                if caps.allowed(n, p):
                    assert owner_view.allowed(n, p), (n, p)  # people only ever take away
                if any((lv, p) in vetoed for lv in [n.split(".")[0], n]):
                    assert not caps.allowed(n, p)


def test_a_platform_switch_needs_its_parent_and_defaults_are_conservative() -> None:
    caps = Capabilities()
    assert not caps.allowed("speak_first.discord", "ana")  # speak_first is off by default
    for off in ("speak_first", "camera", "screen", "selfmod.propose", "selfmod.apply"):
        assert not CATALOGUE[off].default
    line = caps.set("speak_first.voice", True, by="cli", owner=True)
    assert "speak_first is off" in line
    caps.set("speak_first", True, by="cli", owner=True)
    assert caps.allowed("speak_first.discord", "ana")
    caps.set("speak_first.discord", False, by="ana", owner=False, person_id="ana")
    assert not caps.allowed("speak_first.discord", "ana") and caps.allowed("speak_first.web", "ana")
    assert caps.allowed("speak_first.discord", "ben")
    caps.set("camera", True, by="cli", owner=True)
    assert caps.allowed_for_all("camera")
    caps.set("camera", False, by="ben", owner=False, person_id="ben")  # "stop watching me"
    assert not caps.allowed_for_all("camera") and caps.allowed("camera", "ana")
    assert not caps.allowed_for_all("speak_first.discord")  # ana's own off
    line = caps.set("speak_first.discord", True, by="ana", owner=False, person_id="ana")
    assert "follows the owner's switch again: on" in line and caps.allowed(
        "speak_first.discord", "ana"
    )


@pytest.mark.parametrize(
    ("name", "person", "by", "words"),
    [
        ("camera", "", "ana", "only an owner may switch camera for everyone"),
        ("camera", "ben", "ana", "only an owner may switch camera for someone else"),
        ("telepathy", "ana", "ana", "no capability 'telepathy'"),
    ],
)
def test_refusals_are_one_line(name: str, person: str, by: str, words: str) -> None:
    with pytest.raises(SwitchRefused, match=words):
        Capabilities().set(name, False, by=by, owner=False, person_id=person)


def test_saved_and_loaded_exactly_and_a_damaged_file_is_named(tmp_path: Path) -> None:
    caps = Capabilities()
    caps.set("camera", True, by="cli", owner=True, now=5.0)
    caps.set("speak_first", False, by="ana", owner=False, person_id="ana", now=6.0)
    caps.save(tmp_path)
    again = Capabilities.load(tmp_path)
    assert again.switches == caps.switches and again.version == caps.version == 2
    changed = caps.changed(name="camera", person_id="", enabled=True, by="cli", via="cli")
    fresh = Capabilities()
    assert fresh.apply(changed) and not fresh.apply(changed)  # an old table is ignored
    assert fresh.allowed("camera") and not fresh.allowed("speak_first", "ana")
    (tmp_path / "capabilities.json").write_text("{not json")
    with pytest.raises(SwitchRefused, match=r"capabilities\.json is damaged"):
        Capabilities.load(tmp_path)
    assert Capabilities.load(tmp_path / "nowhere").version == 0
