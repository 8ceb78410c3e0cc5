"""Errors that stop the orchestrator before or while it runs scripts.

A script that fails is *data* (a result with status ``failed``), never an
exception. These classes are for the cases where orchestrator cannot proceed::

    OrchestratorError          anything the user can fix; the CLI exits 2
    ├── ConfigError            bad config file: YAML, unknown key, wrong type
    ├── DiscoveryError         missing scripts directory or --subdirs folder
    ├── CycleError             a dependency cycle; ``.cycle`` holds the path
    ├── WorkflowError          (workflow.py) a duplicate task, an unknown dependency
    ├── EnvBuildError          (environments.py) an isolated environment failed to
    │                          build; a script's error, not the run's
    └── WriteError             orchestrator cannot write its own files (a full disk,
                               a folder gone or read-only): the run stops

Each message is one line that names the file, the key and the fix, so the CLI
can print it without a traceback. :class:`ExitCode` is what ``orch`` exits
with; the CLI's help prints its table.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence

__all__ = [
    "ConfigError",
    "CycleError",
    "DiscoveryError",
    "ExitCode",
    "OrchestratorError",
    "WriteError",
]


class OrchestratorError(Exception):
    """Base class for every error the user can cause and fix."""


class ConfigError(OrchestratorError):
    """The configuration is invalid: the message names the file and key path."""


class DiscoveryError(OrchestratorError):
    """Scripts cannot be discovered: the message names the path."""


class CycleError(OrchestratorError):
    """A dependency cycle; ``cycle`` is the path, first node repeated at the end."""

    def __init__(self, cycle: Sequence[str], source: str = "", hint: str = "") -> None:
        self.cycle = list(cycle)
        where = f"{source}: " if source else ""
        fix = f"; {hint}" if hint else ""
        super().__init__(f"{where}dependency cycle: {' -> '.join(self.cycle)}{fix}")


class WriteError(OrchestratorError):
    """A file orchestrator writes (a log, the record, a report) cannot be written.

    ``path`` is the file, ``cause`` the :class:`OSError`, ``hint`` the fix to
    name (the default is for reports and logs, which ``-o`` moves). A run that meets one
    stops its scripts, writes what it still can, and exits 2 with this line.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        cause: OSError,
        hint: str = "free some space or pass a writable folder with -o",
    ) -> None:
        self.path = os.fspath(path)
        self.cause = cause
        why = cause.strerror or str(cause) or type(cause).__name__
        super().__init__(f"cannot write {self.path}: {why}; {hint}")


class ExitCode(enum.IntEnum):
    """What ``orch`` exits with; the CLI's help prints the same table."""

    OK = 0
    FAILED = 1
    USAGE = 2
    INTERRUPTED = 130

    @property
    def meaning(self) -> str:
        """One line for the help's table."""
        return _MEANINGS[self]


_MEANINGS = {
    ExitCode.OK: "every script passed or was skipped",
    ExitCode.FAILED: "a script failed, timed out or errored",
    ExitCode.USAGE: "usage or configuration error",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C or SIGTERM)",
}
