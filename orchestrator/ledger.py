"""The ledger of live runs: what the next orch command needs to clean up after a killed one.

Each run writes ``.orchestrator/runs/<token>-<pid>-<start>-<run-id>.json`` as
it starts (orch's PID and that process's start time, the marker its scripts
carry in their environment, the run's folder) and deletes it as it ends. The guardian
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
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ._files import atomic_write_bytes, ensure_state_dir
from .errors import OrchestratorError, WriteError

__all__ = [
    "INCOMPLETE",
    "MARKER",
    "RUN_ID",
    "TOKEN_LENGTH",
    "LiveRun",
    "enter",
    "leave",
    "process_start",
    "sweep",
]

#: The file a swept run's folder gets when orch died before its summary.
INCOMPLETE = "incomplete.json"
#: Begins the name of the marker variable of every script orch starts; then come the
#: orch process's token (:data:`TOKEN_LENGTH` hex digits), ``_``, and the script's own
#: 32 hex digits. An entry names its run's processes by ``MARKER + token + "_"``.
MARKER = "ORCHESTRATOR_CHILD_"
TOKEN_LENGTH = 12


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, as text); None: not running.

    Compared with the ledger's, it tells a live orch from a new process that was
    given the PID of a dead one.
    """
    from .guardian import Proc

    proc = Proc.read(pid)
    return str(proc.start) if proc is not None and not proc.zombie else None


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


# An entry's name repeats what the sweep must know to act even when its content is
# damaged: orch's token (so its marker), PID and start time, and the run id.
#: What a run id may be (``--run-id`` is checked against it): it names a folder.
RUN_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
_NAME = re.compile(rf"([0-9a-f]{{{TOKEN_LENGTH}}})-([1-9][0-9]*)-([0-9]+)-({RUN_ID.pattern})\.json")
_FIELDS = {f.name for f in fields(LiveRun)}


def _name(run: LiveRun) -> str:
    token = run.marker[len(MARKER) : -1]
    return f"{token}-{run.pid}-{run.started or 0}-{run.run_id}.json"


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
    path = folder / _name(run)
    atomic_write_bytes(path, json.dumps(asdict(run)).encode())
    return path


def leave(path: Path) -> None:
    """The run ended: its entry goes."""
    with contextlib.suppress(OSError):
        path.unlink()


class _Unreadable(ValueError):
    """The entry cannot be read (truncated, not JSON): only its name can be judged."""


def _read(path: Path, name: re.Match[str]) -> LiveRun:
    """The entry at ``path``, exactly as orch writes it, agreeing with its name.

    Raises:
        _Unreadable: it cannot be read or parsed (a truncated file).
        ValueError: a field has another shape or value than orch writes: the
            entry is data to check, never instructions.
    """
    token, pid, started, run_id = name.groups()
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise _Unreadable(f"unreadable: {exc.__class__.__name__}") from None
    if not isinstance(data, dict) or set(data) != _FIELDS:
        raise ValueError("not the fields orch writes")
    expected = {
        "run_id": run_id,
        "pid": int(pid),
        "started": started if started != "0" else None,
        "marker": f"{MARKER}{token}_",
    }
    for key, value in expected.items():
        if data[key] != value or type(data[key]) is not type(value):
            raise ValueError(f"{key} does not agree with the entry's name")
    kinds: dict[str, type | tuple[type, ...]] = {
        "run_dir": (str, type(None)),
        "total": int,
        "host": str,
        "command": list,
    }
    for key, kind in kinds.items():
        if not isinstance(data[key], kind) or isinstance(data[key], bool):
            raise ValueError(f"{key} has the wrong type")
    if data["total"] < 0 or not all(isinstance(word, str) for word in data["command"]):
        raise ValueError("total or command has the wrong shape")
    return LiveRun(**data)


def _run_folder(run: LiveRun, reports_dir: Path) -> tuple[Path | None, str]:
    """The run's folder, when it is this project's reports folder's child of the run's
    name (not a link out of it); else None and why not."""
    if run.run_dir is None:
        return None, ""
    folder = reports_dir / run.run_id
    if os.path.abspath(run.run_dir) != os.path.abspath(folder):
        return None, f"; its folder {run.run_dir} is not in {reports_dir}: not marked incomplete"
    inside = folder.resolve().parent == reports_dir.resolve()
    if folder.is_symlink() or not folder.is_dir() or not inside:
        return None, f"; {folder} is not its folder any more: not marked incomplete"
    return folder, f"; orch report {folder} shows what it finished"


def sweep(state_dir: Path, reports_dir: Path) -> list[str]:
    """Stop what runs whose orch is gone left behind; one line for each such run.

    Costs one directory listing when the ledger is empty. Never raises. Each
    entry is checked field by field against what orch writes; a process is
    stopped only when it carries the dead run's marker as a variable's name,
    and ``incomplete.json`` is written only into ``reports_dir``'s folder of
    the run. An unreadable (truncated) entry still has its run's processes
    stopped, from the marker its name gives, once its orch is gone; one with
    a field orch would not write is removed, and nothing is done on its word.
    Each of these says so in one line.
    """
    try:
        names = sorted(os.listdir(_folder(state_dir)))
    except OSError:
        return []
    from .guardian import find_marked, stop_all  # only with entries to judge

    lines = []
    # An orch that lives vouches for its token: no entry, forged or damaged, acts on it.
    live = {
        found[1]
        for found in map(_NAME.fullmatch, names)
        if found is not None and _alive(int(found[2]), found[3])
    }
    for entry in names:
        path = _folder(state_dir) / entry
        name = _NAME.fullmatch(entry)
        if name is None:
            if entry.endswith(".json"):  # not a temporary file of an entry being written
                leave(path)
                lines.append(f"ignored {path}: not an entry orch writes; removed")
            continue
        pid, started, run_id = int(name.group(2)), name.group(3), name.group(4)
        try:
            run: LiveRun | None = _read(path, name)
            damage = ""
        except _Unreadable as exc:
            run, damage = None, str(exc)
        except ValueError as exc:  # not what orch writes: nothing is done on its word
            leave(path)
            lines.append(f"ignored {path}: {exc}; removed, nothing stopped")
            continue
        if run is not None and run.host != _host():
            continue  # another machine's or container's: its PID says nothing here
        if name[1] in live or (started == "0" and os.path.isdir("/proc")):
            continue  # its orch lives (a damaged entry too: only its orch may judge it)
        # Only processes with a variable named for this orch's token: its scripts.
        marker = f"{MARKER}{name.group(1)}_".encode()
        try:
            stopped = stop_all(functools.partial(find_marked, marker), grace=1.0)
            where = ""
            if run is not None:
                folder, where = _run_folder(run, reports_dir)
                if folder is not None and not (folder / "summary.json").exists():
                    with contextlib.suppress(OSError, OrchestratorError):
                        atomic_write_bytes(
                            folder / INCOMPLETE, json.dumps(asdict(run), indent=2).encode()
                        )
        finally:
            leave(path)  # swept once, whatever happened
        left = f"stopped {stopped} processes it left" if stopped else "none of its scripts left"
        if run is None:
            where = f"; its ledger entry {path} was damaged ({damage}) and is removed"
        lines.append(f"run {run_id} was killed (orch, pid {pid}, is gone): {left}{where}")
    return lines
