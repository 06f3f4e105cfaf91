"""What `hexbus status` says about the STT actor's model: while it loads, once loaded, when missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.harness import FAST_BUS, HexFactory, actor_toml, poll_for

pytestmark = [pytest.mark.process, pytest.mark.slow]


def test_status_shows_the_model_and_its_load_time_once_live(hex_factory: HexFactory) -> None:
    hx = hex_factory(
        FAST_BUS + actor_toml("stt", "actors.stt.actor:SttActor", heartbeat_timeout_s=30.0)
    ).start(wait_live=False)
    seen: set[str] = set()

    def live_detail() -> str | None:
        entry = hx.status().get("stt", {})
        seen.add(entry.get("detail", ""))
        return entry.get("detail") if entry.get("state") == "live" else None

    detail = poll_for(live_detail, 60, interval=0.02, what="stt live")
    assert detail.startswith("whisper-base ") and detail.endswith("s"), detail
    float(detail.removeprefix("whisper-base ").removesuffix("s"))
    table = hx.cli("status").stdout
    assert (
        "whisper-base"
        in table.splitlines()[[r.split()[0] for r in table.splitlines()].index("stt")]
    )
    # The loading lines show only while each load runs (about a second), so they may fall between
    # polls; the end-of-turn models load first (audio, then words), then Whisper.
    turn = {d for d in seen if d.startswith(("smart-turn-v3.2 ", "smollm2-turn "))}
    loading = {f"loading {m}" for m in ("smart-turn-v3.2", "smollm2-turn", "whisper-base")}
    assert seen - turn <= {"", *loading, detail}, seen


def test_a_missing_model_fails_the_actor_with_one_line_naming_it(
    hex_factory: HexFactory, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-whisper"
    hx = hex_factory(
        FAST_BUS
        + actor_toml("stt", "actors.stt.actor:SttActor")
        + f'[actors.stt.config.whisper]\nmodel = "{missing}"\n'
    ).start(wait_live=False)
    hx.wait_state({"stt": "failed"}, timeout=60)
    status = hx.status()["stt"]
    assert status["restarts"] == 0
    assert str(missing) in status["reason"] and "\n" not in status["reason"]
    assert f"stt: {status['reason']}" in hx.cli("status").stdout
