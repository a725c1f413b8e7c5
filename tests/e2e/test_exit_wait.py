"""At exit the agent waits for the exporter only when there is something to export, and a
collector that refuses connections is noticed at once (issue 11 item 4).

The checks are structural, not timings: what the collector saw, what the agent said at INFO
level, and that a process whose exit bound is 60 s ends well within a 30 s subprocess timeout
(before the fix it waited the whole bound). The figures are in docs/performance.md
(``benchmarks/exit_otlp.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.collectors import SilentCollector, StuckCollector
from tests.e2e.conftest import free_port
from tests.helpers import clean_env, run_container_mode, write_script

LONG_BOUND = "60"  # far longer than the subprocess timeout below
RUN_TIMEOUT = 30.0

FINDING = """
import threading
def handle():
    return threading.local()  # a local per call: a suspect after 50
kept = [handle() for _ in range(60)]
print("done")
"""


def _env(protocol: str, port: int) -> dict[str, str]:
    return clean_env(
        LEAKAGENT_LOG_LEVEL="INFO",
        LEAKAGENT_SUMMARY="never",
        LEAKAGENT_OTEL_EXIT_TIMEOUT=LONG_BOUND,
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_METRICS_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
        OTEL_EXPORTER_OTLP_INSECURE="true",
    )


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_nothing_to_export_never_waits_for_the_exporter(
    tmp_path: Path, protocol: str, silent: SilentCollector
) -> None:
    """``python -c pass`` in container mode with OTLP on and a silent collector: the SDK is
    never imported, the collector never contacted, the exit not delayed."""
    app = write_script(
        tmp_path, "import sys\nprint(sorted(m for m in sys.modules if 'opentelemetry' in m))\n"
    )
    result = run_container_mode([str(app)], env=_env(protocol, silent.port), timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"
    assert "nothing to export at exit" in result.stderr
    assert silent.accepted == []


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_dead_collector_is_noticed_at_once(tmp_path: Path, protocol: str) -> None:
    """A finding to export, the collector's port closed: no retrying until the bound."""
    app = write_script(tmp_path, FINDING)
    port = free_port()  # nothing listens there
    result = run_container_mode([str(app)], env=_env(protocol, port), timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    assert f"http://127.0.0.1:{port} refused the connection" in result.stderr
    assert "internal error" not in result.stderr


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_exit_flush_needs_no_new_thread(
    tmp_path: Path, protocol: str, stuck: StuckCollector
) -> None:
    """Python 3.12+ starts no thread once the interpreter shuts down: the exit flush runs on a
    worker started with the export layer (before: 'internal error in exit hook
    (RuntimeError: can't create new thread at interpreter shutdown)' on 3.12)."""
    app = write_script(
        tmp_path,
        "import time, requests\nrequests.Session()\ntime.sleep(1.5)  # past the set-up\n",
    )
    env = {**_env(protocol, stuck.port), "LEAKAGENT_OTEL_EXIT_TIMEOUT": "0.5"}
    result = run_container_mode([str(app)], env=env, timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert "can't create new thread" not in result.stderr
    assert "internal error" not in result.stderr
    assert "flush did not finish within" in result.stderr  # it ran, and was bounded
    assert len(stuck.accepted) >= 2  # the probe, then the flush reached the stuck collector


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_silent_collector_is_not_waited_for(
    tmp_path: Path, protocol: str, silent: SilentCollector
) -> None:
    """A finding to export, a collector that accepts connections and never answers: the exit
    probe's greeting gets no answer, so there is no flush to wait for."""
    app = write_script(tmp_path, FINDING)
    result = run_container_mode([str(app)], env=_env(protocol, silent.port),
                                timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    assert (f"telemetry not flushed at exit: http://127.0.0.1:{silent.port} accepted the "
            "connection but did not answer within 0.1 s") in result.stderr
    assert "flush did not finish" not in result.stderr
    assert len(silent.accepted) == 1  # the probe only
    assert "internal error" not in result.stderr
