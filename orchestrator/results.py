"""What a script run gives: a :class:`Status`, why it was stopped, and the result value.

A result is a frozen :class:`ScriptResult`; :meth:`ScriptResult.to_dict` is
the public contract (``run_script``'s return value, the JSON logs, what
reporters render) and :meth:`ScriptResult.from_dict` reads one back, from a
log or from a Dask worker. Every decision about a result (is it a failure,
may it be retried, does it go into the record) is a property here, never a
comparison of strings elsewhere.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._files import relative_posix
from .errors import ExitCode

__all__ = [
    "NOT_OK",
    "STATUSES",
    "ScriptResult",
    "Status",
    "StopReason",
    "exit_code_for",
    "skipped_result",
    "unrun_result",
]


class Status(str, enum.Enum):
    """The status of a script run; the value is what result dicts hold."""

    PASSED = "passed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    ERROR = "error"
    SKIPPED = "skipped"

    def __str__(self) -> str:
        return self.value

    @property
    def ok(self) -> bool:
        """Nothing went wrong: passed, or not run on purpose."""
        return self in (Status.PASSED, Status.SKIPPED)

    @property
    def retryable(self) -> bool:
        """What ``retry_on`` may name: the script ran and did not pass. An error never is."""
        return self in (Status.FAILED, Status.TIMEOUT)


#: Every status, in the order reports list them.
STATUSES = tuple(s.value for s in Status)
#: The statuses that make a run fail (exit code 1).
NOT_OK = tuple(s.value for s in Status if not s.ok)


class StopReason(str, enum.Enum):
    """Why a running script was stopped from outside; the value is its result's ``error``.

    Such a result says nothing about the script itself, so it is never
    recorded for ``--changed``.
    """

    INTERRUPTED = "interrupted"
    RESTARTED = "restarted: its inputs changed"
    UNWRITABLE = "stopped: orchestrator cannot write its files"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ScriptResult:
    """One script's result. Keys beyond the fields below ride along in ``extra``."""

    script: str
    name: str
    path: str
    subdirectory: str
    status: Status
    start_time: str | None = None
    end_time: str | None = None
    exit_code: int | None = None
    execution_time: float = 0.0
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    #: The peak resident memory of the script's largest process, in MB (None: unknown).
    peak_memory_mb: float | None = None
    #: User + system CPU seconds of the script and the children it waited for.
    cpu_time: float | None = None
    #: Set when the script was stopped from outside (then status is ``error``).
    stopped: StopReason | None = None
    #: Attempts made (a run sets it; 0: never started).
    attempts: int | None = None
    #: The evidence that it is flaky (same inputs, different outcomes; a pass on a retry):
    #: ``passes``, ``failures``, ``since``. None: no such evidence.
    flaky: Mapping[str, Any] | None = None
    #: Against its last run, with other inputs: ``new failure`` or ``fixed``.
    change: str | None = None
    #: Why it ran: what differed from its last recorded run (``--changed``, ``orch watch``),
    #: or ``full run``; empty for a script that did not run.
    why: tuple[str, ...] = ()
    #: Why a skipped script did not run (``up-to-date``, ``skipped by config``, ...).
    skip_reason: str | None = None
    #: Processes that left the script's group and were killed with it.
    escaped: int | None = None
    #: Where what orch knows of its inputs ends (``ran /bin/cat``); empty: nowhere.
    inputs_incomplete: tuple[str, ...] = ()
    #: Other keys: ``stdout_path``/``stderr_path``, ``trace``/``trace_error``, ``worker``,
    #: ``write_error``, and a function's ``result`` and ``type``.
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Passed or skipped."""
        return self.status.ok

    @property
    def recorded(self) -> bool:
        """Whether the result tells something about the script (so ``--changed`` keeps it)."""
        return self.stopped is None

    def with_extra(self, **keys: Any) -> ScriptResult:
        """This result with more keys beyond the fields (``worker``, ``resubmitted``)."""
        return replace(self, extra={**self.extra, **keys})

    def stopped_by(self, reason: StopReason) -> ScriptResult:
        """This result, stopped from outside: ``error`` says why; it is never recorded."""
        return replace(self, status=Status.ERROR, error=reason.value, stopped=reason)

    def to_dict(self) -> dict[str, Any]:
        """The result as the public dict: ``script, name, ..., error`` and the extra keys."""
        data: dict[str, Any] = {}
        for f in _FIELDS:
            value = getattr(self, f)
            if f in _OPTIONAL and (value is None or value == ()):
                continue
            if isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            data[f] = value
        data.update(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScriptResult:
        """Read a result dict back (a log, a Dask worker's return value)."""
        known = {f: data[f] for f in _FIELDS if f in data}
        known["status"] = Status(known.get("status", Status.ERROR))
        if known.get("stopped") is not None:
            known["stopped"] = StopReason(known["stopped"])
        known["why"] = tuple(map(str, known.get("why") or ()))
        if isinstance(known.get("flaky"), bool):  # an older orch's flag: a pass on a retry
            known["flaky"] = (
                {
                    "passes": 1,
                    "failures": max(int(known.get("attempts") or 2) - 1, 1),
                    "since": known.get("start_time") or "",
                }
                if known["flaky"]
                else None
            )
        known["inputs_incomplete"] = tuple(map(str, known.get("inputs_incomplete") or ()))
        extra = {k: v for k, v in data.items() if k not in _FIELDS}
        return cls(**known, extra=extra)


def exit_code_for(statuses: Iterable[str], interrupted: bool = False) -> ExitCode:
    """OK if every status is ok, FAILED otherwise, INTERRUPTED if the run was."""
    if interrupted:
        return ExitCode.INTERRUPTED
    return ExitCode.OK if all(Status(s).ok for s in statuses) else ExitCode.FAILED


_FIELDS = tuple(f.name for f in fields(ScriptResult) if f.name != "extra")
#: Left out of the dict when None (or empty): a result has them only where they apply.
_OPTIONAL = frozenset(
    {"stopped", "attempts", "flaky", "change", "skip_reason", "escaped", "inputs_incomplete"}
)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def base_result(script: Path, scripts_dir: Path | None) -> ScriptResult:
    """The result of ``script`` before it runs: ``error``, no times, no output."""
    rel_path = relative_posix(script, scripts_dir) if scripts_dir is not None else None
    rel_parent = None if rel_path is None else Path(rel_path).parent.as_posix()
    return ScriptResult(
        script=str(script),
        name=script.name,
        path=rel_path or script.name,
        subdirectory=rel_parent if rel_parent is not None else script.parent.name,
        status=Status.ERROR,
    )


def unrun_result(
    script: str | os.PathLike[str],
    scripts_dir: str | os.PathLike[str] | None,
    status: Status,
    *,
    reason: str | None = None,
    error: str | None = None,
) -> ScriptResult:
    """The result of a script that never ran: ``skipped`` with ``skip_reason``,
    or ``error`` with ``error``."""
    now = _now()
    result = base_result(
        Path(os.path.abspath(script)), Path(scripts_dir) if scripts_dir is not None else None
    )
    skip_reason = (reason or "") if status is Status.SKIPPED else None
    return replace(
        result, status=status, start_time=now, end_time=now, error=error, skip_reason=skip_reason
    )


def skipped_result(
    script: str | os.PathLike[str], scripts_dir: str | os.PathLike[str] | None, reason: str
) -> ScriptResult:
    """The result of a script that was not run, with ``skip_reason``."""
    return unrun_result(script, scripts_dir, Status.SKIPPED, reason=reason)
