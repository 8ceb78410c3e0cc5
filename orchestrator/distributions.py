"""Which installed distributions, at which versions, provide the packages a script imported.

A trace names where each third-party top-level module lives: a module's file
(``.../site-packages/six.py``) or a package's folder (``.../site-packages/yaml``).
The ``*.dist-info`` and ``*.egg-info`` folders next to it say which
distribution put it there and at which version (``six-1.16.0.dist-info``), so
an upgrade of ``six`` from 1.16.0 to 1.17.0 is a change orch can name.

A module is matched to a distribution by name (PEP 503 normalised: ``-``,
``_`` and ``.`` alike, case ignored), else by a distribution's
``top_level.txt`` (``yaml`` from ``PyYAML``), else by the first part of the
paths in its ``RECORD`` (``_cffi_backend...so`` from ``cffi``); those two
files are read only when a name does not match. What a site folder holds is
listed once and kept until the folder changes (its ``mtime_ns``), so checking
a thousand scripts lists each site folder once.
"""

from __future__ import annotations

import csv
import os
import re
import sys
import time
from collections.abc import Iterable

__all__ = ["installed", "site_folders"]

_SUFFIXES = (".dist-info", ".egg-info")
# A folder changed this recently may change again within the same timestamp tick
# (file times are coarse): its listing is used but not kept.
_SETTLED_NS = 2_000_000_000

#: (name as its metadata folder spells it, version)
_Dist = tuple[str, str]


def installed(locations: Iterable[str]) -> dict[str, str]:
    """``{distribution name: version}`` of the distributions that provide ``locations``.

    ``locations``: absolute paths of modules' files or packages' folders directly in
    a site folder (a trace's ``packages``). A location no distribution claims, or
    whose folder cannot be read, is left out; unreadable metadata never raises.
    """
    found: dict[str, str] = {}
    folders: dict[str, _Folder | None] = {}  # one stat per folder per call
    for location in locations:
        folder, base = os.path.split(location.rstrip("/"))
        if folder not in folders:
            folders[folder] = _folder(folder)
        index = folders[folder]
        dist = index.owner(base) if index is not None else None
        if dist is not None:
            found[dist[0]] = dist[1]
    return found


_SITES: dict[str, tuple[str, ...]] = {}


def site_folders(python: str | None = None) -> tuple[str, ...]:
    """The site folders of ``python`` (default: ours), in import order.

    Where a trace's packages are looked for on another machine: the folder
    differs, the module's name in it does not. Another interpreter is asked
    once per process; one that does not answer has none.
    """
    key = python or ""
    if key not in _SITES:
        if python is None:
            paths = list(sys.path)
        else:
            import subprocess

            try:
                out = subprocess.run(
                    [python, "-c", "import sys; print('\\n'.join(sys.path))"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    stdin=subprocess.DEVNULL,
                )
                paths = out.stdout.splitlines() if out.returncode == 0 else []
            except (OSError, subprocess.SubprocessError):
                paths = []
        _SITES[key] = tuple(
            p for p in paths if os.path.basename(p) in ("site-packages", "dist-packages")
        )
    return _SITES[key]


def _normalise(name: str) -> str:
    # PEP 503: PyYAML -> pyyaml, typing_extensions -> typing-extensions.
    return re.sub(r"[-_.]+", "-", name).lower()


class _Folder:
    """The distributions one site folder holds, with the lookups a module's name needs."""

    def __init__(self, path: str, entries: Iterable[str]) -> None:
        self.path = path
        self.dists: dict[str, _Dist] = {}  # metadata folder name -> distribution
        self.by_name: dict[str, _Dist] = {}
        for entry in sorted(entries):  # sorted: the same winner on every machine
            dist = self._parse(entry)
            if dist is not None:
                self.dists[entry] = dist
                self.by_name.setdefault(_normalise(dist[0]), dist)
        # Read on the first name that needs them; a race only reads them twice.
        self._top_level: dict[str, _Dist] | None = None
        self._recorded: dict[str, _Dist] | None = None

    def _parse(self, entry: str) -> _Dist | None:
        # name-version.dist-info, name-version-py3.11.egg-info: names and versions
        # are escaped ('-' -> '_'), so the first '-' ends the name.
        for suffix in _SUFFIXES:
            if entry.endswith(suffix):
                name, _, rest = entry[: -len(suffix)].partition("-")
                version = rest.partition("-")[0] or self._version(entry)
                return (name, version) if name and version else None
        return None

    def _version(self, entry: str) -> str:
        # An egg-info without a version in its name (a develop install): its header.
        for file in ("METADATA", "PKG-INFO"):
            try:
                with open(os.path.join(self.path, entry, file), encoding="utf-8") as handle:
                    for line in handle:
                        if line.startswith("Version:"):
                            return line[8:].strip()
                        if not line.strip():
                            break  # the headers end at the first blank line
            except (OSError, UnicodeDecodeError):
                pass
        return ""

    def owner(self, base: str) -> _Dist | None:
        """The distribution that installed ``base`` (``six.py``, ``yaml``), if any."""
        module = base.partition(".")[0]  # six.py, _cffi_backend.cpython-312-....so
        dist = self.by_name.get(_normalise(module))
        if dist is not None:
            return dist
        if self._top_level is None:
            self._top_level = {
                name: dist
                for entry, dist in reversed(self.dists.items())  # the first one wins
                for name in _lines(os.path.join(self.path, entry, "top_level.txt"))
            }
        dist = self._top_level.get(module)
        if dist is not None:
            return dist
        if self._recorded is None:
            self._recorded = {
                first: dist
                for entry, dist in reversed(self.dists.items())
                for first in _recorded(os.path.join(self.path, entry, "RECORD"))
            }
        return self._recorded.get(base)


# folder -> (its mtime_ns when listed, what it held)
_CACHE: dict[str, tuple[int, _Folder]] = {}


def _folder(path: str) -> _Folder | None:
    """What ``path`` holds, listed again only when it changed (None: unreadable)."""
    try:
        mtime = os.stat(path).st_mtime_ns
        kept = _CACHE.get(path)
        if kept is not None and kept[0] == mtime:
            return kept[1]
        index = _Folder(path, os.listdir(path))
    except OSError:
        return None
    if time.time_ns() - mtime >= _SETTLED_NS:
        _CACHE[path] = (mtime, index)
    return index


def _lines(path: str) -> list[str]:
    """The lines of a small text file; none when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            return [line.strip() for line in handle if line.strip()]
    except (OSError, UnicodeDecodeError):
        return []


def _recorded(path: str) -> set[str]:
    """The first parts of the paths a ``RECORD`` lists (``yaml``, ``six.py``)."""
    firsts: set[str] = set()
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            for row in csv.reader(handle):
                first = row[0].partition("/")[0] if row else ""
                if first and first not in ("..", "__pycache__") and not first.endswith(_SUFFIXES):
                    firsts.add(first)
    except (OSError, UnicodeDecodeError, csv.Error):
        pass  # what was read so far still counts
    return firsts
