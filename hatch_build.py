"""Build the optional C fast path of the counting ``threading.local`` into the wheel.

``src/leakagent/hooks/_countnew.c`` is compiled with the interpreter's own compiler settings
(``sysconfig``'s ``LDSHARED``). It is optional: without a C compiler or the Python headers
(or with ``LEAKAGENT_BUILD_NATIVE=0``, or on a free-threaded build) the wheel is pure Python
and the agent counts with the Python fast path, with the same results
(``docs/performance.md``). A failed build is said on stderr, never an install error.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = os.path.join("src", "leakagent", "hooks", "_countnew.c")
PACKAGE_DIR = "leakagent/hooks"


def _say(message: str) -> None:
    print(f"leakagent build: {message}", file=sys.stderr)


def compile_extension(root: str, out_dir: str) -> str | None:
    """The built module's path, or None (said why) when it cannot be built here."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    linker = os.environ.get("LDSHARED") or sysconfig.get_config_var("LDSHARED")
    include = sysconfig.get_paths().get("include")
    if not suffix or not linker or not include:
        _say("no C build settings for this interpreter: pure-Python fast path")
        return None
    out = os.path.join(out_dir, "_countnew" + suffix)
    command = [
        *shlex.split(linker),
        "-fPIC",
        "-O2",
        "-I",
        include,
        os.path.join(root, SOURCE),
        "-o",
        out,
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        _say(f"C fast path not built ({exc}): pure-Python fast path")
        return None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        _say(f"C fast path not built ({' / '.join(detail)}): pure-Python fast path")
        return None
    return out


class NativeBuildHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"
    _scratch: str | None = None

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        choice = os.environ.get("LEAKAGENT_BUILD_NATIVE", "1").strip().lower()
        if choice in {"0", "false", "no", "off"}:
            _say("LEAKAGENT_BUILD_NATIVE=0: pure-Python fast path")
            return
        if sysconfig.get_config_var("Py_GIL_DISABLED"):
            return  # the agent would not load it there (it would switch the GIL back on)
        if version == "editable":  # the editable wheel points at src/: build in place
            out_dir = os.path.join(self.root, "src", PACKAGE_DIR)
        else:
            out_dir = self._scratch = tempfile.mkdtemp(prefix="leakagent-native-")
        built = compile_extension(self.root, out_dir)
        if built is None:
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            build_data["force_include"][built] = f"{PACKAGE_DIR}/{os.path.basename(built)}"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if self._scratch:  # the module is in the wheel now
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
