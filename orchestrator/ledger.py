"""The ledger of live runs: what the next orch command needs to clean up after a killed one.

Each run writes ``.orchestrator/runs/<run-id>.json`` as it starts (orch's PID
and that process's start time, the marker its scripts carry in their
environment, the run's folder) and deletes it as it ends. The guardian
(:mod:`orchestrator.guardian`) stops the scripts of an orch that dies; the
ledger is for when the guardian died with it (``kill -9`` of orch's whole
process group, the OOM killer taking both). Any later command in the project
calls :func:`sweep`: an entry whose orch is gone has its marked processes
stopped, and its run folder, if it has no summary, gets ``incomplete.json``,
which ``orch report`` reads.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ._files import atomic_write_bytes, ensure_state_dir
from .errors import WriteError
from .guardian import find_marked, stop_all

__all__ = ["INCOMPLETE", "LiveRun", "enter", "leave", "process_start", "sweep"]

#: The file a swept run's folder gets when orch died before its summary.
INCOMPLETE = "incomplete.json"


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, as text); None: not running.

    Compared with the ledger's, it tells a live orch from a new process that was
    given the PID of a dead one.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
        fields = stat[stat.rindex(b")") + 2 :].split()
        if fields[0] in (b"Z", b"X"):
            return None
        return fields[19].decode()
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int, started: str | None) -> bool:
    if os.path.isdir("/proc"):
        return started is not None and process_start(pid) == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class LiveRun:
    """One ledger entry."""

    run_id: str
    pid: int
    started: str | None  #: :func:`process_start` of ``pid``
    marker: str  #: the prefix of the variable every script of the run carries
    run_dir: str | None
    total: int
    command: list[str] = field(default_factory=list)

    @classmethod
    def of_this_process(
        cls, run_id: str, marker: str, run_dir: Path | None, total: int, command: list[str]
    ) -> LiveRun:
        """The entry of a run this process is about to start."""
        pid = os.getpid()
        where = str(run_dir) if run_dir is not None else None
        return cls(run_id, pid, process_start(pid), marker, where, total, command)


def _folder(state_dir: Path) -> Path:
    return state_dir / "runs"


def enter(state_dir: Path, run: LiveRun) -> Path:
    """Write ``run``'s entry; returns its path, for :func:`leave`.

    Raises:
        WriteError: the state folder cannot be written.
    """
    folder = _folder(ensure_state_dir(state_dir))
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise WriteError(folder, exc) from exc
    path = folder / f"{run.run_id}.json"
    atomic_write_bytes(path, json.dumps(asdict(run)).encode())
    return path


def leave(path: Path) -> None:
    """The run ended: its entry goes."""
    with contextlib.suppress(OSError):
        path.unlink()


def sweep(state_dir: Path) -> list[str]:
    """Stop what runs whose orch is gone left behind; one line for each such run.

    Costs one directory listing when the ledger is empty. Never raises: a
    corrupt entry is dropped, an unwritable folder leaves the entry for the
    next command.
    """
    try:
        names = sorted(os.listdir(_folder(state_dir)))
    except OSError:
        return []
    lines = []
    for name in names:
        path = _folder(state_dir) / name
        try:
            run = LiveRun(**json.loads(path.read_bytes()))
        except (OSError, ValueError, TypeError):
            if name.endswith(".json"):
                leave(path)
            continue
        if _alive(run.pid, run.started):
            continue
        marker = run.marker.encode()
        stopped = stop_all(functools.partial(find_marked, marker), grace=1.0) if marker else 0
        if run.run_dir and not (Path(run.run_dir) / "summary.json").exists():
            with contextlib.suppress(OSError):
                atomic_write_bytes(
                    Path(run.run_dir) / INCOMPLETE, json.dumps(asdict(run), indent=2).encode()
                )
        leave(path)
        left = f"stopped {stopped} processes it left" if stopped else "none of its scripts left"
        where = f"; orch report {run.run_dir} shows what it finished" if run.run_dir else ""
        lines.append(f"run {run.run_id} was killed (orch, pid {run.pid}, is gone): {left}{where}")
    return lines
