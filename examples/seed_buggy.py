"""The seed bug: a per-thread client "cache" whose threading.local is created on every call.

Every access to ``Uploader.client`` makes a new, empty ``threading.local``, so the cache is
never hit and every call builds a new boto3 client (~10 ms of CPU and up to ~1 MB each).
Run it under the agent:  leakagent python examples/seed_buggy.py
No AWS account or network is needed: clients are built offline with fake credentials.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import boto3

TASKS = 400
THREADS = 8


class Uploader:
    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    @property
    def client(self):
        thread_local = threading.local()  # BUG: a new, empty local on every call
        if "s3" not in thread_local.__dict__:
            thread_local.s3 = boto3.client(
                "s3",
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return thread_local.s3

    def upload(self, key: str) -> str:
        client = self.client
        return client.meta.region_name + "/" + self.bucket + "/" + key


def main() -> None:
    uploader = Uploader("reports")
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(uploader.upload, (f"part-{n}" for n in range(TASKS))))
    print(f"uploaded {len(results)} parts")


if __name__ == "__main__":
    main()
