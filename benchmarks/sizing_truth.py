"""Known truth for a boto3 client: tracemalloc's growth per kept client, vs the estimate."""
import gc, tracemalloc, boto3, sys
from leakagent.core.tracker import Tracker
from leakagent.outputs import sizing
session = boto3.session.Session()
make = lambda: session.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
make()  # warm the loader caches
gc.collect(); tracemalloc.start(); before = tracemalloc.get_traced_memory()[0]
kept = [make() for _ in range(50)]
gc.collect(); after = tracemalloc.get_traced_memory()[0]; tracemalloc.stop()
truth = (after - before) / 50
t = Tracker(threshold=10**9)
for c in kept: t.record("botocore.client.S3", ("/app/a.py", 1, "f"), c)
one = Tracker(threshold=10**9); one.record("botocore.client.S3", ("/app/a.py", 1, "f"), kept[0])
one.record("boto3.Session", ("/app/a.py", 2, "g"), session)
est = sizing.Sizer(t).site_bytes()[("botocore.client.S3", "/app/a.py", 1, "f")][0]
est1 = sizing.Sizer(one).site_bytes()[("botocore.client.S3", "/app/a.py", 1, "f")][0]
print(f"boto3 client: tracemalloc {truth/1000:.0f} kB each; estimate from 4 live: {est/1000:.0f} kB; from 1 live (+ its session): {est1/1000:.0f} kB")
