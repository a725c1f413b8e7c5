"""Without configuration nothing OpenTelemetry is imported and nothing goes over the network;
OTEL_SDK_DISABLED=true turns export off; a missing Prometheus exporter is said once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port
from tests.helpers import clean_env, run_container_mode, run_python_launched, write_script

PROBE = """
import json, sys, time
import requests
sessions = [requests.Session() for _ in range(3)]
time.sleep(0.3)
heavy = ("opentelemetry", "grpc", "google.protobuf", "leakagent.outputs.telemetry._setup",
         "prometheus_client")
loaded = sorted(m for m in sys.modules if m.startswith(heavy))
threads = sorted(t.name for t in __import__("threading").enumerate())
print(json.dumps({"loaded": loaded, "threads": threads}))
"""


@pytest.mark.parametrize(
    "env",
    [
        {},
        {
            "OTEL_SDK_DISABLED": "true",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
        },
        {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"},
        # Variables only opentelemetry-instrument reads do not switch leakagent's export on.
        {"OTEL_SERVICE_NAME": "svc", "OTEL_RESOURCE_ATTRIBUTES": "a=b"},
    ],
)
def test_no_opentelemetry_without_export(tmp_path: Path, env: dict[str, str]) -> None:
    app = write_script(tmp_path, PROBE)
    result = run_python_launched(app, env=clean_env(**env))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["loaded"] == []
    assert result.stderr == ""


def test_missing_prometheus_exporter_is_said_once(tmp_path: Path) -> None:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "prometheus_client.py").write_text(
        "raise ImportError(\"No module named 'prometheus_client'\", name='prometheus_client')\n"
    )
    # Prometheus is scraped, not pushed at exit: the program lives past the set-up delay.
    app = write_script(
        tmp_path, "import requests, time\nrequests.Session()\ntime.sleep(1.5)\nprint('ok')\n"
    )
    env = clean_env(
        OTEL_METRICS_EXPORTER="prometheus",
        OTEL_EXPORTER_PROMETHEUS_PORT=str(free_port()),
        PYTHONPATH=str(shim),
    )
    result = run_container_mode([str(app)], env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"
    lines = [line for line in result.stderr.splitlines() if "leakagent[prometheus]" in line]
    assert len(lines) == 1, result.stderr
