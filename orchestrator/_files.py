"""Small file-system helpers shared by several modules."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import WriteError

_SERIAL = itertools.count()
_IGNORE = "# Made by orchestrator: its caches and run record.\n*\n"
_checked: set[Path] = set()  # state folders whose .gitignore was found whole
_warned: set[str] = set()


def state_hint(path: str | os.PathLike[str]) -> str:
    """The fix for a state file that cannot be written: ``-o`` does not move it."""
    return f"free some space, or make {os.path.dirname(os.fspath(path))} writable"


def ensure_state_dir(state: Path) -> Path:
    """Make the state folder (``.orchestrator/``) if needed, with a ``.gitignore`` of ``*``.

    One that no longer ignores everything (left empty by a full disk, a folder)
    is damaged: it is said once and written again. A user's own lines beside
    ``*`` are kept.
    """
    ignore = state / ".gitignore"
    if state in _checked and ignore.exists():
        return state
    try:
        lines = ignore.read_text(encoding="utf-8", errors="replace").splitlines()
        whole = "*" in (line.strip() for line in lines)
        if not whole:
            warn_damaged(ignore, "it does not ignore everything")
    except IsADirectoryError:
        whole = False
        warn_damaged(ignore, "a folder")
    except OSError:  # missing, or no state folder to hold it: made below, or said why not
        whole = False
    if not whole:
        try:
            state.mkdir(parents=True, exist_ok=True)
            clear_damaged(ignore)
            atomic_write_text(ignore, _IGNORE, durable=False)
        except WriteError as exc:
            raise WriteError(ignore, exc.cause, state_hint(ignore)) from None
        except OSError as exc:
            raise WriteError(ignore, exc, state_hint(ignore)) from exc
    _checked.add(state)
    return state


def warn_damaged(path: str | os.PathLike[str], why: str) -> None:
    """Say once per process that a state file is damaged, is ignored, and will be rewritten."""
    name = os.fspath(path)
    if name not in _warned:
        _warned.add(name)
        import logging  # only with something to say: not on every command's start-up

        logging.getLogger("orchestrator").warning(
            "%s is damaged (%s): ignored, and written anew on the next write", name, why
        )


def clear_damaged(path: str | os.PathLike[str]) -> None:
    """Remove a folder standing where a state file belongs, so that the file can be written."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)


