"""Run one script, or one function, in a child process that cannot outlive its run.

This module owns every child process orchestrator starts:

* each child starts in a new session (so its own process group), with stdin
  from ``/dev/null``;
* each child's environment carries a private marker variable, so descendants
  that leave the group (a daemon's double fork and ``setsid``) are found
  through ``/proc`` on Linux and killed with it;
* on timeout, interrupt, or when the script exits and leaves something behind,
  the whole group gets SIGTERM, then SIGKILL after ``kill_grace`` seconds;
* stdout and stderr are streamed through a selector: the full streams go to
  files when ``log_dir`` is given, and only a bounded tail is kept in memory;
* every live child is in :data:`children`, a :class:`Registry`, so one call
  (Ctrl-C) stops all of them at once from any thread.

A script's failure is data: :func:`run_script` never raises for it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, NamedTuple

from .errors import WriteError
from .guardian import (
    Guardian,
    Proc,
    find_members,
    has_marker,
    last_pid,
    listed_pids,
    signal_all,
    stop_all,
)
from .ledger import MARKER, TOKEN_LENGTH
from .masking import Masker
from .project import STATE_DIR, find_project_root, search_path
from .results import Status, StopReason, base_result, mark_stopped
from .tracing import TraceError, read_trace, trace_env, trace_fields

__all__ = [
    "DEFAULT_MAX_OUTPUT",
    "KILL_GRACE",
    "Registry",
    "children",
    "run_function",
    "run_script",
]

logger = logging.getLogger("orchestrator")

#: Bytes of each stream kept in the result; the rest is only on disk.
DEFAULT_MAX_OUTPUT = 1024 * 1024
#: Seconds between SIGTERM and SIGKILL.
KILL_GRACE = 1.0
_CHUNK = 64 * 1024
# Without pidfd, how often a child's exit is checked while a grandchild holds its pipes.
_POLL = 0.05
# How long pipes may stay open after the child exits before whatever holds them is killed;
# without a leftover they close at once, and scanning for leftovers costs more than waiting.
_LINGER = 0.05
_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PR_SET_CHILD_SUBREAPER = 36
# Finished runs remembered for telling whose an orphan is; an older orphan is nobody's
# for certain, and :meth:`Registry.stop_orphans` stops it at the end of the run.
_WINDOWS = 512


def _now() -> datetime:
    return datetime.now(timezone.utc)


# -- process groups -------------------------------------------------------------------


@dataclass(eq=False)
class _Child:
    """A running child, as the registry sees it."""

    script: str
    pgid: int  # its PID too: it leads its session and group
    grace: float
    marker: bytes = b""  # empty: find the group only, not escaped descendants
    tag: str | None = None  # who started it (a run id), so that a stop can pick its own
    wake: int | None = None  # write end of a pipe that interrupts the pump's select()
    reason: StopReason | None = None  # set when stopped from outside
    stopped: threading.Event = field(default_factory=threading.Event)
    pipes: tuple[int, ...] = ()  # inodes of its output pipes
    # Set once something may hold its pipes from outside the group: from then on
    # every look also lists descriptors, which costs too much to do always.
    deep: bool = False
    escaped: set[int] = field(default_factory=set)  # found outside its group
    usage: Any = None  # its resource usage, from wait4, once reaped
    registry: Registry | None = None

    def members(self) -> list[int]:
        """The processes that belong to this run and are still alive."""
        assert self.registry is not None, "a child is made by its registry"
        return self.registry.members(self)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to every process of the run."""
        signal_all(self.members(), sig)

    def stop(self, reason: StopReason) -> None:
        """Stop the run from outside: SIGTERM now; the running thread escalates."""
        if self.reason is None:
            self.reason = reason
        self.signal(signal.SIGTERM)
        self.stopped.set()
        if self.wake is not None:  # so that the SIGKILL after the grace is not late
            with contextlib.suppress(OSError):
                os.write(self.wake, b"!")

    def reap(self) -> None:
        """Return once no process of the run is alive: SIGTERM, then SIGKILL after the grace.

        Alive means not yet dead: a process it signalled that no longer looks
        like the run's (it closed the pipes that showed it, on its way out) is
        waited for all the same. The leader itself is left a zombie (see
        :meth:`Registry.running`).
        """
        members = self.members()
        if not members:
            return
        signalled = _identities(members)
        signal_all(members, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        delay = 0.005
        while True:
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
            members = self.members()
            signalled.update(_identities(members))
            left = set(members) | {pid for pid, start in signalled.items() if _lives(pid, start)}
            if not left:
                return
            if time.monotonic() >= deadline:
                signal_all(left, signal.SIGKILL)
                deadline = time.monotonic() + 5.0  # SIGKILL cannot be ignored; just wait


def _identities(pids: Iterable[int]) -> dict[int, int]:
    """``{pid: start tick}`` of live processes: a PID alone may be reused."""
    found = {}
    for pid in pids:
        proc = Proc.read(pid) if pid > 0 else None
        if proc is not None and not proc.zombie:
            found[pid] = proc.start
    return found


def _lives(pid: int, start: int) -> bool:
    proc = Proc.read(pid)
    return proc is not None and not proc.zombie and proc.start == start


# Where waitid is missing (macOS), a child is reaped when seen to exit; its status waits here.
_early: dict[int, tuple[int, Any]] = {}


def _exited(pid: int) -> bool:
    """Whether our child ``pid`` has exited, without reaping it (its PID stays taken)."""
    try:
        if hasattr(os, "waitid"):
            return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        if pid not in _early:
            found, status, usage = os.wait4(pid, os.WNOHANG)
            if not found:
                return False
            _early[pid] = (status, usage)
        return True
    except ChildProcessError:  # reaped already
        return True


def _tick() -> int:
    """Now, in the clock ticks since boot that ``/proc/PID/stat`` gives start times in.

    Rounded down, as the kernel rounds a start: whatever started before now has
    a start at most this. (A kernel that counts starts without suspend counts
    them lower: a window only grows.)
    """
    clock = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)  # no /proc there anyway
    return math.floor(time.clock_gettime(clock) * _HZ)


