"""The selfmod actor in-process (hexbus.testing): who may decide, what the switches allow, a
failing brain rolling back a change in its trial, and a change that makes the audit worse
approved anyway and rolled back by its trial run (the packaged model in the real sandbox)."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import msgspec
import psutil
import pytest

from actors.selfmod import draft
from actors.selfmod.actor import SelfmodActor
from actors.selfmod.config import SHIPPED_PERSONA, SelfmodConfig
from actors.selfmod.draft import rewrite, unified
from hexbus.actor import ActorUnusable
from hexbus.capabilities import Capabilities
from hexbus.testing import ActorHarness
from schemas import (
    ActorLifecycle,
    BrainTask,
    BrainTaskResult,
    PersonaChanged,
    PersonaEdit,
    PluginFailed,
    PluginInstall,
    PluginRemove,
    PromptsChanged,
    PromptsEdit,
    SelfmodChanged,
    SelfmodDecide,
    SelfmodProposal,
    SelfmodRequest,
    Switch,
)
from tests.support.brain import brain_toml

TEXT = SHIPPED_PERSONA.read_text()
SHORT = "[actors.brain.config.budgets]\nreply = 48"


def harness(root: Path, *switches: str, **config: object) -> ActorHarness[SelfmodActor]:
    shutil.copy(SHIPPED_PERSONA, root / "persona.toml")
    (root / "supervisor.toml").write_text(brain_toml(root, extra=SHORT))
    data = root / "data" / "actors" / "selfmod"
    data.mkdir(parents=True)
    h = ActorHarness(SelfmodActor, SelfmodConfig(**config), name="selfmod", data_dir=data)  # type: ignore[arg-type]
    h.actor.config_dir = root
    h.actor.config_file = root / "supervisor.toml"
    h.actor.capabilities = Capabilities(
        [Switch(name=s, enabled=True, by="owner", owner=True, at=0.0) for s in switches]
    )
    return h


def run(
    body: Callable[[ActorHarness[SelfmodActor]], Awaitable[None]],
    root: Path,
    *switches: str,
    **config: object,
) -> None:
    async def main() -> None:
        h = harness(root, *switches, **config)
        await h.setup()
        await h.actor.on_live()
        try:
            await body(h)
        finally:
            await h.stop()

    asyncio.run(main())
    # A sandbox run still in flight (the trial an approval starts) died with the actor's stop:
    # left running, it held the model on both cores long after the test (and pytest's exit).
    left = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "actors.brain.trial" in " ".join(p.info["cmdline"] or ())
        and str(root) in " ".join(p.info["cmdline"] or ())
    ]
    _, alive = psutil.wait_procs(left, timeout=10)
    assert not alive, f"sandbox runs outlived the actor: {[p.pid for p in alive]}"


async def until(predicate: Callable[[], object], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.05)


def errors(out: Sequence[object]) -> list[str]:
    return [e.error for e in out if isinstance(e, SelfmodChanged) and e.error]


def ready(h: ActorHarness[SelfmodActor], diff: str) -> int:
    """A proposal recorded and marked ready without its sandbox run (the decision tests)."""
    p = h.actor.shop.submit("e1", SelfmodProposal(diff=diff, why="calmer"), lambda _: True, 0.0)
    p.status, p.expires = "ready", time.time() + 3600
    return p.id


CALMER = unified(TEXT, rewrite(TEXT, "style.sentence_shape", "Calm, plain sentences."))


def test_only_an_owner_from_a_terminal_or_a_decider_may_decide(tmp_path: Path) -> None:
    async def body(h: ActorHarness[SelfmodActor]) -> None:
        n = ready(h, CALMER)
        approve = SelfmodDecide(action="approve", id=n, by="ana", owner=True)
        refused = {
            "brain": errors(await h.send(approve, source="brain")),
            "selfmod": errors(await h.send(approve, source="selfmod")),
            "not owner": errors(
                await h.send(SelfmodDecide(action="approve", id=n, by="bo"), source="discord")
            ),
        }
        assert "brain may not decide" in refused["brain"][0]
        assert "does not decide for itself" in refused["selfmod"][0]
        assert "only an owner may approve (bo is not one)" in refused["not owner"][0]
        assert "client may not decide" in errors(await h.send(approve, source="client"))[0]
        assert "selfmod.apply is off" in errors(await h.send(approve, source="cli123"))[0]
        assert h.actor.state.proposals[n].status == "ready"
        assert not [e for e in h.published if isinstance(e, PersonaEdit)]

    run(body, tmp_path, "selfmod.propose")


def test_a_brain_failing_in_the_trial_period_rolls_the_change_back(tmp_path: Path) -> None:
    async def body(h: ActorHarness[SelfmodActor]) -> None:
        n = ready(h, CALMER)
        h.actor.shop.decide(
            SelfmodDecide(action="approve", id=n, by="o", owner=True), "d", time.time()
        )
        other = await h.send(ActorLifecycle(actor="memory", change="restart"))
        assert not [e for e in other if isinstance(e, SelfmodDecide)]
        out = await h.send(ActorLifecycle(actor="brain", change="restart"))
        (rollback,) = [e for e in out if isinstance(e, SelfmodDecide)]
        assert (rollback.action, rollback.id) == ("rollback", n)
        done = await h.send(rollback, source="selfmod")  # as the bus hands it back
        assert h.actor.state.proposals[n].status == "rolled_back"
        (edit,) = [e for e in done if isinstance(e, PersonaEdit)]
        assert edit.text == TEXT  # byte for byte

    run(body, tmp_path, "selfmod.propose", "selfmod.apply")


def test_the_brains_late_word_on_a_change_rolled_back_since_is_not_an_owners_edit(
    tmp_path: Path,
) -> None:
    """Approved, then rolled back before the brain said it took the change: its late word comes
    while the live file holds the approved text. That is the brain taking her older push, not
    an owner's edit outside selfmod: HEAD stays the rollback (it used to be committed back as
    "an owner's edit"), and the brain's next word, on the rollback, finds them equal. An owner's
    own edit of the file is still committed."""

    async def body(h: ActorHarness[SelfmodActor]) -> None:
        live = tmp_path / "persona.toml"
        n = ready(h, CALMER)
        approve = SelfmodDecide(action="approve", id=n, by="o", owner=True)
        h.actor.shop.decide(approve, "d", time.time())
        await h.actor.push("selfmod: applied", "o")
        rollback = SelfmodDecide(action="rollback", id=n, by="o", owner=True)
        await h.send(rollback, source="cli1")
        pushed = [(e.id, e.body) for e, _ in h.bus.published if isinstance(e.body, PersonaEdit)]
        (applied_id, applied), (back_id, back) = pushed
        assert back.text == TEXT and applied.text != TEXT

        live.write_text(applied.text)  # the brain writes the approved text only now
        await h.send(PersonaChanged(version=2, note="edited"), source="brain", causation=applied_id)
        assert h.actor.shop.text() == TEXT
        assert "an owner's edit" not in h.actor.shop.history()
        live.write_text(back.text)  # and then the rollback
        await h.send(PersonaChanged(version=3, note="edited"), source="brain", causation=back_id)
        assert h.actor.shop.text() == TEXT and not await h.actor.offload(h.actor.shop.sync)

        owners = TEXT.replace(draft.current(TEXT, "style.sentence_shape"), "Short.", 1)
        live.write_text(owners)  # an owner's edit in a text editor: the brain's file watch
        await h.send(PersonaChanged(version=4, note="persona.toml changed"), source="brain")
        assert h.actor.shop.text() == owners and "an owner's edit" in h.actor.shop.history()

        # Her older push written over it after all (the brain was slow): HEAD is pushed again.
        live.write_text(back.text)
        out = await h.send(PersonaChanged(version=5, note="e"), source="brain", causation=back_id)
        (again,) = [e for e in out if isinstance(e, PersonaEdit)]
        assert again.text == owners and h.actor.shop.text() == owners

        # The brain's word on a push, with an owner's newer edit already in the file: the edit
        # is committed (the file is not what she pushed).
        newer = owners.replace("Short.", "Shorter.", 1)
        live.write_text(newer)
        await h.send(PersonaChanged(version=6, note="e"), source="brain", causation=back_id)
        assert h.actor.shop.text() == newer

    run(body, tmp_path, "selfmod.propose", "selfmod.apply")


def test_requests_need_an_owner_and_the_switch_and_drafts_come_from_the_brain(
    tmp_path: Path,
) -> None:
    async def body(h: ActorHarness[SelfmodActor]) -> None:
        out = await h.send(SelfmodRequest(text="be less formal", by="bo"), source="discord")
        assert "only an owner may ask" in errors(out)[0]
        h.respond(
            BrainTask,
            lambda task: BrainTaskResult(summary="Loose, friendly sentences.", reason="less stiff"),
        )
        out = await h.send(SelfmodRequest(text="be less formal", by="o", owner=True), source="cli1")
        assert any(
            "drafting a change to style.sentence_shape" in e.line
            for e in out
            if isinstance(e, SelfmodChanged)
        )
        await until(lambda: any(isinstance(e, SelfmodProposal) for e in h.published))
        (proposal,) = [e for e in h.published if isinstance(e, SelfmodProposal)]
        assert '+sentence_shape = "Loose, friendly sentences."' in proposal.diff
        assert proposal.origin == "owner" and proposal.why.startswith("less stiff")
        # Said at once, before any of the model's time: a protected or unknown setting, a
        # request too long; and a draft that says the same words again is no change.
        asked = len([e for e in h.published if isinstance(e, SelfmodProposal)])
        for key, text, why in (
            ("name", "call yourself Vex", "persona.toml name: protected (her name)"),
            ("prompt.crisis", "relax", "protected (the crisis rules)"),
            ("reactions.nope", "be nicer", "persona.toml has no reactions.nope"),
            ("", "x" * 501, "in 1 to 500 characters"),
        ):
            request = SelfmodRequest(text=text, by="o", owner=True, key=key)
            out = await h.send(request, source="cli1")
            assert why in errors(out)[0], errors(out)
            assert not any("drafting" in e.line for e in out if isinstance(e, SelfmodChanged))
        shape = draft.current(TEXT, "style.sentence_shape")
        h.respond(BrainTask, lambda task: BrainTaskResult(summary=f"  {shape} ", reason="same"))
        await h.send(SelfmodRequest(text="be you", by="o", owner=True), source="cli1")
        await until(lambda: any("changes nothing" in e for e in errors(h.published)))
        assert len([e for e in h.published if isinstance(e, SelfmodProposal)]) == asked

    run(body, tmp_path, "selfmod.propose")


def test_only_owners_channels_may_say_a_proposal_is_an_owners(tmp_path: Path) -> None:
    renamed = unified(TEXT, TEXT.replace('name = "Hex"', 'name = "Hexa"', 1))

    async def body(h: ActorHarness[SelfmodActor]) -> None:
        claim = SelfmodProposal(diff=renamed, why="the owner wants it", origin="owner", by="o")
        await h.send(claim, source="brain")
        p = h.actor.state.proposals[1]
        assert (p.origin, p.by, p.status) == ("reflection", "brain", "refused")
        assert "her name" in p.reason
        await h.send(claim, source="cli7")
        assert h.actor.state.proposals[2].origin == "owner"

    run(body, tmp_path, "selfmod.propose")


def test_a_damaged_state_repository_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    h = harness(tmp_path)
    state = h.data_dir / "state"
    state.mkdir()
    (state / ".git").write_text("not a repository")

    with pytest.raises(ActorUnusable, match=r"damaged .* move it aside"):
        asyncio.run(h.setup())


def test_with_the_switch_off_a_request_is_refused_with_the_fix(tmp_path: Path) -> None:
    async def body(h: ActorHarness[SelfmodActor]) -> None:
        out = await h.send(SelfmodRequest(text="be nicer", by="o", owner=True), source="cli1")
        assert "hexbus capability enable selfmod.propose" in errors(out)[0]
        out = await h.send(SelfmodProposal(diff=CALMER, why="calmer"), source="brain")
        assert "selfmod.propose is off" in errors(out)[0]

    run(body, tmp_path)


@pytest.mark.slow
def test_a_worse_change_approved_anyway_is_rolled_back_by_its_trial(tmp_path: Path) -> None:
    worse = TEXT.replace("denial_phrases = [\n", 'denial_phrases = [\n    "you", "i", "the",\n', 1)

    async def body(h: ActorHarness[SelfmodActor]) -> None:
        await h.send(SelfmodProposal(diff=unified(TEXT, worse), why="more denial"), source="brain")
        await until(lambda: h.actor.state.proposals[1].status != "testing")
        p = h.actor.state.proposals[1]
        assert p.status == "ready" and "worse" in p.flags, p.reason
        await h.send(SelfmodDecide(action="approve", id=1, by="o", owner=True), source="cli1")
        assert h.actor.state.proposals[1].status == "applied"
        await until(lambda: any(isinstance(e, SelfmodDecide) for e in h.published))
        (rollback,) = [e for e in h.published if isinstance(e, SelfmodDecide)]
        assert rollback.action == "rollback" and "fell in its trial" in rollback.note
        await h.send(rollback, source="selfmod")
        p = h.actor.state.proposals[1]
        assert p.status == "rolled_back" and "fell" in p.reason
        assert h.actor.shop.text() == TEXT

    run(body, tmp_path, "selfmod.propose", "selfmod.apply", scenarios=3)


PLUGIN = 'TOPICS = ("chat.message",)\n\n\ndef react(event, hex):\n    hex.note("hello")\n'
PLUGIN_DIFF = unified("", PLUGIN, "plugins/hello.py", new=True)


def test_a_plugin_goes_to_the_host_once_approved_and_a_failure_in_trial_rolls_it_back(
    tmp_path: Path,
) -> None:
    async def body(h: ActorHarness[SelfmodActor]) -> None:
        await h.send(SelfmodProposal(diff=PLUGIN_DIFF, why="say hello"), source="brain")
        await until(lambda: h.actor.state.proposals[1].status != "testing")
        p = h.actor.state.proposals[1]
        assert p.status == "ready" and "capability" in p.flags, p.reason
        out = await h.send(SelfmodDecide(action="approve", id=1, by="o", owner=True), source="cli1")
        (install,) = [e for e in out if isinstance(e, PluginInstall)]
        assert (install.name, install.source, install.proposal) == ("hello", PLUGIN, 1)
        assert not [e for e in out if isinstance(e, PersonaEdit)]  # the persona did not change
        # Failures told by anyone but the plugin host are not believed.
        failed = PluginFailed(name="hello", sha=install.sha, reason="ZeroDivisionError")
        assert not [e for e in await h.send(failed, source="brain") if isinstance(e, SelfmodDecide)]
        (rollback,) = [
            e for e in await h.send(failed, source="plugins") if isinstance(e, SelfmodDecide)
        ]
        assert rollback.action == "rollback" and "ZeroDivisionError" in rollback.note
        done = await h.send(rollback, source="selfmod")
        assert [e.name for e in done if isinstance(e, PluginRemove)] == ["hello"]
        assert h.actor.state.proposals[1].status == "rolled_back" and h.actor.state.plugins == {}

    run(body, tmp_path, "selfmod.propose", "selfmod.plugins", "selfmod.apply")


def test_a_plugin_level_change_needs_its_switch(tmp_path: Path) -> None:
    async def body(h: ActorHarness[SelfmodActor]) -> None:
        out = await h.send(SelfmodProposal(diff=PLUGIN_DIFF, why="say hello"), source="brain")
        assert "selfmod.plugins is off" in errors(out)[0]

    run(body, tmp_path, "selfmod.propose", "selfmod.apply")


REPLY = 'summary = "So far:"\n'


@pytest.mark.slow
def test_prompt_templates_go_to_the_brain_once_approved_and_its_refusal_rolls_them_back(
    tmp_path: Path,
) -> None:
    async def body(h: ActorHarness[SelfmodActor]) -> None:
        n = ready(h, unified("", REPLY, "prompts/reply.toml", new=True))
        out = await h.send(SelfmodDecide(action="approve", id=n, by="o", owner=True), source="cli")
        (edit,) = [e for e in out if isinstance(e, PromptsEdit)]
        assert edit.files == {"reply.toml": REPLY} and edit.proposal == n and edit.sha
        assert not [e for e in out if isinstance(e, PersonaEdit | PluginInstall)]
        # Pushed once: a restart (on_live again) hands over nothing new.
        await h.actor.on_live()
        assert len([e for e in h.published if isinstance(e, PromptsEdit)]) == 1
        # The brain's refusal is believed from the brain alone, of the set handed over last
        # alone, and rolls back the proposal that brought it.
        refused = PromptsChanged(
            sha=edit.sha, ok=False, error="prompts/reply.toml: bad", proposal=edit.proposal
        )
        assert not [e for e in await h.send(refused, source="web") if isinstance(e, SelfmodDecide)]
        older = msgspec.structs.replace(refused, sha="an-older-set")
        assert not [e for e in await h.send(older, source="brain") if isinstance(e, SelfmodDecide)]
        (rollback,) = [
            e for e in await h.send(refused, source="brain") if isinstance(e, SelfmodDecide)
        ]
        assert rollback.id == n and "refused its prompt templates" in rollback.note
        done = await h.send(rollback, source="selfmod")
        (shipped,) = [e for e in done if isinstance(e, PromptsEdit)]
        assert shipped.files == {} and shipped.sha == ""
        assert h.actor.state.proposals[n].status == "rolled_back"
        # A refusal of a set no proposal brought (a rollback's, a reset's): the owners are told.
        told = await h.send(
            PromptsChanged(sha="", ok=False, error="unreadable", proposal=0), source="brain"
        )
        assert not [e for e in told if isinstance(e, SelfmodDecide)]
        assert "refused HEAD's prompt templates: unreadable" in errors(told)[0]

    run(body, tmp_path, "selfmod.propose", "selfmod.plugins", "selfmod.logic", "selfmod.apply")
