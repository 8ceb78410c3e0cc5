"""What each script depends on: itself, its local imports, ``watch:`` files, and its trace.

Imports are read with :mod:`ast`; nothing is imported or run. A file's
imports are resolved against, in order: the file's own folder, then the
project's search path (:func:`~orchestrator.project.search_path`: ``src/`` if
any, then the root), the very list a script runs with first on ``sys.path``.
A module found in none of them is the standard library or an installed
package, and not an input. What a static reading cannot see (computed
imports, data files) comes from the script's last trace (:mod:`.tracing`). A relative
import resolves inside its package, and importing ``a.b.c`` also runs
``a/__init__.py`` and ``a/b/__init__.py``, so those are inputs too. A file with
a syntax error has no imports but stays an input of its importers, which will
simply fail when run.

Parse results are cached in ``.orchestrator/imports.json`` under the project
root, keyed by path, size and modification time; content hashes likewise in
``.orchestrator/hashes.json``. Imports are resolved against listings of the
folders involved, each read once and trusted while the folder's modification
time stays the same (checked once per query); ``invalidate(structural=True)``
drops them all.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ._files import (
    atomic_write_text,
    clear_damaged,
    ensure_state_dir,
    state_hint,
    warn_damaged,
)
from .discovery import skipped_dir
from .errors import WriteError
from .patterns import Glob
from .project import STATE_DIR, Project
from .tracing import Trace

if TYPE_CHECKING:
    import ast

__all__ = ["STATE_DIR", "InputGraph"]

# A file changed this recently may change again within the same mtime tick
# (or be rewritten with its old mtime restored): its content is not cached.
_RACY_NS = 2_000_000_000

# (module, level, imported names): `import a.b` is ("a.b", 0, ()),
# `from ..x import y` is ("x", 2, ("y",)).
_Import = tuple[str, int, tuple[str, ...]]


# The fields that hold statements. Statements nest only inside statements,
# `except` handlers and `case` blocks, never inside expressions, so walking these
# alone reaches every import, in the same (breadth-first) order as ast.walk.
_BLOCKS = frozenset({"body", "handlers", "orelse", "finalbody", "cases"})
_BLOCK_FIELDS: dict[type[ast.AST], tuple[str, ...]] = {}


def _parse_imports(source: bytes, filename: str) -> tuple[list[_Import], str | None]:
    import ast  # here: a run whose parse cache is warm never needs it

    try:
        tree = ast.parse(source, filename=filename)
    except (SyntaxError, ValueError) as exc:
        return [], f"{type(exc).__name__}: {exc}"
    found: list[_Import] = []
    queue: deque[ast.AST] = deque([tree])
    while queue:
        node = queue.popleft()
        if isinstance(node, ast.Import):
            found.extend((alias.name, 0, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names = tuple(alias.name for alias in node.names if alias.name != "*")
            found.append((node.module or "", node.level, names))
        else:
            kind = type(node)
            fields = _BLOCK_FIELDS.get(kind)
            if fields is None:
                fields = _BLOCK_FIELDS[kind] = tuple(f for f in kind._fields if f in _BLOCKS)
            for field in fields:
                queue.extend(getattr(node, field, None) or ())
    return found, None


def _parse_file(file: str) -> tuple[list[int], list[Any]] | None:
    """Stat key and cache value (``[imports, syntax error]``) of one file; None if unreadable."""
    key = _stat_key(file)
    if key is None:
        return None
    if key[0] != stat.S_IFREG or key[1] > _PARSE_LIMIT:
        return key, [[], None]  # a device or a giant posing as a module: no imports
    try:
        with open(file, "rb") as handle:
            source = handle.read(_PARSE_LIMIT + 1)
    except OSError:
        return None
    found, error = _parse_imports(source, file)
    return key, [[list(i) for i in found], error]


# Below this many files to parse, starting workers costs more than it saves.
_PARALLEL_MIN = 200


def _parse_in_parallel(files: list[str]) -> list[Any] | None:
    """:func:`_parse_file` of each file on every core, or None where that does not pay.

    Only from a single-threaded process: forking one with threads can copy a
    lock another thread holds. (``orch deps --reverse`` is; ``orch watch``
    has its watcher thread, and warm caches after its first batch.)
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if len(files) < _PARALLEL_MIN or (cores or 1) < 2 or threading.active_count() > 1:
        return None
    import multiprocessing

    try:
        context = multiprocessing.get_context("fork")
    except ValueError:  # no fork on this platform
        return None
    workers = min(cores or 1, 8)
    try:
        with context.Pool(workers) as pool:  # exits with terminate(): no worker outlives it
            return pool.map(_parse_file, files, chunksize=max(1, len(files) // (workers * 4)))
    except (OSError, ImportError):  # no /dev/shm or sem_open (some sandboxes): parse here
        return None


def _stat_key(path: str | Path) -> list[int] | None:
    """What the caches key a file by: its type, size, mtime, ctime, inode and device.

    Keyed as git's index is: a tool that sets the old mtime back on a
    same-size edit (``cp -p``, ``rsync -t``, ``tar -x``, ``touch -d``) cannot set
    the ctime back, nor keep the inode of a file it replaced.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [
        stat.S_IFMT(st.st_mode),
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
        st.st_ino,
        st.st_dev,
    ]


#: Bytes read at a time while hashing: memory stays flat whatever the file's size.
_HASH_CHUNK = 1024 * 1024
#: A module larger than this is not parsed for its imports (no real one is).
_PARSE_LIMIT = 16 * 1024 * 1024


def _content_hash(path: Path, key: list[int]) -> str | None:
    """SHA-256 of what ``path`` is, without ever blocking or reading it whole.

    A regular file: its content, streamed. A folder: its sorted entry names.
    Anything else (a FIFO, a socket, a device such as ``/dev/zero``): its type
    and identity, without opening it. None if it is gone or unreadable.
    """
    kind = key[0]
    if kind == stat.S_IFDIR:  # a folder a script listed: its names are what it saw
        names = "\0".join(sorted(os.listdir(path)))
        return hashlib.sha256(names.encode("utf-8", "surrogateescape")).hexdigest()
    if kind != stat.S_IFREG:
        ident = f"{kind:o} {key[5]} {key[4]}"
        return hashlib.sha256(f"special {ident}".encode()).hexdigest()
    digest = hashlib.sha256()
    # Non-blocking: if it became a FIFO since the stat, opening it still returns at once.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or now.st_ino != key[4]:
            return None  # replaced while we looked: unknown, so it counts as changed
        while chunk := os.read(fd, _HASH_CHUNK):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


def _join(folder: str, name: str) -> str:
    # os.path.join, without its generality: ``folder`` is a str(Path), ``name`` one part.
    return f"{folder}/{name}" if folder != "/" else f"/{name}"


def _mtime(folder: str) -> int | None:
    try:
        return os.stat(folder).st_mtime_ns
    except OSError:
        return None


class _Listing(NamedTuple):
    """A folder's entries by name, as of its modification time ``mtime`` (None: no folder)."""

    mtime: int | None
    racy: bool  # changed too recently for the same mtime to prove nothing changed since
    entries: dict[str, os.DirEntry[str]]


def _scan(folder: str) -> _Listing:
    mtime = _mtime(folder)  # taken before the scan, so a change during it shows next time
    if mtime is None:
        return _Listing(None, False, {})
    try:
        with os.scandir(folder) as it:
            entries = {entry.name: entry for entry in it}
    except OSError:
        entries = {}
    return _Listing(mtime, mtime > time.time_ns() - _RACY_NS, entries)


class _Cache:
    """A JSON file of ``{path: [*stat key, value]}`` entries, valid while the file is.

    ``valid`` says whether a value has the shape this cache stores; a file
    that is not such JSON is damaged: it counts as empty, and is rewritten.
    """

    def __init__(self, path: Path, valid: Callable[[Any], bool]) -> None:
        self.path = path
        self.valid = valid
        self.entries: dict[str, list[Any]] = {}
        self.dirty = False
        try:
            data = json.loads(path.read_bytes())
            if not isinstance(data, dict):
                raise ValueError("not an object")
            self.entries = data
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            warn_damaged(path, getattr(exc, "strerror", None) or "not the JSON orch writes")
            self.dirty = True  # written anew on save

    def get(self, file: Path, key: list[int]) -> Any:
        entry = self.entries.get(str(file))
        if isinstance(entry, list) and entry[:-1] == key and self.valid(entry[-1]):
            return entry[-1]
        return None

    def put(self, file: Path, key: list[int], value: Any) -> None:
        if key[2] > time.time_ns() - _RACY_NS:
            return
        self.entries[str(file)] = [*key, value]
        self.dirty = True

    def save(self) -> None:
        if self.dirty:
            ensure_state_dir(self.path.parent)
            try:
                clear_damaged(self.path)
                atomic_write_text(self.path, json.dumps(self.entries), durable=False)
            except WriteError as exc:
                raise WriteError(self.path, exc.cause, state_hint(self.path)) from None
            except OSError as exc:
                raise WriteError(self.path, exc, state_hint(self.path)) from None
            self.dirty = False


def _valid_imports(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], list)
        and all(
            isinstance(i, list)
            and len(i) == 3
            and isinstance(i[0], str)
            and isinstance(i[1], int)
            and isinstance(i[2], list)
            for i in value[0]
        )
        and (value[1] is None or isinstance(value[1], str))
    )