def _set_subreaper(on: bool) -> bool:
    """Make this process adopt the orphans of its descendants, instead of init (Linux).

    A script's daemon that double-forks, leaves its session, clears its
    environment and closes its output is then still this process's child,
    where it can be found and stopped. Returns whether the setting took.
    """
    prctl = _prctl()
    return prctl is not None and int(prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)) == 0


@functools.cache
def _prctl() -> Any:
    """libc's ``prctl`` (Linux), loaded once; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


class _Window(NamedTuple):
    """When a finished run went: what started in it may be the run's."""

    leader: int
    began: int  #: clock ticks since boot
    ended: int
    last: int | None  #: the PID handed out last as it ended

    def holds(self, proc: Proc) -> bool:
        """Whether ``proc`` started while this run went."""
        if not self.began <= proc.start <= self.ended:
            return False
        if self.last is None or self.last < self.leader:  # PIDs wrapped within it: no order
            return True
        return self.leader <= proc.pid <= self.last


class Registry:
    """The live children of this process, so that one call stops them all (Ctrl-C).

    Every child orchestrator starts is added while it runs: scripts,
    functions and environment installers. Reentrant: a signal handler may
    stop them while its thread holds the lock.

    It also decides which processes are a run's. A run's leader stays
    unreaped until the run's clean-up is over, so its group's number cannot
    be reused meanwhile. This process adopts orphans (a subreaper): an
    adopted orphan that left its session and carries no marker is the run's
    when it started while that run, and no other, was going; when more than
    one was, it is stopped by :meth:`stop_orphans` at the end of the run. No
    child is started while a run's processes are looked for, so a child
    between ``fork`` and ``exec`` (holding copies of every pipe) is never
    taken for one of them.
    """

    def __init__(self) -> None:
        self._live: set[_Child] = set()
        self._lock = threading.RLock()
        #: Kills what is registered here if this process dies without doing it.
        self.guardian = Guardian()
        #: Begins the marker variable of every child started here, so that the
        #: leftovers of this process can be found after its death (the run ledger).
        self.marker_prefix = f"{MARKER}{uuid.uuid4().hex[:TOKEN_LENGTH]}_"
        self._spawn = threading.RLock()  # held while starting a child, and while looking
        self._own: set[int] = set()  # PIDs this process started and has not reaped
        # A run's window: from its leader's start to its end, in ticks and in PIDs (a
        # process made after the end has a higher PID, until PIDs wrap): what started
        # in it may be the run's. Those of live runs: leader -> start tick.
        self._open: dict[int, int] = {}
        self._closed: deque[_Window] = deque(maxlen=_WINDOWS)
        self._since: int | None = None  # the first run's start: older orphans are not ours
        self._prepared: int | None = None  # the PID that set up the guardian
        self._session = 0  # this process's session, once prepared
        # Orphans are adopted only while there is a reason: a live child, or a run
        # (adopting()). A program that embeds orch is a subreaper no longer than that.
        self._adopters = 0
        #: Whether this process adopts its descendants' orphans now (Linux).
        self.subreaper = False

    @contextlib.contextmanager
    def spawning(self) -> Iterator[Callable[[int], None]]:
        """Hold while starting a child; call the yielded function with its PID.

        Nothing looks for a run's processes meanwhile, and the child is known
        as this process's own from then on.
        """
        with self._spawn:
            if self._prepared != os.getpid():  # once per process
                self._prepare()
            # The window opens before the fork, so at or before the child's own start:
            # reading that from /proc would wait for the child's exec to finish (the
            # kernel locks a process's stat while it execs), on every script's start.
            opened = _tick()
            yield functools.partial(self._admit, opened=opened)

    def _prepare(self) -> None:
        if self._prepared is not None:  # a forked copy of a process that had children
            self._own.clear()
            self._open.clear()
            self._closed.clear()
            self._since, self._adopters, self.subreaper = None, 0, False
        self._prepared = os.getpid()
        self._session = os.getsid(0)
        guardian = self.guardian.start()
        if guardian is not None:
            self._own.add(guardian)

    def _adopt(self, change: int) -> None:
        """One more (or fewer) reason to adopt orphans; on from the first, off after the last."""
        with self._spawn:
            self._adopters += change
            wanted = self._adopters > 0
            if wanted != self.subreaper and (_set_subreaper(wanted) or not wanted):
                self.subreaper = wanted

    @contextlib.contextmanager
    def adopting(self) -> Iterator[None]:
        """Adopt orphans for the whole block (a run), between its scripts too."""
        self._adopt(1)
        try:
            yield
        finally:
            self._adopt(-1)

    def _admit(self, pid: int, opened: int) -> None:
        self._own.add(pid)
        self._adopt(1)
        self._open[pid] = opened
        if self._since is None:
            self._since = opened

    def _forget(self, pid: int) -> None:
        """``pid`` was reaped: its window closes, and its number may be someone else's.

        When no run is left (a library call, not ``orch run``), what no script
        could claim is stopped now: nothing else would.
        """
        with self._spawn:
            self._own.discard(pid)
            began = self._open.pop(pid, None)
            if began is None:
                return
            self._closed.append(_Window(pid, began, _tick(), last_pid()))
            self._adopt(-1)
            idle = self._adopters == 0
        if idle:
            self.stop_orphans()

    def _runs_at(self, proc: Proc, last: int | None) -> set[int] | None:
        """The leaders of the runs going when ``proc`` started; None: too long ago to say.

        ``last`` is the PID handed out last (None: unknown).
        """
        closed = self._closed
        if len(closed) == closed.maxlen and proc.start < closed[0].began:
            return None
        runs = {w.leader for w in closed if w.holds(proc)}
        for leader, began in self._open.items():
            wrapped = last is None or last < leader  # PIDs wrapped since: no order
            if began <= proc.start and (wrapped or proc.pid >= leader):
                runs.add(leader)
        return runs

    def _adopted(self, proc: Proc) -> bool:
        """Whether ``proc``, a child of this process, came to it as a script's orphan.

        Not what this process started, nor what shares its session (started by
        the program that embeds orch), nor a live script's own (its marker).
        """
        if proc.pid in self._own or proc.sid == self._session:
            return False
        return proc.zombie or not has_marker(proc.pid, self.marker_prefix.encode())

    def _claimer(self, leader: int) -> Callable[[Proc], bool]:
        """Whether an orphan this process adopted is certainly the run of ``leader``'s."""
        last: list[int | None] = []  # read on the first orphan only

        def claim(proc: Proc) -> bool:
            if not self._adopted(proc):
                return False
            if not last:
                last.append(last_pid())
            return self._runs_at(proc, last[0]) == {leader}

        return claim

    def members(self, child: _Child) -> list[int]:
        """The live processes of ``child``'s run (see :func:`find_members`)."""
        with self._spawn:
            found = find_members(
                child.pgid,
                child.marker,
                child.pipes if child.deep else (),
                own=self._own,
                session=self._session,
                claim=self._claimer(child.pgid) if self._prepared == os.getpid() else None,
            )
            _reap(found.zombies)  # under the lock: a reaped PID is free for the next child
        child.escaped.update(found.escaped)
        return found.pids

    def stop_orphans(self, grace: float = KILL_GRACE) -> int:
        """Stop the orphans adopted from finished runs; returns how many there were.

        What no run could claim when it ended: those that left their session
        after starting while more than one run was going (or too long ago to
        say). One that may be a run's still going is left for it.
        """
        if self._since is None or self._prepared != os.getpid() or not os.path.isdir("/proc"):
            return 0
        me, since = os.getpid(), self._since

        def orphans() -> list[int]:
            live: list[int] = []
            zombies: list[int] = []
            with self._spawn:
                for pid in _children() or listed_pids():
                    proc = Proc.read(pid)
                    if proc is None or proc.ppid != me or proc.start < since:
                        continue
                    runs = self._runs_at(proc, None)
                    if runs == set() or (runs and runs & self._open.keys()):
                        continue  # started outside every run, or maybe a live run's
                    if self._adopted(proc):
                        (zombies if proc.zombie else live).append(pid)
                _reap(zombies)
            return live

        return stop_all(orphans, grace)

    @contextlib.contextmanager
    def holding(self, child: _Child) -> Iterator[_Child]:
        """Keep ``child`` in the registry (and the guardian's) for the ``with`` block."""
        with self._lock:
            self._live.add(child)
        self.guardian.watch(child.pgid, child.marker, child.pipes)
        try:
            yield child
        finally:
            with self._lock:
                self._live.discard(child)
            self.guardian.release(child.pgid)

    def terminate(
        self,
        reason: StopReason = StopReason.INTERRUPTED,
        predicate: Callable[[str], bool] | None = None,
        tag: str | None = None,
    ) -> int:
        """Stop every running child (or those whose script path passes ``predicate``,
        or that were started with ``tag``).

        Each is sent SIGTERM at once, and SIGKILL after its grace period by the
        thread that runs it; its result gets status ``error`` with ``reason``.
        Safe to call from a signal handler's thread. Returns how many were stopped.
        """
        with self._lock:
            chosen = [
                c
                for c in self._live
                if (predicate is None or predicate(c.script)) and (tag is None or c.tag == tag)
            ]
        for child in chosen:
            child.stop(reason)
        return len(chosen)

    def kill(self) -> int:
        """SIGKILL every running child's processes now (a second Ctrl-C). Returns how many."""
        with self._lock:
            chosen = list(self._live)
        for child in chosen:
            if child.reason is None:
                child.reason = StopReason.INTERRUPTED
            child.signal(signal.SIGKILL)
        return len(chosen)

    def start(
        self,
        command: Sequence[str],
        name: str,
        *,
        grace: float = KILL_GRACE,
        marker: bytes = b"",
        tag: str | None = None,
        wake: int | None = None,
        **popen: Any,
    ) -> tuple[subprocess.Popen[bytes], _Child]:
        """Start ``command`` in a session of its own, stdin from ``/dev/null``.

        The one way orchestrator starts a program (scripts, installers); pass
        the pair to :meth:`running`. ``marker`` is the ``NAME=`` bytes of a
        variable in the child's environment that finds descendants leaving
        its group. Raises OSError if it cannot start.
        """
        with self.spawning() as admit:
            proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, start_new_session=True, **popen
            )
            admit(proc.pid)
        pipes = tuple(os.fstat(p.fileno()).st_ino for p in (proc.stdout, proc.stderr) if p)
        child = _Child(name, proc.pid, grace, marker, tag, wake, pipes=pipes, registry=self)
        return proc, child

    @contextlib.contextmanager
    def running(self, proc: subprocess.Popen[bytes], child: _Child) -> Iterator[None]:
        """Registered for the block; on leaving it, however, nothing of the child is left.

        Whatever of its processes still lives gets SIGTERM, then SIGKILL after
        the grace; only then is the child reaped (``proc.returncode`` and
        ``child.usage`` are set), so that its group's number stays its own
        for as long as the group is looked for.
        """
        with self.holding(child):
            try:
                yield
            finally:
                child.reap()
                _collect(proc, child)
                self._forget(proc.pid)


