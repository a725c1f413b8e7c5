"""A real Prometheus server (Debian's ``prometheus``) scrapes a program run under the launcher
with ``--prometheus``; every PromQL expression of the provisioned Grafana dashboard must
return data. Everything listens on 127.0.0.1 only."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import free_port
from tests.helpers import EXAMPLES, clean_env, launcher, write_script

PROMETHEUS = "/usr/bin/prometheus"
DASHBOARD = EXAMPLES / "observability" / "grafana" / "dashboards" / "leakagent.json"
JOB = "leakagent-app"
# Grafana's variables, as Grafana would expand them for this test's data (1 s scrapes).
GRAFANA_VARIABLES = {"$__rate_interval": "15s", "$__interval": "5s", "$job": ".+"}
MEMORY_LIMIT = 512 * 1024 * 1024

APP = """
import os, sys, threading, time
import requests

kept = []
local = threading.local()  # module-local

def handle_request(number):
    session = requests.Session()  # per-request-client
    if number % 10 == 0:
        kept.append(session)

number = 0
stop = sys.argv[1]
deadline = time.monotonic() + 240
print("serving", flush=True)
while not os.path.exists(stop) and time.monotonic() < deadline:
    handle_request(number)
    number += 1
    time.sleep(0.02)
print("stopped after", number, flush=True)
"""


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


class Prometheus:
    def __init__(self, directory: Path, target_port: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = directory / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            f"  - job_name: {JOB}\n"
            "    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n"
        )
        self.log = (directory / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.console.templates=",
                "--web.console.libraries=",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "prometheus exited; see prometheus.log"
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("prometheus did not become ready")

    def query(self, expr: str) -> list[Any]:
        data = _get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert data["status"] == "success", data
        return list(data["data"]["result"])

    def label_values(self, label: str, match: str) -> list[str]:
        query = urllib.parse.urlencode({"match[]": match})
        data = _get(f"{self.url}/api/v1/label/{label}/values?{query}")
        assert data["status"] == "success", data
        return list(data["data"])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of the dashboard, plus its variable queries."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queries.append((panel["title"], target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") == "query":
            query = variable["query"]
            queries.append((f"variable {variable['name']}", query.get("query", query)))
    return queries


def _expand(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


@pytest.fixture
def scraped_program(tmp_path: Path) -> Iterator[tuple[Prometheus, subprocess.Popen[str], Path]]:
    app = write_script(tmp_path, APP)
    stop = tmp_path / "stop"
    cgroup = tmp_path / "cgroup"  # a cgroup v2 mount with a memory limit, as in a container
    cgroup.mkdir()
    (cgroup / "cgroup.controllers").write_text("cpu io memory pids\n")
    (cgroup / "memory.max").write_text(f"{MEMORY_LIMIT}\n")
    metrics_port = free_port()
    program = subprocess.Popen(
        [*launcher(), "--prometheus", str(metrics_port), sys.executable, str(app), str(stop)],
        env=clean_env(LEAKAGENT_CGROUP_ROOT=str(cgroup)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    (tmp_path / "prometheus").mkdir()
    prometheus = Prometheus(tmp_path / "prometheus", metrics_port)
    try:
        assert program.stdout is not None
        assert program.stdout.readline().strip() == "serving"
        prometheus.wait_ready()
        yield prometheus, program, stop
    finally:
        stop.write_text("stop")
        try:
            program.wait(timeout=60)
        finally:
            if program.poll() is None:
                program.kill()
            prometheus.stop()


def _wait_for_data(prometheus: Prometheus, expr: str, timeout: float = 90) -> list[Any]:
    deadline = time.monotonic() + timeout
    result: list[Any] = []
    while time.monotonic() < deadline:
        result = prometheus.query(expr)
        if result:
            return result
        time.sleep(0.5)
    return result


def test_prometheus_scrapes_and_every_dashboard_query_has_data(
    scraped_program: tuple[Prometheus, subprocess.Popen[str], Path],
) -> None:
    prometheus, program, stop = scraped_program
    # The scrape works and the target is loopback only.
    up = _wait_for_data(prometheus, f'up{{job="{JOB}"}} == 1')
    assert up, "prometheus never scraped the program"
    assert up[0]["metric"]["instance"].startswith("127.0.0.1:")

    # Names as Prometheus sees them: _total on counters, _bytes from the By unit, labels.
    created = _wait_for_data(
        prometheus, 'leakagent_instances_created_total{leakagent_kind="requests.Session"}'
    )
    assert created
    labels = created[0]["metric"]
    assert labels["code_function_name"] == "handle_request"
    assert labels["code_file_path"].endswith("app.py")
    assert re.fullmatch(r"\d+", labels["code_line_number"])
    assert _wait_for_data(
        prometheus, 'leakagent_thread_local_created_total{leakagent_kind="threading.local"}'
    )
    limit = _wait_for_data(prometheus, "leakagent_memory_limit_bytes")
    assert float(limit[0]["value"][1]) == MEMORY_LIMIT
    # The suspect appears after 41 creations, and rate() needs a few scrapes.
    assert _wait_for_data(prometheus, "leakagent_suspects == 1")

    queries = dashboard_queries()
    assert len(queries) >= 6
    for title, expr in queries:
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", expr)
        if match:
            values = prometheus.label_values(match.group(2), match.group(1))
            assert JOB in values, (title, values)
            continue
        result = _wait_for_data(prometheus, _expand(expr), timeout=60)
        assert result, f"panel {title!r}: no data for {expr}"

    stop.write_text("stop")
    assert program.wait(timeout=60) == 0
    assert program.stdout is not None
    assert program.stdout.read().startswith("stopped after")
