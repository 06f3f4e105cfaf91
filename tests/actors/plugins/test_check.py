"""A plugin's source, read and never run: what may load, and every way out refused with its line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.plugins.check import MAX_BYTES, PluginRefused, check
from actors.plugins.runner import _builtins, _import, load

GOOD = """
import re
from collections import Counter

TOPICS = ("chat.message", "chat.reply")


class Tally:
    words = Counter()


def react(event, hex):
    if re.search(r"\\bgood morning\\b", event["text"], re.I):
        hex.note(f"{event.get('name', 'they')} said good morning")
    hex.data["n"] = hex.data.get("n", 0) + 1
"""


def wrap(body: str) -> str:
    return f'TOPICS = ("chat.message",)\n\n\ndef react(event, hex):\n    {body}\n'


def test_a_plain_plugin_is_allowed_and_says_what_it_hears() -> None:
    assert check(GOOD, "morning").topics == ("chat.message", "chat.reply")


ATTACKS = {
    "import os": ("import os\n" + wrap("pass"), "imports os"),
    "import subprocess": ("import subprocess\n" + wrap("pass"), "imports subprocess"),
    "from socket": ("from socket import socket\n" + wrap("pass"), "imports socket"),
    "submodule": ("import collections.abc\n" + wrap("pass"), "imports collections.abc"),
    "relative": ("from . import x\n" + wrap("pass"), "relative import"),
    "star": ("from json import *\n" + wrap("pass"), "imports *"),
    "open a file": (wrap('open("/etc/passwd").read()'), "uses open"),
    "__import__": (wrap('__import__("os").system("id")'), "__import__"),
    "eval": (wrap('eval("1")'), "uses eval"),
    "exec": (wrap('exec("x = 1")'), "uses exec"),
    "getattr": (wrap('getattr(hex, "note")'), "uses getattr"),
    "type()": (wrap("type(hex)"), "uses type"),
    "subclasses": (wrap("().__class__.__base__.__subclasses__()"), "names __"),
    "a bound method's self": (wrap("hex.note.__self__"), "names __self__"),
    "private": (wrap("hex._secret"), "reads ._secret"),
    "a generator's frame": (wrap("(x for x in ()).gi_frame"), "reads .gi_frame"),
    "a traceback's frame": (wrap("tb.tb_frame.f_globals"), "reads .f_globals"),
    "format to a dunder": (wrap('"{0.__class__}".format(hex)'), "reads .format"),
    "a dunder's name as a string": (wrap('hex.data["__class__"] = 1'), "'__'"),
    "format, built at run time": (wrap('("{0." + "_" * 2 + "class}").format(hex)'), "reads .format"),
    "a module kept in a module": ("import random\n" + wrap("random.sys.modules"), "reads .sys"),
    "os in datetime": ("import datetime\n" + wrap("datetime.sys"), "reads .sys"),
    "builtins by name": (wrap("__builtins__"), "names __builtins__"),
    # Found in review: each passed an earlier check and reached the runner's globals or `open`.
    "update_wrapper": ("import functools\n" + wrap("functools.update_wrapper"), "imports functools"),
    "get_type_hints": ("import typing\n" + wrap("typing.get_type_hints"), "imports typing"),
    "an enum metaclass": ("import enum\n" + wrap("enum.EnumType"), "imports enum"),
    "a dunder method": (
        'TOPICS = ("chat.message",)\nclass G:\n    def __setattr__(self, k, v):\n        pass\n'
        "def react(event, hex):\n    pass\n",
        "names __setattr__",
    ),
    "a dunder keyword": (wrap("dict(__globals__=1)"), "names __globals__"),
    "match class patterns": (wrap("match hex:\n        case dict(x=1):\n            pass"), "match"),
    "a metaclass": (
        'TOPICS = ("chat.message",)\nclass M(dict, metaclass=dict):\n    pass\n'
        "def react(event, hex):\n    pass\n",
        "metaclass",
    ),
    "a bare except": (wrap("try:\n        pass\n    except:\n        pass"), "bare except"),
    "signal the supervisor": ("import os\n" + wrap("os.killpg(0, 9)"), "imports os"),
    "global state": ("x = 1\n" + wrap("global x"), "global"),
    "async": ('TOPICS = ("chat.message",)\nasync def react(event, hex):\n    pass\n', "asyncfunctiondef"),
    "no topics": ("def react(event, hex):\n    pass\n", "no TOPICS"),
    "a topic it may not hear": (
        'TOPICS = ("sys.control",)\ndef react(event, hex):\n    pass\n',
        "TOPICS has 'sys.control'",
    ),
    "topics computed": ('TOPICS = tuple(["chat.message"])\ndef react(e, h):\n    pass\n', "TOPICS is a tuple"),
    "no react": ('TOPICS = ("chat.message",)\n', "no `def react"),
    "not Python": ("def react(:\n", "not valid Python"),
    "too big": ("# " + "x" * MAX_BYTES + "\n" + wrap("pass"), "over"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_way_out_is_refused_with_its_reason(name: str) -> None:
    source, reason = ATTACKS[name]
    with pytest.raises(PluginRefused) as refused:
        check(source, "evil")
    assert reason.lower() in str(refused.value).lower()
    with pytest.raises(PluginRefused):  # the runner checks again before it runs anything
        load(source, "evil")


@given(st.text(max_size=300))
def test_any_text_is_checked_or_refused_never_crashes_the_checker(text: str) -> None:
    try:
        check(text, "fuzz")
    except PluginRefused:
        pass


def test_what_runs_has_safe_builtins_and_a_gated_import() -> None:
    """The second layer, for what might slip past the reading: no open/eval/getattr among
    its builtins, imports only of allowed modules, and those without their module attributes."""
    builtins = _builtins()
    for name in ("open", "eval", "exec", "compile", "getattr", "globals", "vars", "input"):
        assert name not in builtins
    for module in ("os", "sys", "subprocess", "socket", "builtins", "importlib"):
        with pytest.raises(ImportError):
            _import(module)
    dates = _import("datetime")
    assert not hasattr(dates, "sys") and hasattr(dates, "timedelta")
    assert not any(k.startswith("_") for k in vars(_import("random")))
