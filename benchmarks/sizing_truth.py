"""Memory per call site against a known truth: a boto3 client's cost by tracemalloc.

    python benchmarks/sizing_truth.py

Prints tracemalloc's growth per kept client (the truth) beside leakagent's estimate from
several live clients and from one live client with its session (docs/memory.md).
"""

from __future__ import annotations

import gc
import tracemalloc

import boto3

from leakagent.core.tracker import Tracker
from leakagent.outputs import sizing

KEY = ("botocore.client.S3", "/app/a.py", 1, "f")
KEPT = 50


def main() -> None:
    session = boto3.session.Session()

    def make() -> object:
        return session.client(
            "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
        )

    make()  # warm the loader's caches: they are shared, not a client's cost
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = [make() for _ in range(KEPT)]
    gc.collect()
    truth = (tracemalloc.get_traced_memory()[0] - before) / KEPT
    tracemalloc.stop()

    many = Tracker(threshold=10**9)
    for client in kept:
        many.record(KEY[0], KEY[1:], client)
    one = Tracker(threshold=10**9)
    one.record(KEY[0], KEY[1:], kept[0])
    one.record("boto3.Session", ("/app/a.py", 2, "g"), session)
    several = sizing.Sizer(many).site_bytes()[KEY][0] or 0
    alone = sizing.Sizer(one).site_bytes()[KEY][0] or 0
    print(
        f"boto3 client: tracemalloc {truth / 1000:.0f} kB each; estimate from "
        f"{sizing.SAMPLE} live: {several / 1000:.0f} kB; from 1 live (+ its session): "
        f"{alone / 1000:.0f} kB"
    )


if __name__ == "__main__":
    main()
