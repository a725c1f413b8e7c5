"""Fixtures of the end-to-end telemetry tests: OTLP receivers on 127.0.0.1, programs to run."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.otlp import GrpcReceiver, HttpReceiver


@pytest.fixture
def grpc_receiver() -> Iterator[GrpcReceiver]:
    with GrpcReceiver() as receiver:
        yield receiver


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture(params=["grpc", "http/protobuf"])
def receiver(request: pytest.FixtureRequest) -> Iterator[GrpcReceiver | HttpReceiver]:
    """One receiver per OTLP protocol; ``receiver.protocol`` says which."""
    cls = GrpcReceiver if request.param == "grpc" else HttpReceiver
    with cls() as started:
        started.protocol = request.param  # type: ignore[union-attr]
        yield started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def marked_line(path: Path, marker: str) -> int:
    """Line number of the line containing ``# marker`` in a program."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if f"# {marker}" in line:
            return number
    raise AssertionError(f"no '# {marker}' in {path}")
