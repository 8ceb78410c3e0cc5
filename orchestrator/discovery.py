"""Find the Python scripts under a scripts directory.

The walk is an explicit stack over ``os.scandir``: skipped directories are
pruned before they are entered, symlinked directories are never followed (so a
link loop cannot hang it), and only file names that end in ``.py`` are turned
into paths. Depth counts directories below ``scripts_dir``: ``x.py`` is at
depth 0, ``a/b/x.py`` at depth 2, whether or not ``subdirs`` narrows the walk.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from .errors import DiscoveryError

__all__ = ["SKIP_DIRS", "SKIP_PATTERNS", "discover_scripts", "skipped_dir"]

logger = logging.getLogger("orchestrator")

#: Directory names (fnmatch patterns) never descended into.
SKIP_DIRS: frozenset[str] = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "__pycache__",
        ".venv",
        "venv",
        "node_modules",
        "build",
        "dist",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".hypothesis",
        ".tox",
        ".nox",
        ".orchestrator",
        "reports",
        "*.egg-info",
    }
)

#: File names (fnmatch patterns) that are never scripts.
SKIP_PATTERNS: frozenset[str] = frozenset({"__init__.py", "conftest.py", "setup.py"})

_GLOB_CHARS = frozenset("*?[")


def _split_patterns(patterns: Iterable[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    """Split names into exact ones (a set look-up) and globs (fnmatch)."""
    exact: set[str] = set()
    globs: list[str] = []
    for pattern in patterns:
        if _GLOB_CHARS.intersection(pattern):
            globs.append(pattern)
        else:
            exact.add(pattern)
    return frozenset(exact), tuple(globs)


def _matches(name: str, exact: frozenset[str], globs: tuple[str, ...]) -> bool:
    return name in exact or any(fnmatch.fnmatchcase(name, g) for g in globs)


_DEFAULT_SKIPS = _split_patterns(SKIP_DIRS)


def skipped_dir(name: str) -> bool:
    """Whether a folder of this name is never walked into (:data:`SKIP_DIRS`)."""
    return _matches(name, *_DEFAULT_SKIPS)


def discover_scripts(
    scripts_dir: str | os.PathLike[str],
    subdirs: Iterable[str] | None = None,
    pattern: str | None = None,
    max_depth: int = 2,
    skip_dirs: Iterable[str] = SKIP_DIRS,
    skip_patterns: Iterable[str] = SKIP_PATTERNS,
) -> list[Path]:
    """Return the sorted, de-duplicated absolute paths of the ``*.py`` scripts found.

    Args:
        scripts_dir: the root of the walk.
        subdirs: walk only these subdirectories (``"a/b"`` allowed); a missing
            one is logged as a warning.
        pattern: an fnmatch glob matched against the file name or the POSIX
            path relative to ``scripts_dir`` (``"*_check.py"``, ``"data/*.py"``).
        max_depth: the deepest directory level searched (0 = ``scripts_dir`` only).
        skip_dirs: directory names (fnmatch patterns) pruned from the walk.
        skip_patterns: file names (fnmatch patterns) that are never scripts.

    Raises:
        DiscoveryError: ``scripts_dir`` is missing or not a directory.
    """
    if max_depth < 0:
        raise ValueError(f"max_depth must be 0 or more, got {max_depth}")
    root = Path(scripts_dir).resolve()
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise DiscoveryError(f"scripts directory {root} {what}: pass an existing directory")

    dir_exact, dir_globs = _split_patterns(skip_dirs)
    file_exact, file_globs = _split_patterns(skip_patterns)
    root_str = str(root)
    prefix_len = len(root_str.rstrip(os.sep)) + 1

    # (absolute directory, depth) pairs to visit.
    stack: list[tuple[str, int]] = []
    if subdirs is None:
        stack.append((root_str, 0))
    else:
        for sub in dict.fromkeys(subdirs):
            rel = Path(sub.strip("/"))
            candidate = (root / rel).resolve()
            if not candidate.is_dir():
                logger.warning("subdirectory %r not found under %s; skipped", sub, root)
                continue
            if candidate != root and root not in candidate.parents:
                logger.warning("subdirectory %r is outside %s; skipped", sub, root)
                continue
            depth = len(candidate.relative_to(root).parts)
            if depth <= max_depth:
                stack.append((str(candidate), depth))

    found: set[str] = set()
    while stack:
        directory, depth = stack.pop()
        try:
            entries = os.scandir(directory)
        except OSError as exc:
            logger.warning("cannot read %s: %s", directory, exc.strerror or exc)
            continue
        with entries:
            for entry in entries:
                name = entry.name
                try:
                    if name.endswith(".py") and entry.is_file():
                        if _matches(name, file_exact, file_globs):
                            continue
                        path = entry.path
                        if pattern is None or (
                            fnmatch.fnmatchcase(name, pattern)
                            or fnmatch.fnmatchcase(path[prefix_len:].replace(os.sep, "/"), pattern)
                        ):
                            found.add(path)
                    elif (
                        depth < max_depth
                        and entry.is_dir(follow_symlinks=False)
                        and not _matches(name, dir_exact, dir_globs)
                    ):
                        stack.append((entry.path, depth + 1))
                except OSError:
                    # Vanished or unreadable while we walked: not a script.
                    continue
    # Sorting the strings by their parts orders them as Path objects would, cheaper.
    return [Path(p) for p in sorted(found, key=lambda p: p.split(os.sep))]
