"""The processes of a run, found through ``/proc``, and a guardian that kills them if orch dies.

A script runs in a session and process group of its own, so they find most
of what it starts. What leaves both (a daemon's ``setsid``) is still found by
the private marker variable in its environment, by descent from a process of
the run, or, when it cleared its environment, by the script's output pipes
it holds (``/proc/*/fd``); an orphan that did all that and closed them is
found by :mod:`orchestrator.processes`, whose process adopts orphans (a child
subreaper). What left the group is *escaped*: the result counts it. Nothing
else is ever signalled: not orch, its threads, its guardian or another script.

When orch dies without cleaning up (``kill -9``, the OOM killer), nothing in
it runs any more. So the first child it starts also starts a *guardian*: this
file, run by the same Python as a script of its own (it imports only the
standard library), with a pipe from orch as its stdin. orch writes one line
per child it starts (``+pgid marker pipe-inode...``) and one per child it
reaped (``-pgid``); when the pipe reaches its end, because orch exited or was
killed, whatever is still registered gets SIGTERM and, half a second later,
SIGKILL. The guardian ignores the terminal's signals, so Ctrl-C reaches orch,
which cleans up itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass, field

__all__ = [
    "Guardian",
    "Members",
    "Proc",
    "find_marked",
    "find_members",
    "has_marker",
    "listed_pids",
    "signal_all",
    "stop_all",
]

# Up to this many PIDs handed out since a run's leader, they are tried one by one;
# beyond, listing /proc is cheaper.
_RANGE_SCAN = 4096
#: Seconds between the guardian's SIGTERM and SIGKILL.
GUARD_GRACE = 0.5


def last_pid() -> int | None:
    """The PID most recently handed out in this PID namespace (from /proc/loadavg)."""
    try:
        with open("/proc/loadavg", "rb") as handle:
            return int(handle.read().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def listed_pids() -> Iterator[int]:
    """Every process in this PID namespace (not threads)."""
    return (int(n) for n in os.listdir("/proc") if n.isdigit())


def candidates(
    pgid: int, last: int | None, listed: Callable[[], Iterable[int]] = listed_pids
) -> Iterable[int]:
    """The PIDs that may belong to a run led by ``pgid``: those handed out since it.

    ``last`` is the newest PID (None: unknown). While they are few they are
    tried one by one, so the cost follows what the run started, not how many
    processes the machine runs; otherwise ``listed()`` (the live PIDs) is
    filtered to the same span, across a wrap.
    """
    if last is not None and pgid <= last and last - pgid < _RANGE_SCAN:
        return range(pgid, last + 1)
    pids = listed()
    if last is None:
        return pids
    if pgid <= last:
        return (pid for pid in pids if pgid <= pid <= last)
    return (pid for pid in pids if pid >= pgid or pid <= last)


def _holds(pid: int, pipes: frozenset[str]) -> bool:
    """Whether process ``pid`` has one of ``pipes`` (``pipe:[inode]`` names) open."""
    folder = f"/proc/{pid}/fd"
    for fd in os.listdir(folder):
        with contextlib.suppress(OSError):
            if os.readlink(f"{folder}/{fd}") in pipes:
                return True
    return False


def _stat(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
        return stat[stat.rindex(b")") + 2 :].split()
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Proc:
    """What ``/proc/PID/stat`` says of a process that decides whose it is."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    start: int  #: clock ticks since boot
    zombie: bool

    @classmethod
    def read(cls, pid: int) -> Proc | None:
        """The process ``pid``; None when gone, or when ``pid`` is a thread, not a process.

        Every thread has an entry ``/proc/TID`` (not listed, but there to open), with
        its process's group and session: signalling a TID signals its whole process.
        A thread's ``exit_signal`` is -1: that tells it from its process's leader.
        """
        fields = _stat(pid)
        if fields is None or len(fields) < 36 or fields[35] == b"-1" or fields[0] == b"X":
            return None
        try:
            ppid, pgid, sid, start = int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19])
        except ValueError:
            return None
        return cls(pid, ppid, pgid, sid, start, fields[0] == b"Z")


