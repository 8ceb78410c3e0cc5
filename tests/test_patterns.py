"""The one glob dialect, as config keys, watch: and -k use it."""

from __future__ import annotations

import re

import pytest

from orchestrator.patterns import Glob


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("data/*.csv", "data/in.csv", True),
        ("data/*.csv", "data/sub/in.csv", False),
        ("data/**/*.csv", "data/sub/deep/in.csv", True),
        ("data/**/*.csv", "data/in.csv", True),
        ("data", "data/x/y.py", True),
        ("./data/", "data/x.py", True),
        ("dat", "data/x.py", False),
        ("[ab]/x.py", "a/x.py", True),
        ("[!ab]/x.py", "a/x.py", False),
        ("?.py", "a.py", True),
        ("?.py", "a/b.py", False),
    ],
)
def test_matches(pattern: str, path: str, expected: bool) -> None:
    assert Glob(pattern).matches(path) is expected


@pytest.mark.parametrize(
    ("pattern", "fixed", "depth", "literal"),
    [
        ("data/*.csv", "data", 0, False),
        ("data/*/in.csv", "data", 1, False),
        ("*.csv", "", 0, False),
        ("data/**/*.csv", "data", None, False),
        ("data/in.csv", "data/in.csv", None, True),
        ("./data/", "data", None, True),
    ],
)
def test_where_to_look(pattern: str, fixed: str, depth: int | None, literal: bool) -> None:
    glob = Glob(pattern)
    assert (glob.fixed, glob.depth, glob.literal) == (fixed, depth, literal)


def test_of_is_cached_and_a_broken_class_is_an_error() -> None:
    assert Glob.of("a/*.py") is Glob.of("a/*.py")
    assert Glob("a[[]b").matches("a[b")  # a literal bracket is a class of one
    with pytest.raises(re.error, match=r"unclosed '\['"):
        Glob("a[b")  # fnmatch takes it literally; we call it the typo it nearly always is
    assert repr(Glob("x/*")) == "Glob('x/*')"
    with pytest.raises(re.error):
        Glob("[z-a]")  # a range no path can match: config validation reports it
