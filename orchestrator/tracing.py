"""What a script really used: the trace its run leaves, read back as a value.

A traced script runs with ``orchestrator/_boot`` first on ``PYTHONPATH``;
Python imports the ``sitecustomize`` there at start-up, which installs an
audit hook and appends every local file the script (or a Python child of it)
imports, opens or lists to a trace file as it goes (see that file for the
format), with the names of the environment variables it reads and, at its
exit, where the third-party packages it imported live. :func:`trace_env`
sets a child's environment up for it and :func:`read_trace` turns the file
into a :class:`Trace` of paths relative to the project root.

Not traced: programs other than Python that a script starts, Python started
with ``-I``, ``-E`` or ``-S`` or with an environment that drops our
variables, and existence checks that open nothing (``os.path.exists``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BOOT_DIR",
    "Trace",
    "TraceError",
    "read_trace",
    "trace_env",
    "trace_fields",
    "trace_in",
]

#: The folder whose ``sitecustomize.py`` traces a script.
BOOT_DIR = Path(__file__).parent / "_boot"
_HEADER = b"#orchestrator-trace 1"
_KINDS = {
    b"r": "reads",
    b"w": "writes",
    b"m": "modules",
    b"l": "listed",
    b"x": "programs",
    b"o": "outside",
    b"v": "environ",
    b"e": "packages",
}
# Kinds whose values are kept as recorded: names, and paths that live outside the root.
_VERBATIM = frozenset({"modules", "programs", "environ", "packages", "outside"})
# Kinds whose values are absolute paths.
_ABSOLUTE = frozenset({"packages", "outside"})


class TraceError(ValueError):
    """A trace file is missing, truncated or corrupt: what the script used is unknown."""


@dataclass(frozen=True)
class Trace:
    """What a script used: local files as POSIX paths relative to the project root, and
    the module names, programs, variable names and package locations it left."""

    #: Files opened for reading, imported modules among them; some may not exist.
    reads: tuple[str, ...] = ()
    #: Files opened for writing: the script's outputs, never its inputs, unless it read
    #: them too (a state file it loads and saves): then an input as it left it.
    writes: tuple[str, ...] = ()
    #: Module names the import system loaded (absolute, dotted).
    modules: tuple[str, ...] = ()
    #: Folders listed (``os.listdir``, ``os.scandir``, globbing).
    listed: tuple[str, ...] = ()
    #: Programs it started whose own reads are not traced: anything but Python, and
    #: Python with ``-I``, ``-E`` or ``-S`` (the bootstrap is off there). Where the
    #: knowledge ends: their inputs need a ``watch:`` glob.
    programs: tuple[str, ...] = ()
    #: Files outside the project it opened for reading, absolute (the first 64 of each
    #: process), but not the interpreter's, a package's, ``/dev``, ``/proc``, ``/sys``
    #: or one the process wrote itself: inputs orchestrator does not follow.
    outside: tuple[str, ...] = ()
    #: Names (never values) of the environment variables it read through ``os.environ``,
    #: orchestrator's own ``ORCHESTRATOR_*`` left out; a bulk copy reads none.
    environ: tuple[str, ...] = ()
    #: Where the third-party top-level modules it imported live, absolute: a module's
    #: file or a package's folder directly in ``site-packages`` or ``dist-packages``
    #: (:func:`orchestrator.distributions.installed` names their distributions).
    packages: tuple[str, ...] = ()
    #: The largest peak resident memory (KiB) of the processes that exited normally;
    #: what the run cost, not what it used, so never recorded nor compared.
    peak_kib: int | None = field(default=None, compare=False)

    def gaps(self) -> tuple[str, ...]:
        """Where what the script used is not known: ``ran PROGRAM`` for each program it
        started whose reads are not traced, ``read PATH (outside the project)`` for each
        file outside the project it read."""
        return tuple(
            [f"ran {program}" for program in self.programs]
            + [f"read {path} (outside the project)" for path in self.outside]
        )

    def to_dict(self) -> dict[str, list[str]]:
        """The trace as JSON-ready lists."""
        return {
            "reads": list(self.reads),
            "writes": list(self.writes),
            "modules": list(self.modules),
            "listed": list(self.listed),
            "programs": list(self.programs),
            "outside": list(self.outside),
            "environ": list(self.environ),
            "packages": list(self.packages),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Trace:
        """Read :meth:`to_dict`'s output back; a missing key is empty (older records).

        Raises:
            TraceError: ``data`` is not such a mapping of string lists.
        """
        if not isinstance(data, Mapping):
            raise TraceError("the recorded trace is not a mapping")
        lists: dict[str, tuple[str, ...]] = {}
        for name in _KINDS.values():
            value = data.get(name, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise TraceError(f"the recorded trace's {name!r} is not a list of paths")
            lists[name] = tuple(value)
        return cls(
            reads=lists["reads"],
            writes=lists["writes"],
            modules=lists["modules"],
            listed=lists["listed"],
            programs=lists["programs"],
            outside=lists["outside"],
            environ=lists["environ"],
            packages=lists["packages"],
        )


def trace_fields(trace: Trace | TraceError | None) -> dict[str, Any]:
    """The keys a result dict or a record line holds for ``trace`` (None: untraced, none).

    ``trace``: :meth:`Trace.to_dict`, or None with ``trace_error`` saying why
    it is unknown.
    """
    if trace is None:
        return {}
    if isinstance(trace, TraceError):
        return {"trace": None, "trace_error": str(trace)}
    return {"trace": trace.to_dict()}


def trace_in(data: Mapping[str, Any]) -> Trace | TraceError | None:
    """What :func:`trace_fields` put into ``data``; a corrupt one is a :class:`TraceError`."""
    if "trace" not in data:
        return None
    if data["trace"] is None:
        return TraceError(str(data.get("trace_error") or "the trace is unknown"))
    try:
        return Trace.from_dict(data["trace"])
    except TraceError as exc:
        return exc


def trace_env(env: dict[str, str], trace_file: str, root: str, skip: Sequence[str]) -> None:
    """Make ``env`` trace a Python child into ``trace_file``.

    Paths under ``root`` are recorded, except under ``skip`` (the state and
    reports folders). The boot folder goes first on ``PYTHONPATH``; the
    bootstrap takes it off ``sys.path`` again before the script runs.
    """
    env["ORCHESTRATOR_TRACE"] = trace_file
    env["ORCHESTRATOR_TRACE_ROOT"] = root
    env["ORCHESTRATOR_TRACE_SKIP"] = os.pathsep.join([*skip, str(BOOT_DIR)])
    rest = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(BOOT_DIR) + (os.pathsep + rest if rest else "")


def read_trace(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> Trace:
    """The trace in ``path``, with paths made relative to ``root``.

    Records of every process that wrote to it are merged. A file read and
    written is in both (an input as the script left it). Module names, programs,
    variable names and package locations (absolute) are kept as recorded.

    Raises:
        TraceError: the file is missing, does not start with the header, or
            ends in a torn record.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise TraceError(f"no trace was written ({exc.strerror})") from None
    if not data.startswith(_HEADER + b"\0"):
        raise TraceError("the trace file is corrupt (no header)")
    if not data.endswith(b"\0"):
        raise TraceError("the trace file is truncated")
    base = os.fsencode(os.path.abspath(root)).rstrip(b"/") + b"/"
    found: dict[str, dict[str, None]] = {name: {} for name in _KINDS.values()}
    peak: int | None = None
    for record in data[:-1].split(b"\0"):
        if record == _HEADER:
            continue  # one per process that wrote here
        if record[:1] == b"p" and record[1:].isdigit():
            peak = max(peak or 0, int(record[1:]))
            continue
        name = _KINDS.get(record[:1])
        if name is None or len(record) < 2:
            raise TraceError("the trace file is corrupt (an unknown record)")
        value = record[1:]
        if name in _ABSOLUTE:
            if not value.startswith(b"/"):
                raise TraceError("the trace file is corrupt (a relative path)")
        elif name not in _VERBATIM:
            if not value.startswith(base):
                raise TraceError("the trace file is corrupt (a path outside the project)")
            value = value[len(base) :]
        found[name][os.fsdecode(value)] = None
    # A file both read and written stays in both: an input as the script left it.
    return Trace(
        reads=tuple(sorted(found["reads"])),
        writes=tuple(sorted(found["writes"])),
        modules=tuple(sorted(found["modules"])),
        listed=tuple(sorted(found["listed"])),
        programs=tuple(sorted(found["programs"])),
        outside=tuple(sorted(found["outside"])),
        environ=tuple(sorted(found["environ"])),
        packages=tuple(sorted(found["packages"])),
        peak_kib=peak,
    )