def has_marker(pid: int, marker: bytes) -> bool:
    """Whether ``marker`` (``NAME=`` or a name's prefix) begins a variable of ``pid``'s environment.

    Matched at a variable's start only: a value that contains the text is not a match.
    """
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            environ = handle.read()
    except OSError:
        return False
    return environ.startswith(marker) or b"\0" + marker in environ


@dataclass
class Members:
    """The live processes of one script's run, as :func:`find_members` found them."""

    grouped: list[int] = field(default_factory=list)  #: in its process group
    escaped: list[int] = field(default_factory=list)  #: left the group, still its own
    #: Zombies adopted by this process (a subreaper) that :func:`find_members`'
    #: ``claim`` accepted: the caller reaps them.
    zombies: list[int] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        """Every live member."""
        return self.grouped + self.escaped


def find_members(
    leader: int,
    marker: bytes,
    pipes: Iterable[int] = (),
    last: Callable[[], int | None] = last_pid,
    *,
    own: Container[int] = (),
    session: int | None = None,
    claim: Callable[[Proc], bool] | None = None,
) -> Members:
    """The live processes of the run led by ``leader``, whose group and session it leads.

    A process is the run's when it is in its group or session; when its
    environment has ``marker`` as a variable; when it descends from one that
    is; when it holds one of the pipes whose inodes are ``pipes`` (looked for
    only when given: listing descriptors costs) and is not a child of this
    process in its ``session`` (one it started, between ``fork`` and ``exec``);
    or when it is an orphan adopted by this process (a subreaper) that
    ``claim`` says is the run's. Never this process or its threads, nor a PID
    in ``own`` (what this process started: the guardian, other scripts) other
    than the leader. The caller keeps the leader unreaped while it looks,
    so that its group's number cannot have been reused; and keeps this
    process from starting a child while it looks (a child between ``fork`` and
    ``exec`` holds copies of every pipe). Every process of a run is created
    after its leader, so only PIDs from it to the last one handed out are looked
    at. Without ``/proc`` only the group is found, as ``[-leader]``.
    """
    found = Members()
    if not os.path.isdir("/proc"):
        try:
            os.killpg(leader, 0)
        except (ProcessLookupError, PermissionError):
            return found
        found.grouped.append(-leader)
        return found
    me = os.getpid()
    held = frozenset(f"pipe:[{inode}]" for inode in pipes)
    parents: dict[int, int] = {}  # the unclaimed, for descent
    ours: set[int] = set()
    for pid in candidates(leader, last()):
        if pid == me or (pid in own and pid != leader):
            continue
        proc = Proc.read(pid)
        if proc is None:
            continue
        if proc.zombie:  # holds nothing and cannot be killed; an adopted one is reaped
            if pid != leader and proc.ppid == me and claim is not None and claim(proc):
                found.zombies.append(pid)
            continue
        try:
            if proc.pgid == leader:
                found.grouped.append(pid)
            elif (
                proc.sid == leader
                or (marker and has_marker(pid, marker))
                or (held and not (proc.ppid == me and proc.sid == session) and _holds(pid, held))
                or (proc.ppid == me and claim is not None and claim(proc))
            ):
                found.escaped.append(pid)
            else:
                parents[pid] = proc.ppid
                continue
        except OSError:
            continue  # exited while we looked, or not ours to read
        ours.add(pid)
    ours.add(leader)
    # Descendants of the run's processes are the run's, wherever they moved.
    for pid in parents:
        chain = []
        ancestor = pid
        while ancestor in parents and ancestor not in chain:
            chain.append(ancestor)
            ancestor = parents[ancestor]
        if ancestor in ours:
            found.escaped.extend(p for p in chain if p not in ours)
            ours.update(chain)
    return found