def _collect(proc: subprocess.Popen[bytes], child: _Child) -> None:
    """Reap ``proc`` with ``wait4``, keeping its resource usage; waits at most the grace + 5 s."""
    if proc.returncode is not None:
        return
    deadline = time.monotonic() + child.grace + 5
    while not _exited(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        pid, status, usage = proc.pid, *_early.pop(proc.pid)
    except KeyError:
        try:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere: no usage
            proc.poll()
            return
    if pid:
        proc.returncode = os.waitstatus_to_exitcode(status)
        child.usage = usage


def _reap(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _children() -> list[int] | None:
    """This process's children (of every thread); None where ``/proc`` does not list them."""
    if not os.path.exists(f"/proc/self/task/{os.getpid()}/children"):
        return None
    found: list[int] = []
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError), open(f"/proc/self/task/{tid}/children") as handle:
            found.extend(map(int, handle.read().split()))
    return found


#: This process's children. One registry, because signals reach the process.
children = Registry()


# -- output capture -------------------------------------------------------------------


class _Capture:
    """Keeps the last ``limit`` bytes of a stream, and the whole of it in a file.

    The file is made on the first byte: a silent stream costs no file (making
    one costs about half a millisecond here, per stream, per script).
    """

    def __init__(self, limit: int, path: Path | None, masker: Masker) -> None:
        self.limit = max(0, limit)
        self.path = path
        self.mask = masker.stream()
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.dropped = 0
        self.file: IO[bytes] | None = None
        self.error: WriteError | None = None  # the file could not be written: the run stops

    def write(self, data: bytes) -> None:
        self._keep(self.mask.feed(data))

    def _keep(self, data: bytes) -> None:
        if self.path is not None and self.error is None:
            try:
                if self.file is None:
                    self.file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
                self.file.write(data)
            except OSError as exc:
                self.error = WriteError(self.path, exc)
                self._close_file()  # the mask goes on: the tail is still masked in order
        self.chunks.append(data)
        self.size += len(data)
        while self.chunks and self.size - len(self.chunks[0]) >= self.limit:
            self.size -= len(self.chunks[0])
            self.dropped += len(self.chunks.popleft())

    def close(self) -> None:
        if rest := self.mask.end():
            self._keep(rest)
        self._close_file()

    def _close_file(self) -> None:
        if self.file:
            file, self.file = self.file, None
            try:
                file.close()  # flushes: a full disk may show only now
            except OSError as exc:
                self.error = self.error or WriteError(self.path or "", exc)

    def text(self) -> str:
        data = b"".join(self.chunks)
        extra = len(data) - self.limit
        if extra > 0:
            data = data[extra:]
            self.dropped += extra
            self.chunks = deque([data])
        text = data.decode("utf-8", errors="replace")
        if self.dropped:
            # The file's name, not its path: what is kept must not grow with where the
            # checkout lives (``stdout_path`` has the full path).
            where = f"; full output in {self.path.name}" if self.path else ""
            text = f"[... {self.dropped} bytes truncated{where} ...]\n" + text
        return text


# -- scripts ------------------------------------------------------------------------


def _pythonpath(env: dict[str, str], root: Path | None) -> None:
    """Put the project's search path first on PYTHONPATH, keeping the rest without duplicates."""
    if root is None:
        return
    entries = [*map(str, search_path(root)), *env.get("PYTHONPATH", "").split(os.pathsep)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(e for e in entries if e))


def _take_trace(result: dict[str, Any], trace_file: str, root: Path) -> int | None:
    """Read the script's trace into ``result["trace"]`` (or why not into ``trace_error``).

    Returns the largest peak memory (KiB) its Python processes reported.
    """
    peak = None
    try:
        trace = read_trace(trace_file, root)
        result.update(trace_fields(trace))
        peak = trace.peak_kib
    except TraceError as exc:
        result.update(trace_fields(exc))
    with contextlib.suppress(OSError):
        os.unlink(trace_file)
    return peak


def _own_peak_kib() -> int:
    """This process's peak resident memory in KiB: at least what a child it spawns carries.

    ``getrusage`` rather than ``/proc/self/status``: a system call, not a file
    parsed per script; it may be larger than our own peak (it keeps what our
    own parent carried into us), which only makes the test stricter.
    """
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes there


def _cost(result: dict[str, Any], usage: Any, traced_kib: int | None, spawner_kib: int) -> None:
    """``peak_memory_mb`` and ``cpu_time`` of a finished script.

    ``wait4``'s ``ru_maxrss`` is the largest of the child and the children it
    waited for, but Linux carries the spawner's peak into it across ``exec``:
    it is the script's own only when above orch's peak at the spawn
    (``spawner_kib``). Below, the traced processes' own ``VmHWM`` tells.
    """
    candidates = [traced_kib or 0]
    if usage is not None:
        result["cpu_time"] = round(usage.ru_utime + usage.ru_stime, 6)
        maxrss = usage.ru_maxrss // 1024 if sys.platform == "darwin" else usage.ru_maxrss  # bytes
        if maxrss > spawner_kib:
            candidates.append(maxrss)
    peak = max(candidates)
    if peak:
        result["peak_memory_mb"] = round(peak / 1024, 1)


@functools.cache
def _prlimit() -> str | None:
    return shutil.which("prlimit")


def _memory_cap(megabytes: float) -> tuple[list[str], Callable[[], None] | None] | None:
    """How to start a child whose every process has at most ``megabytes`` of address space.

    The cap (``RLIMIT_AS``) must hold from the child's first instruction, for
    whatever it forks at once too: so it is set before ``exec``, by util-linux's
    ``prlimit`` put in front of the command (an exec, and starts stay
    ``vfork``-fast). Without ``prlimit``, by a ``preexec_fn``, which makes every
    start of a capped script a full ``fork`` of orch. Returns the command's
    prefix and the ``preexec_fn``; None when a lower hard limit is already
    inherited (that is then the cap, and not claimed as this one).
    """
    import resource

    limit = int(megabytes * 1024 * 1024)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY and hard < limit:
        return None
    tool = _prlimit()
    if tool is not None:
        return [tool, f"--as={limit}", "--"], None
    return [], functools.partial(resource.setrlimit, resource.RLIMIT_AS, (limit, limit))


# What a process that ran out of address space prints (Python, C, C++, Rust).
_OUT_OF_MEMORY = re.compile(
    r"MemoryError|Cannot allocate memory|std::bad_alloc|memory allocation of"
)


def _ran_out(result: Mapping[str, Any], megabytes: float) -> bool:
    """Whether a failed script failed for its memory limit: it said so, or it reached it."""
    if _OUT_OF_MEMORY.search((result.get("stderr") or "")[-8192:]):
        return True
    peak = result.get("peak_memory_mb")
    return peak is not None and peak >= 0.9 * megabytes


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _finish(result: dict[str, Any], start: datetime, started: float) -> dict[str, Any]:
    result["start_time"] = start.isoformat()
    result["end_time"] = _now().isoformat()
    result["execution_time"] = round(time.monotonic() - started, 6)
    return result


def run_script(
    script_path: str | os.PathLike[str],
    timeout: float | None = 60,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    args: Sequence[str] | None = None,
    allowed_exit_codes: Iterable[int] = (0,),
    python: str | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    *,
    scripts_dir: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    max_output: int = DEFAULT_MAX_OUTPUT,
    kill_grace: float = KILL_GRACE,
    tag: str | None = None,
    trace: bool = False,
    trace_skip: Sequence[str] = (),
    masker: Masker | None = None,
    memory_limit_mb: float | None = None,
    secret_names: Sequence[str] = (),
) -> dict[str, Any]:
    """Run ``[python, script, *args]`` and return its result dict; never raises for the script.

    Args:
        script_path: the script; a relative path is resolved against the
            current directory before anything else.
        timeout: seconds before the process group is killed (None: no limit).
        env: variables laid over the inherited environment.
        cwd: working directory; relative to the project root, which is also
            the default (the nearest parent with ``pyproject.toml`` or ``.git``).
        args: extra command-line arguments.
        allowed_exit_codes: exit codes that count as ``passed``.
        python: the interpreter (default: ``sys.executable``).
        log_dir: if given, the full stdout and stderr are written there as
            ``<name>.stdout.log`` and ``<name>.stderr.log`` (when not empty).
        scripts_dir: the scripts directory, used for ``path`` and ``subdirectory``.
        root: the project root (a run passes its :class:`~orchestrator.project.Project`'s);
            found from ``scripts_dir`` or the script's folder when not given.
        max_output: bytes of each stream kept in the result (a tail).
        kill_grace: seconds between SIGTERM and SIGKILL.
        tag: a label (a run id) that ``children.terminate(tag=...)`` can pick it by.
        trace: record what the script (and its Python children) imported, read,
            wrote and listed under the project root (see :mod:`orchestrator.tracing`);
            needs a root. ``trace_skip``: folders not to record (the reports).
        masker: secret values to mask in the streams (logs and tails) and the
            error, besides those of the script's environment, which are always
            masked (see :mod:`orchestrator.masking`); a run passes its plan's.
            ``secret_names``: more variable names whose values are secret
            (the config's ``secrets:``), looked up in the script's environment.
        memory_limit_mb: the address space the script and the processes it
            starts may each take (``RLIMIT_AS``); one that runs out fails with
            ``memory limit of N MB exceeded``.

    Returns:
        A dict with ``script, name, path, subdirectory, start_time, end_time,
        status, exit_code, execution_time, stdout, stderr, error`` (and
        ``stdout_path``/``stderr_path`` with ``log_dir``: the full stream's
        file, or None when the stream was empty; ``trace`` with ``trace``:
        :meth:`~orchestrator.tracing.Trace.to_dict`, or None with
        ``trace_error`` saying why it is unknown).
    """
    # abspath, not resolve: a symlinked script keeps the name it was found under.
    script = Path(os.path.abspath(script_path))
    base = Path(os.path.abspath(scripts_dir)) if scripts_dir is not None else None
    result = base_result(script, base)
    start, started = _now(), time.monotonic()
    secrets = Masker.of_environment({**os.environ, **(env or {})}, secret_names)
    secrets |= masker or Masker()

    def finish() -> dict[str, Any]:
        if result["error"]:
            result["error"] = secrets.mask(result["error"])
        return _finish(result, start, started)

    # A library call locates the root here, at the edge; a run passes its Project's.
    found = Path(root) if root is not None else find_project_root(base or script.parent)
    home = found or Path.cwd()
    workdir = home / cwd if cwd is not None else home

    problem = None
    if not script.is_file():
        problem = f"script not found: {script}"
    elif not workdir.is_dir():
        problem = f"working directory does not exist: {workdir}"
    if problem:
        result["error"] = problem
        return finish()

    token = uuid.uuid4().hex
    variable = f"{children.marker_prefix}{token}"
    marker = f"{variable}=".encode()
    child_env = {**os.environ, **(env or {}), variable: "1"}
    _pythonpath(child_env, found)
    trace_file = None
    if trace and found is not None:
        # Made by the script's bootstrap: no file afterwards means it never ran traced.
        trace_file = os.path.join(tempfile.gettempdir(), f"orch-trace-{token}")
        skip = [str(found / STATE_DIR), *map(str, trace_skip)]
        trace_env(child_env, trace_file, str(found), skip)
    command = [python or sys.executable, str(script), *(args or ())]
    cap = _memory_cap(memory_limit_mb) if memory_limit_mb is not None else None
    if cap is not None and cap[0] and shutil.which(command[0], path=child_env.get("PATH")) is None:
        cap = None  # let the start fail as an interpreter not found, not as prlimit's error
    if cap is not None:
        command[:0] = cap[0]

    logs = Path(log_dir) if log_dir is not None else None
    if logs is not None:
        try:
            logs.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            result["error"] = result["write_error"] = str(WriteError(logs, exc))
            return finish()
        shown = secrets.mask(script.name)  # a log's name must not carry a secret either
        result["stdout_path"] = str(logs / f"{shown}.stdout.log")
        result["stderr_path"] = str(logs / f"{shown}.stderr.log")
    out = _Capture(max_output, Path(result["stdout_path"]) if logs else None, secrets)
    err = _Capture(max_output, Path(result["stderr_path"]) if logs else None, secrets)

    logger.info("started %s", script, extra={"script": str(script)})
    wake_r, wake_w = os.pipe()  # a stop from outside wakes the pump's select()
    try:
        proc, child = children.start(
            command,
            str(script),
            grace=kill_grace,
            marker=marker,
            tag=tag,
            wake=wake_w,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env=child_env,
            preexec_fn=cap[1] if cap is not None else None,
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        os.close(wake_r)
        os.close(wake_w)
        out.close()
        err.close()
        what = "interpreter not found" if isinstance(exc, FileNotFoundError) else "cannot start"
        reason = getattr(exc, "strerror", None) or exc
        result["error"] = f"{what}: {python or sys.executable}: {reason}"
        return finish()

    # Read once the child has exec'd: what it carried can only be below this.
    spawner_kib = _own_peak_kib()
    limited = cap is not None
    timed_out = False
    try:
        with children.running(proc, child):
            try:
                timed_out = _pump(proc, child, out, err, timeout, wake_r)
            finally:
                child.wake = None
                os.close(wake_r)
                os.close(wake_w)
    finally:
        out.close()
        err.close()

    code = proc.returncode
    result["stdout"], result["stderr"] = out.text(), err.text()
    traced_kib = None
    if trace_file is not None and found is not None:
        traced_kib = _take_trace(result, trace_file, found)
    _cost(result, child.usage, traced_kib, spawner_kib)
    if logs is not None:
        for stream, capture in (("stdout", out), ("stderr", err)):
            if not capture.size and not capture.dropped:
                result[f"{stream}_path"] = None
    if child.escaped:
        result["escaped"] = len(child.escaped)
    unwritable = out.error or err.error
    if unwritable is not None:
        mark_stopped(result, StopReason.UNWRITABLE)
        result["error"] = result["write_error"] = str(unwritable)
    elif child.reason is not None:
        mark_stopped(result, child.reason)
    elif timed_out:
        result["status"] = Status.TIMEOUT.value
        result["error"] = f"timed out after {timeout:g} s"
    else:
        result["exit_code"] = code
        allowed = set(allowed_exit_codes)
        if code in allowed:
            result["status"] = Status.PASSED.value
        else:
            result["status"] = Status.FAILED.value
            if code is not None and code < 0:
                result["error"] = f"killed by {_signal_name(-code)}"
            else:
                result["error"] = f"exit code {code} (allowed: {sorted(allowed)})"
            if limited and memory_limit_mb is not None and _ran_out(result, memory_limit_mb):
                result["error"] = f"memory limit of {memory_limit_mb:g} MB exceeded"
    finish()
    logger.info(
        "finished %s: %s",
        script,
        result["status"],
        extra={
            "script": str(script),
            "status": result["status"],
            "exit_code": result["exit_code"],
            "duration": result["execution_time"],
        },
    )
    return result


def _pump(
    proc: subprocess.Popen[bytes],
    child: _Child,
    out: _Capture,
    err: _Capture,
    timeout: float | None,
    wake: int,
) -> bool:
    """Stream the child's output until it has exited and its pipes are closed.

    Returns whether it timed out. Once the child itself has exited, anything
    still holding its pipes after a short linger is a leftover (a background
    grandchild): it gets SIGTERM, then SIGKILL, so the run ends promptly
    instead of waiting for it.
    """
    assert proc.stdout is not None and proc.stderr is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    sel.register(wake, selectors.EVENT_READ, "wake")
    open_pipes = 2
    pidfd = None
    if hasattr(os, "pidfd_open"):
        with contextlib.suppress(OSError):
            pidfd = os.pidfd_open(proc.pid)
            sel.register(pidfd, selectors.EVENT_READ, None)
    deadline = time.monotonic() + timeout if timeout is not None else None
    timed_out = False
    exited_at: float | None = None
    kill_at: float | None = None  # when SIGKILL follows the SIGTERM already sent
    give_up_at: float | None = None  # pipes held by something SIGKILL did not reach
    try:
        while True:
            now = time.monotonic()
            if exited_at is None and (proc.returncode is not None or _exited(proc.pid)):
                exited_at = now
            if exited_at is not None and not open_pipes:
                break
            if kill_at is None:
                if child.stopped.is_set():
                    child.deep = True
                    kill_at = now + child.grace  # stop() sent SIGTERM already
                elif deadline is not None and now >= deadline and exited_at is None:
                    timed_out = child.deep = True
                    child.signal(signal.SIGTERM)
                    kill_at = now + child.grace
                elif exited_at is not None and now >= exited_at + _LINGER:
                    child.deep = True  # something holds its pipes: perhaps from outside
                    child.signal(signal.SIGTERM)
                    kill_at = now + child.grace
            if kill_at is not None and give_up_at is None and now >= kill_at:
                child.signal(signal.SIGKILL)
                give_up_at = now + 2.0
            if give_up_at is not None and now >= give_up_at:
                logger.warning("%s: output pipes still open after SIGKILL; closing", child.script)
                break
            if kill_at is None:
                until = exited_at + _LINGER if exited_at is not None else deadline
            else:
                until = give_up_at or kill_at
            if exited_at is None and pidfd is None:
                until = min(until, now + _POLL) if until is not None else now + _POLL
            for key, _ in sel.select(None if until is None else max(0.0, until - now)):
                capture = key.data
                if capture is None:  # the pidfd: the child exited
                    sel.unregister(key.fileobj)
                    continue
                if capture == "wake":  # stopped from outside: the loop escalates
                    with contextlib.suppress(OSError):
                        os.read(key.fd, 64)
                    continue
                data = os.read(key.fd, _CHUNK)
                if data:
                    capture.write(data)
                    if capture.error is not None and not child.stopped.is_set():
                        child.stop(StopReason.UNWRITABLE)  # a full disk: this run cannot go on
                else:
                    sel.unregister(key.fileobj)
                    open_pipes -= 1
    finally:
        sel.close()
        proc.stdout.close()
        proc.stderr.close()
        if pidfd is not None:
            os.close(pidfd)
    return timed_out


# -- functions --------------------------------------------------------------------------


def _function_child(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    conn: Any,
    out_path: str,
    err_path: str,
) -> None:
    """Entry point of the child process behind :func:`run_function`."""
    os.setsid()
    for fd, path in ((1, out_path), (2, err_path)):
        handle = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.dup2(handle, fd)
        os.close(handle)
    import pickle

    try:
        value = func(*args, **kwargs)
        message: tuple[str, Any] = ("ok", value)
    except SystemExit as exc:  # sys.exit(N) in the function: its exit code, as a script's
        # sys.exit() is 0, sys.exit(True) 1, and sys.exit("message") prints it and is 1.
        number = int(exc.code) if isinstance(exc.code, int) else 1
        message = ("exit", 0 if exc.code is None else number)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:
        message = ("raised", traceback.format_exc())
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        payload = pickle.dumps(
            ("unpicklable", f"return value cannot be pickled: {type(exc).__name__}: {exc}")
        )
    conn.send_bytes(payload)
    conn.close()


def _read_tail(path: str, limit: int, masker: Masker) -> str:
    capture = _Capture(limit, None, masker)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            capture.write(chunk)
    capture.close()
    return capture.text()


def run_function(
    func: Callable[..., Any],
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    *,
    max_output: int = DEFAULT_MAX_OUTPUT,
    kill_grace: float = KILL_GRACE,
) -> dict[str, Any]:
    """Call ``func(*args, **kwargs)`` in a child process, so that it can be stopped.

    The child is started with the ``spawn`` method, so ``func``, its arguments
    and its return value must be picklable (a module-level function, not a
    lambda). It runs in its own session; on timeout its group is killed.

    Returns:
        A dict with ``name, type ("function"), status, result, error,
        start_time, end_time, execution_time, exit_code, stdout, stderr``.
        ``status`` is ``passed``, ``failed`` (it raised; ``error`` holds the
        traceback), ``timeout``, or ``error`` (it could not be started, its
        return value could not be pickled, or the process died).
    """
    import multiprocessing
    import pickle
    import tempfile

    name = getattr(func, "__qualname__", None) or repr(func)
    result: dict[str, Any] = {
        "name": name,
        "type": "function",
        "status": Status.ERROR.value,
        "result": None,
        "error": None,
        "start_time": None,
        "end_time": None,
        "execution_time": 0.0,
        "exit_code": None,
        "stdout": "",
        "stderr": "",
    }
    start, started = _now(), time.monotonic()
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    with tempfile.TemporaryDirectory(prefix="orch-func-") as tmp:
        out_path, err_path = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        for path in (out_path, err_path):
            open(path, "wb").close()
        process = ctx.Process(
            target=_function_child,
            args=(func, tuple(args), dict(kwargs or {}), sender, out_path, err_path),
            daemon=True,
        )
        try:
            with children.spawning() as admit:
                process.start()
                assert process.pid is not None
                admit(process.pid)
        except Exception as exc:
            # spawn pickles the target's arguments in the parent
            result["error"] = f"cannot start {name}: {type(exc).__name__}: {exc}"
            receiver.close()
            sender.close()
            return _finish(result, start, started)
        sender.close()
        child = _Child(name, process.pid, kill_grace, registry=children)
        with children.holding(child):
            deadline = started + timeout if timeout is not None else None
            message: Any = None
            try:
                while message is None:
                    wait = (
                        0.05
                        if deadline is None
                        else max(0.0, min(0.05, deadline - time.monotonic()))
                    )
                    if receiver.poll(wait):
                        try:
                            message = pickle.loads(receiver.recv_bytes())
                        except (EOFError, OSError):
                            message = ("died", None)
                    elif child.stopped.is_set():
                        message = ("stopped", child.reason)
                    elif deadline is not None and time.monotonic() >= deadline:
                        message = ("timeout", None)
                    elif _exited(process.pid):
                        message = ("died", None)
            finally:
                receiver.close()
                if message and message[0] in ("ok", "raised"):  # let it end by itself
                    until = time.monotonic() + 0.5
                    while not _exited(process.pid) and time.monotonic() < until:
                        time.sleep(0.005)
                child.reap()  # before the join: unreaped, its group's number stays its own
                if process.is_alive():  # stopped before its setsid(): not yet a group leader
                    process.kill()
                process.join(timeout=kill_grace + 5)
                children._forget(process.pid)
        result["exit_code"] = process.exitcode
        kind, payload = message
        if kind == "ok":
            result["status"], result["result"] = Status.PASSED.value, payload
        elif kind == "exit":
            result["exit_code"] = payload
            if payload == 0:
                result["status"] = Status.PASSED.value
            else:
                result["status"], result["error"] = Status.FAILED.value, f"exit code {payload}"
        elif kind == "raised":
            result["status"], result["error"] = Status.FAILED.value, payload
        elif kind == "unpicklable":
            result["error"] = payload
        elif kind == "timeout":
            result["status"] = Status.TIMEOUT.value
            result["exit_code"] = None
            result["error"] = f"timed out after {timeout:g} s"
        elif kind == "stopped":
            mark_stopped(result, payload)
        else:
            code = process.exitcode
            how = f"killed by {_signal_name(-code)}" if code and code < 0 else f"exit code {code}"
            result["error"] = f"the function's process died without a result ({how})"
            if getattr(func, "__module__", None) == "__main__":
                # spawn imports the calling script again in the child, to find the function.
                result["error"] += (
                    "; a function defined in the script that calls run_function must be "
                    'called under `if __name__ == "__main__":` (the child imports the script)'
                )
        secrets = Masker.of_environment(os.environ)
        result["stdout"] = _read_tail(out_path, max_output, secrets)
        result["stderr"] = _read_tail(err_path, max_output, secrets)
        if result["error"]:
            result["error"] = secrets.mask(result["error"])  # a traceback shows values
    return _finish(result, start, started)
