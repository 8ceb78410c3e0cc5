"""The life of a child process: started in a group of its own, its output pumped, the
whole group stopped, then reaped. Nothing here knows what a script or a result is.

* each child starts in a new session (so its own process group), with stdin
  from ``/dev/null``;
* each child's environment carries a private marker variable, so descendants
  that leave the group (a daemon's double fork and ``setsid``) are found
  through ``/proc`` on Linux and killed with it;
* on timeout, interrupt, or when the child exits and leaves something behind,
  the whole group gets SIGTERM, then SIGKILL after the grace;
* stdout and stderr are streamed through a selector (:func:`pump`): the full
  streams go to files, and only a bounded tail is kept in memory (:class:`Capture`);
* every live child is in :data:`children`, a :class:`Registry`, so one call
  (Ctrl-C) stops all of them at once from any thread.

:mod:`.runner` builds on it: what to start for a script or a function, and
the result it makes of the child's end.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

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
from .results import StopReason

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

__all__ = ["KILL_GRACE", "Capture", "Child", "Registry", "children", "exited", "pump"]

logger = logging.getLogger("orchestrator")

#: Seconds between SIGTERM and SIGKILL.
KILL_GRACE = 1.0
#: Bytes read from a pipe or log at a time.
CHUNK = 64 * 1024
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


# -- process groups -------------------------------------------------------------------


@dataclass(eq=False)
class Child:
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


def exited(pid: int) -> bool:
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
        self._live: set[Child] = set()
        self._lock = threading.RLock()
        #: Kills what is registered here if this process dies without doing it.
        self.guardian = Guardian()
        #: Begins the marker variable of every child started here, so that the
        #: leftovers of this process can be found after its death (the run ledger).
        self.marker_prefix = f"{MARKER}{os.urandom(TOKEN_LENGTH).hex()[:TOKEN_LENGTH]}_"
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

    def members(self, child: Child) -> list[int]:
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
    def holding(self, child: Child) -> Iterator[Child]:
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
    ) -> tuple[subprocess.Popen[bytes], Child]:
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
        child = Child(name, proc.pid, grace, marker, tag, wake, pipes=pipes, registry=self)
        return proc, child

    @contextlib.contextmanager
    def running(self, proc: subprocess.Popen[bytes] | BaseProcess, child: Child) -> Iterator[None]:
        """Registered for the block; on leaving it, however, nothing of the child is left.

        The one way a child ends, a script's (``proc`` a Popen) or a function's
        (a multiprocessing process). Whatever of its processes still lives gets
        SIGTERM, then SIGKILL after the grace; only then is the child reaped
        (``proc.returncode`` and ``child.usage`` are set for a Popen), so that its
        group's number stays its own for as long as the group is looked for.
        """
        with self.holding(child):
            try:
                yield
            finally:
                child.reap()
                if isinstance(proc, subprocess.Popen):
                    _collect(proc, child)
                else:  # its object reaps it; stopped before its setsid(), it led no group
                    if proc.is_alive():
                        proc.kill()
                    proc.join(timeout=child.grace + 5)
                self._forget(child.pgid)


def _collect(proc: subprocess.Popen[bytes], child: Child) -> None:
    """Reap ``proc`` with ``wait4``, keeping its resource usage; waits at most the grace + 5 s."""
    if proc.returncode is not None:
        return
    deadline = time.monotonic() + child.grace + 5
    while not exited(proc.pid) and time.monotonic() < deadline:
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


# -- output -------------------------------------------------------------------


class Capture:
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


# -- pumping ---------------------------------------------------------------------------


def pump(
    proc: subprocess.Popen[bytes],
    child: Child,
    out: Capture,
    err: Capture,
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
            if exited_at is None and (proc.returncode is not None or exited(proc.pid)):
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
                data = os.read(key.fd, CHUNK)
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
