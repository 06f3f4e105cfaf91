"""Secrets stay out of logs and out of the processes that do not need them (issue 13, item 9)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from actors.supervisor.environment import child_env, config_env_names, named_env
from tests.support.harness import FAST_BUS, HexFactory, actor_toml

REPO = Path(__file__).resolve().parents[1]
GROQ_KEY = (
    "q9x-Zr7!-plain-looking-value-42"  # no known shape: only its variable's name gives it away
)
SHAPED = "xai-" + "Ab12Cd34Ef56Gh78Ij90Kl12" * 3  # a key of a prefix nobody listed, in text
DISCORD = "MTA5ODc2NTQzMjEwOTg3NjU0.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"

CHILD = textwrap.dedent(
    """
    import structlog
    from actors.brain.backends.openai_compat import OpenAICompatBackend, OpenAIConfig
    from hexbus.log import configure

    configure("brain")
    log = structlog.get_logger("actors.brain")
    backend = OpenAICompatBackend(
        OpenAIConfig(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="GROQ_API_KEY")
    )
    headers = backend._headers()
    log.warning("backend.request", request={"headers": headers, "tries": [{"headers": headers}]})
    try:
        raise RuntimeError(f"upstream said: bad key {headers['Authorization']} ({SHAPED})")
    except RuntimeError:
        log.exception("backend.failed", note=("retrying", SHAPED))
    """
)


def test_a_backend_key_is_redacted_in_nested_values_and_in_tracebacks() -> None:
    env = child_env(
        dict(os.environ, GROQ_API_KEY=GROQ_KEY),
        named_env(
            "actors.brain.actor:BrainActor",
            {"backends": [{"kind": "openai", "api_key_env": "GROQ_API_KEY"}]},
        ),
        {"HEXBUS_LOG_JSON": "1", "PYTHONPATH": str(REPO)},
    )
    out = subprocess.run(
        [sys.executable, "-c", f"SHAPED = {SHAPED!r}\n" + CHILD],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=True,
    )
    lines = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    assert [line["event"] for line in lines] == ["backend.request", "backend.failed"]
    assert GROQ_KEY not in out.stderr and SHAPED not in out.stderr
    assert "RuntimeError: upstream said" in lines[1]["exception"]  # the traceback is still there
    assert "[redacted]" in lines[1]["exception"]
    assert lines[0]["request"]["headers"]["Authorization"] == "[redacted]"


def test_an_actor_gets_the_variables_its_config_names_and_no_other_secret() -> None:
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "HF_HUB_OFFLINE": "1",
        "HF_TOKEN": "hf_secret",
        "DISCORD_TOKEN": DISCORD,
        "GROQ_API_KEY": GROQ_KEY,
        "SOME_OTHER_THING": "x",
    }
    discord = named_env("actors.discord_io.actor:DiscordActor", {"owners": []})
    assert discord == {"DISCORD_TOKEN"}  # its package's default, though its table leaves it out
    assert named_env("actors.discord_io.actor:DiscordActor", {"token_env": "HEX_BOT"}) == {
        "HEX_BOT"
    }
    assert config_env_names({"backends": [{"api_key_env": "GROQ_API_KEY"}, {"x": 1}]}) == {
        "GROQ_API_KEY"
    }
    memory = child_env(environ, named_env("actors.memory.actor:MemoryActor", {}), {})
    assert set(memory) == {"PATH", "HOME", "HF_HUB_OFFLINE", "HEXBUS_SECRET_ENV"}
    bot = child_env(environ, discord, {})
    assert bot["DISCORD_TOKEN"] == DISCORD and "GROQ_API_KEY" not in bot
    assert bot["HEXBUS_SECRET_ENV"] == "DISCORD_TOKEN"


@pytest.mark.process
@pytest.mark.slow
def test_the_memory_actor_process_never_holds_the_discord_token(hex_factory: HexFactory) -> None:
    config = (
        FAST_BUS
        + actor_toml(
            "memory",
            "actors.memory.actor:MemoryActor",
            heartbeat_timeout_s=20.0,
            config={"owners": ["owner1"]},
        )
        + actor_toml("counter", "actors.diag.actor:CounterActor", pass_env=["GROQ_API_KEY"])
    )
    hx = hex_factory(config).start(env={"DISCORD_TOKEN": DISCORD, "GROQ_API_KEY": GROQ_KEY})

    def environ(name: str) -> dict[str, str]:
        raw = Path(f"/proc/{hx.pid(name)}/environ").read_bytes()
        return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)

    memory, counter = environ("memory"), environ("counter")
    assert "DISCORD_TOKEN" not in memory and "GROQ_API_KEY" not in memory
    assert DISCORD not in Path(f"/proc/{hx.pid('memory')}/environ").read_text()
    assert counter["GROQ_API_KEY"] == GROQ_KEY and "DISCORD_TOKEN" not in counter
    assert "DISCORD_TOKEN" not in environ("broker")


def test_the_redactor_blanks_keys_and_credentials_not_names_counts_or_ids() -> None:
    from hexbus.log import redact

    def out(value: object) -> object:
        return redact(None, "info", {"event": "x", "v": value})["v"]

    secret_like = [
        "gsk_" + "Q1w2E3r4T5y6U7i8O9p0" * 3,
        "sk-proj-" + "Ab12Cd34Ef56Gh78Ij90" * 3,
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYz1234567",
        "https://ana:hunter2pass@proxy.example:3128",
    ]
    for value in secret_like:
        assert "[redacted]" in str(out(value)), value
    innocent = [
        "mistral-large-Instruct-2411-Q4_K_M",
        "faster-whisper-large-v3-turbo_CT2int8",
        "piper-en_US-lessac-medium-2024Voice",
        "ringbearer confirmation_required",
        "m_0123456789abcdef0123",
        "14c238a3b38bf771a",
        "/home/ana/.hex/data/journal/00000000000000000001.seg",
        "discord:123456789012345678",
        "meta-llama/Llama-3.2-1B-Instruct",
    ]
    for value in innocent:
        assert out(value) == value, value
    assert out({"max_tokens": 512, "prompt_tokens": 30}) == {"max_tokens": 512, "prompt_tokens": 30}
    os.environ["HEX_TEST_SECRET_TOKEN"] = GROQ_KEY  # named like a secret: its value is blanked
    try:
        assert GROQ_KEY not in str(out(Path("/x") / GROQ_KEY))
        assert GROQ_KEY not in str(out(ValueError(f"bad key {GROQ_KEY}")))
    finally:
        del os.environ["HEX_TEST_SECRET_TOKEN"]


def test_the_names_of_secret_variables_are_said_their_values_are_not() -> None:
    from hexbus.log import redact

    # As the supervisor starts the Discord actor without a token: the one line that says what
    # to do names the variable (it read "[redacted] is not set" before).
    saved = {k: os.environ.pop(k, None) for k in ("HEXBUS_SECRET_ENV", "DISCORD_TOKEN")}
    os.environ["HEXBUS_SECRET_ENV"] = "DISCORD_TOKEN"
    try:
        line = "DISCORD_TOKEN is not set: put DISCORD_TOKEN=... in .env beside supervisor.toml"
        assert redact(None, "error", {"event": "x", "reason": line})["reason"] == line
        os.environ["DISCORD_TOKEN"] = GROQ_KEY
        said = redact(None, "error", {"event": "x", "reason": f"DISCORD_TOKEN={GROQ_KEY}"})
        assert said["reason"] == "DISCORD_TOKEN=[redacted]"
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


def test_the_redactor_matches_are_bounded_on_long_runs_without_spaces() -> None:
    from hexbus.log import _SECRET_VALUES

    # A pass never rescans the rest of the line from each position: bounded repetitions. (No
    # timing here: what is checked is that each match is bounded in length.)
    for run in ("ab-" * 13_333, "M" * 40_000, "A1b2-" * 8_000):
        for match in _SECRET_VALUES.finditer(run):
            assert len(match.group()) <= 300


def test_plain_runtime_variables_reach_every_actor_and_pass_env_is_no_secret() -> None:
    environ = {
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
        "TOKENIZERS_PARALLELISM": "false",
        "CT2_USE_EXPERIMENTAL_PACKED_GEMM": "1",
        "GGML_CUDA_NO_PINNED": "1",
        "OLLAMA_HOST": "http://127.0.0.1:11434",
    }
    env = child_env(environ, set(), {}, passed=["OLLAMA_HOST"])
    assert {k: env[k] for k in environ} == environ
    assert env["HEXBUS_SECRET_ENV"] == ""  # passed as it is, not blanked in logs


def test_the_supervisors_kept_log_lines_are_numbered_and_redacted() -> None:
    program = textwrap.dedent(
        f"""
        import json, structlog
        from hexbus import log as hexlog
        hexlog.configure("supervisor", keep=3)
        log = structlog.get_logger("actors.supervisor")
        for n in range(5):
            log.info("actor.live", actor=f"a{{n}}", note="key {SHAPED}")
        lines, seq = hexlog.recent.after(3)
        print(json.dumps({{"lines": lines, "seq": seq, "all": hexlog.recent.after(0)[0]}}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, cwd=REPO, check=True
    )
    got = json.loads(out.stdout.splitlines()[-1])
    assert got["seq"] == 5 and [e["actor"] for e in got["lines"]] == ["a3", "a4"]
    assert [e["seq"] for e in got["all"]] == [3, 4, 5]  # only the last three are kept
    assert all(e["event"] == "actor.live" and e["level"] == "info" for e in got["all"])
    assert SHAPED not in out.stdout and "[redacted]" in got["lines"][0]["note"]