def _valid_hash(value: Any) -> bool:
    return isinstance(value, str)


#: Whether file names differ by case here (a listing then tells a name is missing).
_CASE_SENSITIVE = sys.platform not in ("darwin", "win32", "cygwin")


class InputGraph:
    """The inputs of every script of a project, and the reverse: who is affected by a file.

    Thread-safe: workers take snapshots while the main thread plans.
    """

    def __init__(self, project: Project) -> None:
        self.project = project
        self.root = project.root
        state = project.state_dir
        self._imports = _Cache(state / "imports.json", _valid_imports)
        self._hashes = _Cache(state / "hashes.json", _valid_hash)
        self._lock = threading.RLock()
        self._shared_roots = self._roots()
        self._direct: dict[Path, tuple[Path, ...]] = {}
        self._errors: dict[Path, str] = {}
        self._listings: dict[str, _Listing] = {}
        # Parsed by _prefetch and not yet asked for: {path: (stat key, cache value)}.
        self._parsed: dict[Path, tuple[list[int], list[Any]]] = {}
        self._paths: dict[str, Path] = {}
        # Valid for one query (see _begin): the listings checked, the imports resolved.
        self._checked: dict[str, dict[str, os.DirEntry[str]]] = {}
        self._bases: dict[tuple[str, str, int], str | None] = {}
        self._resolved: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
        self._absents: dict[tuple[str, str], list[Path]] = {}
        self._batch: int | None = None  # the thread whose queries are one (see batch)
        self._batch_hashes: dict[Path, str | None] = {}

    def _roots(self) -> list[str]:
        """The shared import roots that exist now (see :attr:`Project.search_path`)."""
        return [str(r) for r in self.project.search_path]

    # -- caches ---------------------------------------------------------------------

    def save(self) -> None:
        """Write the parse and hash caches (a no-op when nothing changed)."""
        with self._lock:
            self._imports.save()
            self._hashes.save()

    def invalidate(self, paths: Iterable[Path], *, structural: bool = False) -> None:
        """Forget what is known of ``paths`` (edited files).

        ``structural``: files were created or deleted, which can change how
        other files' imports resolve, so every resolution is redone (from the
        parse cache, so it stays cheap).
        """
        with self._lock:
            if structural:
                self._shared_roots = self._roots()  # a src/ made since counts now
                self._direct.clear()
                self._errors.clear()
                self._listings.clear()  # even a change within one mtime tick is seen
                self._begin()
            for path in paths:
                self._direct.pop(path, None)
                self._errors.pop(path, None)

    def file_hash(self, path: Path) -> str | None:
        """SHA-256 of the file's content (None if it is missing), cached by its stat key.

        A folder's is that of its sorted entry names; a FIFO's, socket's or
        device's that of its type and identity (see :func:`_content_hash`).
        """
        batching = self._batch == threading.get_ident()  # another thread's batch is not ours
        if batching and path in self._batch_hashes:
            return self._batch_hashes[path]
        digest = self._file_hash(path)
        if batching:
            self._batch_hashes[path] = digest
        return digest

    def _missing(self, path: Path) -> bool:
        """Whether this query's view of the folders says ``path`` is missing (no stat).

        Only where names are case-sensitive: on macOS and Windows ``data.csv``
        opens ``Data.csv``, which a listing does not show under that name.
        """
        if not _CASE_SENSITIVE:
            return False
        folder, _, name = str(path).rpartition("/")
        listed = self._checked.get(folder or "/")
        if listed is not None:
            return name not in listed
        parent, _, name = folder.rpartition("/")  # a candidate package folder that is not there
        listed = self._checked.get(parent or "/")
        return listed is not None and name not in listed

    def _file_hash(self, path: Path) -> str | None:
        if self._missing(path):
            return None
        key = _stat_key(path)
        if key is None:
            return None
        with self._lock:
            cached = self._hashes.get(path, key)
            if cached is not None:
                return str(cached)
        try:
            digest = _content_hash(path, key)
        except OSError:
            return None
        if digest is None:
            return None
        with self._lock:
            self._hashes.put(path, key, digest)
        return digest

    # -- imports ----------------------------------------------------------------------

    def _prefetch(self, paths: Iterable[Path]) -> None:
        """Parse the files among ``paths`` whose imports are not cached, several at once."""
        todo = []
        for path in paths:
            if path in self._direct:
                continue  # resolved already: its imports are not asked for again
            key = _stat_key(path)
            if key is not None and self._imports.get(path, key) is None:
                todo.append(path)
        parsed = _parse_in_parallel([str(p) for p in todo])
        if parsed is None:
            return  # parsed one by one when asked for
        for path, outcome in zip(todo, parsed, strict=True):
            if outcome is not None:
                self._parsed[path] = outcome

    def _imports_of(self, path: Path) -> list[_Import]:
        key = _stat_key(path)
        if key is None:
            return []
        cached = self._imports.get(path, key)
        if cached is None:
            parsed = self._parsed.pop(path, None)
            if parsed is None or parsed[0] != key:
                parsed = _parse_file(str(path))
                if parsed is None:
                    return []
            key, cached = parsed
            self._imports.put(path, key, cached)
        imports, error = cached
        if error:
            self._errors[path] = error
        return [(m, level, tuple(names)) for m, level, names in imports]

    def _begin(self) -> None:
        """Start a query: folders are checked again (once each), imports resolved again."""
        if self._batch == threading.get_ident():
            return  # one query for the whole batch
        self._checked.clear()
        self._bases.clear()
        self._resolved.clear()
        self._absents.clear()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Make this thread's queries within the block one query: each folder is checked
        once, each module's candidates found once, for many scripts decided together."""
        with self._lock:
            self._begin()
            self._batch = threading.get_ident()
        try:
            yield
        finally:
            self._batch = None
            self._batch_hashes.clear()

    def _entries(self, folder: str) -> dict[str, os.DirEntry[str]]:
        entries = self._checked.get(folder)
        if entries is None:
            listing = self._listings.get(folder)
            if listing is None or listing.racy or listing.mtime != _mtime(folder):
                listing = self._listings[folder] = _scan(folder)
            entries = self._checked[folder] = listing.entries
        return entries

    def _is_file(self, folder: str, name: str) -> bool:
        return self._entry_is(folder, name, os.DirEntry.is_file)

    def _is_dir(self, folder: str, name: str) -> bool:
        return self._entry_is(folder, name, os.DirEntry.is_dir)

    def _entry_is(self, folder: str, name: str, test: Callable[[os.DirEntry[str]], bool]) -> bool:
        entry = self._entries(folder).get(name)
        try:
            return entry is not None and test(entry)
        except OSError:  # vanished since the listing
            return False

    def _path(self, file: str) -> Path:
        path = self._paths.get(file)
        if path is None:
            path = self._paths[file] = Path(file)
        return path

    def _base(self, folder: str, module: str, level: int) -> str | None:
        """Where an import in a file of ``folder`` is looked up: its package, or a root."""
        key = (folder, module.partition(".")[0] if not level else "", level)
        if key in self._bases:
            return self._bases[key]
        base: str | None = None
        if level:
            package = Path(folder)
            for _ in range(level - 1):
                package = package.parent
            base = str(package)
        elif module:
            top = key[1]
            # Like sys.path: the first root holding the top-level name wins.
            for root in (folder, *self._shared_roots):
                if self._is_dir(root, top) or self._is_file(root, f"{top}.py"):
                    base = root
                    break
        self._bases[key] = base
        return base

    def _resolve(self, folder: str, imp: _Import) -> list[str]:
        """The files an import in a file of ``folder`` runs (maybe that file itself)."""
        module, level, names = imp
        base = self._base(folder, module, level)
        if base is None:
            return []
        key = (base, module, names)
        resolved = self._resolved.get(key)
        if resolved is None:
            parts = [p for p in module.split(".") if p]
            resolved = self._resolved[key] = self._find(base, parts, names)
        return resolved

    def _find(self, base: str, parts: list[str], names: tuple[str, ...]) -> list[str]:
        """The files ``from <parts> import <names>`` runs, found below ``base``."""
        found: list[str] = []
        folder = base
        parent = base  # the folder of parts[:-1], once reached
        depth = 0
        for part in parts:  # packages on the way run their __init__
            if not self._is_dir(folder, part):
                break
            parent, folder = folder, _join(folder, part)
            depth += 1
            if self._is_file(folder, "__init__.py"):
                found.append(_join(folder, "__init__.py"))
        if depth == len(parts):  # the module is a package: its __init__, or a bare folder
            init = _join(folder, "__init__.py")
            if self._is_file(folder, "__init__.py"):
                if init not in found:
                    found.append(init)
            elif parts and self._is_file(parent, f"{parts[-1]}.py"):
                found.append(_join(parent, f"{parts[-1]}.py"))
            for name in names:  # `from pkg import mod` imports a submodule
                if self._is_dir(folder, name) and self._is_file(_join(folder, name), "__init__.py"):
                    found.append(_join(_join(folder, name), "__init__.py"))
                elif self._is_file(folder, f"{name}.py"):
                    found.append(_join(folder, f"{name}.py"))
        elif depth == len(parts) - 1 and self._is_file(folder, f"{parts[-1]}.py"):
            found.append(_join(folder, f"{parts[-1]}.py"))  # a plain module
        return found

    def _direct_of(self, path: Path) -> tuple[Path, ...]:
        cached = self._direct.get(path)
        if cached is None:
            me = str(path)
            folder = me.rpartition("/")[0] or "/"
            imports = self._imports_of(path)
            files = dict.fromkeys(f for i in imports for f in self._resolve(folder, i))
            files.pop(me, None)
            cached = self._direct[path] = tuple(map(self._path, files))
        return cached

    def direct(self, path: Path) -> tuple[Path, ...]:
        """The local files ``path`` imports directly."""
        with self._lock:
            self._begin()
            return self._direct_of(path)

    def modules(self, script: Path) -> list[Path]:
        """The local modules ``script`` imports, transitively, in discovery order."""
        seen: dict[Path, None] = {}
        with self._lock:
            self._begin()
            queue = deque(self._direct_of(script))
            while queue:
                file = queue.popleft()
                if file in seen or file == script:
                    continue
                seen[file] = None
                queue.extend(self._direct_of(file))
        return list(seen)

    def syntax_error(self, path: Path) -> str | None:
        """The syntax error found in ``path`` when it was parsed, if any."""
        with self._lock:
            self._imports_of(path)
            return self._errors.get(path)

    # -- watch: globs ---------------------------------------------------------------

    def watched(self, watch: Sequence[str]) -> list[Path]:
        """Files under the project root matching a script's ``watch:`` globs.

        Matched with the config's glob rules (``**`` spans folders, a folder
        covers what is below it), walking from the pattern's fixed prefix and
        skipping the folders discovery skips.
        """
        files: dict[Path, None] = {}
        for glob in map(Glob.of, watch):
            base = self.root / glob.fixed
            if base.is_file():
                files[base] = None
                continue
            for folder, dirs, names in os.walk(base):
                dirs[:] = sorted(d for d in dirs if not skipped_dir(d))
                for name in sorted(names):
                    path = Path(folder, name)
                    if glob.matches(path.relative_to(self.root).as_posix()):
                        files[path] = None
        return list(files)

    def watches(self, watch: Sequence[str], path: Path) -> bool:
        """Whether ``path`` matches one of a script's ``watch:`` globs."""
        rel = self._rel(path)
        return rel is not None and any(Glob.of(p).matches(rel) for p in watch)

    def _rel(self, path: Path) -> str | None:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return None

    # -- traced inputs ---------------------------------------------------------------

    def _absent(self, folder: str, module: str) -> list[Path]:
        """The local files that decide what ``module`` is: those that would shadow or
        provide it if they existed, and the one that provides it now.

        ``module`` was loaded (or tried) at run time; where it is not found in a
        search root before the one that has it, its ``.py`` and package files
        there are absent inputs: making one changes what the script imports. The
        file found is named too, so one that appeared since the trace (a module
        looked for by a computed name, a shadow of a standard one) is an input.
        """
        key = (folder, module)
        found = self._absents.get(key)
        if found is None:
            found = self._absents[key] = list(map(self._path, self._find_absent(folder, module)))
        return found

    def _find_absent(self, folder: str, module: str) -> list[str]:
        parts = module.split(".")
        missing: list[str] = []
        for root in (folder, *self._shared_roots):
            base = root
            for depth, part in enumerate(parts):
                if self._is_file(base, f"{part}.py") and (depth == len(parts) - 1 or not depth):
                    # The module itself, or a top-level module in its way.
                    return [*missing, _join(base, f"{part}.py")]
                if not self._is_dir(base, part):
                    missing += [_join(base, f"{part}.py"), _join(_join(base, part), "__init__.py")]
                    break
                base = _join(base, part)
            else:  # a package, regular or namespace
                return [*missing, _join(base, "__init__.py")]
            if depth:  # the top-level package is here: Python looks no further
                return missing
        return missing

    def traced(self, script: Path, trace: Trace) -> list[Path]:
        """The inputs a script's trace adds: files read, folders listed, absent modules."""
        root, inside = self.root, f"{self.root}/"
        found = dict.fromkeys(self._path(inside + p) for p in (*trace.reads, *trace.listed))
        folder = str(script.parent)
        with self._lock:
            self._begin()
            for module in trace.modules:
                found.update(dict.fromkeys(self._absent(folder, module)))
        # Outputs are never inputs (rerunning for them would loop); a file it also read (a
        # state file it loads and saves) is one, as the script left it (Snapshots.after).
        for path in set(trace.writes) - set(trace.reads):
            found.pop(root / path, None)
        return list(found)

    # -- all inputs ----------------------------------------------------------------

    def sources(
        self, script: Path, watch: Sequence[str] = (), trace: Trace | None = None
    ) -> dict[Path, str]:
        """Every input of the script and where it came from: ``static``, ``watch``, ``traced``.

        Static: the script and the local modules it imports; watch: its
        ``watch:`` files; traced: what its last run's ``trace`` adds.
        """
        found = {script: "static"}
        for module in self.modules(script):
            found.setdefault(module, "static")
        for file in self.watched(watch):
            found.setdefault(file, "watch")
        if trace is not None:
            for file in self.traced(script, trace):
                found.setdefault(file, "traced")
            for written in set(trace.writes) - set(trace.reads):
                path = self.root / written
                if path != script:
                    found.pop(path, None)
        return found

    def inputs(
        self, script: Path, watch: Sequence[str] = (), trace: Trace | None = None
    ) -> list[Path]:
        """Every file the script depends on (see :meth:`sources`)."""
        return list(self.sources(script, watch, trace))

    def hashes(self, paths: Iterable[Path]) -> dict[Path, str | None]:
        """The content hash of each path as of now (None: missing)."""
        return {path: self.file_hash(path) for path in paths}

    def affected(
        self,
        changed: Iterable[Path],
        scripts: Mapping[Path, Sequence[str]],
        traces: Mapping[Path, Trace] | None = None,
    ) -> dict[Path, list[Path]]:
        """``{script: [changed files among its inputs]}`` for the scripts that ``changed`` touches.

        ``scripts`` maps each script to its ``watch:`` globs; ``traces``
        each script to its last run's trace, whose inputs count too, and so
        does any path in a folder it listed (an entry added or deleted changes
        the listing). An input that is a symlink changes when its target does,
        and is named in the target's place.
        """
        changed = list(changed)
        importers: dict[Path, list[Path]] = {}
        with self._lock:
            # Each traced script's inputs, and the folders among them it listed.
            mine = {
                script: (set(self.traced(script, trace)), {self.root / p for p in trace.listed})
                for script, trace in (traces or {}).items()
                if script in scripts
            }
            self._begin()
            # Reverse edges of every file reachable from a script, level by level
            # so that each level's unparsed files are parsed together.
            seen: set[Path] = set()
            level = list(scripts)
            while level:
                level = [file for file in dict.fromkeys(level) if file not in seen]
                seen.update(level)
                self._prefetch(level)
                following: list[Path] = []
                for file in level:
                    for dep in self._direct_of(file):
                        importers.setdefault(dep, []).append(file)
                        following.append(dep)
                level = following
            links = self._links([*seen, *(p for found, _ in mine.values() for p in found)])
        watching = {script: watch for script, watch in scripts.items() if watch}
        hits: dict[Path, list[Path]] = {}

        def hit(script: Path, file: Path) -> None:
            files = hits.setdefault(script, [])
            if file not in files:
                files.append(file)

        for path in changed:
            # The inputs this path is: itself, a symlink to it, one in a symlink to its folder.
            aliases = [path, *links.get(path, ())]
            aliases += [link / path.name for link in links.get(path.parent, ())]
            for file in aliases:
                queue, reached = deque([file]), {file}
                while queue:
                    for importer in importers.get(queue.popleft(), ()):
                        if importer not in reached:
                            reached.add(importer)
                            queue.append(importer)
                for script in reached:
                    if script in scripts:
                        hit(script, file)
                for script, watch in watching.items():
                    if self.watches(watch, file):
                        hit(script, file)
                for script, (inputs, listed) in mine.items():
                    if file in inputs or file.parent in listed:
                        hit(script, file)
        return hits

    def _links(self, paths: Iterable[Path]) -> dict[Path, list[Path]]:
        """``{resolved target: [paths]}`` of the ``paths`` that are symlinks.

        Their folders' cached listings tell which are: only those are resolved.
        """
        links: dict[Path, list[Path]] = {}
        for path in dict.fromkeys(paths):
            folder, _, name = str(path).rpartition("/")
            if self._entry_is(folder or "/", name, os.DirEntry.is_symlink):
                links.setdefault(Path(os.path.realpath(path)), []).append(path)
        return links
