"""Her settings (settings.toml, as selfmod keeps HEAD's) through a real supervisor: laid over the
actor's config at each start, a restart takes a change, and a file past the bounds is refused
whole by the supervisor itself (the applier), with the reason logged."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.brain import brain_toml
from tests.support.harness import Hex, HexFactory, poll_for

pytestmark = [pytest.mark.process, pytest.mark.slow]

# Configured but not started: the supervisor finds the live file by the selfmod actor's name.
SELFMOD = '[actors.changes]\nmodule = "actors.selfmod.actor:SelfmodActor"\nenabled = false\n'


def brain_config(hx: Hex) -> dict[str, Any]:
    """The config the running brain process was started with (its HEXBUS_SPEC)."""
    spec = json.loads(psutil.Process(hx.pid("brain")).environ()["HEXBUS_SPEC"])
    return dict(spec["actor"]["config"])


def test_settings_are_laid_over_at_each_start_and_a_file_past_the_bounds_is_refused(
    hex_factory: HexFactory,
) -> None:
    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    hx = hex_factory(brain_toml(root, extra="budgets = { reply = 48 }") + SELFMOD, root=root)
    live = hx.data_dir / "actors" / "changes" / "settings.toml"
    live.parent.mkdir(parents=True)
    live.write_text("[brain.budgets]\nreply = 77\nmemories = 0\n")
    hx.start()
    config = brain_config(hx)
    assert config["budgets"] == {"reply": 77, "memories": 0}
    assert config["seed"]  # the rest as supervisor.toml has it

    # A change takes effect at the next start: a refresh (what selfmod asks for), a restart,
    # or after a crash.
    live.write_text("[brain.budgets]\nreply = 99\n")
    assert brain_config(hx)["budgets"] == {"reply": 77, "memories": 0}
    old = hx.pid("brain")
    assert hx.command("refresh", "brain").ok
    hx.wait_restarted("brain", old)
    assert brain_config(hx)["budgets"] == {"reply": 99}

    # A refresh never revives what the kill switch stopped: it takes them when next started.
    assert hx.command("killswitch").ok
    hx.wait_state({"brain": "stopped"})
    live.write_text("[brain.budgets]\nreply = 88\n")
    assert hx.command("refresh", "brain").ok
    watched_until = time.monotonic() + 3
    while time.monotonic() < watched_until:
        assert hx.status()["brain"]["state"] == "stopped"
        time.sleep(0.2)
    assert hx.cli("restart", "brain").returncode == 0  # the owner brings it back
    hx.wait_state({"brain": "live"})
    assert brain_config(hx)["budgets"] == {"reply": 88}
    assert not hx.command("refresh", "nobody").ok

    # Past the bounds (written by hand, or by anything but selfmod's checks): refused whole.
    live.write_text("[brain.budgets]\nreply = 5000\nmemories = 0\n")
    old = hx.pid("brain")
    assert hx.cli("restart", "brain").returncode == 0
    hx.wait_restarted("brain", old)
    assert brain_config(hx)["budgets"] == {"reply": 48}
    refused = poll_for(
        lambda: [
            json.loads(line)
            for line in hx.log().splitlines()
            if '"supervisor.settings_refused"' in line
        ],
        10,
        what="the refusal in the supervisor's log",
    )
    assert "brain.budgets.reply = 5000: outside its bounds 16..600" in refused[-1]["reason"]
    assert "factory-reset" in refused[-1]["hint"]
