# ruff: noqa: E501
"""The host program behaves exactly as without the agent (issue 15): same output, plain and
under the agent, for programs that poke at the corners of ``threading.local``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import clean_env, run_container_mode, run_python_launched, write_script

LOCAL_CORNERS = r'''
import _thread, copy, pickle, threading, types

def attempt(name, fn):
    try:
        value = fn()
    except Exception as exc:
        value = type(exc).__name__
    print(f"{name}: {value}")

class Meta(type):
    pass

def slots():
    class S(threading.local):
        __slots__ = ("a", "__dict__")
    s = S(); s.a = 1; s.b = 2
    return (s.a, s.b)

def metaclass_statement():
    class M2(threading.local, metaclass=Meta):
        pass
    return type(M2).__name__

def subclass():
    class C(threading.local):
        def __init__(self, v):
            self.v = v
    c = C(3); out = []
    t = threading.Thread(target=lambda: out.append(c.v)); t.start(); t.join()
    return (c.v, out, C.__mro__[1] is threading.local, isinstance(c, _thread._local))

attempt("type()", lambda: type(type("D", (threading.local,), {})()).__name__)
attempt("new_class", lambda: issubclass(types.new_class("E", (threading.local,), {}), threading.local))
attempt("metaclass call", lambda: type(Meta("M", (threading.local,), {})).__name__)
attempt("type(local)(...)", lambda: type(threading.local)("K", (threading.local,), {})().__class__.__name__)
attempt("slots with __dict__", slots)
attempt("class with metaclass", metaclass_statement)
attempt("isinstance(local, type)", lambda: isinstance(threading.local, type))
attempt("type(local)", lambda: type(threading.local).__name__)
attempt("names", lambda: (threading.local.__module__, threading.local.__name__, threading.local.__qualname__))
attempt("repr", lambda: repr(threading.local))
attempt("is _thread._local", lambda: threading.local is _thread._local)
attempt("type(instance) is local", lambda: type(threading.local()) is threading.local)
attempt("isinstance", lambda: isinstance(threading.local(), threading.local))
attempt("pickle class", lambda: pickle.loads(pickle.dumps(threading.local)) is threading.local)
attempt("copy class", lambda: copy.copy(threading.local) is threading.local is copy.deepcopy(threading.local))
attempt("pickle instance", lambda: pickle.dumps(threading.local()))
attempt("copy instance", lambda: copy.copy(threading.local()))
attempt("init args", lambda: threading.local(1))
attempt("instance dict", lambda: threading.local().__dict__)
attempt("subclass", subclass)
attempt("weakref", lambda: __import__("weakref").ref(threading.local()) is not None)
attempt("subclass of type(local())", lambda: type("Z", (type(threading.local()),), {})().__class__.__name__)
'''


def test_threading_local_corners_behave_as_without_the_agent(tmp_path: Path) -> None:
    script = write_script(tmp_path, LOCAL_CORNERS)
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                           env=clean_env(), timeout=60)
    assert plain.returncode == 0 and "TypeError" in plain.stdout  # the probe probes
    for result in (run_python_launched(script), run_container_mode([str(script)])):
        assert result.returncode == 0, result.stderr
        assert result.stdout == plain.stdout
        assert result.stderr == plain.stderr == ""