@contextlib.contextmanager
def locked(path: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold a ``flock`` on ``path`` (created if missing), across processes.

    Exclusive by default; ``shared`` locks only keep exclusive ones out. A
    folder standing where the lock file belongs is removed first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        warn_damaged(path, "a folder")
        clear_damaged(path)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def relative_posix(path: str | os.PathLike[str], base: str | os.PathLike[str]) -> str | None:
    """``path`` relative to ``base`` as POSIX text, or None if it is not below it.

    Tried against ``base`` as given and resolved, so symlinks in either spelling match.
    """
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(os.path.abspath(base)).as_posix()
    except ValueError:
        pass
    try:  # resolved only now: resolve() costs a system call per part
        return absolute.relative_to(Path(base).resolve()).as_posix()
    except ValueError:
        return None


def _temp_beside(target: str) -> tuple[int, str]:
    """A new, empty temporary file in ``target``'s folder (made if missing): fd and path."""
    folder, name = os.path.split(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        # Per process and call (next() on a count is atomic), so the first name is
        # nearly always free: no random names tried (mkstemp's cost, for each log).
        # A leftover of a killed process with the same PID (PID 1 in a container)
        # only moves us to the next name.
        tmp = os.path.join(folder, f".{name}.{os.getpid()}.{next(_SERIAL)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp  # the mode any new file gets, umask applied
        except FileExistsError:
            continue
        except FileNotFoundError:
            os.makedirs(folder or ".", exist_ok=True)
    raise FileExistsError(f"{target}: no free temporary name beside it")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The temporary file lives in the same directory, so the final ``os.replace``
    is a rename on one file system: a crash of this process can never leave a
    partial file. With ``durable`` the data is also fsynced before the rename,
    so that a power loss cannot expose an empty file; per-script logs skip that
    (it costs about a millisecond each), the run's reports do not.

    Raises:
        WriteError: the file cannot be written (a full disk, a read-only folder).
    """
    target = os.fspath(path)
    try:
        fd, tmp = _temp_beside(target)
    except OSError as exc:
        raise WriteError(target, exc) from exc
    try:
        with contextlib.suppress(OSError):  # keep the mode of the file it replaces
            os.fchmod(fd, os.stat(target).st_mode & 0o7777)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise WriteError(target, exc) from exc
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str, *, durable: bool = True) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    # A file name that is not UTF-8 (a surrogate here) is written as its \\udcNN escape.
    atomic_write_bytes(path, text.encode("utf-8", "backslashreplace"), durable=durable)


class Journal:
    """A state file of JSON lines: appended whole, rewritten atomically, read forgivingly.

    Each append is one ``write`` of whole lines in append mode, so a line is
    whole or absent (a torn last line from a crash is skipped on reading) and
    nothing earlier is rewritten in place. :meth:`rewrite` replaces the file
    under an exclusive lock that appends (shared) wait for. Any other damage
    (bytes that are not UTF-8 JSON, a line ``valid`` refuses, a folder) makes
    the whole file read as empty, said once, and the next write starts it anew.
    """

    def __init__(self, path: Path, lock: Path, valid: Callable[[Any], bool]) -> None:
        self.path = path
        self.lock = lock
        self.valid = valid
        self.damaged = False
        # The entries last read, and the file they were read from (inode, size, mtime).
        self._parsed: tuple[tuple[int, int, int], list[dict[str, Any]]] | None = None

    def read(self) -> list[dict[str, Any]]:
        """Every whole entry, oldest first; none when the file is missing or damaged."""
        try:
            with open(self.path, "rb") as handle:
                st = os.fstat(handle.fileno())
                key = (st.st_ino, st.st_size, st.st_mtime_ns)
                if self._parsed is not None and self._parsed[0] == key:
                    return self._parsed[1]  # read again unchanged: parsed once
                data = handle.read()
        except (FileNotFoundError, NotADirectoryError):  # a file on the way: said on writing
            return []
        except OSError as exc:
            return self._damage(exc.strerror or type(exc).__name__)
        entries = self._parse(data)
        if not self.damaged:
            self._parsed = (key, entries)
        return entries

    def _parse(self, data: bytes) -> list[dict[str, Any]]:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return self._damage("not UTF-8")
        whole, _, _torn = text.rpartition("\n")  # what follows the last newline: torn
        if not whole:
            return []
        try:
            # One parse for all the lines: a tenth of the cost of one per line.
            entries = json.loads(f"[{whole.replace(chr(10), ',')}]")
        except ValueError:
            return self._damage("a line that is not JSON")
        if not isinstance(entries, list) or not all(map(self.valid, entries)):
            return self._damage("an entry of the wrong shape")
        return entries

    def _damage(self, why: str) -> list[dict[str, Any]]:
        warn_damaged(self.path, why)
        self.damaged = True
        return []

    def append(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Add entries at the end, whole; a damaged file is started anew with them.

        Raises:
            WriteError: the file cannot be written (a full disk, a read-only folder).
        """
        entries = list(entries)
        if self.damaged or self.path.is_dir():
            self.rewrite(lambda kept: [*kept, *entries])
            return
        data = _lines(entries)
        try:
            with locked(self.lock, shared=True):
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
                try:
                    written = 0
                    while written < len(data):  # a short write (a disk filling up) goes on
                        written += os.write(fd, data[written:])
                finally:
                    os.close(fd)
        except OSError as exc:
            raise WriteError(self.path, exc, state_hint(self.path)) from None

    def rewrite(self, keep: Callable[[list[dict[str, Any]]], Iterable[Mapping[str, Any]]]) -> None:
        """Replace the file with ``keep(entries)``, the entries read again under the lock.

        Raises:
            WriteError: the file cannot be written.
        """
        try:
            with locked(self.lock):
                clear_damaged(self.path)
                self._parsed = None
                # Appends may have landed since the caller read.
                atomic_write_bytes(self.path, _lines(keep(self.read())), durable=False)
                self.damaged = False
        except WriteError as exc:
            raise WriteError(self.path, exc.cause, state_hint(self.path)) from None
        except OSError as exc:
            raise WriteError(self.path, exc, state_hint(self.path)) from None


def _lines(entries: Iterable[Mapping[str, Any]]) -> bytes:
    """Entries as a journal holds them: one JSON line each."""
    return "".join(json.dumps(entry) + "\n" for entry in entries).encode()
