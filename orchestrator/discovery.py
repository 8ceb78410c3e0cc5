"""Find the Python scripts under a scripts directory.

The walk is an explicit stack over ``os.scandir``: skipped directories are
pruned before they are entered, symlinked directories are never followed (so a
link loop cannot hang it), and only file names that end in ``.py`` are turned
into paths. Depth counts directories below ``scripts_dir``: ``x.py`` is at
depth 0, ``a/b/x.py`` at depth 2, whether or not ``subdirs`` narrows the walk.

What is pruned is only what can never hold a user's scripts: tool folders by
name (:data:`SKIP_DIRS`: version control, caches, virtualenvs, build output,
``.orchestrator/``) and, by path, the project's own reports folder. A folder
named ``reports`` elsewhere is a script folder like any other. Anything else
left out by a rule (files below ``max_depth``, ``__init__.py`` and friends,
symlinked folders) is counted by :func:`scan_scripts`, so ``orch list`` can
say so instead of dropping it silently.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DiscoveryError
from .patterns import Glob

__all__ = [
    "MAX_DEPTH",
    "SKIP_DIRS",
    "SKIP_PATTERNS",
    "Discovery",
    "discover_scripts",
    "scan_scripts",
    "skipped_dir",
]

#: The deepest folder level searched below the scripts directory, unless told.
MAX_DEPTH = 2

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


@dataclass(frozen=True)
class Discovery:
    """What a walk found: the scripts, and how many ``.py`` files a rule left out, by why."""

    scripts: list[Path]
    #: ``{reason: count}``; only filled when :func:`scan_scripts` is asked to count.
    left_out: dict[str, int] = field(default_factory=dict)

    def left_out_line(self) -> str | None:
        """``not listed: 3 files below --max-depth 2, 1 __init__.py`` or None."""
        if not self.left_out:
            return None
        return "not listed: " + ", ".join(f"{n} {why}" for why, n in self.left_out.items())


def discover_scripts(
    scripts_dir: str | os.PathLike[str],
    subdirs: Iterable[str] | None = None,
    pattern: str | None = None,
    max_depth: int = MAX_DEPTH,
    skip_dirs: Iterable[str] = SKIP_DIRS,
    skip_patterns: Iterable[str] = SKIP_PATTERNS,
    *,
    prune: Iterable[str | os.PathLike[str]] = (),
) -> list[Path]:
    """Return the sorted, de-duplicated absolute paths of the ``*.py`` scripts found.

    Args:
        scripts_dir: the root of the walk.
        subdirs: walk only these subdirectories (``"a/b"`` allowed); a missing
            one is logged as a warning.
        pattern: a :class:`~orchestrator.patterns.Glob` (the config's dialect)
            matched against the file name or the POSIX path relative to
            ``scripts_dir`` (``"*_check.py"``, ``"data/*.py"``, ``"data/**"``).
        max_depth: the deepest directory level searched (0 = ``scripts_dir`` only).
        skip_dirs: directory names (fnmatch patterns) pruned from the walk.
        skip_patterns: file names (fnmatch patterns) that are never scripts.
        prune: directories, by path, never walked into (the project's reports folder).

    Raises:
        DiscoveryError: ``scripts_dir`` is missing or not a directory.
    """
    return scan_scripts(
        scripts_dir, subdirs, pattern, max_depth, skip_dirs, skip_patterns, prune=prune
    ).scripts


def scan_scripts(
    scripts_dir: str | os.PathLike[str],
    subdirs: Iterable[str] | None = None,
    pattern: str | None = None,
    max_depth: int = MAX_DEPTH,
    skip_dirs: Iterable[str] = SKIP_DIRS,
    skip_patterns: Iterable[str] = SKIP_PATTERNS,
    *,
    prune: Iterable[str | os.PathLike[str]] = (),
    count_left_out: bool = False,
) -> Discovery:
    """:func:`discover_scripts`, and with ``count_left_out`` what its rules left out.

    Counting walks below ``max_depth`` too (still pruned), so only ``orch list``
    asks for it; a run pays nothing for it.
    """
    if max_depth < 0:
        raise ValueError(f"max_depth must be 0 or more, got {max_depth}")
    root = Path(scripts_dir).resolve()
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise DiscoveryError(f"scripts directory {root} {what}: pass an existing directory")

    dir_exact, dir_globs = _split_patterns(skip_dirs)
    file_exact, file_globs = _split_patterns(skip_patterns)
    pruned = {os.path.abspath(p) for p in prune} | {str(Path(p).resolve()) for p in prune}
    root_str = str(root)
    prefix_len = len(root_str.rstrip(os.sep)) + 1
    left_out: Counter[str] = Counter()

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
            if depth <= max_depth or count_left_out:
                stack.append((str(candidate), depth))

    deep = f"files below --max-depth {max_depth}"
    try:
        glob = Glob.of(pattern) if pattern is not None else None
    except re.error as exc:
        raise DiscoveryError(
            f"-k/--pattern {pattern!r}: invalid glob ({exc}); quote literal brackets as [[] and []]"
        ) from None
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
                            if count_left_out and depth <= max_depth:
                                left_out[f"{name} (not a script)"] += 1
                            continue
                        if depth > max_depth:
                            left_out[deep] += 1
                            continue
                        path = entry.path
                        if glob is None or (
                            glob.matches(name)
                            or glob.matches(path[prefix_len:].replace(os.sep, "/"))
                        ):
                            found.add(path)
                    elif (
                        (depth < max_depth or count_left_out)
                        and entry.is_dir()
                        and not _matches(name, dir_exact, dir_globs)
                        and entry.path not in pruned
                    ):
                        if entry.is_symlink():
                            if count_left_out and depth < max_depth:
                                left_out["symlinked folder(s) not followed"] += 1
                            continue
                        stack.append((entry.path, depth + 1))
                except OSError:
                    # Vanished or unreadable while we walked: not a script.
                    continue
    # Sorting the strings by their parts orders them as Path objects would, cheaper.
    scripts = [Path(p) for p in sorted(found, key=lambda p: p.split(os.sep))]
    return Discovery(scripts, dict(sorted(left_out.items())))
