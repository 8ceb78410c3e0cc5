"""Where a project's files are: found once, at the edge, and passed down as one value.

A :class:`Project` answers every "where": the root (the nearest folder with
``pyproject.toml`` or ``.git``), the scripts directory, the config file that
applies to it, ``.orchestrator/`` and the reports folder, and the import
search path. The CLI and the library's entry points locate it once; every
step after takes it as an argument and never walks the file system for it
again (as nox hands one config to every task).

Finding a project from a path the user typed (``orch deps
examples/scripts/x.py``) is :func:`scripts_dir_of`; from the current
directory, :func:`default_scripts_dir`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, DiscoveryError

__all__ = [
    "CONFIG_NAMES",
    "PROJECT_MARKERS",
    "STATE_DIR",
    "Project",
    "default_scripts_dir",
    "find_project_root",
    "scripts_dir_of",
    "search_path",
]

PROJECT_MARKERS = ("pyproject.toml", ".git")
CONFIG_NAMES = ("config.yaml", "config.yml")
#: The folder, under the project root, where orchestrator keeps its caches and record.
STATE_DIR = ".orchestrator"


def find_project_root(start: str | os.PathLike[str]) -> Path | None:
    """Return the nearest directory at or above ``start`` holding a project marker."""
    here = Path(start).resolve()
    if here.is_file():
        here = here.parent
    for candidate in (here, *here.parents):
        if any((candidate / marker).exists() for marker in PROJECT_MARKERS):
            return candidate
    return None


def search_path(root: Path) -> tuple[Path, ...]:
    """The import roots of a project, after a script's own folder: ``src/`` (if any), the root.

    The one list for both sides: a script runs with it first on ``PYTHONPATH``
    (so ``sys.path`` is its folder, these, then the standard library), and
    the analysis of imports resolves against the importer's folder and these.
    """
    src = root / "src"
    return (src, root) if src.is_dir() else (root,)


def _config_folders(scripts_dir: Path, root: Path | None) -> Iterator[Path]:
    """Where a config file applies from: ``scripts_dir``, then each parent up to ``root``."""
    for directory in (scripts_dir, *scripts_dir.parents):
        yield directory
        if root is None or directory == root:
            return


def find_config_file(scripts_dir: Path, root: Path | None) -> Path | None:
    """``config.yaml`` (or ``.yml``) in ``scripts_dir``, else in each parent up to ``root``.

    Raises:
        ConfigError: both spellings exist in the same folder.
    """
    for directory in _config_folders(scripts_dir, root):
        present = [directory / n for n in CONFIG_NAMES if (directory / n).is_file()]
        if len(present) > 1:
            raise ConfigError(
                f"{directory}: both config.yaml and config.yml exist; keep one of them"
            )
        if present:
            return present[0]
    return None


@dataclass(frozen=True)
class Project:
    """The folders and files of one project; plain paths, resolved once."""

    #: The nearest folder at or above the scripts directory with a root marker
    #: (the scripts directory itself when there is none).
    root: Path
    scripts_dir: Path
    #: The config file in force, or None (built-in defaults).
    config_file: Path | None
    #: Where run directories go: ``-o``, or ``reports/`` under the root.
    reports_dir: Path
    #: Whether a root marker was found. Without one, scripts run in the current
    #: directory (as ``run_script`` does) and ``load_config`` reports no root.
    marked: bool = True

    @classmethod
    def locate(
        cls, scripts_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str] | None = None
    ) -> Project:
        """The project of ``scripts_dir``; ``output_dir`` replaces ``<root>/reports``.

        Raises:
            ConfigError: two config files compete (``config.yaml`` and ``config.yml``).
        """
        scripts = Path(scripts_dir).resolve()
        found = find_project_root(scripts)
        root = found or scripts
        reports = Path(os.path.abspath(output_dir)) if output_dir is not None else root / "reports"
        return cls(root, scripts, find_config_file(scripts, found), reports, found is not None)

    @property
    def state_dir(self) -> Path:
        """``.orchestrator/`` under the root: caches, the run record, environments."""
        return self.root / STATE_DIR

    @property
    def search_path(self) -> tuple[Path, ...]:
        """The folders imports are resolved against, after the importer's own folder.

        See :func:`search_path`: the same list a script gets on ``sys.path``.
        """
        return search_path(self.root)

    def rel(self, path: str | os.PathLike[str]) -> str:
        """``path`` relative to the root, as POSIX text (how files other than scripts are named)."""
        return Path(os.path.relpath(path, self.root)).as_posix()

    def config_candidates(self) -> frozenset[Path]:
        """Every path where a config file would apply to the scripts directory."""
        folders = _config_folders(self.scripts_dir, self.root if self.marked else None)
        return frozenset(folder / name for folder in folders for name in CONFIG_NAMES)


def default_scripts_dir(
    cwd: Path | None = None, *, hint: str = "pass it, e.g. `orch run tools/`"
) -> Path:
    """``scripts/`` under the project root of ``cwd``.

    ``hint`` says how the command at hand takes a scripts directory.

    Raises:
        DiscoveryError: there is no such directory.
    """
    here = (cwd or Path.cwd()).resolve()
    root = find_project_root(here) or here
    candidate = root / "scripts"
    if not candidate.is_dir():
        raise DiscoveryError(f"no scripts/ directory in {root}: {hint}")
    return candidate


def scripts_dir_of(path: str | os.PathLike[str], *, hint: str) -> Path:
    """The scripts directory a file belongs to, found from the file alone.

    The project is the nearest root marker above ``path``; its scripts
    directory is ``scripts/`` under that root (for a script in it and for any
    other file of the project: a module in ``src/``, a data file). A project
    without one has its scripts directory where its config file is: the
    nearest folder between ``path`` and the root holding ``config.yaml``.

    Raises:
        DiscoveryError: none of these exists; the message ends with ``hint``.
    """
    target = Path(os.path.abspath(path))
    root = find_project_root(target)
    if root is None:
        raise DiscoveryError(
            f"{target}: not inside a project (no pyproject.toml or .git above it); {hint}"
        )
    default = root / "scripts"
    if default.is_dir():
        return default
    folder = target if target.is_dir() else target.parent
    for candidate in (folder, *folder.parents):
        if any((candidate / name).is_file() for name in CONFIG_NAMES):
            return candidate
        if candidate == root:
            break
    raise DiscoveryError(f"{target}: no scripts/ directory in {root}; {hint}")


_COMMIT = frozenset("0123456789abcdef")


def git_commit(root: Path) -> str | None:
    """The commit checked out in the Git work tree holding ``root``; None: none known.

    Read from ``.git`` (``HEAD``, a loose ref, ``packed-refs``; a worktree's or
    submodule's ``gitdir:`` file followed) rather than asked of ``git``: a run
    pays a few file reads, not a process, and needs no ``git`` installed.
    """
    for folder in (root, *root.parents):
        git = folder / ".git"
        try:
            if git.is_file():
                pointer = git.read_text(encoding="utf-8").strip()
                if not pointer.startswith("gitdir:"):
                    return None
                git = (folder / pointer[len("gitdir:") :].strip()).resolve()
            elif not git.is_dir():
                continue
            head = (git / "HEAD").read_text(encoding="utf-8").strip()
            if not head.startswith("ref:"):
                return head if _is_commit(head) else None  # a detached head
            ref = head[len("ref:") :].strip()
            common = git
            if (git / "commondir").is_file():  # a linked worktree: refs live in the main one
                common = (git / (git / "commondir").read_text(encoding="utf-8").strip()).resolve()
            for base in (git, common):
                if (base / ref).is_file():
                    value = (base / ref).read_text(encoding="utf-8").strip()
                    return value if _is_commit(value) else None
            packed = common / "packed-refs"
            if packed.is_file():
                for line in packed.read_text(encoding="utf-8").splitlines():
                    value, _, name = line.partition(" ")
                    if name == ref and _is_commit(value):
                        return value
            return None  # a branch with no commit yet
        except (OSError, UnicodeDecodeError):
            return None
    return None


def _is_commit(text: str) -> bool:
    return len(text) in (40, 64) and set(text) <= _COMMIT
