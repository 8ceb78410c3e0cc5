"""What each script depends on: itself, the local modules it imports, and ``watch:`` files.

Imports are read with :mod:`ast`; nothing is imported or run. A file's
imports are resolved against, in order: the file's own folder, the scripts
directory, the project's ``src/`` and the project root (a superset of what
Python searches, so an input is never missed). A module found in none of them
is the standard library or an installed package, and not an input. A relative
import resolves inside its package, and importing ``a.b.c`` also runs
``a/__init__.py`` and ``a/b/__init__.py``, so those are inputs too. A file with
a syntax error has no imports but stays an input of its importers, which will
simply fail when run.

Parse results are cached in ``.orchestrator/imports.json`` under the project
root, keyed by path, size and modification time; content hashes likewise in
``.orchestrator/hashes.json``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ._files import STATE_DIR, atomic_write_text, state_dir
from .config import match_path
from .discovery import skipped_dir

__all__ = ["STATE_DIR", "InputGraph"]

# A file changed this recently may change again within the same mtime tick
# (or be rewritten with its old mtime restored): its content is not cached.
_RACY_NS = 2_000_000_000

# (module, level, imported names): `import a.b` is ("a.b", 0, ()),
# `from ..x import y` is ("x", 2, ("y",)).
_Import = tuple[str, int, tuple[str, ...]]


def _parse_imports(source: bytes, filename: str) -> tuple[list[_Import], str | None]:
    try:
        tree = ast.parse(source, filename=filename)
    except (SyntaxError, ValueError) as exc:
        return [], f"{type(exc).__name__}: {exc}"
    found: list[_Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, 0, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names = tuple(alias.name for alias in node.names if alias.name != "*")
            found.append((node.module or "", node.level, names))
    return found, None


def _stat_key(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


class _Cache:
    """A JSON file of ``{path: [size, mtime_ns, value]}`` entries, valid while the file is."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, list[Any]] = {}
        self.dirty = False
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                self.entries = data
        except (OSError, ValueError):
            pass

    def get(self, file: Path, key: list[int]) -> Any:
        entry = self.entries.get(str(file))
        if entry is not None and entry[:2] == key:
            return entry[2]
        return None

    def put(self, file: Path, key: list[int], value: Any) -> None:
        if key[1] > time.time_ns() - _RACY_NS:
            return
        self.entries[str(file)] = [*key, value]
        self.dirty = True

    def save(self) -> None:
        if self.dirty:
            state_dir(self.path.parent.parent)
            atomic_write_text(self.path, json.dumps(self.entries), durable=False)
            self.dirty = False


