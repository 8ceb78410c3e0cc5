"""What each script did, run after run, and what that says: flaky, a new failure, fixed.

Every run appends one :class:`Outcome` per script that ran to that script's
journal, ``.orchestrator/history/<path>.jsonl`` (the path relative to the
project root, as the record keys it): the time, the commit, the fingerprint of
the inputs it ran with, its status, exit code, duration, peak memory, attempts
and a short failure signature. A file per script, so a run reads only the
history of what it runs; each keeps the last :data:`KEEP` runs.

A :class:`Verdict` is drawn from a script's past and its run now:

* **flaky**: the same inputs gave a pass and a failure (or a timeout), or a
  pass came only after a retry. Certain, not statistical: only runs whose
  inputs orch knows whole are compared, and the evidence counts from the last
  change of the script's own file (editing the script is how a flaky script
  gets fixed).
* **new failure**: it fails now and passed last time, with other inputs;
  **fixed**: it passes now and failed last time, with other inputs. A flaky
  script is neither: its outcome is no news about the change.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._files import Journal, ensure_state_dir, state_hint, warn_damaged
from .errors import WriteError
from .reporting import VERDICTS, plain
from .results import Status

__all__ = [
    "HISTORY_VERSION",
    "KEEP",
    "Flaky",
    "History",
    "Outcome",
    "Runs",
    "Verdict",
    "failure_signature",
    "judge",
]

#: The history line's format; lines of another version are left out when read.
HISTORY_VERSION = 1
#: Runs kept per script; its journal is rewritten to these once it holds twice as many.
KEEP = 100
#: Earlier durations a result carries (its sparkline in report.html).
RECENT = 12
#: Characters a failure signature keeps.
SIGNATURE = 160

_FAILURES = frozenset({Status.FAILED.value, Status.TIMEOUT.value})


@dataclass(frozen=True)
class Outcome:
    """One run of one script, as its history keeps it."""

    time: str
    status: str
    duration: float
    #: The fingerprint of the inputs it ran with; None: not known whole (then never compared).
    inputs: str | None = None
    #: The hash of the script's own file as it ran.
    source: str | None = None
    commit: str | None = None
    exit_code: int | None = None
    memory: float | None = None
    attempts: int = 1
    #: The last error line, normalised (see :func:`failure_signature`); None for a pass.
    signature: str | None = None
    run: str | None = None

    @property
    def passed(self) -> bool:
        """Whether this run passed (on any attempt)."""
        return self.status == Status.PASSED.value

    @property
    def failed(self) -> bool:
        """Whether this run failed or timed out (an error is orch's, not the script's)."""
        return self.status in _FAILURES

    @property
    def retried_pass(self) -> bool:
        """A pass that needed a retry: within one run, the same inputs failed and passed."""
        return self.passed and self.attempts > 1

    def to_line(self) -> dict[str, Any]:
        """The journal line."""
        return {"v": HISTORY_VERSION, **asdict(self)}

    @classmethod
    def from_line(cls, line: Mapping[str, Any]) -> Outcome:
        """Read a journal line back (checked by :func:`_valid`)."""
        return cls(**{k: v for k, v in line.items() if k in _FIELDS})


_FIELDS = frozenset(Outcome.__dataclass_fields__)
_TYPES: dict[str, tuple[type, ...]] = {
    "time": (str,),
    "status": (str,),
    "duration": (int, float),
    "inputs": (str, type(None)),
    "source": (str, type(None)),
    "commit": (str, type(None)),
    "exit_code": (int, type(None)),
    "memory": (int, float, type(None)),
    "attempts": (int,),
    "signature": (str, type(None)),
    "run": (str, type(None)),
}


def _valid(line: Any) -> bool:
    """A line of this version with fields of the right types (another version: any dict)."""
    if not isinstance(line, dict):
        return False
    if line.get("v") != HISTORY_VERSION:
        return True  # skipped when read, never judged
    # A field missing is None: refused where None is not among its types.
    return all(isinstance(line.get(name), kinds) for name, kinds in _TYPES.items())


@dataclass(frozen=True)
class Flaky:
    """The evidence that a script is flaky: same inputs, different outcomes."""

    passes: int
    failures: int
    #: When the first run of that evidence ended.
    since: str

    def to_dict(self) -> dict[str, Any]:
        """As a result's ``flaky`` key holds it."""
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    """What a script's history says of its run now."""

    flaky: Flaky | None = None
    #: ``new failure`` or ``fixed`` (against its last run); None: neither, or flaky.
    change: str | None = None
    #: Durations of its earlier runs, oldest first (at most :data:`RECENT`).
    recent: tuple[float, ...] = field(default_factory=tuple)


NEW_FAILURE, FIXED = VERDICTS[:2]


