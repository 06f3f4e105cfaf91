"""Dead letters through a real supervisor: a poison event never wedges or kills an actor for good.

The poison actor (actors/diag) counts durable probes; a probe noted ``raise`` makes its
handler raise and one noted ``die`` kills its process, until its config says ``fixed``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.support.busclient import ask_count
from tests.support.harness import FAST_BUS, Hex, HexFactory, actor_toml, poll_for

pytestmark = [pytest.mark.process, pytest.mark.slow]


def poison_toml(fixed: bool, max_restarts: int = 5) -> str:
    return FAST_BUS + actor_toml(
        "count",  # ask_count asks the actor that answers probe.volatile.count
        "actors.diag.actor:PoisonActor",
        retry_backoff_s=0.05,
        backoff_initial_s=0.05,
        max_restarts=max_restarts,
        config={"fixed": fixed},
    )


def send_probe(hx: Hex, n: int, note: str = "") -> None:
    out = hx.cli("send", "probe.durable", json.dumps({"n": n, "note": note}))
    assert out.returncode == 0, out.stderr


def count(hx: Hex) -> tuple[int, int] | None:
    return asyncio.run(ask_count(hx.endpoints, timeout=1.0))


def letters(hx: Hex) -> list[dict[str, Any]]:
    out = hx.cli("deadletter", "list", "--json")
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout))


def fix_and_reload(hx: Hex) -> None:
    pid = hx.pid("count")
    hx.config_path.write_text(poison_toml(fixed=True))
    out = hx.cli("reload")
    assert out.returncode == 0, out.stderr
    hx.wait_restarted("count", pid)


def test_a_handler_that_always_raises_is_dead_lettered_then_retried_once_fixed(
    hex_factory: HexFactory,
) -> None:
    hx = hex_factory(poison_toml(fixed=False)).start()
    send_probe(hx, 1)
    send_probe(hx, 2, "raise")
    send_probe(hx, 3)
    assert poll_for(lambda: count(hx) == (2, 4), 20, what="probes 1 and 3 counted, 2 left out")
    (letter,) = poll_for(lambda: letters(hx), 10, what="a dead letter")
    assert letter["actor"] == "count" and letter["topic"] == "probe.durable"
    assert (letter["cause"], letter["attempts"], letter["status"]) == ("raised", 3, "dead")
    assert "ValueError: diag poison actor: cannot apply probe 2" in letter["error"]
    status = hx.status()["count"]
    assert status["state"] == "live" and status["restarts"] == 0

    out = hx.cli("deadletter", "retry", letter["event_id"])  # still broken: dead again
    assert (
        out.returncode == 1 and "failed on" in out.stderr and "cannot apply probe 2" in out.stderr
    )
    assert [x["event_id"] for x in letters(hx)] == [letter["event_id"]]

    fix_and_reload(hx)
    out = hx.cli("deadletter", "retry", letter["event_id"])
    assert out.returncode == 0, out.stderr
    assert f"retried {letter['event_id']}" in out.stdout
    assert poll_for(lambda: count(hx) == (3, 6), 10, what="probe 2 counted once")
    assert letters(hx) == []
    out = hx.cli("deadletter", "retry", letter["event_id"])
    assert out.returncode == 1 and "no dead letter" in out.stderr


def test_an_event_that_kills_the_process_is_dead_lettered_instead_of_failing_the_actor(
    hex_factory: HexFactory,
) -> None:
    hx = hex_factory(poison_toml(fixed=False)).start()
    send_probe(hx, 1)
    send_probe(hx, 2, "die")
    send_probe(hx, 3)
    assert poll_for(lambda: count(hx) == (2, 4), 60, what="probe 3 counted after the crashes")
    status = hx.status()["count"]
    assert status["state"] == "live" and status["restarts"] == 3  # the 3 deaths, then the letter
    (letter,) = letters(hx)
    assert (letter["cause"], letter["attempts"]) == ("crashed", 3)
    assert "died 3 times" in letter["error"]

    table = hx.cli("deadletter", "list")
    assert letter["event_id"] in table.stdout and "crashed x3" in table.stdout

    fix_and_reload(hx)
    out = hx.cli("deadletter", "retry", letter["event_id"])
    assert out.returncode == 0, out.stderr
    assert poll_for(lambda: count(hx) == (3, 6), 10, what="probe 2 counted once")
    assert letters(hx) == []


def test_a_dropped_letter_is_gone_and_never_applied(hex_factory: HexFactory) -> None:
    hx = hex_factory(poison_toml(fixed=False)).start()
    send_probe(hx, 5, "raise")
    (letter,) = poll_for(lambda: letters(hx), 20, what="a dead letter")
    out = hx.cli("deadletter", "drop", letter["event_id"])
    assert out.returncode == 0 and "dropped" in out.stdout, out.stderr
    assert letters(hx) == []
    out = hx.cli("deadletter", "drop", "no-such-id")
    assert out.returncode == 1 and "no dead letter 'no-such-id'" in out.stderr
    assert count(hx) == (0, 0)


def test_two_killing_events_in_a_row_are_both_dead_lettered_after_three_deaths_each(
    hex_factory: HexFactory,
) -> None:
    # Each letter must outlive the process that wrote it: the next event's deaths must not
    # make the runtime forget the first was given up on and start its count again.
    hx = hex_factory(poison_toml(fixed=False, max_restarts=10)).start()
    send_probe(hx, 1)
    send_probe(hx, 2, "die")
    send_probe(hx, 3, "die")
    send_probe(hx, 4)
    assert poll_for(lambda: count(hx) == (2, 5), 90, what="probes 1 and 4 counted")
    status = hx.status()["count"]
    assert status["state"] == "live" and status["restarts"] == 6
    found = letters(hx)
    assert sorted(x["offset"] for x in found) == sorted({x["offset"] for x in found})
    assert [(x["cause"], x["attempts"]) for x in found] == [("crashed", 3), ("crashed", 3)]
