"""User-declared targets and disabled built-ins, in real programs under the real launcher."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import clean_env, load_report, run_python_launched, write_script

THRESHOLD = 3
OPTIONS = ["--threshold", str(THRESHOLD)]

CLIENTS = """\
class ApiClient:
    def __init__(self, url):
        self.url = url


class Conn:
    pass


def make_client():
    return Conn()
"""

APP = """\
import sys
from concurrent.futures import ThreadPoolExecutor
{prologue}
import myclients


class RetryingClient(myclients.ApiClient):
    def __init__(self):
        super().__init__("http://127.0.0.1:1")


def per_call(i):
    myclients.ApiClient("http://127.0.0.1:1")  # CLASS
    RetryingClient()  # SUBCLASS
    myclients.make_client()  # FACTORY


SHARED = myclients.ApiClient("http://127.0.0.1:1")  # SHARED
with ThreadPoolExecutor(2) as pool:
    list(pool.map(per_call, range(8)))
print("done")
"""


def _line(source: str, marker: str) -> int:
    return next(n for n, line in enumerate(source.splitlines(), 1) if line.endswith(f"# {marker}"))


def _program(tmp_path: Path, prologue: str = "") -> tuple[Path, str]:
    write_script(tmp_path, CLIENTS, "myclients.py")
    source = APP.format(prologue=prologue)
    return write_script(tmp_path, source), source


def _suspects(report_path: Path) -> dict[tuple[str, int], dict[str, object]]:
    report = load_report(report_path)
    return {(s["kind"], s["line"]): s for s in report["suspects"]}


def test_class_and_factory_from_the_launcher_option(tmp_path: Path) -> None:
    script, source = _program(tmp_path)
    report = tmp_path / "report.json"
    done = run_python_launched(
        script, cwd=tmp_path,
        options=[*OPTIONS, "--report", str(report), "--target", "myclients:ApiClient",
                 "--target", "myclients:make_client"],
    )
    assert done.returncode == 0, done.stderr
    suspects = _suspects(report)
    assert set(suspects) == {
        ("myclients.ApiClient", _line(source, "CLASS")),
        ("__main__.RetryingClient", _line(source, "SUBCLASS")),
        ("myclients.Conn", _line(source, "FACTORY")),
    }, done.stderr
    assert suspects[("__main__.RetryingClient", _line(source, "SUBCLASS"))]["base"] == (
        "myclients.ApiClient"
    )
    assert all(s["created"] == 8 and s["file"] == str(script) for s in suspects.values())


def test_environment_variable_with_malformed_and_missing_entries(tmp_path: Path) -> None:
    script, source = _program(tmp_path)
    report = tmp_path / "report.json"
    env = clean_env(
        LEAKAGENT_TARGETS="nocolon, myclients:ApiClient ,bad:1x,myclients:Nope,"
        "no_such_package_leakagent:Client,xml.dom.minidom:Document",
    )
    done = run_python_launched(
        script, cwd=tmp_path, env=env, options=[*OPTIONS, "--report", str(report)]
    )
    assert done.returncode == 0 and done.stdout == "done\n", done.stderr
    warnings = [line for line in done.stderr.splitlines() if "myclients" not in line
                or "Nope" in line]
    text = "\n".join(warnings)
    assert "LEAKAGENT_TARGETS: entry 'nocolon' ignored" in text
    assert "LEAKAGENT_TARGETS: entry 'bad:1x' ignored" in text
    assert "target 'myclients:Nope': myclients has no attribute 'Nope'" in text
    # never imported: a warning when the package does not exist, none when it merely was
    # not imported by this program
    assert "'no_such_package_leakagent:Client': no module named 'no_such_package_leakagent'" in text
    assert "xml.dom.minidom" not in text
    assert set(_suspects(report)) == {
        ("myclients.ApiClient", _line(source, "CLASS")),
        ("__main__.RetryingClient", _line(source, "SUBCLASS")),
    }


def test_track_api_before_and_after_the_import(tmp_path: Path) -> None:
    prologue = (
        "import leakagent\n"
        "assert leakagent.track('myclients:ApiClient') is True   # module not imported yet\n"
        "import myclients as _m\n"
        "assert leakagent.track('myclients:make_client') is True  # already imported\n"
        "try:\n"
        "    leakagent.track('myclients.ApiClient')\n"
        "except ValueError as exc:\n"
        "    print('rejected:', exc, file=sys.stderr)\n"
    )
    script, source = _program(tmp_path, prologue)
    report = tmp_path / "report.json"
    done = run_python_launched(script, cwd=tmp_path, options=[*OPTIONS, "--report", str(report)])
    assert done.returncode == 0, done.stderr
    assert "rejected: 'myclients.ApiClient' has no ':'" in done.stderr
    assert set(_suspects(report)) == {
        ("myclients.ApiClient", _line(source, "CLASS")),
        ("__main__.RetryingClient", _line(source, "SUBCLASS")),
        ("myclients.Conn", _line(source, "FACTORY")),
    }


def test_track_without_the_agent_is_a_no_op(tmp_path: Path) -> None:
    script = write_script(
        tmp_path, "import leakagent\nprint(leakagent.track('json:JSONDecoder'))\n", "plain.py"
    )
    done = subprocess.run([sys.executable, str(script)], env=clean_env(), capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "False\n", "")


def test_a_c_type_is_wrapped_by_name(tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        """\
        import collections
        from concurrent.futures import ThreadPoolExecutor

        def per_call(i):
            return collections.OrderedDict()  # HERE

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(per_call, range(8)))
        assert isinstance(collections.OrderedDict(), collections.OrderedDict)
        class Mine(collections.OrderedDict):
            pass
        Mine()
        """,
    )
    report = tmp_path / "report.json"
    done = run_python_launched(
        script, cwd=tmp_path,
        options=[*OPTIONS, "--report", str(report), "--target", "collections:OrderedDict"],
    )
    assert done.returncode == 0, done.stderr
    suspects = load_report(report)["suspects"]
    assert [(s["kind"], s["line"], s["created"]) for s in suspects] == [
        ("collections.OrderedDict", 5, 8)
    ]


@pytest.mark.parametrize(
    ("first_import", "report"),
    [("", True), ("import logging", False), ("import json", False)],
    ids=["report-imports-json-at-start", "program-imports-logging", "program-imports-json"],
)
def test_a_target_module_imported_inside_a_stdlib_import_is_patched(
    tmp_path: Path, first_import: str, report: bool
) -> None:
    # collections is imported by functools, imported by enum, re, json and logging: its hook
    # once ran inside those imports, where `import wrapt` (and `import logging` for the
    # warning) failed on the half-imported modules: nothing counted, nothing said (item 9).
    script = write_script(
        tmp_path,
        f"""\
        {first_import}
        import collections
        kept = [collections.OrderedDict() for _ in range(8)]  # HERE
        """,
    )
    path = tmp_path / "report.json"
    env = clean_env(LEAKAGENT_TARGETS="collections:OrderedDict", LEAKAGENT_THRESHOLD="3")
    if report:
        env["LEAKAGENT_REPORT"] = str(path)
    done = run_python_launched(script, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "collections.OrderedDict created 4 times" in done.stderr, done.stderr
    assert "not counted" not in done.stderr and "internal error" not in done.stderr
    if report:
        (suspect,) = load_report(path)["suspects"]
        assert (suspect["kind"], suspect["line"], suspect["created"]) == (
            "collections.OrderedDict", 3, 8
        )


PER_CALL_REQUESTS = """\
import requests
from concurrent.futures import ThreadPoolExecutor