def judge(past: Sequence[Outcome], now: Outcome) -> Verdict:
    """The verdict on ``now``, the run just made, given the script's ``past`` (oldest first)."""
    recent = tuple(o.duration for o in past[-RECENT:])
    # The evidence counts from the last change of the script's own file.
    current: list[Outcome] = [now]
    for outcome in reversed(past):
        if outcome.source != now.source:
            break
        current.append(outcome)
    flaky = _evidence(current)
    change = None
    # Its last run that passed or failed (an error is orch's, and says nothing).
    last = next((o for o in reversed(past) if o.passed or o.failed), None)
    if flaky is None and last is not None:
        # Same inputs, opposite outcomes would be evidence: so here the inputs differ.
        if now.failed and last.passed:
            change = NEW_FAILURE
        elif now.passed and last.failed:
            change = FIXED
    return Verdict(flaky, change, recent)


def _evidence(outcomes: Sequence[Outcome]) -> Flaky | None:
    """Runs (newest first) whose inputs gave both outcomes, or that passed on a retry."""
    seen: dict[str, tuple[bool, bool]] = {}
    for o in outcomes:
        if o.inputs is not None:
            passed, failed = seen.get(o.inputs, (False, False))
            seen[o.inputs] = (passed or o.passed, failed or o.failed)
    both = {key for key, (passed, failed) in seen.items() if passed and failed}
    proof = [o for o in outcomes if o.retried_pass or (o.inputs in both)]
    if not proof:
        return None
    passes = sum(o.passed for o in proof)
    failures = sum(o.failed + (o.attempts - 1 if o.retried_pass else 0) for o in proof)
    return Flaky(passes, failures, min(o.time for o in proof))


# What differs between two runs of the same failure: temporary paths, addresses, numbers.
_VARYING = re.compile(r"(/tmp/[^\s'\"]+)|(0x[0-9a-fA-F]+)|\d+")


def failure_signature(status: str, error: str | None, stderr: str, stdout: str) -> str | None:
    """A failure's short, comparable form: its last error line with what varies taken out.

    Addresses, numbers and temporary paths become ``0x?``, ``N`` and ``/tmp/?``,
    so the same failure on two runs has the same signature. None for a pass.
    """
    if status not in _FAILURES and status != Status.ERROR.value:
        return None
    if status == Status.TIMEOUT.value:
        return "timeout"
    line = ""
    for text in (stderr, stdout, error or ""):
        lines = [s for s in plain(text[-4096:]).splitlines() if s.strip()]
        if lines:
            line = lines[-1].strip()
            break
    line = _VARYING.sub(lambda m: "/tmp/?" if m[1] else "0x?" if m[2] else "N", line)
    return line[:SIGNATURE] or status


class History:
    """The run history of a project's scripts, one journal per script."""

    def __init__(self, state_dir: Path) -> None:
        self.state = state_dir
        self.folder = state_dir / "history"
        self._lock = state_dir / "history.lock"

    def of(self, key: str) -> Runs:
        """A script's history, read (``key``: its path relative to the project root)."""
        name = key
        if ".." in key.split("/") or "" in key.split("/"):  # outside the root: by hash
            name = "_outside/" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return Runs(self, Journal(self.folder / f"{name}.jsonl", self._lock, _valid))


class Runs:
    """One script's history: its runs as read, and the journal a new run is added to.

    Held from the reading to the writing, so that a journal found damaged on
    reading is started anew by the write that follows.
    """

    def __init__(self, history: History, journal: Journal) -> None:
        self.history = history
        self.journal = journal
        #: Its runs, oldest first.
        self.past = [
            Outcome.from_line(line) for line in journal.read() if line.get("v") == HISTORY_VERSION
        ]

    def add(self, outcome: Outcome) -> None:
        """Append a run; the journal is cut back to :data:`KEEP` runs when it holds twice as many.

        Raises:
            WriteError: the history cannot be written.
        """
        ensure_state_dir(self.history.state)
        try:
            self._folder()
        except OSError as exc:  # a full disk, a read-only state folder
            raise WriteError(self.journal.path, exc, state_hint(self.journal.path)) from None
        line = outcome.to_line()
        if len(self.past) + 1 >= 2 * KEEP:
            self.journal.rewrite(lambda lines: [*lines[-(KEEP - 1) :], line])
        else:
            self.journal.append([line])

    def _folder(self) -> None:
        """Make the journal's folder; a file standing where one of its folders belongs is
        damage of our own state: said once, and removed."""
        folder = self.journal.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return
        except (FileExistsError, NotADirectoryError):
            pass
        state = self.history.state
        for where in (*reversed(folder.parents), folder):
            if where.is_relative_to(state) and where.exists() and not where.is_dir():
                warn_damaged(where, "a file where a folder belongs")
                where.unlink()
        folder.mkdir(parents=True, exist_ok=True)
