"""A throw-away PostgreSQL server on 127.0.0.1, from Debian's ``postgresql`` package.

psycopg2 and psycopg (3) cannot construct a connection without a server, so their catalog
tests connect to a real one. ``scripts/run-tests`` installs the package; a missing server is a
test failure, never a skip. As root, ``initdb`` and ``postgres`` run as the ``postgres`` user
(PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager


def _bin_dir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        raise AssertionError(
            "PostgreSQL is not installed (Debian package 'postgresql'; scripts/run-tests "
            "installs it)"
        )
    return os.path.dirname(found[-1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_postgres() -> Iterator[str]:
    """Start a server with trust authentication; yields its DSN; stops and deletes it."""
    bin_dir = _bin_dir()
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    home = tempfile.mkdtemp(prefix="leakagent-pg-")
    data = os.path.join(home, "data")
    if as_root:
        shutil.chown(home, "postgres", "postgres")
    port = _free_port()
    server = None
    try:
        subprocess.run(
            [*prefix, f"{bin_dir}/initdb", "-D", data, "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, text=True, timeout=120,
        )
        log = open(os.path.join(home, "server.log"), "w")  # noqa: SIM115 - closed below
        server = subprocess.Popen(
            [*prefix, f"{bin_dir}/postgres", "-D", data, "-h", "127.0.0.1", "-p", str(port),
             "-k", home, "-F", "-c", "max_connections=200"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
        deadline = time.monotonic() + 60
        while True:
            ready = subprocess.run(
                [f"{bin_dir}/pg_isready", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"],
                capture_output=True,
            )
            if ready.returncode == 0:
                break
            if server.poll() is not None or time.monotonic() > deadline:
                with open(os.path.join(home, "server.log")) as f:
                    raise AssertionError(f"PostgreSQL did not start:\n{f.read()}")
            time.sleep(0.1)
        yield dsn
    finally:
        if server is not None:
            server.terminate()  # SIGTERM to runuser is passed on: a "smart" shutdown
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(home, ignore_errors=True)
