"""No constructor argument and no environment value ever leaves the process.

Canary secrets are passed to real client constructors and set in the environment; then every
output channel is searched: stderr, the JSON reports, OTLP data as received on the wire (gRPC
and HTTP), and the Prometheus scrape.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import free_port
from tests.e2e.otlp import GrpcReceiver, HttpReceiver
from tests.helpers import clean_env, launcher, write_script

CANARIES = [
    "AKIACANARY0000000001",
    "canary-aws-secret-key",
    "canary-session-token",
    "canary-redis-password",
    "canary-url-password",
    "canary-bearer-token",
    "canary-basic-password",
    "canary-pg-password",
    "canary-openai-key",
    "canary-environment-value",
]

PROGRAM = """
import os, time, threading, urllib.request
import boto3, redis, requests, httpx, urllib3, sqlalchemy, openai

def build():
    boto3.client("s3", region_name="us-east-1", aws_access_key_id="AKIACANARY0000000001",
                 aws_secret_access_key="canary-aws-secret-key",
                 aws_session_token="canary-session-token")
    redis.Redis(host="127.0.0.1", port=1, password="canary-redis-password")
    redis.from_url("redis://user:canary-url-password@127.0.0.1:1/0")
    urllib3.PoolManager(headers={"Authorization": "Bearer canary-bearer-token"})
    httpx.Client(auth=("user", "canary-basic-password")).close()
    s = requests.Session(); s.auth = ("user", "canary-basic-password"); s.close()
    sqlalchemy.create_engine("postgresql://user:canary-pg-password@127.0.0.1:1/db")
    openai.OpenAI(api_key="canary-openai-key")

for _ in range(12):
    build()
scrape = os.environ.get("SCRAPE_URL")
if scrape:
    for _ in range(100):
        try:
            body = urllib.request.urlopen(scrape, timeout=5).read().decode()
            if "leakagent_instances_created" in body:
                break
        except OSError:
            pass
        time.sleep(0.1)
    with open(os.environ["SCRAPE_FILE"], "w") as handle:
        handle.write(body)
print("done")
"""


def run(tmp_path: Path, env_extra: dict[str, str], *options: str) -> tuple[str, list[Path]]:
    script = write_script(tmp_path, PROGRAM)
    env = clean_env(
        MY_APP_SECRET="canary-environment-value",
        DATABASE_URL="postgresql://u:canary-pg-password@db/x",
        OTEL_METRIC_EXPORT_INTERVAL="500",
        LEAKAGENT_OTEL_EXIT_TIMEOUT="20",  # short program: the SDK import may end at exit
        **env_extra,
    )
    result = subprocess.run(
        [*launcher(), "--threshold", "5", "--summary", "always",
         "--report", str(tmp_path / "report-{pid}.json"), *options,
         sys.executable, str(script)],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    assert "requests.Session" in result.stderr  # the channels did carry data
    return result.stderr, list(tmp_path.glob("report-*.json"))


def assert_clean(channel: str, text: str) -> None:
    for canary in CANARIES:
        assert canary not in text, f"{canary!r} leaked into {channel}"


def test_no_secret_in_stderr_reports_or_otlp(tmp_path: Path) -> None:
    with GrpcReceiver() as grpc_receiver, HttpReceiver() as http_receiver:
        for receiver, protocol in ((grpc_receiver, "grpc"), (http_receiver, "http/protobuf")):
            directory = tmp_path / protocol.replace("/", "-")
            directory.mkdir()
            stderr, reports = run(directory, {}, "--otlp", receiver.endpoint,
                                  "--otlp-protocol", protocol)
            assert_clean("stderr", stderr)
            assert reports
            for report in reports:
                assert_clean(report.name, report.read_text())
            received = receiver.received
            assert received.wait_for(lambda r=received: bool(r.traces) and bool(r.metrics))
            wire = b"".join(
                request.SerializeToString() for request in [*received.traces, *received.metrics]
            )
            assert b"requests.Session" in wire
            for canary in CANARIES:
                assert canary.encode() not in wire, f"{canary!r} sent over OTLP {protocol}"


def test_no_secret_in_the_prometheus_scrape(tmp_path: Path) -> None:
    port = free_port()
    scrape_file = tmp_path / "scrape.txt"
    stderr, reports = run(
        tmp_path,
        {"SCRAPE_URL": f"http://127.0.0.1:{port}/metrics", "SCRAPE_FILE": str(scrape_file)},
        "--prometheus", str(port),
    )
    body = scrape_file.read_text()
    assert "leakagent_instances_created" in body
    assert_clean("the Prometheus scrape", body)
    assert_clean("stderr", stderr)
    for report in reports:
        assert_clean(report.name, report.read_text())
