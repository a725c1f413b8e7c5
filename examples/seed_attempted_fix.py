"""The seed's attempted fix, which is still wrong.

The client is now kept on ``self`` and returned from there, but the ``threading.local`` is
still created inside the property, so the check never finds a cached client: every call
still builds a new one (and threads overwrite each other's ``self.s3``).
Run it under the agent:  leakagent python examples/seed_attempted_fix.py
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
        thread_local = threading.local()  # still a new, empty local on every call
        if "s3" not in thread_local.__dict__:
            self.s3 = boto3.client(
                "s3",
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return self.s3  # the "fix": returns the shared attribute, last writer wins

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
