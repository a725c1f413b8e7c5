"""The correct version: one threading.local per object, created once; one client per thread.

Run it under the agent:  leakagent python examples/seed_correct.py   (no suspect)
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import boto3

TASKS = 400
THREADS = 8


class Uploader:
    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self._local = threading.local()  # created once, shared by all threads

    @property
    def client(self):
        client = getattr(self._local, "s3", None)
        if client is None:  # first call on this thread
            client = self._local.s3 = boto3.client(
                "s3",
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return client

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