def per_call(i):
    requests.Session().close()  # HERE

with ThreadPoolExecutor(2) as pool:
    list(pool.map(per_call, range(8)))
"""


def test_disabled_targets_by_name_and_star(tmp_path: Path) -> None:
    script = write_script(tmp_path, PER_CALL_REQUESTS)
    report = tmp_path / "report.json"
    runs = {
        "none": [],
        "option": ["--disable-target", "requests.Session"],
        "urllib3-only": ["--disable-target", "urllib3.PoolManager"],
    }
    kinds = {}
    for name, extra in runs.items():
        done = run_python_launched(
            script, cwd=tmp_path, options=[*OPTIONS, "--report", str(report), *extra]
        )
        assert done.returncode == 0, done.stderr
        kinds[name] = sorted(s["kind"] for s in load_report(report)["suspects"])
    done = run_python_launched(
        script, cwd=tmp_path, env=clean_env(LEAKAGENT_DISABLED_TARGETS="*"),
        options=[*OPTIONS, "--report", str(report)],
    )
    assert done.returncode == 0, done.stderr
    kinds["star"] = sorted(s["kind"] for s in load_report(report)["suspects"])
    assert kinds["none"] == ["requests.Session"]
    assert kinds["urllib3-only"] == ["requests.Session"]
    # with requests.Session off, the PoolManager each Session builds is no longer nested
    assert kinds["option"] == ["urllib3.PoolManager"]
    assert kinds["star"] == []


def test_a_user_spec_over_a_built_in_wraps_nothing_twice(tmp_path: Path) -> None:
    script = write_script(tmp_path, PER_CALL_REQUESTS)
    report = tmp_path / "report.json"
    done = run_python_launched(
        script, cwd=tmp_path,
        options=[*OPTIONS, "--report", str(report), "--target", "requests:Session",
                 "--target", "requests.sessions:Session.__init__"],
    )
    assert done.returncode == 0, done.stderr
    # requests.sessions is imported (and its user spec patched) before the requests package
    # finishes importing: that label wins; each Session still counts once
    suspects = load_report(report)["suspects"]
    assert [(s["kind"], s["line"], s["created"]) for s in suspects] == [
        ("requests.sessions.Session", 5, 8)
    ]
    done = run_python_launched(
        script, cwd=tmp_path,
        options=[*OPTIONS, "--report", str(report), "--target", "requests:Session"],
    )
    assert done.returncode == 0, done.stderr
    suspects = load_report(report)["suspects"]
    assert [(s["kind"], s["line"], s["created"]) for s in suspects] == [
        ("requests.Session", 5, 8)
    ]