class InputGraph:
    """The inputs of every script of a project, and the reverse: who is affected by a file.

    Thread-safe: workers ask for fingerprints while the main thread plans.
    """

    def __init__(self, project_root: Path, scripts_dir: Path) -> None:
        self.root = project_root
        self.scripts_dir = scripts_dir
        state = project_root / STATE_DIR
        self._imports = _Cache(state / "imports.json")
        self._hashes = _Cache(state / "hashes.json")
        self._lock = threading.RLock()
        self._shared_roots = self._roots()
        self._direct: dict[Path, tuple[Path, ...]] = {}
        self._errors: dict[Path, str] = {}

    def _roots(self) -> list[Path]:
        """The shared import roots that exist now: scripts directory, ``src/``, project root."""
        candidates = (self.scripts_dir, self.root / "src", self.root)
        return [r for r in candidates if r.is_dir()]

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
            for path in paths:
                self._direct.pop(path, None)
                self._errors.pop(path, None)

    def file_hash(self, path: Path) -> str | None:
        """SHA-256 of the file's content (None if it is missing), cached by size and mtime."""
        key = _stat_key(path)
        if key is None:
            return None
        with self._lock:
            cached = self._hashes.get(path, key)
            if cached is not None:
                return str(cached)
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            return None
        with self._lock:
            self._hashes.put(path, key, digest)
        return digest

    # -- imports ----------------------------------------------------------------------

    def _imports_of(self, path: Path) -> list[_Import]:
        key = _stat_key(path)
        if key is None:
            return []
        cached = self._imports.get(path, key)
        if cached is not None:
            imports, error = cached
        else:
            try:
                source = path.read_bytes()
            except OSError:
                return []
            found, error = _parse_imports(source, str(path))
            imports = [list(i) for i in found]
            self._imports.put(path, key, [imports, error])
        if error:
            self._errors[path] = error
        return [(m, level, tuple(names)) for m, level, names in imports]

    @staticmethod
    def _module_file(base: Path, parts: list[str]) -> Path | None:
        target = base.joinpath(*parts)
        if (target / "__init__.py").is_file():
            return target / "__init__.py"
        candidate = target.with_name(target.name + ".py") if parts else None
        if candidate is not None and candidate.is_file():
            return candidate
        return None

    def _resolve(self, importer: Path, imp: _Import) -> list[Path]:
        module, level, names = imp
        parts = [p for p in module.split(".") if p]
        found: list[Path] = []
        if level:
            base = importer.parent
            for _ in range(level - 1):
                base = base.parent
            bases = [base]
        else:
            if not parts:
                return []
            roots = [importer.parent, *self._shared_roots]
            # Like sys.path: the first root holding the top-level name wins.
            bases = [
                r for r in roots if (r / parts[0]).is_dir() or (r / f"{parts[0]}.py").is_file()
            ][:1]
        for base in bases:
            for i in range(1, len(parts) + 1):  # packages on the way run their __init__
                init = base.joinpath(*parts[:i], "__init__.py")
                if init.is_file():
                    found.append(init)
            target = self._module_file(base, parts)
            if target is not None and target not in found:
                found.append(target)
            for name in names:  # `from pkg import mod` imports a submodule
                sub = self._module_file(base, [*parts, name])
                if sub is not None:
                    found.append(sub)
        return [f for f in found if f != importer]

    def direct(self, path: Path) -> tuple[Path, ...]:
        """The local files ``path`` imports directly."""
        with self._lock:
            cached = self._direct.get(path)
            if cached is None:
                files: dict[Path, None] = {}
                for imp in self._imports_of(path):
                    for file in self._resolve(path, imp):
                        files[file] = None
                cached = self._direct[path] = tuple(files)
            return cached

    def modules(self, script: Path) -> list[Path]:
        """The local modules ``script`` imports, transitively, in discovery order."""
        seen: dict[Path, None] = {}
        queue = deque(self.direct(script))
        while queue:
            file = queue.popleft()
            if file in seen or file == script:
                continue
            seen[file] = None
            queue.extend(self.direct(file))
        return list(seen)

    def syntax_error(self, path: Path) -> str | None:
        """The syntax error found in ``path`` when it was parsed, if any."""
        with self._lock:
            self._imports_of(path)
            return self._errors.get(path)

    # -- watch: globs ---------------------------------------------------------------

    def watched(self, settings: Mapping[str, Any]) -> list[Path]:
        """Files under the project root matching the script's ``watch:`` globs.

        Matched with the config's glob rules (``**`` spans folders, a folder
        covers what is below it), walking from the pattern's fixed prefix and
        skipping the folders discovery skips.
        """
        files: dict[Path, None] = {}
        for pattern in settings.get("watch", ()):
            parts = pattern.strip("/").split("/")
            fixed = []
            for part in parts:
                if any(c in part for c in "*?["):
                    break
                fixed.append(part)
            base = self.root.joinpath(*fixed)
            if base.is_file():
                files[base] = None
                continue
            for folder, dirs, names in os.walk(base):
                dirs[:] = sorted(d for d in dirs if not skipped_dir(d))
                for name in sorted(names):
                    path = Path(folder, name)
                    if match_path(pattern, path.relative_to(self.root).as_posix()):
                        files[path] = None
        return list(files)

    def watches(self, settings: Mapping[str, Any], path: Path) -> bool:
        """Whether ``path`` matches one of the script's ``watch:`` globs."""
        try:
            rel = path.relative_to(self.root).as_posix()
        except ValueError:
            return False
        return any(match_path(pattern, rel) for pattern in settings.get("watch", ()))

    # -- all inputs ----------------------------------------------------------------

    def inputs(self, script: Path, settings: Mapping[str, Any]) -> list[Path]:
        """Every file the script depends on: itself, its modules, its ``watch:`` files."""
        return [script, *self.modules(script), *self.watched(settings)]

    def fingerprint(self, script: Path, settings: Mapping[str, Any], interpreter: str) -> str:
        """A content hash of the script's inputs, its effective settings and the interpreter."""
        digest = hashlib.sha256()
        for path in self.inputs(script, settings):
            rel = os.path.relpath(path, self.root)
            digest.update(f"{rel}\0{self.file_hash(path)}\n".encode())
        digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
        digest.update(interpreter.encode())
        return digest.hexdigest()

    def affected(
        self, changed: Iterable[Path], scripts: Mapping[Path, Mapping[str, Any]]
    ) -> dict[Path, list[Path]]:
        """``{script: [changed files among its inputs]}`` for the scripts that ``changed`` touches.

        ``scripts`` maps each script to its settings (for ``watch:``).
        """
        changed = list(changed)
        importers: dict[Path, list[Path]] = {}
        with self._lock:
            pending = deque(scripts)
            seen: set[Path] = set()
            while pending:  # reverse edges of every file reachable from a script
                file = pending.popleft()
                if file in seen:
                    continue
                seen.add(file)
                for dep in self.direct(file):
                    importers.setdefault(dep, []).append(file)
                    pending.append(dep)
        hits: dict[Path, list[Path]] = {}
        for path in changed:
            queue, reached = deque([path]), {path}
            while queue:
                file = queue.popleft()
                for importer in importers.get(file, ()):
                    if importer not in reached:
                        reached.add(importer)
                        queue.append(importer)
            for script in reached:
                if script in scripts:
                    hits.setdefault(script, []).append(path)
            for script, settings in scripts.items():
                if settings.get("watch") and self.watches(settings, path):
                    hits.setdefault(script, []).append(path)
        return hits
