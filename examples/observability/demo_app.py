"""A small service with the bug, for the observability example: every "request" builds a new
requests.Session (churn) and one in ten is kept in a list by mistake (retention).

    leakagent --otlp python examples/observability/demo_app.py

No network is needed: the sessions are built, never used. Stop it with Ctrl-C.
"""

import threading
import time

import requests

kept = []


def handle_request(number: int) -> None:
    session = requests.Session()  # BUG: one client per request; build it once and share it
    if number % 10 == 0:
        kept.append(session)  # BUG: and some are kept forever


def worker() -> None:
    number = 0
    while True:
        handle_request(number)
        number += 1
        time.sleep(0.05)


def main() -> None:
    threads = [threading.Thread(target=worker, name=f"worker-{n}", daemon=True) for n in range(4)]
    for thread in threads:
        thread.start()
    while True:
        time.sleep(1)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
