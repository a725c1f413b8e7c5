"""Shared helpers: run real programs under the real launcher or in container mode."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def launcher() -> list[str]:
    """The installed ``leakagent`` launcher script next to this interpreter."""
    found = shutil.which("leakagent", path=os.path.dirname(sys.executable))
    if found is None:
        raise AssertionError("the leakagent launcher is not installed beside " + sys.executable)
    return [found]


def sitecustomize_dir() -> str:
    """What ``leakagent --sitecustomize-dir`` prints."""
    return subprocess.check_output([*launcher(), "--sitecustomize-dir"], text=True).strip()


def clean_env(**extra: str) -> dict[str, str]:
    """The test process environment without any LEAKAGENT_*/OTEL_* or PYTHONPATH settings.

    ``LEAKAGENT_STRICT=1`` makes contained agent errors raise, so bugs cannot hide behind the
    containment; tests that inject faults pass ``LEAKAGENT_STRICT="0"``.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LEAKAGENT_", "OTEL_")) and k not in ("PYTHONPATH",)
    }
    env["LEAKAGENT_STRICT"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def write_script(directory: Path, source: str, name: str = "app.py") -> Path:
    """Write a dedented program to ``directory/name``."""
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return path


def run_launched(
    args: list[str],
    *,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    options: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``leakagent [options] ARGS`` as a real subprocess."""
    return subprocess.run(
        [*launcher(), *(options or []), *args],
        cwd=cwd,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_python_launched(script: Path | str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``leakagent [options] python SCRIPT ARGS``."""
    return run_launched([sys.executable, str(script), *args], **kwargs)


def run_container_mode(
    args: list[str],
    *,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``PYTHONPATH=<sitecustomize dir> python ARGS``: no launcher."""
    env = dict(env if env is not None else clean_env())
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (sitecustomize_dir(), env.get("PYTHONPATH", "")) if p
    )
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def line_of(path: Path, marker: str) -> int:
    """Number of the first line of ``path`` that contains ``marker``."""
    for number, text in enumerate(path.read_text().splitlines(), 1):
        if marker in text:
            return number
    raise AssertionError(f"{marker!r} not in {path}")


def load_report(path: Path | str) -> dict[str, Any]:
    """Read a JSON report."""
    return json.loads(Path(path).read_text())


def suspects_by_kind(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Suspect sites keyed by kind (the last one wins when a kind has several)."""
    return {s["kind"]: s for s in report["suspects"]}