def signal_all(pids: Iterable[int], sig: int) -> None:
    """Send ``sig`` to each PID (a negative one: to that process group), ignoring the gone."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if pid < 0:
                os.killpg(-pid, sig)
            else:
                os.kill(pid, sig)


class Guardian:
    """orch's side of the guardian: started on the first :meth:`watch`, told of each child.

    If the guardian cannot be started (no fork left), runs go on unguarded:
    orch still cleans up after itself whenever it is alive to.
    """

    def __init__(self) -> None:
        self._fd: int | None = None
        self._broken = False
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._proc: subprocess.Popen[bytes] | None = None  # kept: it lives as long as we do

    @property
    def pid(self) -> int | None:
        """The guardian's PID once started in this process."""
        return self._proc.pid if self._proc is not None and self._fd is not None else None

    def start(self) -> int | None:
        """Start the guardian unless it runs (or cannot); returns its PID.

        The registry calls it while no other child is being started, so that
        its PID is known before anything looks for a run's processes.
        """
        with self._lock:
            self._ensure()
            return self.pid

    def _ensure(self) -> None:
        if os.getpid() != self._pid:  # a forked child (a Dask worker) guards its own
            self._fd, self._broken, self._pid, self._proc = None, False, os.getpid(), None
        if self._fd is None and not self._broken:
            self._fd = self._start()

    def _send(self, line: str) -> None:
        with self._lock:
            self._ensure()
            if self._fd is None:
                return
            try:
                os.write(self._fd, line.encode())
            except OSError:
                self._broken = True  # it died: nothing to tell any more
                os.close(self._fd)
                self._fd = None

    def _start(self) -> int | None:
        try:
            read, write = os.pipe()  # both close on exec: no script inherits them
            try:
                self._proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", os.path.abspath(__file__), str(os.getpid())],
                    stdin=read,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            finally:
                os.close(read)
        except OSError:
            self._broken = True
            return None
        return write

    def watch(self, pgid: int, marker: bytes, pipes: Iterable[int] = ()) -> None:
        """Register a child's group (and its marker and pipe inodes) with the guardian."""
        inodes = " ".join(map(str, pipes))
        self._send(f"+{pgid} {marker.decode() or '-'} {inodes}\n")

    def release(self, pgid: int) -> None:
        """The child's group was reaped: the guardian forgets it."""
        if self._fd is not None:
            self._send(f"-{pgid}\n")


def stop_all(members: Callable[[], list[int]], grace: float = GUARD_GRACE) -> int:
    """SIGTERM what ``members()`` finds, SIGKILL what is left after ``grace``; how many there were.

    ``members`` is asked again each round: a process may start another while dying.
    """
    deadline = time.monotonic() + grace
    sig = signal.SIGTERM
    seen: set[int] = set()
    while True:
        pids = members()
        if not pids:
            return len(seen)
        seen.update(pids)
        signal_all(pids, sig)
        if sig == signal.SIGKILL and time.monotonic() > deadline + 5:
            return len(seen)  # SIGKILL cannot be ignored: what is left is not ours to kill
        time.sleep(0.05)
        if time.monotonic() >= deadline:
            sig = signal.SIGKILL


def find_marked(marker: bytes) -> list[int]:
    """Every live process, other than this one, with a variable whose name begins ``marker``."""
    me = os.getpid()
    return [
        pid
        for pid in (listed_pids() if os.path.isdir("/proc") else ())
        if pid != me and has_marker(pid, marker)
    ]


def _kill_leftovers(live: dict[int, tuple[bytes, tuple[int, ...]]]) -> None:
    def members() -> list[int]:
        found: list[int] = []
        for pgid, (marker, pipes) in live.items():
            found += find_members(pgid, marker, pipes).pids
        return found

    stop_all(members)


def _main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    live: dict[int, tuple[bytes, tuple[int, ...]]] = {}
    pending = b""
    while True:
        try:
            data = os.read(0, 65536)
        except InterruptedError:
            continue
        if not data:
            break
        *lines, pending = (pending + data).split(b"\n")
        for line in lines:
            fields = line[1:].split()
            if not fields:
                continue
            with contextlib.suppress(ValueError):
                if line[:1] == b"+":
                    marker = b"" if fields[1] == b"-" else fields[1]
                    live[int(fields[0])] = (marker, tuple(int(f) for f in fields[2:]))
                elif line[:1] == b"-":
                    live.pop(int(fields[0]), None)
    # orch is gone, cleanly or not: what it still had running is left over.
    if live:
        _kill_leftovers(live)


if __name__ == "__main__":
    _main()
