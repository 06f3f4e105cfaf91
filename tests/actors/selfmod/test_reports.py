"""A sandbox run's report read back: a run that died after writing one, a FIFO or a link in its
place, are a failed run, never a pass and never a reader blocked for good (found in review)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from actors.selfmod import reports
from actors.selfmod.reports import judge_plugin, read_report
from hexbus.sandbox import SandboxRun

PASSING = {"plugin": "p", "topics": ["chat.message"], "events": 110, "errors": 0}


def test_a_report_from_a_run_that_did_not_exit_cleanly_is_a_failure(tmp_path: Path) -> None:
    out = tmp_path / "trial.json"
    out.write_text(json.dumps(PASSING))
    clean = read_report(out, SandboxRun(0, "", 1.0, "bubblewrap"))
    assert isinstance(clean, dict) and judge_plugin(clean, "bubblewrap").status == "ready"
    killed = read_report(out, SandboxRun(137, "", 1.0, "bubblewrap"))
    assert (
        isinstance(killed, reports.Tested)
        and killed.status == "failed"
        and "exit 137" in killed.reason
    )
    # A refusal comes with a non-zero exit and is still read (the brain's trial does that).
    out.write_text(json.dumps({"invalid": "persona.toml:3: bad"}))
    refused = read_report(out, SandboxRun(1, "", 1.0, "bubblewrap"))
    assert isinstance(refused, dict) and refused["invalid"] == "persona.toml:3: bad"


def test_a_fifo_or_a_link_in_the_reports_place_is_a_failure_at_once(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(json.dumps(PASSING))
    link = tmp_path / "link.json"
    os.symlink(secret, link)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    for path in (link, fifo):
        got: list[object] = []

        def read(p: Path = path, into: list[object] = got) -> None:
            into.append(read_report(p, SandboxRun(0, "x", 1.0, "bubblewrap")))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(10)
        assert not reader.is_alive(), f"blocked on {path.name}"
        assert isinstance(got[0], reports.Tested) and got[0].status == "failed"
