"""A test of the seed's buggy uploader: ``pytest --leakagent examples/test_uploader.py`` fails it."""

from seed_buggy import Uploader


def test_upload_many():
    uploader = Uploader("reports")
    for n in range(100):
        uploader.upload(f"part-{n}")
