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
from .errors import OrchestratorError, WriteError

__all__ = ["INCOMPLETE", "LiveRun", "enter", "leave", "process_start", "sweep"]

#: The file a swept run's folder gets when orch died before its summary.
INCOMPLETE = "incomplete.json"


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, as text); None: not running.

    Compared with the ledger's, it tells a live orch from a new process that was
    given the PID of a dead one.
    """
    from .guardian import stat_fields

    fields = stat_fields(pid)
    return fields[19].decode() if fields is not None and len(fields) > 19 else None


@functools.cache
def _host() -> str:
    """This machine, boot and PID namespace: PIDs mean something only within all three.

    A project on a shared or bind-mounted folder may hold the entry of a run on
    another machine or in a container; its PID says nothing here.
    """
    import socket  # here, not at import: every orch command imports this module

    parts = [socket.gethostname()]
    with contextlib.suppress(OSError), open("/proc/sys/kernel/random/boot_id") as handle:
        parts.append(handle.read().strip())
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    return " ".join(parts)


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
    #: The machine, boot and PID namespace the PID belongs to (see :func:`_host`).
    host: str = ""

    @classmethod
    def of_this_process(
        cls, run_id: str, marker: str, run_dir: Path | None, total: int, command: list[str]
    ) -> LiveRun:
        """The entry of a run this process is about to start."""
        pid = os.getpid()
        where = str(run_dir) if run_dir is not None else None
        return cls(run_id, pid, process_start(pid), marker, where, total, command, _host())


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
    from .guardian import find_marked, stop_all  # only with entries to judge

    lines = []
    for name in names:
        path = _folder(state_dir) / name
        try:
            run = LiveRun(**json.loads(path.read_bytes()))
            marker = run.marker.encode()
        except (OSError, ValueError, TypeError, AttributeError):
            if name.endswith(".json"):
                leave(path)
            continue
        if run.host != _host() or _alive(run.pid, run.started):
            continue  # alive, or another machine's or container's: not ours to judge
        try:
            stopped = stop_all(functools.partial(find_marked, marker), grace=1.0) if marker else 0
            folder = Path(run.run_dir) if run.run_dir else None
            if folder is not None and folder.is_dir() and not (folder / "summary.json").exists():
                with contextlib.suppress(OSError, OrchestratorError):
                    atomic_write_bytes(
                        folder / INCOMPLETE, json.dumps(asdict(run), indent=2).encode()
                    )
        finally:
            leave(path)  # swept once, whatever happened
        left = f"stopped {stopped} processes it left" if stopped else "none of its scripts left"
        where = f"; orch report {run.run_dir} shows what it finished" if run.run_dir else ""
        lines.append(f"run {run.run_id} was killed (orch, pid {run.pid}, is gone): {left}{where}")
    return lines
