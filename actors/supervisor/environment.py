"""What a child process's environment holds: the system's plain variables and the ones its own
config names, never another actor's secrets.

The memory actor parses untrusted PDFs; it must not hold DISCORD_TOKEN or a backend's API key,
in its memory or in ``/proc/PID/environ``. So a child gets only:

- plain variables of the system and the runtimes (:data:`BASE_NAMES`, :data:`BASE_PREFIXES`),
  unless their name looks secret (``HF_TOKEN``);
- the variables its config names: every ``*_env`` value in its ``[actors.X.config]`` table,
  however deep (a brain backend's ``api_key_env``), the defaults its package declares for
  settings left out (``hexbus.env`` entry points: discord_io's ``token_env`` is DISCORD_TOKEN),
  and ``pass_env = [...]`` in its ``[actors.X]`` table;
- what its ``[actors.X.env]`` table sets.

Those names also travel in ``HEXBUS_SECRET_ENV``, so the child's log redactor blanks their
values wherever they appear (:mod:`hexbus.log`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from typing import Any, Final

import structlog

from hexbus.log import SECRET_NAME

log = structlog.get_logger("actors.supervisor")

BASE_NAMES: Final = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "TMPDIR",
        "TEMP",
        "TMP",
        "PWD",
        "VIRTUAL_ENV",
        "LD_LIBRARY_PATH",
        "DISPLAY",
        "WAYLAND_DISPLAY",
        "NO_COLOR",
        "FORCE_COLOR",
        "COLUMNS",
        "REQUESTS_CA_BUNDLE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
        "CURL_CA_BUNDLE",
        "DBUS_SESSION_BUS_ADDRESS",
        "SENTENCE_TRANSFORMERS_HOME",
        "TOKENIZERS_PARALLELISM",  # named like a secret, and is not one
    }
)
NOT_SECRETS: Final = frozenset({"TOKENIZERS_PARALLELISM"})
BASE_PREFIXES: Final = (
    "LC_",
    "PYTHON",
    "PYTORCH_",
    "HEX_",
    "HEXBUS_",
    "HF_",
    "TRANSFORMERS_",
    "TORCH",
    "CUDA_",
    "NVIDIA_",
    "OMP_",
    "MKL_",
    "OPENBLAS_",
    "XDG_",
    "PULSE_",
    "PIPEWIRE_",
    "ALSA_",
    "JACK_",
    "ESPEAK",
    "HIP_",
    "ROCR_",
    "HSA_",
    "CT2_",
    "GGML_",
    "LLAMA_",
    "SSL_",
    "COVERAGE_",
    "PYTEST_",
)
SECRET_NAMES_VAR: Final = "HEXBUS_SECRET_ENV"


def config_env_names(config: Any) -> set[str]:
    """Every ``*_env`` setting's value in a raw config table, at any depth."""
    names: set[str] = set()
    if isinstance(config, Mapping):
        for key, value in config.items():
            if isinstance(key, str) and key.endswith("_env") and isinstance(value, str) and value:
                names.add(value)
            else:
                names |= config_env_names(value)
    elif isinstance(config, list | tuple):
        for item in config:
            names |= config_env_names(item)
    return names


def declared_env_names(module: str, config: Mapping[str, Any]) -> set[str]:
    """The variables an actor's package says it reads when its config leaves them out."""
    names: set[str] = set()
    for entry in entry_points(group="hexbus.env"):
        if entry.name != module:
            continue
        try:
            names |= set(entry.load()(config))
        except Exception as exc:  # a broken plugin must not stop the supervisor
            log.error("supervisor.env_names_failed", module=module, error=str(exc))
    return names


def named_env(module: str, config: Mapping[str, Any]) -> set[str]:
    """The variables an actor's config names as its secrets (keys, tokens), and so may have."""
    return config_env_names(config) | declared_env_names(module, config)


def plain(name: str) -> bool:
    """A variable every child may have: the system's or a runtime's, not a secret."""
    if SECRET_NAME.search(name) and name not in NOT_SECRETS:
        return False
    return name in BASE_NAMES or name.startswith(BASE_PREFIXES)


def child_env(
    environ: Mapping[str, str],
    named: Iterable[str],
    extra: Mapping[str, str],
    passed: Iterable[str] = (),
) -> dict[str, str]:
    """The environment of one child: plain variables, the ones its config names (secrets:
    their values are blanked in its logs), those ``passed`` as they are, and ``extra``."""
    named = set(named)
    given = named | set(passed)
    env = {k: v for k, v in environ.items() if plain(k) or k in given}
    env.update(extra)
    secrets = sorted(named | {k for k in extra if SECRET_NAME.search(k)})
    env[SECRET_NAMES_VAR] = ",".join(secrets)
    return env
