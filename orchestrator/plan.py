"""What a run will do: the run options, and the scripts with their effective settings.

:class:`RunOptions` is the single options model of a run. The CLI builds it
from argv; Python callers build it directly. :func:`build_plan` turns it into
an ordered list of :class:`ScriptJob` (discovery order), validating the config
before anything runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._files import find_project_root
from .config import get_script_config, load_config, relative_script_path
from .discovery import discover_scripts
from .errors import DiscoveryError

__all__ = ["RunOptions", "ScriptJob", "build_plan", "default_scripts_dir"]


@dataclass(frozen=True)
class RunOptions:
    """Everything that shapes one run. ``None`` means "use the config or built-in default"."""

    scripts_dir: Path
    jobs: int = 1
    timeout: float | None = None
    subdirs: tuple[str, ...] | None = None
    pattern: str | None = None
    max_depth: int = 2
    dry_run: bool = False
    fail_fast: bool = False
    output_dir: Path | None = None
    verbosity: int = 0
    color: bool | None = None
    command: tuple[str, ...] = ()

    @property
    def project_root(self) -> Path:
        """The project root of the scripts directory (the directory itself if none)."""
        return find_project_root(self.scripts_dir) or self.scripts_dir.resolve()

    @property
    def reports_dir(self) -> Path:
        """Where run directories go: ``--output-dir`` or ``reports/`` under the project root."""
        return self.output_dir if self.output_dir is not None else self.project_root / "reports"


@dataclass(frozen=True)
class ScriptJob:
    """One discovered script and the settings it runs with."""

    path: Path
    rel: str
    settings: dict[str, Any] = field(hash=False, compare=False)

    @property
    def subdirectory(self) -> str:
        """The script's folder relative to the scripts directory (``.`` at the top)."""
        parent = Path(self.rel).parent.as_posix()
        return parent


def default_scripts_dir(cwd: Path | None = None) -> Path:
    """``scripts/`` under the project root of ``cwd``.

    Raises:
        DiscoveryError: there is no such directory.
    """
    here = (cwd or Path.cwd()).resolve()
    root = find_project_root(here) or here
    candidate = root / "scripts"
    if not candidate.is_dir():
        raise DiscoveryError(
            f"no scripts/ directory in {root}: pass the scripts directory, e.g. `orch run tools/`"
        )
    return candidate


def build_plan(options: RunOptions) -> list[ScriptJob]:
    """Discover the scripts and resolve their settings, in discovery order.

    Command-line values (``options.timeout``) replace the config's ``default:``
    layer, so a script's own entry in ``scripts:`` still wins over them.

    Raises:
        ConfigError: the config file is invalid.
        DiscoveryError: the scripts directory is missing.
    """
    scripts_dir = options.scripts_dir.resolve()
    if not scripts_dir.is_dir():
        discover_scripts(scripts_dir)  # raises the one-line DiscoveryError
    config = load_config(scripts_dir)
    if options.timeout is not None:
        config = {**config, "default": {**config["default"], "timeout": float(options.timeout)}}
    paths = discover_scripts(
        scripts_dir,
        subdirs=options.subdirs,
        pattern=options.pattern,
        max_depth=options.max_depth,
    )
    return [
        ScriptJob(
            path,
            relative_script_path(path, scripts_dir),
            get_script_config(path, scripts_dir, config),
        )
        for path in paths
    ]


def cpu_jobs(value: str) -> int:
    """Parse a ``--jobs`` value: a positive integer or ``auto`` (the CPU count)."""
    if value == "auto":
        return os.cpu_count() or 1
    jobs = int(value)
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    return jobs
