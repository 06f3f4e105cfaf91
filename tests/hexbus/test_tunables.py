"""The settings she may change and their bounds: read strictly (every way out refused with the
setting named), laid over an actor's config exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hexbus import tunables
from hexbus.tunables import TUNABLES, SettingsError, overlay, read

BRAIN = "actors.brain.actor:BrainActor"
AUTONOMY = "actors.autonomy.actor:AutonomyActor"
MODULES = {"brain": BRAIN, "autonomy": AUTONOMY, "selfmod": tunables.SELFMOD_MODULE}


def test_settings_in_bounds_are_read_by_actor_and_dotted_key() -> None:
    text = (
        "[brain.budgets]\nreply = 120\nmemories = 0\n"
        "[autonomy]\nanniversary_importance = 1\npacing = { per_day = 1 }\n"
    )
    assert read(text, MODULES) == {
        "brain": {"budgets.reply": 120, "budgets.memories": 0},
        "autonomy": {"anniversary_importance": 1.0, "pacing.per_day": 1},
    }
    assert isinstance(read(text, MODULES)["autonomy"]["anniversary_importance"], float)
    assert read("", MODULES) == {} and read("[brain]\n", MODULES) == {}


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[brain.budgets]\nreply = 601\n", "brain.budgets.reply = 601: outside its bounds 16..600"),
        ("[brain.budgets]\nreply = 15\n", "outside its bounds 16..600 (tokens a reply may take)"),
        ("[brain.budgets]\nreply = 120.0\n", "brain.budgets.reply = 120.0: a whole number"),
        ("[brain.budgets]\nreply = true\n", "brain.budgets.reply = True: a whole number"),
        ('[brain.budgets]\nreply = "120"\n', "a whole number"),
        ("[brain.budgets]\npersona = 10\n", "brain.budgets.persona: not a setting she may change"),
        ("[brain]\nseed = 3\n", "brain.seed: not a setting she may change"),
        ("[brain]\nbudgets = 3\n", "brain.budgets: not a setting she may change"),
        ("[selfmod]\nscenarios = 1\n", "selfmod.scenarios: not a setting she may change (none)"),
        ("[supervisor]\nx = 1\n", "[supervisor]: no actor of that name in supervisor.toml"),
        ("brain = 3\n", "brain: a table of settings per actor"),
        ("[autonomy]\nanniversary_importance = nan\n", "a finite number"),
        (
            "[autonomy.pacing]\nper_day = 9\n",
            "autonomy.pacing.per_day = 9: outside its bounds 0..4",
        ),
        ("[brain.budgets\n", "settings.toml is not valid TOML"),
    ],
)
def test_every_way_out_of_the_bounds_is_refused_with_the_setting_named(
    text: str, said: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        read(text, MODULES)
    assert said in str(caught.value)


def test_a_table_for_an_actor_no_longer_configured_is_skipped_when_asked() -> None:
    text = "[memory]\nx = 1\n[brain.budgets]\nreply = 120\n"
    unknown: list[str] = []
    assert read(text, MODULES, unknown) == {"brain": {"budgets.reply": 120}}
    assert unknown == ["memory"]
    with pytest.raises(SettingsError, match=r"\[memory\]: no actor of that name"):
        read(text, MODULES)


def test_nesting_too_deep_for_the_parser_is_a_clear_refusal() -> None:
    with pytest.raises(SettingsError, match="nested too deeply"):
        read("[brain]\nx = " + "[" * 5000 + "]" * 5000 + "\n", MODULES)
    deep = "[brain]\n" + ".".join(["a"] * 2000) + " = 1\n"
    with pytest.raises(SettingsError):
        read(deep, MODULES)


def test_bytes_too_large_or_not_utf8_are_refused() -> None:
    with pytest.raises(SettingsError, match="not UTF-8"):
        read(b"[brain.budgets]\nreply = 1\xff\n", MODULES)
    with pytest.raises(SettingsError, match="over 16 KiB"):
        read(b"#" * (17 << 10), MODULES)


def test_overlay_sets_only_the_keys_given_and_leaves_the_config_alone() -> None:
    config = {"seed": 7, "budgets": {"reply": 48, "turns": 600}}
    out = overlay(config, {"budgets.reply": 120, "pacing.per_day": 1})
    assert out == {"seed": 7, "budgets": {"reply": 120, "turns": 600}, "pacing": {"per_day": 1}}
    assert config == {"seed": 7, "budgets": {"reply": 48, "turns": 600}}  # not changed in place


def test_changed_names_settings_set_changed_or_unset() -> None:
    before = {"brain": {"budgets.reply": 48, "budgets.turns": 600}}
    after = {"brain": {"budgets.reply": 120}, "autonomy": {"pacing.per_day": 1}}
    assert tunables.changed(before, after) == [
        "autonomy.pacing.per_day",
        "brain.budgets.reply",
        "brain.budgets.turns",
    ]
    assert tunables.changed(before, before) == []


def test_the_live_file_is_the_selfmod_actors_wherever_it_is_named(tmp_path: Path) -> None:
    named = {"brain": BRAIN, "changes": tunables.SELFMOD_MODULE}
    assert tunables.live_path(tmp_path, named) == tmp_path / "actors/changes/settings.toml"
    assert tunables.live_path(tmp_path, {"brain": BRAIN}) is None


SETTINGS = [
    (module, key, bound) for module, table in TUNABLES.items() for key, bound in table.items()
]


@st.composite
def in_bounds(draw: st.DrawFn) -> tuple[str, str, int | float]:
    module, key, bound = draw(st.sampled_from(SETTINGS))
    if bound.kind is int:
        value: int | float = draw(st.integers(int(bound.low), int(bound.high)))
    else:
        value = draw(st.floats(bound.low, bound.high, allow_nan=False))
    actor = next(a for a, m in MODULES.items() if m == module)
    return actor, key, value


@given(st.lists(in_bounds(), max_size=6))
def test_any_settings_in_bounds_read_back_as_written(chosen: list[tuple[str, str, float]]) -> None:
    wanted: dict[str, dict[str, int | float]] = {}
    for actor, key, value in chosen:
        wanted.setdefault(actor, {})[key] = value
    lines = []
    for actor, table in wanted.items():
        lines.append(f"[{actor}]")
        lines += [f"{key} = {value!r}" for key, value in table.items()]
    assert read("\n".join(lines) + "\n", MODULES) == wanted


@given(st.sampled_from(SETTINGS), st.floats(allow_nan=False, allow_infinity=False))
def test_any_value_outside_the_bounds_is_refused(
    setting: tuple[str, str, tunables.Tunable], value: float
) -> None:
    module, key, bound = setting
    actor = next(a for a, m in MODULES.items() if m == module)
    number: int | float = int(value) if bound.kind is int else value
    if bound.low <= number <= bound.high:
        return
    with pytest.raises(SettingsError, match=f"{actor}.{key}"):
        read(f"[{actor}]\n{key} = {number!r}\n", MODULES)
