"""Collectors that misbehave, on 127.0.0.1: for the exit probe's unit tests and the exit e2e
tests (a healthy one is the real sink in ``tests/e2e/otlp.py``)."""

from __future__ import annotations

import socket
import threading


class SilentCollector:
    """Accepts TCP connections and never answers; keeps them open and counts them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)
            self._accepted(conn)

    def _accepted(self, conn: socket.socket) -> None:
        """What to do with a new connection: nothing."""

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


class StuckCollector(SilentCollector):
    """Answers the exit probe's greeting (an HTTP/2 SETTINGS frame to the HTTP/2 preface, a
    404 to ``HEAD``), then never an export: alive but stuck, so a flush runs to its bound.
    Keeps the first bytes of each connection in ``received``."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        super().__init__()

    def _accepted(self, conn: socket.socket) -> None:
        threading.Thread(target=self._greet, args=(conn,), daemon=True).start()

    def _greet(self, conn: socket.socket) -> None:
        try:
            first = conn.recv(4096)
            self.received.append(first)
            if first.startswith(b"PRI * HTTP/2.0"):
                conn.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # SETTINGS
            elif first.startswith(b"HEAD "):
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass
