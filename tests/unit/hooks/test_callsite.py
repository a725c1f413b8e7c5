"""Call-site lookup: skip agent, library and stdlib frames by file name."""

from __future__ import annotations

import functools
import os

from leakagent.hooks.callsite import SiteFinder, package_dir


def here() -> tuple[str, int, str]:
    return SiteFinder().find(0)


def test_first_user_frame_is_the_caller() -> None:
    file, line, function = here()
    assert file == os.path.abspath(__file__)
    assert function == "here"


def test_library_frames_are_skipped() -> None:
    lib_dir = os.path.dirname(os.path.abspath(__file__)) + os.sep
    finder = SiteFinder((lib_dir,))
    site = functools.reduce(lambda a, b: finder.find(0), [1, 2])
    # every frame of this test directory is skipped: the first frame left is pytest's, an
    # installed library, and no user frame is left above it (under pytest-xdist, the worker's
    # bootstrap code, "<string>", is the user frame above, reached via pytest's)
    assert not site[0].startswith(lib_dir)
    if site[0] == "<string>":
        assert site[3] == "user" and site[4] is not None
    else:
        assert site[3] == "library" and site[4] is None


def test_stdlib_frames_are_passed_over() -> None:
    def call() -> tuple[str, int, str]:
        return functools.partial(SiteFinder().find, 0)()

    file, _, function = call()
    assert file == os.path.abspath(__file__) and function.endswith("call")


def test_package_dir_of_an_imported_package() -> None:
    import json

    assert package_dir("json.decoder") == os.path.dirname(json.__file__) + os.sep
    assert package_dir("la_not_imported_pkg") is None


class _Base:
    def client(self) -> object:
        return SiteFinder().find(0)

    @classmethod
    def make(cls) -> object:
        return SiteFinder().find(0)

    @property
    def prop(self) -> object:
        return SiteFinder().find(0)


class _Uploader(_Base):
    def own(self) -> object:
        return SiteFinder().find(0)


def test_methods_read_with_their_class_on_every_python() -> None:
    """3.9/3.10 have no co_qualname: sites read `in client`, not `in _Base.client`."""
    uploader = _Uploader()
    assert uploader.client()[2] == "_Base.client"  # type: ignore[index]
    assert uploader.own()[2] == "_Uploader.own"  # type: ignore[index]
    assert _Uploader.make()[2] == "_Base.make"  # type: ignore[index]
    assert uploader.prop[2] == "_Base.prop"  # type: ignore[index]
