"""The processes of a run, found through ``/proc``, and a guardian that kills them if orch dies.

A script runs in a process group of its own, so its group finds most of what
it starts. Two kinds of descendant leave it: a daemon that calls ``setsid``
keeps a private marker variable in its environment, and is found by it; one
that also clears its environment still holds the script's output pipes, and
is found through ``/proc/*/fd``. Both are *escaped*: the result counts them.

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
from collections.abc import Callable, Iterable, Iterator

__all__ = ["Guardian", "find_marked", "find_members", "signal_all", "stat_fields", "stop_all"]

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


def _listed_pids() -> Iterator[int]:
    return (int(n) for n in os.listdir("/proc") if n.isdigit())


def candidates(
    pgid: int, last: int | None, listed: Callable[[], Iterable[int]] = _listed_pids
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


def _holds(pid: str, pipes: frozenset[str]) -> bool:
    """Whether process ``pid`` has one of ``pipes`` (``pipe:[inode]`` names) open."""
    folder = f"/proc/{pid}/fd"
    for fd in os.listdir(folder):
        with contextlib.suppress(OSError):
            if os.readlink(f"{folder}/{fd}") in pipes:
                return True
    return False


def stat_fields(pid: int) -> list[bytes] | None:
    """``/proc/PID/stat`` after the command name (state first); None: gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
        fields = stat[stat.rindex(b")") + 2 :].split()
    except (OSError, ValueError):
        return None
    return None if not fields or fields[0] in (b"Z", b"X") else fields


def find_members(
    pgid: int,
    marker: bytes,
    pipes: Iterable[int] = (),
    last: Callable[[], int | None] = last_pid,
) -> tuple[list[int], list[int]]:
    """The live processes of the run led by ``pgid``: ``(in its group, escaped)``.

    Escaped ones left the group but carry ``marker`` in their environment, or
    hold one of the pipes whose inodes are ``pipes`` (looked for only when
    given: listing every descriptor costs). Every process of a run is created
    after its leader, so only PIDs from ``pgid`` to the last one handed out are
    looked at. Without ``/proc`` only the group is found, as ``[-pgid]``.
    """
    if not os.path.isdir("/proc"):
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return [], []
        return [-pgid], []
    me = os.getpid()
    held = frozenset(f"pipe:[{inode}]" for inode in pipes)
    grouped: list[int] = []
    escaped: list[int] = []
    for pid in candidates(pgid, last()):
        if pid == me:
            continue
        name = str(pid)
        try:
            fields = stat_fields(pid)
            if fields is None:  # gone, or a zombie: holds nothing and cannot be killed
                continue
            if int(fields[2]) == pgid:
                grouped.append(pid)
                continue
            if marker:
                with open(f"/proc/{name}/environ", "rb") as handle:
                    if marker in handle.read():
                        escaped.append(pid)
                        continue
            if held and _holds(name, held):
                escaped.append(pid)
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked, or not ours to read
    return grouped, escaped


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

    def _send(self, line: str) -> None:
        with self._lock:
            if os.getpid() != self._pid:  # a forked child (a Dask worker) guards its own
                self._fd, self._broken, self._pid = None, False, os.getpid()
            if self._fd is None and not self._broken:
                self._fd = self._start()
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
    """Every live process, other than this one, whose environment holds ``marker``."""
    found = []
    for pid in _listed_pids() if os.path.isdir("/proc") else ():
        if pid == os.getpid():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{pid}/environ", "rb") as handle:
            if marker in handle.read():
                found.append(pid)
    return found


def _kill_leftovers(live: dict[int, tuple[bytes, tuple[int, ...]]]) -> None:
    def members() -> list[int]:
        found: list[int] = []
        for pgid, (marker, pipes) in live.items():
            grouped, escaped = find_members(pgid, marker, pipes)
            found += grouped + escaped
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
